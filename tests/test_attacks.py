"""tckr.attacks: the attack mathematics on synthetic statistics with known truth, every LiRA variant
against a plain loop-based reference, the headline rule, and the layer rule (pure numpy/scipy)."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from tckr.privacy import attacks, metrics


def planted(m=16, n=2000, q=2, c=10, seed=0, effect=1.5, in_sd=0.3, out_sd=1.0, null=False):
    """Logits whose true-class confidence is higher (and less spread) when the model trained on the example.
    ``null``: membership changes nothing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    keep = attacks.membership_mask(m, labels, seed)
    member = rng.permutation(np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)])
    mu = 2.0 * rng.standard_normal(n)
    delta = effect * np.abs(rng.standard_normal(n))

    def model(inside):
        z = 0.1 * rng.standard_normal((n, q, c))
        if null:
            conf = mu + out_sd * rng.standard_normal(n)
        else:
            conf = mu + np.where(inside, delta + in_sd * rng.standard_normal(n), out_sd * rng.standard_normal(n))
        z[np.arange(n), :, labels] += conf[:, None]
        return z.astype(np.float32)

    return model(member), np.stack([model(keep[i]) for i in range(m)]), labels, keep, member


VARIANTS = [(True, False), (True, True), (False, False), (False, True)]


def auc(scores, member):
    return metrics.attack_metrics(scores, member)["auc"]


# ---------------------------------------------------------------- mask
def test_mask_is_balanced_stratified_seeded_and_extensible():
    labels = np.repeat(np.arange(10), 40)
    keep = attacks.membership_mask(8, labels, seed=3)
    assert keep.dtype == bool and keep.shape == (8, 400)
    assert (keep.sum(0) == 4).all()
    assert (keep.sum(1) == 200).all()
    for c in range(10):
        assert (keep[:, labels == c].sum(1) == 20).all()
    assert np.array_equal(keep, attacks.membership_mask(8, labels, seed=3))
    assert not np.array_equal(keep, attacks.membership_mask(8, labels, seed=4))
    assert np.array_equal(attacks.membership_mask(16, labels, seed=3)[:8], keep)
    odd = attacks.membership_mask(4, np.r_[labels, 0], seed=0)
    assert (odd.sum(0) == 2).all()
    with pytest.raises(ValueError, match="even"):
        attacks.membership_mask(5, labels, 0)


# ---------------------------------------------------------------- stable logit
def test_stable_logit_matches_the_definition_and_survives_extreme_logits():
    from scipy.special import logsumexp, softmax

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 50, 2, 7)).astype(np.float32) * 3
    y = rng.integers(0, 7, 50)
    phi = attacks.stable_logit(x, y)
    p = softmax(x.astype(np.float64), axis=-1)
    py = np.take_along_axis(p, y[None, :, None, None].repeat(3, 0).repeat(2, 2), -1)[..., 0]
    assert phi.dtype == np.float64 and phi.shape == (3, 50, 2)
    np.testing.assert_allclose(phi, np.log(py) - np.log1p(-py), rtol=1e-6, atol=1e-6)
    big = np.array([[[1000.0, -1000.0, 0.0]], [[-1000.0, 1000.0, 999.0]]])
    phi = attacks.stable_logit(big, np.array([0, 1]))
    assert np.isfinite(phi).all()
    np.testing.assert_allclose(phi[:, 0], [1000.0 - logsumexp([-1000.0, 0.0]), 1000.0 - logsumexp([-1000.0, 999.0])])


# ---------------------------------------------------------------- LiRA
@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_members_score_higher(online, fixed):
    t, s, y, keep, member = planted()
    scores = attacks.lira(t, s, y, keep, online=online, fixed_variance=fixed)
    assert scores.shape == (len(y),) and np.isfinite(scores).all()
    assert scores[member].mean() > scores[~member].mean()
    assert auc(scores, member) > 0.75


@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_auc_is_chance_when_in_and_out_coincide(online, fixed):
    t, s, y, keep, member = planted(n=4000, null=True, seed=1)
    assert abs(auc(attacks.lira(t, s, y, keep, online=online, fixed_variance=fixed), member) - 0.5) < 0.03


def test_online_beats_offline_on_a_planted_signal():
    t, s, y, keep, member = planted(seed=2)
    on = metrics.attack_metrics(attacks.lira(t, s, y, keep, online=True), member)
    off = metrics.attack_metrics(attacks.lira(t, s, y, keep, online=False), member)
    assert on["auc"] > off["auc"] + 0.05
    assert on["tpr_at_1pct"] > off["tpr_at_1pct"]


def test_lira_is_chunk_and_thread_invariant_and_matches_a_direct_computation(monkeypatch):
    from scipy.stats import norm

    t, s, y, keep, member = planted(m=8, n=600, seed=3)
    ref = attacks.lira(t, s, y, keep, workers=1)
    monkeypatch.setattr(attacks, "_CHUNK_BYTES", 4096)
    np.testing.assert_allclose(attacks.lira(t, s, y, keep, workers=2), ref, rtol=1e-12)
    pt, ps = attacks.stable_logit(t, y), attacks.stable_logit(s, y)
    direct = np.empty(len(y))
    for j in range(len(y)):
        i, o = ps[keep[:, j], j], ps[~keep[:, j], j]
        direct[j] = np.mean(norm.logpdf(pt[j], i.mean(0), i.std(0, ddof=1)) - norm.logpdf(pt[j], o.mean(0), o.std(0, ddof=1)))
    np.testing.assert_allclose(ref, direct, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(attacks.lira_from_stable(pt, ps, keep), ref, rtol=1e-12)
    off = attacks.lira(t, s, y, keep, online=False)
    o_mean = np.array([ps[~keep[:, j], j].mean(0) for j in range(len(y))])
    o_sd = np.array([ps[~keep[:, j], j].std(0, ddof=1) for j in range(len(y))])
    np.testing.assert_allclose(off, norm.logcdf((pt - o_mean) / o_sd).mean(1), rtol=1e-9)


def test_lira_accepts_memory_mapped_shadows(tmp_path):
    t, s, y, keep, member = planted(m=4, n=300, seed=4)
    np.save(tmp_path / "s.npy", s)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    np.testing.assert_allclose(attacks.lira(t, mm, y, keep), attacks.lira(t, s, y, keep))


def test_few_shadows_need_fixed_variance_and_bad_shapes_are_named():
    t, s, y, keep, member = planted(m=2, n=200)
    with pytest.raises(ValueError, match="fixed_variance"):
        attacks.lira(t, s, y, keep)
    assert np.isfinite(attacks.lira(t, s, y, keep, fixed_variance=True)).all()
    with pytest.raises(ValueError, match="shadow_in"):
        attacks.lira(t, s, y, keep[:, :10])
    with pytest.raises(ValueError, match="must agree"):
        attacks.lira(t[:10], s, y, keep)
    with pytest.raises(ValueError, match="labels"):
        attacks.lira(t, s, y + 100, keep)


# ---------------------------------------------------------------- baselines
def test_loss_attack_ranks_low_loss_first():
    t, s, y, keep, member = planted(seed=5)
    scores = attacks.loss_attack(t, y)
    assert auc(scores, member) > 0.6
    two_d = attacks.loss_attack(t[:, 0], y)
    from scipy.special import log_softmax

    np.testing.assert_allclose(two_d, log_softmax(t[:, 0].astype(np.float64), axis=1)[np.arange(len(y)), y], rtol=1e-6)


@pytest.mark.parametrize("online", [True, False])
def test_rmia_finds_members_and_is_chance_on_null(online):
    for null, check in ((False, lambda a: a > 0.65), (True, lambda a: abs(a - 0.5) < 0.04)):
        t, s, y, keep, member = planted(n=3000, null=null, seed=6)
        tz, sz, yz, _, _ = planted(n=500, null=True, seed=7)
        # population samples: nobody trained on them (OUT everywhere)
        scores = attacks.rmia(t, s, y, keep, tz, sz, yz, online=online)
        assert ((scores >= 0) & (scores <= 1)).all()
        assert check(auc(scores, member)), (null, online, auc(scores, member))


def test_score_dispatches_every_attack():
    t, s, y, keep, member = planted(m=4, n=400, seed=8)
    tz, sz, yz, _, _ = planted(m=4, n=100, null=True, seed=9)
    phi = dict(target_phi=attacks.stable_logit(t, y), shadow_phi=attacks.stable_logit(s, y), shadow_in=keep,
               target_z_phi=attacks.stable_logit(tz, yz), shadow_z_phi=attacks.stable_logit(sz, yz), queries=["identity", "flip"])
    for a in attacks.ATTACKS:
        assert attacks.score(a, **phi).shape == (400,)
    with pytest.raises(ValueError, match="accepted"):
        attacks.score("lira_magic", **phi)




# ---------------------------------------------------------------- every variant against a plain loop, q = 3, unequal IN/OUT
def uneven(m=11, n=40, q=3, seed=11):
    """Statistics [n, q] / [m, n, q] with per-cell means and spreads and a mask whose IN counts vary
    from 2 to m - 2 across examples (never balanced)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros((m, n), bool)
    for j in range(n):
        keep[rng.choice(m, 2 + j % (m - 3), replace=False), j] = True
    assert len(set(keep.sum(0))) > 3 and (keep.sum(0) >= 2).all() and ((~keep).sum(0) >= 2).all()
    mu, sd = rng.normal(0, 2, (n, q)), rng.uniform(0.3, 2.0, (n, q))
    shadow = mu + sd * rng.standard_normal((m, n, q)) + 1.5 * keep[:, :, None]
    target = mu + sd * rng.standard_normal((n, q)) + 1.5 * (rng.random(n) < 0.5)[:, None]
    return target, shadow, keep


def direct_pooled_variance(shadow, keep, online):
    """Sum of squared deviations from each (example, query) cell's group mean over the sum of each cell's
    (count - 1), written as plainly as possible."""
    m, n, q = shadow.shape
    ss, dof = 0.0, 0
    for j in range(n):
        for k in range(q):
            groups = [keep[:, j], ~keep[:, j]] if online else [~keep[:, j]]
            for g in groups:
                x = shadow[g, j, k]
                for v in x:
                    ss += (v - x.mean()) ** 2
                dof += len(x) - 1
    return ss / dof


def direct_lira(target, shadow, keep, online, fixed, var=None):
    m, n, q = shadow.shape
    if fixed and var is None:
        var = direct_pooled_variance(shadow, keep, online)
    out = np.zeros(n)
    for j in range(n):
        total = 0.0
        for k in range(q):
            x_in, x_out = shadow[keep[:, j], j, k], shadow[~keep[:, j], j, k]
            v_in = var if fixed else x_in.var(ddof=1)
            v_out = var if fixed else x_out.var(ddof=1)
            if online:
                total += norm.logpdf(target[j, k], x_in.mean(), np.sqrt(v_in)) - norm.logpdf(target[j, k], x_out.mean(), np.sqrt(v_out))
            else:
                total += norm.logcdf((target[j, k] - x_out.mean()) / np.sqrt(v_out))
        out[j] = total / q
    return out


@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_every_lira_variant_matches_a_loop_with_three_queries_and_unequal_in_out(online, fixed):
    t, s, keep = uneven()
    got = attacks.lira_from_stable(t, s, keep, online=online, fixed_variance=fixed)
    np.testing.assert_allclose(got, direct_lira(t, s, keep, online, fixed), rtol=1e-10, atol=1e-10)
    name = f"lira_{'online' if online else 'offline'}{'_fixed' if fixed else ''}"
    np.testing.assert_allclose(attacks.score(name, t, s, keep), got, rtol=0, atol=0)
    np.testing.assert_allclose(attacks.lira_from_statistics(t, s, keep, online=online, fixed_variance=fixed), got, rtol=0, atol=0)


@pytest.mark.parametrize("online,fixed", VARIANTS)
def test_lira_from_logits_matches_the_loop_on_their_stable_logits(online, fixed, monkeypatch):
    rng = np.random.default_rng(12)
    t_phi, s_phi, keep = uneven(seed=12)
    n, q, c = t_phi.shape[0], t_phi.shape[1], 5
    labels = rng.integers(0, c, n)

    def logits(phi):  # every other class at logit 0: phi = z_y - log(c - 1)
        return (phi + np.log(c - 1))[..., None] * np.eye(c)[labels][:, None, :]

    t, s = logits(t_phi), logits(s_phi)
    np.testing.assert_allclose(attacks.stable_logit(t, labels), t_phi, atol=1e-9)
    monkeypatch.setattr(attacks, "_CHUNK_BYTES", 2048)  # several chunks: the pooled sums must span them
    got = attacks.lira(t, s, labels, keep, online=online, fixed_variance=fixed, workers=2)
    np.testing.assert_allclose(got, direct_lira(attacks.stable_logit(t, labels), attacks.stable_logit(s, labels), keep, online, fixed),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("online", [True, False])
def test_pooled_variance_counts_every_example_query_cell(online):
    t, s, keep = uneven()
    q = s.shape[2]
    var = direct_pooled_variance(s, keep, online)
    assert attacks.pooled_variance(s, keep, online=online) == pytest.approx(var, rel=1e-12)
    # the old degrees of freedom counted examples only: a variance q times too large, and other scores
    too_large = q * var
    assert attacks.pooled_variance(s, keep, online=online) < too_large / 2
    fixed = attacks.lira_from_stable(t, s, keep, online=online, fixed_variance=True)
    old = direct_lira(t, s, keep, online, True, var=too_large)
    assert np.abs(fixed - old).max() > 0.1
    # one query: cells and examples coincide
    one = s[:, :, :1]
    assert attacks.pooled_variance(one, keep, online=online) == pytest.approx(direct_pooled_variance(one, keep, online), rel=1e-12)


def test_pooled_variance_recovers_the_true_noise_with_many_queries():
    rng = np.random.default_rng(13)
    m, n, q, sd = 8, 500, 4, 0.7
    keep = attacks.membership_mask(m, np.zeros(n, int), 0)
    s = rng.normal(0, 3, (n, q)) + 2.0 * keep[:, :, None] + sd * rng.standard_normal((m, n, q))
    assert attacks.pooled_variance(s, keep, online=True) == pytest.approx(sd ** 2, rel=0.03)
    assert attacks.pooled_variance(s, keep, online=False) == pytest.approx(sd ** 2, rel=0.04)


def test_lira_from_statistics_takes_any_member_like_statistic():
    rng = np.random.default_rng(14)
    m, n = 8, 1000
    keep = attacks.membership_mask(m, np.zeros(n, int), 1)
    member = rng.random(n) < 0.5
    base = rng.gamma(2.0, 1.0, n)  # e.g. a denoising error: lower on training images
    err = lambda inside: base - 0.4 * inside + 0.2 * rng.standard_normal(n)  # noqa: E731
    shadows = np.stack([-err(keep[i]) for i in range(m)])
    scores = attacks.lira_from_statistics(-err(member), shadows, keep, fixed_variance=True)
    assert scores.shape == (n,) and auc(scores, member) > 0.8
    target = -err(member)
    np.testing.assert_allclose(attacks.lira_from_statistics(target, shadows, keep),
                               attacks.lira_from_stable(target[:, None], shadows[:, :, None], keep), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not finite"):
        attacks.lira_from_statistics(np.r_[np.nan, np.zeros(n - 1)], shadows, keep)
    with pytest.raises(ValueError, match=r"\[m, n\]"):
        attacks.lira_from_statistics(np.zeros(n), np.zeros(n), keep)


# ---------------------------------------------------------------- the headline and the layer rule
def test_headline_rule_is_fixed_variance_below_64_shadows_and_names_bad_settings():
    assert attacks.headline_attack("auto", 16) == "lira_online_fixed"
    assert attacks.headline_attack("auto", 63) == "lira_online_fixed"
    assert attacks.headline_attack("auto", 64) == "lira_online"
    assert attacks.headline_attack("rmia", 4) == "rmia"
    with pytest.raises(ValueError, match="lira_offline_fixed"):
        attacks.headline_attack("max", 16)
    assert "64" in attacks.headline_rule("auto") and "rmia" in attacks.headline_rule("rmia")


def test_attack_math_is_pure():
    code = ("import sys, tckr.attacks; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'pandas') "
            "or m in ('tckr.runfolder.runs', 'tckr.core.io', 'tckr.reporting.plots', 'tckr.privacy.mia')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_balanced_use_keeps_as_many_in_as_out_references_per_example():
    rng = np.random.default_rng(0)
    shadow_in = rng.random((7, 500)) < 0.5
    use = attacks.balanced_use(shadow_in, seed=3)
    n_in, n_out = (use & shadow_in).sum(0), (use & ~shadow_in).sum(0)
    assert (n_in == n_out).all() and (n_in == np.minimum(shadow_in.sum(0), (~shadow_in).sum(0))).all()
    assert np.array_equal(use, attacks.balanced_use(shadow_in, seed=3))
    assert not np.array_equal(use, attacks.balanced_use(shadow_in, seed=4))


def test_leave_one_model_out_is_unbiased_only_with_balanced_references():
    """Leave one model out of a balanced design (each example IN in half of 8 models) with no membership signal at all:
    with every other model as a reference, members keep 3 IN and 4 OUT references, non-members 4 IN and 3 OUT, and
    fixed-variance LiRA ranks members below non-members (AUC about 0.47, as measured on the mini pipelines); with
    balanced references (attacks.balanced_use) the AUC is 0.5."""
    from tckr.privacy import metrics

    rng = np.random.default_rng(0)
    m, n, q = 8, 6000, 2
    keep = np.zeros((m, n), bool)
    for e in range(n):
        keep[rng.permutation(m)[: m // 2], e] = True
    level = rng.normal(0, 1, (n, 1))
    phi = level[None] + rng.normal(0, 0.5, (m, n, q))  # no membership effect anywhere
    aucs = {"all": [], "balanced": []}
    for j in range(m):
        others = np.arange(m) != j
        for kind, use in (("all", None), ("balanced", attacks.balanced_use(keep[others], seed=j))):
            s = attacks.lira_from_stable(phi[j], phi[others], keep[others], online=True, fixed_variance=True, use=use)
            aucs[kind].append(metrics.attack_metrics(s, keep[j])["auc"])
    assert np.mean(aucs["all"]) < 0.48, aucs["all"]
    assert abs(np.mean(aucs["balanced"]) - 0.5) < 0.01, aucs["balanced"]


def test_attack_rows_carry_bounds_an_epsilon_lower_bound_and_leave_out_thin_tprs(tmp_path):
    """write_attack_results on planted scores over a seeded half of P: the epsilon lower bound is clearly positive for a
    strong signal and 0 for a null, on P and on the canaries alone; with 900 non-members TPR@1% FPR is left out (its
    ROC file keeps every point); the ledger carries both epsilons to the headline row."""
    import types

    import pandas as pd

    from tckr.privacy import attack_results, ledger
    from tckr.runfolder import artifacts, runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"mia.n_bootstrap": 20})
    rng = np.random.default_rng(0)
    n = 2000
    member = np.zeros(n, bool)
    member[rng.permutation(n)[: n // 2]] = True
    index = np.arange(n) + 100
    np.savez(artifacts.mia_dir(run, "pool.npz"), member=member, labels=np.zeros(n, int), index=index)
    run._canaries = types.SimpleNamespace(index=index[:200])  # the first 200 examples of P are the canaries
    fields = {"role": "teacher", "cardinality": np.nan, "label_mode": "real"}
    scored = [attack_results.TargetScores("teacher", {"lira_online_fixed": 3.0 * member + rng.standard_normal(n),
                                                      "loss": rng.standard_normal(n)}, fields)]
    rows = attack_results.write_attack_results(run, "mia.csv", scored).set_index(["attack", "subset"])
    assert rows.loc[("lira_online_fixed", "all"), "eps_lb"] > 1.0
    assert rows.loc[("lira_online_fixed", "canaries"), "eps_lb"] > 0.5
    assert rows.loc[("loss", "all"), "eps_lb"] == 0.0 and rows.loc[("loss", "canaries"), "eps_lb"] == 0.0
    assert (rows["eps_delta"] == 1e-5).all()
    main = rows.loc[("lira_online_fixed", "all")]
    assert 1800 * 0.01 < 20 <= main["n_nonmembers"] * 0.1 and main["n_nonmembers"] < 2000
    assert np.isnan(main["tpr_at_1pct"]) and main["tpr_at_10pct"] > 0.5 and main["tpr_at_10pct_ub"] < 1.0
    assert "TPR@1% needs ≥ 2,000 non-members; have" in main["tpr_note"]
    roc = pd.read_csv(artifacts.mia_dir(run, "roc", "teacher_lira_online_fixed.csv"))
    assert len(roc) > 1000  # the raw ROC keeps every point
    table = ledger.build(run.dir, "lira_online_fixed")
    head = ledger.headlines(table).iloc[0]
    assert head["eps_lb"] == main["eps_lb"]
    assert head["eps_lb_canaries"] == rows.loc[("lira_online_fixed", "canaries"), "eps_lb"]
