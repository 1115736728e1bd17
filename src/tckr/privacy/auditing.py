"""Empirical epsilon lower bounds from one training run (Steinke, Nasr & Jagielski 2023), pure numpy/scipy.

"Privacy Auditing with One (1) Training Run" (NeurIPS 2023, arXiv:2305.08846): m canaries, each put in the
training set independently with probability 1/2; after one training run the auditor guesses "member" for some
of them and abstains on the rest. If the training algorithm is (eps, delta)-DP, the number of correct guesses
W among r guesses satisfies the paper's Section 5 tail bound for approximate DP (the p-value its Appendix D
computes as ``p_value_DP_audit``)::

    P[W >= v] <= f(v) + 2 m delta max_{i = 1..m} (f(v - i) - f(v)) / i,   f(u) = P[Binomial(r, e^eps/(1+e^eps)) >= u]

:func:`epsilon_one_run` returns the largest eps that this bound rejects at the given significance.

Checked against DeepMind's ``jax_privacy/auditing.py`` (``CanaryScoreAuditor.epsilon_one_run`` and
``_one_run_p_value``, read for this module): the same p-value (its ``alpha`` is the max above, written with
binomial survival functions; ours sums the probability mass, which avoids subtracting nearly equal tails) and
the same one-sided guesses (k- = 0: "member" for scores >= threshold), so with a threshold the two agree.
Without one they differ on purpose: jax_privacy tries every threshold on the ROC's Pareto frontier and divides
the significance by their number (a count that depends on the data); here a fixed grid of numbers of guesses is
tried and the significance divided by its size (why: :func:`epsilon_one_run`). tests/test_auditing.py
reproduces the bound with an independent brute-force search over eps.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

# Root-finding tolerance on eps: far below what a few hundred canaries can resolve.
_XTOL = 1e-9


def _p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The tail bound above: P[>= v correct of r guesses] under (eps, delta)-DP with m randomised canaries."""
    if v == 0:
        return 1.0
    q = special.expit(eps)
    tail = stats.binom.sf(v - 1, r, q)
    # window[i-1] = P[v - i <= Binomial(r, q) <= v - 1] = f(v - i) - f(v); for i > v it stops growing while i
    # does, so the max over i in 1..m is reached at i <= v
    window = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
    slope = float(np.max(window / np.arange(1, v + 1)))
    return min(float(tail) + 2.0 * m * delta * slope, 1.0)


def _epsilon_pure(r: int, v: int, significance: float) -> float:
    """The delta = 0 bound, in closed form: P[Binomial(r, q) >= v] = I_q(v, r - v + 1), so the q at which the
    tail equals the significance is the Beta(v, r - v + 1) quantile (the one-sided Clopper-Pearson lower bound
    on the precision). Every eps the delta > 0 bound rejects lies below it, as its p-value is larger."""
    q = stats.beta.ppf(significance, v, r - v + 1)
    return float(special.logit(min(q, np.nextafter(1.0, 0.0))))  # finite even when all of many guesses are right


def _epsilon_counts(m: int, r: int, v: int, significance: float, delta: float, floor: float = 0.0) -> float:
    """Largest eps > floor with p < significance for v correct of r guesses, or ``floor`` if there is none.

    Like jax_privacy and the paper's Appendix D we take the p-value to grow with eps and search for its
    crossing; the brute-force grid search in the tests finds the same largest rejected eps on their inputs."""
    if r == 0 or v == 0:
        return floor

    def gap(eps: float) -> float:  # > 0 while (eps, delta)-DP is rejected
        return significance - _p_value(m, r, v, eps, delta)

    if gap(floor) <= 0:
        return floor
    hi, step = _epsilon_pure(r, v, significance), 1e-6
    while gap(hi) > 0:  # the closed form may round to just below the crossing
        hi, step = hi + step, 2 * step
    return float(optimize.brentq(gap, floor, hi, xtol=_XTOL))


def guess_counts(m: int) -> np.ndarray:
    """The numbers of guesses tried when no threshold is given: the 1-2-5 sequence up to m, then m itself."""
    grid, decade = [m], 1
    while decade <= m:
        grid += [k for k in (decade, 2 * decade, 5 * decade) if k < m]
        decade *= 10
    return np.array(sorted(grid))


def _check(scores: object, name: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN (accepted: real numbers, +-inf)")
    return array


def epsilon_one_run(scores_in, scores_out, *, delta: float, significance: float = 0.05,
                    threshold: float | None = None) -> float:
    """Lower bound on the eps of an (eps, delta)-DP training run from the attack scores of its canaries.

    Steinke, Nasr & Jagielski 2023 (module docstring): ``scores_in`` are the scores of the canaries that were
    IN (members), ``scores_out`` of those that were OUT; higher score = more likely a member. The bound is
    valid when each canary was IN independently with probability 1/2 and the scores come from the one trained
    model. m = ``len(scores_in) + len(scores_out)``.

    With ``threshold``: guess "member" for every canary scoring >= threshold and abstain on the rest
    (one-sided guesses, the paper's k+ guesses with k- = 0); correct guesses are the IN canaries among them.
    Without: the thresholds tried are the k-th largest of all m scores for each number of guesses k on the
    fixed grid :func:`guess_counts` (1, 2, 5, 10, 20, 50, ... up to m; ties at the threshold are all guessed,
    so the guesses never depend on which canaries were IN); each is bounded at ``significance / len(grid)``
    (Bonferroni over the grid) and the largest bound is returned.

    Why a small grid and not every distinct score (Bonferroni over m, or jax_privacy's count of thresholds on
    the ROC frontier): the delta term alone adds about ``m delta / (v - r/2)`` to every p-value, which must stay
    below the per-test significance, so testing ~m thresholds needs delta well below significance / m**2. Measured
    on one seeded eps = 2 randomised response (m = 1000, delta = 1e-5, guessing "member" where it says IN): the
    bound is 1.68 at significance 0.05 and 0 at 0.05 / m.

    Returns the largest eps >= 0 for which "the run is (eps, delta)-DP" gives the observed number of correct
    guesses a p-value below ``significance``; 0 when even eps = 0 is not rejected.
    """
    in_scores, out_scores = _check(scores_in, "scores_in"), _check(scores_out, "scores_out")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not 0 < significance < 1:
        raise ValueError(f"significance must be in (0, 1), got {significance}")
    m = in_scores.size + out_scores.size
    if threshold is not None:
        if np.isnan(threshold):
            raise ValueError("threshold must be a number, or None to try the numbers of guesses in guess_counts(m)")
        v = int(np.sum(in_scores >= threshold))
        r = v + int(np.sum(out_scores >= threshold))
        return _epsilon_counts(m, r, v, significance, delta)

    grid = guess_counts(m)
    level = significance / grid.size
    everything = np.sort(np.concatenate([in_scores, out_scores]))[::-1]
    best = 0.0
    for t in np.unique(everything[grid - 1]):  # the k-th largest score, for each k on the grid
        v = int(np.sum(in_scores >= t))
        r = v + int(np.sum(out_scores >= t))
        best = max(best, _epsilon_counts(m, r, v, level, delta, floor=best))
    return best
