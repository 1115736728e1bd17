"""tckr.audit: nearest neighbours, the two-sided paired tests and near-copy counts, and the audit of planted
synthetic sets in the features of a classifier trained on the public partition only."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

from tckr.privacy import audit
from tckr.reporting import canvas


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((37, 5)), rng.standard_normal((50, 5))
    d, j = audit.nearest(q, r, chunk=8)
    full = np.linalg.norm(q[:, None] - r[None], axis=2)
    np.testing.assert_array_equal(j, full.argmin(1))
    np.testing.assert_allclose(d, full.min(1), atol=1e-9)
    img = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    px = audit.pixels(img)
    assert np.linalg.norm(px[0] - px[1]) == pytest.approx(np.sqrt(((img[0] / 255.0 - img[1] / 255.0) ** 2).mean()), rel=1e-5)


def test_closeness_tests_are_two_sided_and_paired():
    from scipy import stats

    rng = np.random.default_rng(1)
    null = audit.closeness_tests(rng.random(500), rng.random(500))
    assert 0.4 < null["frac_closer_to_member"] < 0.6
    assert null["p_wilcoxon_two_sided"] > 0.01 and null["p_binomial_two_sided"] > 0.01
    d_h = rng.random(500)
    closer_D = audit.closeness_tests(0.5 * d_h, d_h)
    assert closer_D["frac_closer_to_member"] == 1.0
    assert closer_D["p_wilcoxon_two_sided"] < 1e-10 and closer_D["p_binomial_two_sided"] < 1e-10
    closer_H = audit.closeness_tests(2.0 * d_h, d_h)  # a one-sided "D closer" test would call this fine
    assert closer_H["frac_closer_to_member"] == 0.0 and closer_H["p_wilcoxon_two_sided"] < 1e-10
    # paired: a small shift of each image's own distance is found although the two distributions overlap
    shared = rng.gamma(2.0, 1.0, 300)
    paired = audit.closeness_tests(shared - 0.05 + 0.02 * rng.standard_normal(300), shared)
    assert paired["p_wilcoxon_two_sided"] < 1e-10
    assert stats.mannwhitneyu(shared - 0.05, shared).pvalue > 0.3
    assert set(paired) == {"n", "median_dist_D", "median_dist_H", "frac_closer_to_member", "p_wilcoxon_two_sided",
                           "p_binomial_two_sided"}


def test_near_copy_counts_and_duplicate_threshold():
    d_D = np.array([0.01, 0.2, 0.3, 0.05, 0.5])
    d_H = np.array([0.4, 0.3, 0.2, 0.06, 0.0])
    out = audit.near_copies(d_D, d_H, dup_threshold=0.1, ratio_tau=0.5)
    assert out["near_copies_dup"] == 2 and out["frac_near_copies_dup"] == pytest.approx(0.4)
    assert out["near_copies_ratio"] == 1 and out["frac_near_copies_ratio"] == pytest.approx(0.2)  # only 0.01 / 0.4
    real = np.linspace(1.0, 2.0, 101)
    assert audit.duplicate_threshold(real) == pytest.approx(1.01)
    with pytest.raises(ValueError, match="held-out"):
        audit.duplicate_threshold(np.array([]))


def noisy(x, rng):
    return np.clip(x.astype(int) + rng.integers(-6, 7, x.shape), 0, 255).astype(np.uint8)


FEATURE_TRAIN = 40  # with batches of 20: two optimiser steps, enough for a feature space that is not the teacher's


@pytest.fixture()
def planted_run(tmp_path, monkeypatch):
    """A tiny run with three 'synthetic' sets of 60 images: noisy copies of D (1×), noisy copies of held-out
    real images (2×, the symmetric null) and 54 of those with 6 copies of D among them (3×). The teacher
    must never be used; train.fit is spied on."""
    import tckr
    from tckr.classification import train
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={
        "data.train_size": 80, "audit.max_synthetic": 60, "audit.feature_train_size": FEATURE_TRAIN, "train.epochs": 1,
        "train.batch_size": 20, "study.num_threads": 1})
    D, H, pool = run.real("D"), run.real("H"), run.real("pool")
    rng = np.random.default_rng(0)
    fresh = pool.images[-60:]
    mixed = np.concatenate([noisy(fresh[:54], rng), noisy(D.images[:6], rng)])
    sets = {1.0: (noisy(D.images[:60], rng), D.labels[:60]), 2.0: (noisy(fresh, rng), pool.labels[-60:]),
            3.0: (mixed, np.r_[pool.labels[-60:-6], D.labels[:6]])}
    stub = types.SimpleNamespace(
        available_multiples=lambda r: sorted(sets),
        load_synthetic=lambda r, m: types.SimpleNamespace(images=sets[m][0], labels=sets[m][1], prompts=[""] * len(sets[m][1])),
    )
    monkeypatch.setitem(sys.modules, "tckr.runfolder.synthetic", stub)
    monkeypatch.setattr(tckr, "synthesis", stub, raising=False)
    monkeypatch.setattr(audit, "synthetic", stub)  # the module audit imported
    from tckr.runfolder import synthetic  # the figures read synthetic sets through the run folder's synthetic store

    monkeypatch.setattr(synthetic, "load_synthetic", stub.load_synthetic)
    monkeypatch.setattr(synthetic, "available_multiples", stub.available_multiples)
    real_fit = train.fit
    calls = []

    def spy_fit(cfg, arch, images, targets, *args, **kw):
        calls.append(np.array(images))
        return real_fit(cfg, arch, images, targets, *args, **kw)

    def no_teacher(*a, **kw):
        raise AssertionError("the audit must not use the D-trained teacher")

    monkeypatch.setattr(train, "fit", spy_fit)
    monkeypatch.setattr(train, "teacher", no_teacher)
    run.fit_calls = calls
    return run


def test_audit_counts_planted_near_copies_and_keeps_the_null_at_the_control_rate(planted_run):
    from tckr.classification import classifiers
    from tckr.datasets import provenance
    from tckr.reporting import plots

    run = planted_run
    summ = audit.audit(run, progress=False).set_index(["source", "multiple", "space"])
    ctrl = summ.xs("control_pool", level="source")
    assert len(ctrl) == 2 and (ctrl["n"] == 60).all() and ctrl["frac_near_copies_dup"].max() <= 0.1
    for space in audit.SPACES:
        copies = summ.loc[("synthetic", 1.0, space)]
        assert copies["n"] == 60 and copies["frac_closer_to_member"] > 0.95
        assert copies["p_wilcoxon_two_sided"] < 1e-6 and copies["p_binomial_two_sided"] < 1e-6
        assert copies["frac_near_copies_dup"] > 0.8 and copies["frac_near_copies_ratio"] > 0.8
        c = ctrl.xs(space, level="space").iloc[0]
        sym = summ.loc[("synthetic", 2.0, space)]
        assert sym["p_wilcoxon_two_sided"] > 0.05 and sym["p_binomial_two_sided"] > 0.05
        assert abs(sym["frac_near_copies_dup"] - c["frac_near_copies_dup"]) <= 0.1
        assert abs(sym["frac_near_copies_ratio"] - c["frac_near_copies_ratio"]) <= 0.1
        assert sym["dup_threshold"] == c["dup_threshold"] > 0
    rare = summ.loc[("synthetic", 3.0, "pixel")]  # 6 copies in 60: counted, though the median barely moves
    assert 6 <= rare["near_copies_dup"] <= 8 and 6 <= rare["near_copies_ratio"] <= 10
    assert summ.loc[("synthetic", 3.0, "feature"), "near_copies_dup"] >= 5

    table = pd.read_csv(run.dir / "results" / "audit.csv")
    assert len(table) == 3 * 60
    for col in ("multiple", "synthetic_index", "label", "feature_dist_D", "feature_dist_H", "pixel_dist_D", "pixel_dist_H",
                "feature_nn_D", "pixel_nn_H", "feature_closer_to_member"):
        assert col in table.columns, col
    one = table[table["multiple"] == 1.0]
    assert (one["pixel_nn_D"] == one["synthetic_index"]).all()
    control = pd.read_csv(run.dir / "results" / "audit_control.csv")
    assert len(control) == 60 and (control["split"] == "pool").all()
    saved = pd.read_csv(run.dir / "results" / "audit_summary.csv")
    assert {"p_wilcoxon_two_sided", "p_binomial_two_sided", "dup_threshold", "near_copies_dup", "near_copies_ratio",
            "frac_near_copies_dup", "frac_near_copies_ratio"} <= set(saved.columns)
    assert not {"p_mannwhitney", "p_wilcoxon", "p_binomial"} & set(saved.columns)
    assert (run.dir / "results" / "audit_summary.json").is_file()

    # the feature space: trained once, on recorded public images only, never the teacher
    assert len(run.fit_calls) == 1
    rec, index = provenance.read_training_data(run.dir / "audit")
    assert rec["n"] == len(index) == FEATURE_TRAIN and rec["sha256"] == provenance.index_sha256(index)
    s = run.splits()
    assert np.isin(index, s.public).all() and not any(provenance.overlap(run, rec, index).values())
    where = {int(v): i for i, v in enumerate(s.public)}
    np.testing.assert_array_equal(run.fit_calls[0], run.real("public").images[np.sort([where[int(v)] for v in index])])
    extra = classifiers.read_meta(audit.feature_extractor_path(run))["extra"]
    assert extra["role"] == "audit_features" and extra["training_split"] == "public"
    assert extra["training_n"] == FEATURE_TRAIN and extra["training_sha256"] == rec["sha256"] and extra["train_size"] == FEATURE_TRAIN
    audit.feature_extractor(run)
    assert len(run.fit_calls) == 1  # reloaded, not retrained
    assert not (run.dir / "classifiers").exists()  # no teacher was trained or read (train.teacher would raise)

    # figures from the result files: the plotted threshold and the closest pair are the audit's
    fig = plots.audit_distances_figure(run.dir)
    row = saved[(saved["source"] == "synthetic") & (saved["multiple"] == 1.0) & (saved["space"] == "feature")].iloc[0]
    assert row["dup_threshold"] in [ln.get_xdata()[0] for ln in fig.axes[0].get_lines()]
    pairs = plots.audit_pairs_figure(run.dir)
    top = table.nsmallest(1, "feature_dist_D").iloc[0]
    shown = pairs.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), sys.modules["tckr.runfolder.synthetic"].load_synthetic(run, top["multiple"]).images[int(top["synthetic_index"])])
    canvas.pyplot().close("all")
    names = {p.name for p in plots.plot_audit(run.dir)}
    assert names == {"audit_distances.png", "audit_distances.pdf", "audit_pairs.png", "audit_pairs.pdf"}

    # a tampered record of the training images stops the audit
    np.save(run.dir / "audit" / "training_index.npy", run.splits().D[:FEATURE_TRAIN])
    with pytest.raises(provenance.DataLeakError, match="does not match"):
        audit.feature_extractor(run)


def test_audit_without_synthetic_sets_is_a_no_op(planted_run, monkeypatch):
    import tckr

    stub = types.SimpleNamespace(available_multiples=lambda r: [], load_synthetic=None)
    monkeypatch.setitem(sys.modules, "tckr.runfolder.synthetic", stub)
    monkeypatch.setattr(tckr, "synthesis", stub, raising=False)
    monkeypatch.setattr(audit, "synthetic", stub)  # the module audit imported
    assert audit.audit(planted_run, progress=False).empty
    assert not (planted_run.dir / "results" / "audit.csv").exists()
    assert not planted_run.fit_calls


def test_audit_needs_a_public_partition(tmp_path):
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"data.public_size": 0, "generator.base": "no-local-base"})
    with pytest.raises(ValueError, match=r"data\.public_size > 0"):
        audit.feature_extractor(run)
