"""Metrics of membership inference attacks and the paper's Accuracy Over Privacy (AOP).

Every metric takes attack scores (higher = more likely a member) and the true membership
(bool, True = member). ``attack_metrics`` gives them all at once, ``bootstrap_ci`` their
percentile confidence intervals over examples resampled within members and within non-members.

- ``auc``: ROC AUC;
- ``tpr_at_0.1pct`` / ``tpr_at_1pct``: the highest TPR whose FPR is at most 0.1% / 1%;
- ``balanced_accuracy``: max over thresholds of (TPR + TNR) / 2 (the threshold is chosen on the
  evaluated examples themselves, as in the MIA literature, so it is an optimistic attack accuracy).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_curve

FPR_LEVELS = {"tpr_at_0.1pct": 1e-3, "tpr_at_1pct": 1e-2}
METRICS = ("auc", *FPR_LEVELS, "balanced_accuracy")


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
    """AUC, TPR at 0.1% and 1% FPR, and balanced accuracy of one attack."""
    return _from_roc(*roc(scores, members))


def bootstrap_ci(scores: np.ndarray, members: np.ndarray, n_bootstrap: int = 200, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of :func:`attack_metrics`, resampling members and non-members
    separately (their counts stay fixed)."""
    scores, members = _check(scores, members)
    if n_bootstrap < 1:
        return {k: (float("nan"), float("nan")) for k in METRICS}
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(members), np.flatnonzero(~members)
    truth = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    draws = {k: np.empty(n_bootstrap) for k in METRICS}
    for b in range(n_bootstrap):
        ix = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        for k, v in attack_metrics(scores[ix], truth).items():
            draws[k][b] = v
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {k: (float(np.percentile(d, lo)), float(np.percentile(d, hi))) for k, d in draws.items()}


def summarise(scores: np.ndarray, members: np.ndarray, n_bootstrap: int = 200, seed: int = 0) -> dict[str, float]:
    """Flat row: every metric plus ``<metric>_lo`` / ``<metric>_hi`` bootstrap bounds."""
    row = attack_metrics(scores, members)
    for k, (lo, hi) in bootstrap_ci(scores, members, n_bootstrap, seed).items():
        row[f"{k}_lo"], row[f"{k}_hi"] = lo, hi
    return row
