"""One-run epsilon lower bounds (tckr.privacy.auditing): agreement with a brute-force reading of the paper's
bound, validity and power on mechanisms of known epsilon, abstentions, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize, stats

import tckr
from tckr.privacy.auditing import epsilon_one_run, guess_counts

DELTA = 1e-5


def reference_epsilon(m: int, r: int, v: int, delta: float, significance: float) -> float:
    """The largest eps on a grid (step 1e-5) that Steinke, Nasr & Jagielski's (eps, delta) tail bound rejects.

    Written from the theorem's statement, independently of the module (and of jax_privacy's
    ``_one_run_p_value``, which computes the same bound): f(u) = P[Binomial(r, e^eps / (1 + e^eps)) >= u],
    p = f(v) + 2 m delta max_{i = 1..m} (f(v - i) - f(v)) / i, with the max over every i up to m (the module
    stops at i = v) and f from binomial survival functions (the module sums probability masses). Brute force
    over eps instead of a root search: a coarse grid over [0, 15], then a fine one above its last rejection.
    """
    i = np.arange(m + 1)

    def rejected(eps: np.ndarray) -> np.ndarray:
        q = 1 / (1 + np.exp(-eps[:, None]))
        f = stats.binom.sf(v - i[None, :] - 1, r, q)  # f(v - i) for i = 0..m; f(u <= 0) = 1
        slope = np.max((f[:, 1:] - f[:, :1]) / i[None, 1:], axis=1)
        return f[:, 0] + 2 * m * delta * slope < significance

    coarse = np.round(np.arange(0, 15.001, 0.01), 2)
    hits = coarse[rejected(coarse)]
    if hits.size == 0:
        return 0.0
    assert hits[-1] < 15, "widen the reference grid"
    fine = hits[-1] + np.arange(0, 0.01, 1e-5)
    return float(fine[rejected(fine)][-1])


def counts_to_scores(n_in: int, n_out: int, r: int, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose threshold 1 makes r guesses, v of them correct (score 1: guessed "member", 0: abstained)."""
    scores_in = np.r_[np.ones(v), np.zeros(n_in - v)]
    scores_out = np.r_[np.ones(r - v), np.zeros(n_out - (r - v))]
    return scores_in, scores_out


# (IN canaries, OUT canaries, guesses r, correct v, delta, significance); m = IN + OUT
CASES = [
    (25, 25, 20, 19, 1e-3, 0.05),
    (50, 50, 40, 35, 1e-5, 0.05),
    (16, 14, 10, 10, 1e-2, 0.1),  # 2 m delta = 0.6: the delta term dominates
    (55, 45, 60, 45, 1e-4, 0.05),
    (20, 20, 20, 10, 1e-3, 0.05),  # precision 1/2: nothing rejected
]


@pytest.mark.parametrize("n_in, n_out, r, v, delta, significance", CASES)
def test_agrees_with_brute_force_reference(n_in, n_out, r, v, delta, significance):
    scores_in, scores_out = counts_to_scores(n_in, n_out, r, v)
    got = epsilon_one_run(scores_in, scores_out, delta=delta, significance=significance, threshold=1.0)
    want = reference_epsilon(n_in + n_out, r, v, delta, significance)
    # the reference is the last grid point below the exact crossing
    assert want - 1e-9 <= got <= want + 1e-5 + 1e-9
    if v == r // 2:
        assert got == 0.0


def test_the_delta_term_is_used():
    # the third case: without the 2 m delta term the bound would be far higher, so the agreement above
    # checks that term and its m (not r)
    n_in, n_out, r, v, delta, significance = CASES[2]
    scores_in, scores_out = counts_to_scores(n_in, n_out, r, v)
    with_delta = epsilon_one_run(scores_in, scores_out, delta=delta, significance=significance, threshold=1.0)
    assert reference_epsilon(n_in + n_out, r, v, 1e-12, significance) > with_delta + 0.5
    assert reference_epsilon(r, r, v, delta, significance) > with_delta + 0.05


def test_best_threshold_is_bonferroni_over_the_grid_of_guess_counts():
    rng = np.random.default_rng(3)
    member = rng.random(80) < 0.5
    scores = 1.5 * member + rng.normal(size=80)
    scores_in, scores_out = scores[member], scores[~member]
    grid = guess_counts(80)
    assert grid.tolist() == [1, 2, 5, 10, 20, 50, 80]
    ranked = np.sort(scores)[::-1]
    want = 0.0
    for k in grid:
        t = ranked[k - 1]
        v, r = int(np.sum(scores_in >= t)), int(np.sum(scores >= t))
        want = max(want, reference_epsilon(80, r, v, DELTA, 0.05 / grid.size))
    got = epsilon_one_run(scores_in, scores_out, delta=DELTA)
    assert want > 0.3
    assert want - 1e-9 <= got <= want + 1e-5 + 1e-9
    # each candidate at full significance would give more: the correction is applied
    best_single = max(epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=t) for t in ranked[grid - 1])
    assert best_single > got + 0.05


def test_public_facade():
    assert tckr.attacks.epsilon_one_run is epsilon_one_run


def randomised_response(eps: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each canary IN with probability 1/2; the mechanism reports its membership, flipped with probability
    1 / (1 + e^eps) (eps-DP); the score is the report (1: IN)."""
    rng = np.random.default_rng(seed)
    member = rng.random(m) < 0.5
    report = np.where(rng.random(m) < 1 / (1 + np.exp(-eps)), member, ~member).astype(float)
    return report[member], report[~member]


def test_randomised_response_bound_is_valid_and_tight():
    # eps = 2, m = 1000. One-sided guesses: "member" wherever the report says IN (about m / 2 guesses, all the
    # one-sided auditor can make). Stated factors: every trial's bound >= 0.6 eps and their median >= 0.8 eps
    # (measured over these seeds: 1.38 - 1.94, median 1.64, for the best threshold; 1.44 - 2.08, median 1.76,
    # with the threshold given).
    eps = 2.0
    best = np.array([epsilon_one_run(*randomised_response(eps, 1000, s), delta=DELTA) for s in range(40)])
    assert np.mean(best <= eps) >= 0.95
    assert best.min() >= 0.6 * eps
    assert np.median(best) >= 0.8 * eps
    # with the threshold given there is no correction: the bound is near-exact for randomised response, so it
    # exceeds eps in about `significance` of the trials; 100 trials allow up to 10 (P[Binomial(100, 0.05) > 10]
    # is about 0.01)
    given = np.array([epsilon_one_run(*randomised_response(eps, 1000, s), delta=DELTA, threshold=0.5)
                      for s in range(100)])
    assert np.sum(given > eps) <= 10
    assert given.min() >= 0.6 * eps
    assert np.median(given) >= 0.85 * eps


def gaussian_mu(eps: float, delta: float) -> float:
    """Mean shift mu of the Gaussian mechanism (unit noise) that is exactly (eps, delta)-DP: Balle & Wang 2018,
    Theorem 8, delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2), increasing in mu."""
    def gap(mu: float) -> float:
        return stats.norm.cdf(-eps / mu + mu / 2) - np.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2) - delta
    return optimize.brentq(gap, 1e-3, 100)


def gaussian_scores(mu: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    member = rng.random(m) < 0.5
    scores = mu * member + rng.normal(size=m)
    return scores[member], scores[~member]


@pytest.mark.parametrize("eps, smallest", [(2.0, 0.0), (8.0, 1.0)])
def test_gaussian_mechanism_bound_is_valid(eps, smallest):
    mu = gaussian_mu(eps, DELTA)
    assert mu == pytest.approx({2.0: 0.5016, 8.0: 1.666}[eps], rel=1e-3)
    bounds = np.array([epsilon_one_run(*gaussian_scores(mu, 1000, s), delta=DELTA) for s in range(20)])
    assert np.mean(bounds <= eps) >= 0.95
    assert np.all(bounds > smallest)  # mu = 1.67 (eps = 8): measured 1.78 - 2.80; mu = 0.5 still > 0


def test_no_signal_gives_zero():
    bounds = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        member = rng.random(1000) < 0.5
        scores = rng.normal(size=1000)
        bounds.append(epsilon_one_run(scores[member], scores[~member], delta=DELTA))
    assert np.mean(np.array(bounds) == 0.0) >= 0.9


def test_abstentions_are_not_counted_as_guesses():
    # 30 IN and 2 OUT canaries score 5; 5 IN and 40 OUT score -1. Threshold 0: 32 guesses, 30 right; the 45
    # canaries below abstain (were they guessed OUT, 40 more would be right and 5 wrong).
    scores_in = np.r_[np.full(30, 5.0), np.full(5, -1.0)]
    scores_out = np.r_[np.full(2, 5.0), np.full(40, -1.0)]
    got = epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=0.0)
    assert got == pytest.approx(reference_epsilon(77, 32, 30, DELTA, 0.05), abs=1e-5)
    assert got > 1.0
    assert epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=5.0) == got  # ties are guessed
    assert epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=5.1) == 0.0  # no guesses
    # every canary guessed "member": 35 right of 77, nothing to reject
    assert epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=-1.0) == 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"scores_in": []}, "scores_in must be a non-empty 1-D"),
    ({"scores_out": np.zeros((2, 2))}, "scores_out must be a non-empty 1-D"),
    ({"scores_in": [1.0, np.nan]}, "scores_in must not contain NaN"),
    ({"delta": 0.0}, r"delta must be in \(0, 1\)"),
    ({"delta": 1.0}, r"delta must be in \(0, 1\)"),
    ({"significance": 0.0}, r"significance must be in \(0, 1\)"),
    ({"significance": 1.5}, r"significance must be in \(0, 1\)"),
    ({"threshold": np.nan}, "threshold must be a number, or None"),
])
def test_bad_input_is_refused(kwargs, message):
    arguments = {"scores_in": [1.0, 2.0], "scores_out": [0.0, 1.0], "delta": DELTA, **kwargs}
    scores_in, scores_out = arguments.pop("scores_in"), arguments.pop("scores_out")
    with pytest.raises(ValueError, match=message):
        epsilon_one_run(scores_in, scores_out, **arguments)


def test_why_the_grid_is_small():
    # the measurement epsilon_one_run's docstring cites: the delta term (2 m delta = 0.02) leaves no room at a
    # per-threshold significance of 0.05 / m, as Bonferroni over every distinct score would need
    scores_in, scores_out = randomised_response(2.0, 1000, 0)
    assert epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=0.5) == pytest.approx(1.68, abs=0.005)
    assert epsilon_one_run(scores_in, scores_out, delta=DELTA, threshold=0.5, significance=0.05 / 1000) == 0.0
