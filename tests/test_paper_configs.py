"""Every paper config through the data parts of phases 00-04, offline, on a small fake copy of its dataset.

The fake copy has the registered schema (image and label column names, ClassLabel or class-name labels, the
source's split names, no test split where the source has none) and what real copies have: mixed image sizes,
grayscale, RGB and RGBA images. Models are random tiny ones swapped in through config overrides; what is checked
is that the paper's settings get from the saved dataset to each phase's inputs (splits, captions, LoRA
batches, the synthesis plan, the teacher's training data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tckr.core import io, paths, registry
from tckr.datasets import splitting

# _base.yaml holds the settings the ten share (each extends it); it is not a study
PAPER_CONFIGS = sorted(p.stem for p in (paths.CONFIGS / "paper").glob("*.yaml") if not p.name.startswith("_"))
SIZES = [(40, 30), (30, 44), (36, 36), (52, 40)]
MODES = ["RGB", "L", "RGB", "RGBA"]


def save_fake_dataset(root: Path, name: str, n_train: int = 4, n_test: int = 2, seed: int = 0) -> Path:
    """A ``datasets.save_to_disk`` folder ``root/name`` with the registered schema of ``name``: ``n_train`` /
    ``n_test`` images per class, of mixed sizes and modes."""
    import datasets
    from PIL import Image

    s = registry.spec(name)
    rng = np.random.default_rng(seed)
    # Oxford-IIIT Pet's hub copy stores the class name as a string (registry notes); the others a ClassLabel.
    label_feature = datasets.Value("string") if name == "oxford_pets" else datasets.ClassLabel(names=list(s.class_names))
    features = datasets.Features({s.image_column: datasets.Image(), s.label_column: label_feature})
    splits = {s.train_split: n_train, **({s.test_split: n_test} if s.test_split else {})}
    out = {}
    for split, per_class in splits.items():
        labels = np.tile(np.arange(s.num_classes), per_class)
        images = []
        for i, c in enumerate(labels):
            w, h = SIZES[i % len(SIZES)]
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., c % 3] = np.uint8(40 + (200 * c) // s.num_classes)  # a class signal, so labels mean something
            images.append(Image.fromarray(pixels).convert(MODES[i % len(MODES)]))
        values = [s.class_names[c] for c in labels] if name == "oxford_pets" else labels.tolist()
        out[split] = datasets.Dataset.from_dict({s.image_column: images, s.label_column: values}, features=features)
    folder = root / name
    datasets.DatasetDict(out).save_to_disk(str(folder))
    return folder


def tiny_overrides(base: Path, num_classes: int) -> dict:
    """Random tiny models and a fake-data-sized val set; every other key keeps the paper config's value."""
    return {"study.device": "cpu", "study.num_threads": 2, "data.val_size": num_classes, "data.image_size": 32,
            "captions.captioner": "attributes", "generator.arch": "tiny", "generator.base": str(base),
            "generator.resolution": 32, "generator.dtype": "float32", "lora.max_steps": 1, "lora.mixed_precision": "no",
            "classifier.teacher_arch": "mobilenetv3_small_050", "classifier.student_arch": "mobilenetv3_small_050",
            "classifier.pretrained": False, "classifier.input_size": 32, "train.epochs": 1, "train.amp": False}


@pytest.fixture
def offline_data(tmp_path, monkeypatch):
    monkeypatch.setenv("TCKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")  # channel statistics of the fake data stay here
    from tckr.runfolder import runs

    runs._load_real_cached.cache_clear()
    yield tmp_path / "data"
    runs._load_real_cached.cache_clear()


def test_the_paper_tier_has_ten_configs():
    assert len(PAPER_CONFIGS) == 10, PAPER_CONFIGS


def _open(config, data_dir, run_dir, base):
    from tckr.core import config as config_mod
    from tckr.runfolder import runs

    paper = config_mod.load_config(paths.CONFIGS / "paper" / f"{config}.yaml")
    s = registry.spec(paper.study.dataset)
    save_fake_dataset(data_dir, s.name)
    run = runs.open_run(paths.CONFIGS / "paper" / f"{config}.yaml", run_dir, overrides=tiny_overrides(base, s.num_classes))
    return paper, s, run


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_config_data_phases_offline(config, offline_data, tmp_path):
    from tckr.classification import batches
    from tckr.generation import captions, lora, synthesis
    from tckr.runfolder import synthetic

    paper, s, run = _open(config, offline_data, tmp_path / "run", "models/tiny-sd-fashion")

    # phase 00: splits and their class counts (load_real without size= raised on mixed image sizes)
    table = splitting.summarise_splits(run)
    sp = run.splits()
    assert table[["D", "H", "val", "test"]].sum().tolist() == [len(sp.D), len(sp.H), len(sp.val), len(run.test_index())]
    assert len(sp.D) == len(sp.H) > 0 and (table["D"] > 0).all()
    train_idx = [sp.D, sp.H, sp.val, sp.pool, sp.public]
    if s.test_split is None:  # carved from train, disjoint from every other split, recorded in splits/
        assert run.source("test") == "train"
        carved = run.carved_test()
        assert np.array_equal(np.sort(run.test_index()), carved) and len(carved) == round(0.15 * s.num_classes * 4)
        train_idx.append(carved)
    else:
        assert run.source("test") == "test" and len(run.test_index()) == 2 * s.num_classes
    flat = np.concatenate(train_idx)
    assert len(np.unique(flat)) == len(flat) == 4 * s.num_classes
    assert io.read_json(run.dir / "splits" / "sources.json")["test"] == run.source("test")
    test = run.real("test")
    assert test.images.shape[1:] == (32, 32, 3) and len(test) == len(run.test_index())

    # phase 01: the captioner's input (D at the run's size) and both caption views
    caps = captions.caption_run(run, progress=False)
    assert len(caps) == len(sp.D) and caps["prompt"].str.startswith(tuple(run.class_names)).all()

    # phase 02: LoRA batches from D and its prompts (one optimiser step of a random tiny generator)
    assert len(lora.training_prompts(run)) == len(sp.D)
    batch = lora.preprocess(run.real("D").images[:4], run.cfg.generator.resolution, center_crop=True)
    assert tuple(batch.shape) == (4, 3, 32, 32)

    # phase 03: the synthesis plan at the paper's cardinalities (20x |D|, class-balanced)
    plan = synthesis.plan(run)
    assert len(plan) == synthetic.set_size(run, max(paper.synthesis.cardinalities))
    assert np.ptp(np.bincount(plan["label"], minlength=s.num_classes)) <= 1

    # phase 04: the teacher's training and validation data and their normalisation
    D, val = run.real("D"), run.real("val")
    assert D.images.shape[1:] == val.images.shape[1:] == (32, 32, 3) and set(val.labels) <= set(range(s.num_classes))
    stats = batches.normalisation(run.cfg)
    assert len(stats["mean"]) == 3 and all(0 < v < 1 for v in stats["std"])


@pytest.mark.slow
@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_paper_config_models_offline(config, offline_data, tmp_path, tiny_sd_base):
    """One LoRA optimiser step of a random tiny generator and one teacher epoch of a random tiny classifier on each
    paper config's fake data (minutes for all ten on two cores)."""
    from tckr.classification import train
    from tckr.generation import captions, lora

    _, _, run = _open(config, offline_data, tmp_path / "run", tiny_sd_base)
    captions.caption_run(run, progress=False)
    assert lora.finetune(run, progress=False).is_file()
    assert train.teacher(run, progress=False).info["role"] == "teacher"


def test_holdout_test_trains_on_the_whole_train_split(offline_data, tmp_path):
    from tckr.core import config as config_mod
    from tckr.datasets import provenance
    from tckr.privacy import mia
    from tckr.runfolder import runs

    with pytest.raises(config_mod.ConfigError, match="mia.n_pipelines.*data.holdout 'test'"):
        config_mod.load_config("configs/tiny.yaml", {"data.holdout": "test"})
    with pytest.raises(config_mod.ConfigError, match="data.holdout"):
        config_mod.load_config("configs/tiny.yaml", {"data.holdout": "tests"})
    save_fake_dataset(offline_data, "cifar10", n_train=6, n_test=3)
    over = {"study.device": "cpu", "data.holdout": "test", "data.val_size": 10, "data.image_size": 16,
            "classifier.input_size": 16, "classifier.pretrained": False, "classifier.teacher_arch": "mobilenetv3_small_050",
            "classifier.student_arch": "mobilenetv3_small_050", "mia.n_shadows": 4, "mia.population_size": 0}
    run = runs.open_run("configs/paper/cifar10.yaml", tmp_path / "run", overrides=over)
    sp = run.splits()
    assert len(sp.D) == 60 - 10 and len(sp.pool) == 0  # the whole train split less val
    assert run.source("H") == "test" and np.array_equal(sp.H, run.test_index()) and len(sp.H) == 30
    assert run.real("H").images.shape == (30, 16, 16, 3)
    assert np.array_equal(run.labels("H"), run.real("test").labels)
    table = splitting.summarise_splits(run)
    assert table["D"].sum() == 50 and table["H"].sum() == table["test"].sum() == 30
    p = mia.pool(run)
    assert p.member.sum() == 50 and (~p.member).sum() == 30
    keep = mia.ensure_mask(run)
    assert (keep.sum(0) == 2).all()  # every example IN for half of the 4 shadows, D and H alike
    private = provenance.private_indices(run)
    assert set(private["train"]) == {"D", "val"} and set(private["test"]) == {"H", "test"}
