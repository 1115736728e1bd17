"""Metrics of membership inference attacks and the paper's Accuracy Over Privacy (AOP).

Every metric takes attack scores (higher = more likely a member) and the true membership
(bool, True = member). ``attack_metrics`` gives them all at once, ``bootstrap_ci`` their
percentile confidence intervals over examples resampled within members and within non-members, and
:func:`summarise` the row an attack result file stores: each metric, its 95% interval and, for AUC and the TPRs, a
one-sided 95% upper bound (so a null reads "AUC <= x"), with a TPR at FPR x left out (NaN, ``tpr_note`` says why)
when fewer than :data:`MIN_FALSE_POSITIVES` non-members could be false positives at x.

- ``auc``: ROC AUC;
- ``tpr_at_0.1pct`` / ``tpr_at_1pct`` / ``tpr_at_10pct``: the highest TPR whose FPR is at most 0.1% / 1% / 10%;
- ``balanced_accuracy``: max over thresholds of (TPR + TNR) / 2 (the threshold is chosen on the
  evaluated examples themselves, as in the MIA literature, so it is an optimistic attack accuracy).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

FPR_LEVELS = {"tpr_at_0.1pct": 1e-3, "tpr_at_1pct": 1e-2, "tpr_at_10pct": 1e-1}
METRICS = ("auc", *FPR_LEVELS, "balanced_accuracy")
BOUNDED = ("auc", *FPR_LEVELS)  # the metrics that get a one-sided upper bound ``<metric>_ub``
# A TPR at FPR x is read off the x * n_nonmembers highest-scoring non-members; below 20 of them it rests on a handful
# of examples (at |P| = 400 a TPR@1% FPR rests on 2 non-members), so it is not reported.
MIN_FALSE_POSITIVES = 20
LABELS = {"tpr_at_0.1pct": "TPR@0.1%", "tpr_at_1pct": "TPR@1%", "tpr_at_10pct": "TPR@10%"}


def aop(accuracy: float, auc: float, lam: float = 2.0) -> float:
    """Accuracy Over Privacy: ``accuracy / (2 * max(auc, 0.5)) ** lam``, accuracy and AUC as fractions
    in [0, 1]; the result is a fraction (multiply by 100 for the paper's percent)."""
    for name, v in (("accuracy", accuracy), ("auc", auc)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"aop: {name} must be a fraction in [0, 1], got {v!r} (divide percentages by 100)")
    return float(accuracy) / (2.0 * max(float(auc), 0.5)) ** float(lam)


def t_halfwidth(values) -> float:
    """Half-width of the 95% Student-t interval of the mean of ``values`` (e.g. one metric over seeds); nan below
    two values."""
    v = np.asarray(values, dtype=float)
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def t_interval(values, null: float = 0.5) -> dict[str, float]:
    """Pooled estimate over replicate targets (e.g. the AUC of each leave-one-pipeline-out target): ``n``, ``mean``,
    its 95% Student-t interval ``lo`` / ``hi`` (nan below two values) and ``share_above``, the share of values above
    ``null``."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return {"n": 0, "mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "share_above": float("nan")}
    h = t_halfwidth(v)
    return {"n": len(v), "mean": float(v.mean()), "lo": float(v.mean() - h), "hi": float(v.mean() + h),
            "share_above": float(np.mean(v > null))}


def tpr_shown(n_nonmembers: int, level: float) -> bool:
    """Whether a TPR at FPR ``level`` over ``n_nonmembers`` non-members is reported (:data:`MIN_FALSE_POSITIVES`)."""
    return n_nonmembers * level >= MIN_FALSE_POSITIVES - 1e-9


def tpr_note(n_nonmembers: int) -> str:
    """Why the TPRs that :func:`tpr_shown` leaves out are missing, ``""`` when none is."""
    return ". ".join(f"{LABELS[k]} needs ≥ {int(round(MIN_FALSE_POSITIVES / level)):,} non-members; "
                     f"have {n_nonmembers:,}" for k, level in FPR_LEVELS.items() if not tpr_shown(n_nonmembers, level))


def _check(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    members = np.asarray(members, dtype=bool)
    if scores.shape != members.shape or scores.ndim != 1:
        raise ValueError(f"scores and members must be 1-D of the same length, got {scores.shape} and {members.shape}")
    if members.all() or not members.any():
        raise ValueError("members must hold both members (True) and non-members (False)")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} attack scores are not finite")
    return scores, members


def roc(scores: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr)``, starting at (0, 0), one point per distinct score."""
    scores, members = _check(scores, members)
    fpr, tpr, _ = roc_curve(members, scores, drop_intermediate=False)
    return fpr, tpr


def _from_roc(fpr: np.ndarray, tpr: np.ndarray) -> dict[str, float]:
    out = {"auc": float(np.trapezoid(tpr, fpr))}
    for name, level in FPR_LEVELS.items():
        out[name] = float(tpr[fpr <= level].max())
    out["balanced_accuracy"] = float(np.max((tpr + 1.0 - fpr) / 2.0))
    return out


def attack_metrics(scores: np.ndarray, members: np.ndarray) -> dict[str, float]:
    """AUC, TPR at 0.1%, 1% and 10% FPR, and balanced accuracy of one attack."""
    return _from_roc(*roc(scores, members))


def _draws(scores: np.ndarray, members: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(members), np.flatnonzero(~members)
    truth = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    draws = {k: np.empty(n_bootstrap) for k in METRICS}
    for b in range(n_bootstrap):
        ix = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        for k, v in attack_metrics(scores[ix], truth).items():
            draws[k][b] = v
    return draws


def bootstrap_ci(scores: np.ndarray, members: np.ndarray, n_bootstrap: int = 200, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of :func:`attack_metrics`, resampling members and non-members
    separately (their counts stay fixed)."""
    scores, members = _check(scores, members)
    if n_bootstrap < 1:
        return {k: (float("nan"), float("nan")) for k in METRICS}
    return {k: _interval(d, level) for k, d in _draws(scores, members, n_bootstrap, seed).items()}


def _interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return float(np.percentile(draws, lo)), float(np.percentile(draws, hi))


def summarise(scores: np.ndarray, members: np.ndarray, n_bootstrap: int = 200, seed: int = 0) -> dict[str, float | str]:
    """Flat row: every metric plus ``<metric>_lo`` / ``<metric>_hi`` (95% percentile bootstrap interval), for
    :data:`BOUNDED` ``<metric>_ub`` (one-sided 95% upper bound: the 95th percentile of the same bootstrap draws, never
    below the estimate), and ``tpr_note``: a TPR whose FPR level leaves fewer than :data:`MIN_FALSE_POSITIVES`
    possible false positives is NaN with its bounds, and the note says why (the ROC files keep every point)."""
    scores, members = _check(scores, members)
    row: dict[str, float | str] = dict(attack_metrics(scores, members))
    nan = float("nan")
    draws = _draws(scores, members, n_bootstrap, seed) if n_bootstrap >= 1 else None
    for k in METRICS:
        d = draws[k] if draws is not None else None
        row[f"{k}_lo"], row[f"{k}_hi"] = _interval(d) if d is not None else (nan, nan)
        if k in BOUNDED:
            row[f"{k}_ub"] = max(float(np.percentile(d, 95)), float(row[k])) if d is not None else nan
    n_out = int((~members).sum())
    for k, level in FPR_LEVELS.items():
        if not tpr_shown(n_out, level):
            row.update({k: nan, f"{k}_lo": nan, f"{k}_hi": nan, f"{k}_ub": nan})
    row["tpr_note"] = tpr_note(n_out)
    return row


def wilson(k: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` as fractions (nan, nan when ``n`` is 0): detection rates of the
    dose-response control, accuracies over a test split."""
    if n <= 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))  # exact at k = 0 and k = n (no rounding past p)


def mann_whitney_p_from_auc(auc, n_members, n_nonmembers) -> np.ndarray:
    """One-sided p-value of the Mann-Whitney test that members score above non-members, from the AUC (U = AUC x n1 x n0)
    by the normal approximation without a tie correction (slightly conservative where scores tie)."""
    n1, n0 = np.asarray(n_members, dtype=float), np.asarray(n_nonmembers, dtype=float)
    return stats.norm.sf((np.asarray(auc, dtype=float) - 0.5) / np.sqrt((n1 + n0 + 1) / (12 * n1 * n0)))
