"""tckr.metrics: AOP against the paper's table, ROC metrics on known cases, bootstrap intervals."""

import numpy as np
import pytest

from tckr.privacy import metrics

# the paper's headline table (docs/design.md): accuracy (%), AUC (%), AOP (%) for teacher and student
PAPER = {
    "CIFAR10": (97.52, 97.33, 53.89, 52.81, 83.95, 87.25),
    "CIFAR100": (85.49, 85.74, 70.32, 62.80, 43.22, 54.35),
    "Oxford-IIIT-Pet": (93.96, 94.68, 72.74, 64.60, 44.40, 56.72),
    "TinyImageNet": (75.67, 76.22, 70.29, 64.55, 38.29, 45.73),
    "StanfordCars": (88.22, 88.00, 82.53, 79.44, 32.38, 34.86),
    "Food101": (86.79, 86.93, 65.63, 58.90, 50.37, 62.64),
    "STL10": (96.74, 96.36, 65.89, 58.38, 55.71, 70.68),
    "Imagewoof": (93.05, 92.52, 58.67, 55.82, 67.58, 74.23),
    "Imagenette": (98.29, 97.83, 60.32, 55.32, 67.53, 79.92),
    "Caltech101": (92.26, 92.62, 67.81, 60.60, 50.16, 63.05),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_aop_reproduces_the_paper_table(name):
    acc_t, acc_s, auc_t, auc_s, aop_t, aop_s = PAPER[name]
    assert round(100 * metrics.aop(acc_t / 100, auc_t / 100), 2) == pytest.approx(aop_t, abs=1e-9)
    assert round(100 * metrics.aop(acc_s / 100, auc_s / 100), 2) == pytest.approx(aop_s, abs=1e-9)


def test_aop_limits_and_inputs():
    assert metrics.aop(0.9, 0.3) == pytest.approx(0.9)
    assert metrics.aop(0.9, 0.5) == pytest.approx(0.9)
    assert metrics.aop(0.9, 1.0) == pytest.approx(0.9 / 4)
    assert metrics.aop(0.9, 0.75, lam=1.0) == pytest.approx(0.9 / 1.5)
    with pytest.raises(ValueError, match="fraction"):
        metrics.aop(97.5, 0.6)
    with pytest.raises(ValueError, match="fraction"):
        metrics.aop(0.9, 60.0)


def test_perfect_random_and_inverted_attacks():
    members = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    perfect = metrics.attack_metrics(members.astype(float), members)
    assert perfect == {"auc": 1.0, "tpr_at_0.1pct": 1.0, "tpr_at_1pct": 1.0, "tpr_at_10pct": 1.0, "balanced_accuracy": 1.0}
    inverted = metrics.attack_metrics(-members.astype(float), members)
    assert inverted["auc"] == 0.0 and inverted["tpr_at_1pct"] == 0.0
    rand = metrics.attack_metrics(np.random.default_rng(0).random(2000), members)
    assert abs(rand["auc"] - 0.5) < 0.05 and rand["tpr_at_1pct"] < 0.05


def test_auc_matches_sklearn_and_tpr_at_fpr_by_hand():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    members = rng.random(3000) < 0.5
    scores = rng.standard_normal(3000) + members
    m = metrics.attack_metrics(scores, members)
    assert m["auc"] == pytest.approx(roc_auc_score(members, scores))
    thr = np.sort(scores[~members])[::-1]
    k = int(np.floor(0.01 * (~members).sum()))
    by_hand = (scores[members] > thr[k]).mean()
    assert m["tpr_at_1pct"] == pytest.approx(by_hand, abs=2 / members.sum())


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(2)

    def width(n):
        members = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        scores = rng.standard_normal(2 * n) + 0.5 * members
        row = metrics.summarise(scores, members, n_bootstrap=100, seed=0)
        assert row["auc_lo"] <= row["auc"] <= row["auc_hi"]
        assert row["tpr_at_10pct_lo"] <= row["tpr_at_10pct_hi"]
        return row["auc_hi"] - row["auc_lo"]

    assert width(2000) < width(200)


def test_summarise_leaves_out_a_tpr_with_fewer_than_20_possible_false_positives():
    rng = np.random.default_rng(3)
    for n_out, shown in ((4000, {"tpr_at_1pct", "tpr_at_10pct"}), (400, {"tpr_at_10pct"}), (150, set()),
                         (20000, {"tpr_at_0.1pct", "tpr_at_1pct", "tpr_at_10pct"})):
        members = np.r_[np.ones(n_out, bool), np.zeros(n_out, bool)]
        row = metrics.summarise(rng.standard_normal(2 * n_out) + members, members, n_bootstrap=5, seed=0)
        assert {k for k in metrics.FPR_LEVELS if not np.isnan(row[k])} == shown, n_out
        for k in set(metrics.FPR_LEVELS) - shown:
            assert all(np.isnan(row[f"{k}{s}"]) for s in ("_lo", "_hi", "_ub"))
        assert not np.isnan(row["auc"]) and not np.isnan(row["auc_ub"])
    assert metrics.summarise(rng.standard_normal(8000), np.arange(8000) < 4000, n_bootstrap=5)["tpr_note"] == (
        "TPR@0.1% needs ≥ 20,000 non-members; have 4,000")
    assert row["tpr_note"] == ""


def test_upper_bound_is_the_95th_percentile_at_least_the_estimate_and_below_one():
    rng = np.random.default_rng(4)
    members = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    scores = rng.standard_normal(6000) + 0.3 * members
    row = metrics.summarise(scores, members, n_bootstrap=100, seed=0)
    assert np.isnan(row["tpr_at_0.1pct_ub"])  # 3,000 non-members: left out
    for k in ("auc", "tpr_at_1pct", "tpr_at_10pct"):
        assert row[k] <= row[f"{k}_ub"] < 1.0
        assert row[f"{k}_ub"] <= row[f"{k}_hi"]
    assert row["auc_ub"] > row["auc"] + 0.001  # a real bound, not the estimate copied
    # the two-sided interval is unchanged by the bound: the same draws as bootstrap_ci
    assert (row["auc_lo"], row["auc_hi"]) == metrics.bootstrap_ci(scores, members, n_bootstrap=100, seed=0)["auc"]


def test_t_interval_pools_replicates():
    p = metrics.t_interval([0.52, 0.54, 0.50, 0.56])
    # mean 0.53, sd 0.0258199, t(0.975, 3) = 3.182446: half-width 0.0410843
    assert p["n"] == 4 and p["mean"] == pytest.approx(0.53)
    assert (p["lo"], p["hi"]) == pytest.approx((0.53 - 0.0410843, 0.53 + 0.0410843), abs=1e-6)
    assert p["share_above"] == 0.75
    assert np.isnan(metrics.t_interval([0.6])["lo"]) and metrics.t_interval([])["n"] == 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="both members"):
        metrics.attack_metrics(np.zeros(4), np.ones(4, bool))
    with pytest.raises(ValueError, match="same length"):
        metrics.attack_metrics(np.zeros(4), np.ones(5, bool))
