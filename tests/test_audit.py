"""tckr.audit: nearest neighbours, the permutation test over D/H re-splits, near-copy counts towards D and H,
and the audit of planted synthetic sets in the features of a classifier trained on the public partition only."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

from tckr.privacy import audit, audit_permutation
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


def test_near_copy_counts_both_ways_and_duplicate_threshold():
    d_D = np.array([0.01, 0.2, 0.3, 0.05, 0.5])
    d_H = np.array([0.4, 0.3, 0.02, 0.06, 1.2])
    out = audit.near_copies(d_D, d_H, dup_threshold_D=0.1, dup_threshold_H=0.05, ratio_tau=0.5)
    assert out["near_copies_dup_D"] == 2 and out["frac_near_copies_dup_D"] == pytest.approx(0.4)  # 0.01, 0.05
    assert out["near_copies_ratio_D"] == 2 and out["frac_near_copies_ratio_D"] == pytest.approx(0.4)  # 0.01 / 0.4, 0.5 / 1.2
    assert out["near_copies_dup_H"] == 1 and out["near_copies_ratio_H"] == 1  # only 0.02 (< 0.05, and < 0.5 · 0.3)
    assert out["dup_threshold_D"] == 0.1 and out["dup_threshold_H"] == 0.05 and out["ratio_tau"] == 0.5
    swapped = audit.near_copies(d_H, d_D, dup_threshold_D=0.05, dup_threshold_H=0.1, ratio_tau=0.5)
    assert all(swapped[k.replace("_D", "_X").replace("_H", "_D").replace("_X", "_H")] == v for k, v in out.items())
    real = np.linspace(1.0, 2.0, 101)
    assert audit.duplicate_threshold(real) == pytest.approx(1.01)
    with pytest.raises(ValueError, match="held-out"):
        audit.duplicate_threshold(np.array([]))


def test_k_nearest_over_blocks_and_each_side_match_brute_force():
    rng = np.random.default_rng(2)
    q, A, B = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)), rng.standard_normal((25, 3))
    full = np.linalg.norm(q[:, None] - np.r_[A, B][None], axis=2)
    d, j = audit_permutation.k_nearest(q, [A, B], 5, chunk=7)
    np.testing.assert_array_equal(j, np.argsort(full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(d, np.sort(full, axis=1)[:, :5], atol=1e-9)
    member = rng.random(55) < 0.5
    for k in (1, 2, 55):  # k = 1: one side is always missing from the k nearest and searched exactly
        d, j = audit_permutation.k_nearest(q, [A, B], k)
        d_D, d_H, nn_D, nn_H = audit_permutation.side_nearest(d, j, member, q, [A, B])
        np.testing.assert_allclose(d_D, np.where(member, full, np.inf).min(1), atol=1e-9)
        np.testing.assert_allclose(d_H, np.where(~member, full, np.inf).min(1), atol=1e-9)
        np.testing.assert_array_equal(nn_D, np.where(member, full, np.inf).argmin(1))
        np.testing.assert_array_equal(nn_H, np.where(~member, full, np.inf).argmin(1))
    with pytest.raises(ValueError, match="exact search"):
        audit_permutation.side_nearest(*audit_permutation.k_nearest(q, [A, B], 1), member)


def planted_world(seed, n_centres=5, copies=8):
    """P: 3 classes × 20 points in 4-D, D a random half of each class; ``n_centres · copies`` fresh queries
    from the same distribution in ``n_centres`` tight clusters (a generator's modes: the queries are not
    independent draws)."""
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((3, 4))
    classes = np.repeat(np.arange(3), 20)
    P = means[classes] + rng.standard_normal((60, 4))
    member = np.zeros(60, bool)
    for c in range(3):
        member[rng.choice(np.flatnonzero(classes == c), 10, replace=False)] = True
    centres = means[rng.integers(0, 3, n_centres)] + rng.standard_normal((n_centres, 4))
    queries = np.repeat(centres, copies, axis=0) + 0.05 * rng.standard_normal((n_centres * copies, 4))
    return rng, P, classes, member, queries


def test_permutation_p_value_is_uniform_under_planted_nulls_where_a_per_image_test_is_not():
    from scipy import stats

    p, p_wilcoxon = [], []
    for seed in range(200):
        _, P, classes, member, queries = planted_world(seed)
        d, j = audit_permutation.k_nearest(queries, [P], 8)
        resplits = audit_permutation.stratified_resplits(classes, member, 99, 1000 + seed)
        out = audit_permutation.permutation_test(d, j, member, resplits, queries, [P])
        p.append([out["p_perm_frac_closer"], out["p_perm_median_diff"]])
        d_D, d_H, _, _ = audit_permutation.side_nearest(d, j, member, queries, [P])
        p_wilcoxon.append(stats.wilcoxon(d_D - d_H, alternative="less").pvalue)
    p, p_wilcoxon = np.array(p), np.array(p_wilcoxon)
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 200, 0.05)  # 99.9% band of the count of p <= 0.05 among 200 valid p-values
    for col in p.T:
        assert lo <= (col <= 0.05).sum() <= hi and 0.4 < col.mean() < 0.65
        assert set(np.round(col * 100).astype(int)) <= set(range(1, 101))  # (1 + #{>=}) / (1 + 99)
    assert stats.kstest(p[:, 1], "uniform").pvalue > 0.01  # the median difference has no ties: about uniform
    # the same nulls with the synthetic images as the unit of randomness: far too many rejections
    assert (p_wilcoxon <= 0.05).sum() > 2 * hi


def test_permutation_test_finds_planted_copies_of_D_and_not_of_H_and_is_seeded():
    rng, P, classes, member, _ = planted_world(7)
    fresh = planted_world(8, n_centres=10, copies=1)[4]
    toward_D = np.r_[P[member][:30] + 0.01 * rng.standard_normal((30, 4)), fresh]  # 30 near-copies of members in 40
    toward_H = np.r_[P[~member][:30] + 0.01 * rng.standard_normal((30, 4)), fresh]
    resplits = audit_permutation.stratified_resplits(classes, member, 199, 3)
    for c in range(3):  # every re-split keeps each class's numbers of members and non-members
        assert (resplits[:, classes == c].sum(1) == member[classes == c].sum()).all()
    assert len({r.tobytes() for r in resplits}) == 199

    def test(queries, res=resplits, k=8):
        return audit_permutation.permutation_test(*audit_permutation.k_nearest(queries, [P], k), member, res, queries, [P])

    d = test(toward_D)
    assert d["p_perm_frac_closer"] == d["p_perm_median_diff"] == 1 / 200
    assert d["frac_closer_to_member"] > d["null_hi_frac_closer"] and d["median_diff_H_minus_D"] > d["null_hi_median_diff"]
    assert d["null_lo_frac_closer"] < 0.5 < d["null_hi_frac_closer"] and d["n"] == 40 and d["n_permutations"] == 199
    h = test(toward_H)  # one-sided towards D: copies of non-members are no evidence of membership
    assert h["p_perm_frac_closer"] > 0.9 and h["p_perm_median_diff"] > 0.9
    assert test(toward_D, k=60) == {**d, "k_nearest": 60}  # k only sets how often the exact search runs
    assert test(toward_D, k=1) == {**d, "k_nearest": 1}
    assert test(toward_D, audit_permutation.stratified_resplits(classes, member, 199, 3)) == d
    other = test(toward_D, audit_permutation.stratified_resplits(classes, member, 199, 4))
    assert other["null_hi_median_diff"] != d["null_hi_median_diff"]
    with pytest.raises(ValueError, match="n_permutations >= 1"):
        audit_permutation.stratified_resplits(classes, member, 0, 3)


def noisy(x, rng):
    return np.clip(x.astype(int) + rng.integers(-6, 7, x.shape), 0, 255).astype(np.uint8)


FEATURE_TRAIN = 40  # with batches of 20: two optimiser steps, enough for a feature space that is not the teacher's


@pytest.fixture()
def planted_run(tmp_path, monkeypatch):
    """A tiny run with four 'synthetic' sets of 60 images: noisy copies of D (1×), noisy copies of held-out
    real images (2×, the symmetric null), 54 of those with 6 copies of D among them (3×) and noisy copies of
    H (4×). The teacher must never be used; train.fit is spied on."""
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
    sets[4.0] = (noisy(H.images[:60], rng), H.labels[:60])
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
    floor = 1 / (1 + run.cfg.audit.n_permutations)
    ctrl = summ.xs("control_pool", level="source")
    assert len(ctrl) == 2 and (ctrl["n"] == 60).all()
    assert ctrl["frac_near_copies_dup_D"].max() <= 0.1 and ctrl["frac_near_copies_dup_H"].max() <= 0.1
    assert (summ["n_permutations"] == run.cfg.audit.n_permutations).all()
    for space in audit.SPACES:
        copies = summ.loc[("synthetic", 1.0, space)]
        assert copies["n"] == 60 and copies["frac_closer_to_member"] > max(0.95, copies["null_hi_frac_closer"])
        assert copies["median_diff_H_minus_D"] > copies["null_hi_median_diff"] > 0 > copies["null_lo_median_diff"]
        assert copies["p_perm_frac_closer"] == copies["p_perm_median_diff"] == floor
        assert copies["frac_near_copies_dup_D"] > 0.8 and copies["frac_near_copies_ratio_D"] > 0.8
        assert copies["frac_near_copies_dup_H"] <= 0.1 and copies["near_copies_ratio_H"] == 0
        of_H = summ.loc[("synthetic", 4.0, space)]  # near-copies towards H: counted, and no evidence towards D
        assert of_H["frac_near_copies_dup_H"] > 0.8 and of_H["frac_near_copies_ratio_H"] > 0.8
        assert of_H["frac_near_copies_dup_D"] <= 0.1 and of_H["near_copies_ratio_D"] == 0
        assert of_H["frac_closer_to_member"] < 0.05 and of_H["p_perm_frac_closer"] > 0.5 and of_H["p_perm_median_diff"] > 0.5
        c = ctrl.xs(space, level="space").iloc[0]
        sym = summ.loc[("synthetic", 2.0, space)]
        for null in (sym, c):
            assert null["p_perm_frac_closer"] > 0.01 and null["p_perm_median_diff"] > 0.01
            assert null["null_lo_frac_closer"] < 0.5 < null["null_hi_frac_closer"]
        for side in "DH":
            assert abs(sym[f"frac_near_copies_dup_{side}"] - c[f"frac_near_copies_dup_{side}"]) <= 0.1
            assert abs(sym[f"frac_near_copies_ratio_{side}"] - c[f"frac_near_copies_ratio_{side}"]) <= 0.1
            assert sym[f"dup_threshold_{side}"] == c[f"dup_threshold_{side}"] > 0
    rare = summ.loc[("synthetic", 3.0, "pixel")]  # 6 copies in 60: counted, though the median barely moves
    assert 6 <= rare["near_copies_dup_D"] <= 8 and 6 <= rare["near_copies_ratio_D"] <= 10 and rare["near_copies_dup_H"] <= 2
    assert summ.loc[("synthetic", 3.0, "feature"), "near_copies_dup_D"] >= 5

    table = pd.read_csv(run.dir / "results" / "audit.csv")
    assert len(table) == 4 * 60
    for col in ("multiple", "synthetic_index", "label", "feature_dist_D", "feature_dist_H", "pixel_dist_D", "pixel_dist_H",
                "feature_nn_D", "pixel_nn_H", "feature_closer_to_member"):
        assert col in table.columns, col
    one = table[table["multiple"] == 1.0]
    assert (one["pixel_nn_D"] == one["synthetic_index"]).all()
    four = table[table["multiple"] == 4.0]
    assert (four["pixel_nn_H"] == four["synthetic_index"]).all()
    np.testing.assert_allclose(one["pixel_dist_D"], audit.nearest(audit.pixels(sys.modules["tckr.runfolder.synthetic"].load_synthetic(
        run, 1.0).images), audit.pixels(run.real("D").images))[0], atol=1e-9)
    control = pd.read_csv(run.dir / "results" / "audit_control.csv")
    assert len(control) == 60 and (control["split"] == "pool").all()
    saved = pd.read_csv(run.dir / "results" / "audit_summary.csv")
    assert {"frac_closer_to_member", "p_perm_frac_closer", "null_lo_frac_closer", "null_hi_frac_closer", "median_diff_H_minus_D",
            "p_perm_median_diff", "null_lo_median_diff", "null_hi_median_diff", "n_permutations", "k_nearest"} <= set(saved.columns)
    for side in "DH":
        assert {f"dup_threshold_{side}", f"near_copies_dup_{side}", f"near_copies_ratio_{side}", f"frac_near_copies_dup_{side}",
                f"frac_near_copies_ratio_{side}"} <= set(saved.columns)
    assert not {"p_wilcoxon_two_sided", "p_binomial_two_sided", "dup_threshold", "near_copies_dup"} & set(saved.columns)
    assert (run.dir / "results" / "audit_summary.json").is_file()
    again = audit.audit(run, progress=False).set_index(["source", "multiple", "space"])  # seeded: the same re-splits
    pd.testing.assert_frame_equal(again, summ)

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
    drawn = [ln.get_xdata()[0] for ln in fig.axes[0].get_lines()]
    assert row["dup_threshold_D"] in drawn and row["dup_threshold_H"] in drawn
    assert f"p={row['p_perm_frac_closer']:.2g}" in fig.axes[0].get_title() and f"of H {int(row['near_copies_dup_H'])}" in fig.axes[0].get_title()
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
