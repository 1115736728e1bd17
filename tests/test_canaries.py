"""Mislabeled canaries (``mia.canaries``): drawn seeded and class-balanced from P, flipped in one place
(``Run.real``) so captions, prompts, the teacher, the shadows and the shadow pipelines all see the canary label,
recorded and verified in ``splits/canaries.csv``, scored apart from the rest of P (``subset``), and nothing at all
changes with 0 canaries. ``train.fit`` is replaced by a recording stand-in: no classifier trains here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tckr.classification import batches, classifiers, train
from tckr.core import io
from tckr.datasets import real, splitting
from tckr.generation import captions, lora, synthesis
from tckr.privacy import attacks, generator_mia, ledger, mia, pipeline_attacks, pipelines, synthetic_mia
from tckr.runfolder import artifacts, runs

BASE = {"data.train_size": 40, "data.val_size": 10, "mia.population_size": 10, "mia.n_bootstrap": 10,
        "classifier.input_size": 16, "study.num_threads": 1, "mia.n_shadows": 2, "mia.n_pipelines": 2,
        "mia.shadow_epochs": 0}
N = 10


def _open(tmp_path, name: str, canaries: int, **extra) -> runs.Run:
    return runs.open_run("configs/tiny.yaml", tmp_path / name, overrides={**BASE, "mia.canaries": canaries, **extra})


def _true_labels(run) -> np.ndarray:
    return real.load_real(run.dataset, "train", size=run.cfg.data.image_size).labels


def test_choose_canaries_is_seeded_class_balanced_half_members_and_flips_every_label():
    labels = np.repeat(np.arange(10), 40)
    member = np.tile(np.r_[np.ones(20, bool), np.zeros(20, bool)], 10)
    pos, flipped = splitting.choose_canaries(labels, member, 25, 10, seed=3)
    assert len(np.unique(pos)) == 25 and (np.diff(pos) > 0).all()
    assert sorted(np.bincount(labels[pos], minlength=10)) == [2] * 5 + [3] * 5
    assert member[pos].sum() in (12, 13)
    assert (flipped != labels[pos]).all() and flipped.min() >= 0 and flipped.max() < 10
    again = splitting.choose_canaries(labels, member, 25, 10, seed=3)
    other = splitting.choose_canaries(labels, member, 25, 10, seed=4)
    assert np.array_equal(again[0], pos) and np.array_equal(again[1], flipped) and not np.array_equal(other[0], pos)
    assert len(splitting.choose_canaries(labels, member, 0, 10, seed=3)[0]) == 0
    with pytest.raises(ValueError, match="mia.canaries"):
        splitting.choose_canaries(labels, member, 400, 10, seed=3)


def test_no_canaries_change_nothing_and_canaries_move_no_image(tmp_path):
    """0 canaries: no record, labels of the dataset, today's mask; N canaries: the same splits, flipped labels."""
    zero, some = _open(tmp_path, "zero", 0), _open(tmp_path, "some", N)
    true = _true_labels(zero)
    s0, s1 = zero.splits(), some.splits()
    for k in splitting.Splits.NAMES:
        assert np.array_equal(getattr(s0, k), getattr(s1, k)), k
    assert not (zero.dir / "splits" / runs.CANARIES_FILE).exists() and len(zero.canaries()) == 0
    assert "canaries" not in io.read_json(zero.dir / "splits" / runs.SPLITS_RECORD)
    for split in ("D", "H", "val", "pool"):
        assert np.array_equal(zero.real(split).labels, true[getattr(s0, split)]), split
    P = np.r_[s0.D, s0.H]
    keep = mia.ensure_mask(zero)
    assert np.array_equal(keep, attacks.membership_mask(zero.cfg.mia.n_shadows, true[P], zero.seed_for(zero.cfg.mia.seed)))
    assert np.array_equal(np.load(zero.dir / "mia" / "pool.npz")["labels"], true[P])

    c = some.canaries()
    assert len(c) == N and np.isin(c.index, P).all() and np.isin(c.index, s1.D).sum() == N // 2
    assert np.array_equal(c.label, true[c.index]) and (c.canary_label != c.label).all()
    for split in ("D", "H"):
        got, idx = some.real(split).labels, getattr(s1, split)
        hit = np.isin(idx, c.index)
        assert hit.any() and np.array_equal(got[~hit], true[idx][~hit])
        assert np.array_equal(got[hit], c.canary_label[np.searchsorted(c.index, idx[hit])])
    assert np.array_equal(some.real("val").labels, true[s1.val])


def _recording_fit(calls: list):
    def fit(cfg, arch, images, targets, val_images, val_labels, *, seed, history_path=None, desc="", num_classes=None, **kw):
        calls.append((desc, np.asarray(targets).copy()))
        model = classifiers.build(arch, num_classes or 10, pretrained=False, input_size=cfg.classifier.input_size)
        record = {"best_epoch": 1, "epochs_run": 1, "val_accuracy": 10.0, "train_seconds": 0.0,
                  "train_size": int(len(images)), "seed": int(seed)}
        size = cfg.classifier.input_size
        return classifiers.TrainedClassifier(model.eval(), arch, num_classes or 10, input_size=size,
                                             stem_stride=classifiers.resolved_stem_stride(size), info=record), pd.DataFrame([{"epoch": 1, "train_loss": 1.0, "val_accuracy": 10.0}])

    return fit


def test_the_flip_reaches_captions_prompts_teacher_shadows_and_pipelines(tmp_path, monkeypatch):
    run = _open(tmp_path, "run", N)
    c = run.canaries()
    names = run.class_names
    canary_of = dict(zip(c.index.tolist(), c.canary_label.tolist()))
    D, H = run.splits().D, run.splits().H

    table = captions.caption_run(run, progress=False)
    rows = table[table["index"].isin(c.index)]
    assert len(rows) == N // 2
    for _, r in rows.iterrows():
        want = canary_of[r["index"]]
        assert r["label"] == want and r["class_name"] == names[want] and r["prompt"].startswith(f"{names[want]}: ")
    prompts = dict(zip(D.tolist(), lora.training_prompts(run)))
    per_class = synthesis.class_prompts(run)
    for i in set(D) & set(canary_of):
        assert prompts[i].startswith(f"{names[canary_of[i]]}: ") and prompts[i] in per_class[canary_of[i]]

    calls: list = []
    monkeypatch.setattr(train, "fit", _recording_fit(calls))
    train.teacher(run, progress=False)
    hit = np.isin(D, c.index)
    assert np.array_equal(calls[0][1][hit], [canary_of[i] for i in D[hit]])

    mia.train_shadows(run, progress=False)
    keep = mia.ensure_mask(run)
    P = np.r_[D, H]
    saved = np.load(run.dir / "mia" / "pool.npz")
    assert np.array_equal(saved["labels"], c.relabel(P, _true_labels(run)[P]))
    for i, (desc, targets) in enumerate(calls[1:]):
        assert desc == mia.shadow_name(i) and np.array_equal(targets, saved["labels"][keep[i]])

    sub = pipelines.open_pipeline(run, 0)
    assert np.array_equal(sub.canaries().as_array(), c.as_array())
    sub_d = sub.splits().D
    hit = np.isin(sub_d, c.index)
    assert hit.any() and np.array_equal(sub.real("D").labels[hit], [canary_of[i] for i in sub_d[hit]])
    pool_caps = pipelines.pool_captions(run, progress=False).set_index("index")
    for i, y in canary_of.items():
        assert pool_caps.loc[i, "label"] == y and pool_caps.loc[i, "prompt"].startswith(f"{names[y]}: ")
    assert np.isin(np.flatnonzero(mia.canary_mask(run)), generator_mia.generator_subset(run)).all()

    # verified on reopen: an edited record is an error naming the file
    f = run.dir / "splits" / runs.CANARIES_FILE
    t = pd.read_csv(f)
    t.loc[0, "canary_label"] = (t.loc[0, "canary_label"] + 1) % len(names)
    io.save_csv(f, t)
    with pytest.raises(io.CorruptFileError, match="canaries.csv"):
        runs.open_run(None, run.dir).real("D")


def _planted(phi: np.ndarray, labels: np.ndarray, c: int = 10) -> np.ndarray:
    z = np.zeros((*phi.shape, c), np.float32)
    z[np.arange(len(labels)), :, labels] = phi + np.log(c - 1)
    return z


def test_canary_rows_are_scored_on_the_canaries_alone_and_kept_out_of_the_headline(tmp_path):
    """Membership shows only on the canaries, through their canary labels: the canary rows find it, the rows on
    the rest of P do not, and the ledger lists the canary rows apart, never as a headline."""
    run = _open(tmp_path, "run", N, **{"mia.n_shadows": 4, "mia.n_pipelines": 4, "mia.pipeline_cardinalities": [1.0]})
    keep = mia.ensure_mask(run, 4)
    saved = np.load(run.dir / "mia" / "pool.npz")
    labels, member = saved["labels"], saved["member"]
    canary = mia.canary_mask(run)
    rng = np.random.default_rng(0)
    n = len(labels)
    mu = rng.standard_normal((n, 1))

    def logits(inside):  # confidence in the (canary) label rises by 3 on members that are canaries only
        return _planted(mu + 3.0 * (inside & canary)[:, None] + 0.3 * rng.standard_normal((n, 2)), labels)

    L = run.dir / "mia" / "logits"
    z = np.zeros((10, 2, 10), np.float32)
    for i in range(4):
        for name in (mia.shadow_name(i), pipelines.student_logits_name(i, 1.0)):
            io.save_array(L / f"{name}.npy", logits(keep[i]))
            io.save_array(L / f"{name}_population.npy", z)
    model = classifiers.build("mobilenetv3_small_050", 10, pretrained=False, input_size=16)
    for role, name, m, mode in (("teacher", "teacher", None, "real"), ("student", "student_synth1x", 1.0, "soft")):
        io.save_array(L / f"{name}.npy", logits(member))
        io.save_array(L / f"{name}_population.npy", z)
        f = artifacts.weights_file(run, role, m) if m else artifacts.weights_file(run, "teacher")
        classifiers.save(model, f, arch="mobilenetv3_small_050", class_names=run.class_names,
                         normalisation=batches.normalisation(run.cfg), config_hash=run.cfg.hash(),
                         extra={"role": role, "name": name, "label_mode": mode, "multiple": m})
    rows = mia.attack(run)
    piped = pipeline_attacks.attack_students(run, progress=False)
    pos = synthetic_mia.synthetic_subset(run)
    stat = np.stack([logits(member)[pos, 0, labels[pos]], mu[pos, 0]], 1)
    shadow = np.stack([np.stack([logits(keep[i])[pos, 0, labels[pos]], mu[pos, 0]], 1) for i in range(4)])
    syn = synthetic_mia.write_release_results(run, "mia_synthetic.csv", "synthetic_x1", "synthetic", 1.0, "synthetic",
                                              synthetic_mia.synthetic_scores(stat, shadow, keep[:, pos]), pos, 4)
    for table in (rows, piped, syn):
        assert set(table["subset"]) == {"all", "canaries"}
        can, rest = table[table["subset"] == "canaries"], table[table["subset"] == "all"]
        assert len(can) == len(rest) and (can["n_members"] == N // 2).all() and (can["n_nonmembers"] == N // 2).all()
        assert ((rest["n_members"] + rest["n_nonmembers"]) == len(pos if table is syn else labels) - N).all()
        lira = lambda t: t[t["attack"].str.contains("lira") & t["attack"].str.endswith("online_fixed")]  # noqa: E731
        assert (lira(can)["auc"] > 0.9).all() and (lira(rest)["auc"].between(0.3, 0.7)).all(), table
    assert (run.dir / "mia" / "roc" / "teacher_lira_online_fixed_canaries.csv").is_file()
    assert pd.read_csv(run.dir / "mia" / "scores" / "teacher.csv")["canary"].sum() == N

    head = ledger.headline(run.dir)  # the run's own (results/headline.json)
    table = ledger.build(run.dir)
    assert set(ledger.headlines(table).loc[lambda t: t["release"] == "teacher", "attack"]) == {head}
    can = table[table["subset"] == "canaries"]
    assert len(can) and not can["headline"].any() and (table.index[table["subset"] == "canaries"] >= len(table) - len(can)).all()
    assert (ledger.headlines(table)["subset"] == "all").all()
    heads = ledger.classifier_headlines(run.dir, head)
    assert sorted(heads["target"]) == ["student_synth1x", "teacher"] and (heads["auc"] < 0.75).all()
    assert "Mislabeled canaries (10 examples" in ledger.markdown(table)
    assert "Mislabeled canaries" not in ledger.markdown(table, headline_only=True)  # canary rows stay out (their ε sits beside P's)
