"""The public partition never moves, and a pretrained base that saw private images stops the study."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tckr.datasets import provenance, splitting
from tckr.runfolder import runs


def test_public_partition_does_not_move_with_the_private_split_settings():
    labels = np.repeat(np.arange(10), 300)
    a = splitting.make_splits(labels, 400, 50, seed=0, public_size=1000, public_seed=5)
    for train_size, val_size, seed in ((200, 50, 0), (900, 10, 3), (0, 100, 1)):
        b = splitting.make_splits(labels, train_size, val_size, seed, public_size=1000, public_seed=5)
        assert np.array_equal(a.public, b.public)
        assert not np.intersect1d(b.public, np.r_[b.D, b.H, b.val, b.pool]).size
    assert len(a.public) == 1000 and (np.bincount(labels[a.public]) == 100).all()
    other_seed = splitting.make_splits(labels, 400, 50, seed=0, public_size=1000, public_seed=6)
    assert not np.array_equal(a.public, other_seed.public)
    assert len(np.unique(np.r_[a.D, a.H, a.val, a.pool, a.public])) == len(labels)
    with pytest.raises(ValueError, match="outside the public partition"):
        splitting.make_splits(labels, 1000, 50, seed=0, public_size=1000, public_seed=5)


def test_no_public_partition_keeps_the_old_splits():
    labels = np.repeat(np.arange(10), 100)
    s = splitting.make_splits(labels, 200, 100, seed=3)
    assert len(s.public) == 0 and len(s.pool) == 500


def test_run_public_split_is_the_same_for_every_train_size(tmp_path):
    small = runs.open_run("configs/tiny.yaml", tmp_path / "a")
    large = runs.open_run("configs/tiny.yaml", tmp_path / "b", overrides={"data.train_size": 2000})
    assert np.array_equal(small.splits().public, large.splits().public)
    assert len(small.real("public")) == small.cfg.data.public_size


def _plant(folder, run, index):
    provenance.write_training_data(folder, dataset=run.dataset, split="train", index=index, source="test")


def test_overlap_guard_fires_on_a_planted_overlap(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    s = run.splits()
    base = tmp_path / "base"
    _plant(base, run, np.r_[s.public[:50], s.D[:3], s.H[:2]])
    with pytest.raises(provenance.DataLeakError, match=r"trained on 5 private images of this study \(3 of D, 2 of H\)"):
        provenance.check_disjoint(run, str(base))
    _plant(base, run, s.public[:50])
    info = provenance.check_disjoint(run, str(base))
    assert info["checked"] and info["overlap"] == {"D": 0, "H": 0, "val": 0}


def test_tampered_index_is_refused(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    base = tmp_path / "base"
    _plant(base, run, run.splits().public[:20])
    np.save(base / provenance.INDEX_FILE, run.splits().D[:20])
    with pytest.raises(provenance.DataLeakError, match="does not match the sha256"):
        provenance.read_training_data(base)


def test_hub_base_is_recorded_as_not_checkable(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    info = provenance.check_disjoint(run, "stabilityai/stable-diffusion-2")
    assert info["checked"] is False and "LAION" in info["training_data"]


def test_committed_base_saw_only_public_images(tmp_path):
    rec, index = provenance.read_training_data("models/tiny-sd-fashion")
    assert rec["dataset"] == "fashion_mnist" and rec["split"] == "train" and len(index) == rec["n"] > 0
    for config in ("configs/mini.yaml", "configs/tiny.yaml"):
        run = runs.open_run(config, tmp_path / config.replace("/", "_"))
        assert np.isin(index, run.splits().public).all()
        assert provenance.check_disjoint(run)["checked"]
        env = json.loads((run.dir / "environment.json").read_text())
        assert env["base_generator"]["checked"] is True
