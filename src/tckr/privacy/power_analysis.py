"""Power of each attack, from replicate targets: detection probability per dose, its Wilson interval, the minimum
detectable effect and the headline it pre-registers. Pure tabulation (numpy, pandas, scipy): no torch, no run folders;
:mod:`tckr.privacy.dose_response` makes the replicate results, :mod:`tckr.reporting.power_figure` draws them.

A *replicate* is one replicate target (a shadow pipeline's student, attacked with the other pipelines) at one dose
(rho, strength) under one attack. Each pre-declared test (:data:`tckr.core.power_settings.POWER_TESTS`) rejects "no leakage"
on a replicate at level ``alpha`` (:func:`rejects`):

- ``auc_ci``: the (1 - alpha) bootstrap interval of the AUC (members and non-members resampled apart,
  :func:`tckr.privacy.metrics.bootstrap_ci`) lies above 50%;
- ``mann_whitney``: the one-sided Mann-Whitney test of member scores above non-member scores has p < alpha.

The detection probability of a (dose, attack, test) is the share of replicates that reject, with a 95% Wilson interval
(:func:`wilson`); at rho = 0 it is the rate at which the test sees the undosed students' own leakage. A test's
false-positive rate comes from the null replicates instead (:func:`null_table`: scores against another pipeline's
independent membership, no signal by construction). The minimum detectable effect (:func:`mde`) is the
smallest rho of the rho series whose detection probability reaches ``power_target``: the dose tested, and a rho
interpolated linearly between it and the dose below (said as such), with the AUC and TPR@1% measured there.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from tckr.core.power_settings import POWER_TESTS
from tckr.privacy.metrics import t_halfwidth, wilson

# Fewer assumptions first, the proposer's tie-break: LOSS thresholds the target alone; RMIA compares likelihood ratios
# with reference models but fits no distribution; offline LiRA fits Gaussians to OUT models only, online LiRA to IN and
# OUT models; a fixed variance fits one variance instead of one per example. A rank test (Mann-Whitney) needs no
# resampling, the bootstrap interval does.
ASSUMPTIONS = ("loss", "rmia_offline", "rmia", "lira_offline_fixed", "lira_online_fixed", "lira_offline", "lira_online")
POWER_COLUMNS = ["rho", "strength", "series", "attack", "test", "n_replicates", "n_detected", "detect_rate", "detect_lo",
                 "detect_hi", "mean_auc", "mean_auc_lo", "mean_auc_hi", "mean_tpr_at_1", "mean_auc_dosed", "n_replaced"]
NULL_COLUMNS = ["attack", "test", "n_replicates", "n_rejected", "rejection_rate", "rejection_lo", "rejection_hi", "mean_auc",
                "mean_auc_lo", "mean_auc_hi"]
MDE_COLUMNS = ["attack", "test", "power_target", "mde_rho", "mde_rho_tested", "auc_at_mde", "tpr_at_1_at_mde",
               "detect_rate_at_tested", "detect_lo_at_tested", "detect_hi_at_tested", "false_positive_rate",
               "n_replicates", "interpolated", "statement"]


def mann_whitney_p(scores: np.ndarray, members: np.ndarray) -> float:
    """One-sided p-value of the Mann-Whitney test that member scores lie above non-member scores."""
    s, m = np.asarray(scores, dtype=float), np.asarray(members, dtype=bool)
    return float(stats.mannwhitneyu(s[m], s[~m], alternative="greater").pvalue)


def rejects(replicates: pd.DataFrame, test: str, alpha: float) -> pd.Series:
    """Per replicate row (columns ``auc_lo``, ``p_mann_whitney``): whether ``test`` rejects "no leakage" at ``alpha``."""
    if test == "auc_ci":
        return replicates["auc_lo"] > 0.5
    if test == "mann_whitney":
        return replicates["p_mann_whitney"] < alpha
    raise ValueError(f"unknown power test {test!r}; accepted: {', '.join(POWER_TESTS)}")


def series_of(rho: float, strength: float, rho_strength: float, strength_rho: float) -> str:
    """Which series a dose belongs to: ``rho`` (the rho series at ``rho_strength``, rho 0 included), ``strength``
    (the strength series at ``strength_rho``), or ``both``."""
    in_rho = rho == 0 or math.isclose(strength, rho_strength)
    in_strength = math.isclose(rho, strength_rho)
    return "both" if in_rho and in_strength else "rho" if in_rho else "strength"


def _rates(g: pd.DataFrame, test: str, alpha: float) -> dict:
    """Over the replicate rows ``g`` of one attack: how many ``test`` rejects of how many, with the 95% Wilson
    interval of the share, and the mean AUC with its 95% t-interval."""
    k, n = int(rejects(g, test, alpha).sum()), len(g)
    lo, hi = wilson(k, n)
    auc = g["auc"].to_numpy(dtype=float)
    h = t_halfwidth(auc)
    return {"k": k, "n": n, "rate": k / n, "lo": lo, "hi": hi, "mean_auc": auc.mean(), "mean_auc_lo": auc.mean() - h,
            "mean_auc_hi": auc.mean() + h}


def power_table(replicates: pd.DataFrame, tests: list[str], alpha: float, rho_strength: float,
                strength_rho: float) -> pd.DataFrame:
    """``results/power.csv``: one row per dose × attack × test over the replicate targets (rows of ``replicates``
    whose ``set`` is a pipeline): detection rate, its 95% Wilson interval, mean AUC (95% t-interval), mean TPR@1% and
    mean AUC of the replaced members alone."""
    reps = replicates[replicates["set"] != "target"]
    rows = []
    for (rho, strength, attack), g in reps.groupby(["rho", "strength", "attack"], sort=True):
        for test in tests:
            r = _rates(g, test, alpha)
            rows.append({"rho": rho, "strength": strength, "series": series_of(rho, strength, rho_strength, strength_rho),
                         "attack": attack, "test": test, "n_replicates": r["n"], "n_detected": r["k"], "detect_rate": r["rate"],
                         "detect_lo": r["lo"], "detect_hi": r["hi"], "mean_auc": r["mean_auc"], "mean_auc_lo": r["mean_auc_lo"],
                         "mean_auc_hi": r["mean_auc_hi"], "mean_tpr_at_1": g["tpr_at_1pct"].mean(),
                         "mean_auc_dosed": g["auc_dosed"].mean(), "n_replaced": int(g["n_replaced"].iloc[0])})
    return pd.DataFrame(rows, columns=POWER_COLUMNS)


def _interpolate(x0: float, x1: float, y0: float, y1: float, y: float) -> float:
    return x1 if y1 == y0 else x0 + (y - y0) / (y1 - y0) * (x1 - x0)


def mde(power: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """``results/mde.csv``: per attack × test, the minimum detectable effect on the rho series (rows whose ``series`` is
    ``rho`` or ``both``): ``mde_rho_tested``, the smallest dose tested whose detection rate reaches ``target``;
    ``mde_rho``, the rho where the straight line between it and the dose below crosses ``target`` (``interpolated``
    says whether it was); the mean AUC and TPR@1% interpolated the same way; and the statement in words. Nan when no
    dose reaches ``target``, or when rho 0 already does (the test is not calibrated: no effect is measured)."""
    rows = []
    curve = power[power["series"].isin(["rho", "both"])]
    for (attack, test), g in curve.groupby(["attack", "test"], sort=False):
        g = g.sort_values("rho").reset_index(drop=True)
        hit = np.flatnonzero(g["detect_rate"].to_numpy() >= target - 1e-12)
        fp = g.loc[g["rho"] == 0, "detect_rate"]
        row = {"attack": attack, "test": test, "power_target": target, "false_positive_rate": fp.iloc[0] if len(fp) else np.nan,
               "n_replicates": int(g["n_replicates"].min()), "interpolated": False}
        nan = {k: np.nan for k in ("mde_rho", "mde_rho_tested", "auc_at_mde", "tpr_at_1_at_mde", "detect_rate_at_tested",
                                   "detect_lo_at_tested", "detect_hi_at_tested")}
        pct = f"{100 * target:.0f}%"
        if not len(hit):
            last = g.iloc[-1]
            rows.append({**row, **nan, "statement": f"{attack} / {test}: detection probability never reaches {pct} on "
                         f"rho <= {100 * last['rho']:g}% (at the largest dose {100 * last['detect_rate']:.0f}% "
                         f"[{100 * last['detect_lo']:.0f}, {100 * last['detect_hi']:.0f}], {int(last['n_replicates'])} "
                         "replicates): its minimum detectable effect is above the grid"})
            continue
        k = int(hit[0])
        at = g.iloc[k]
        tested = {"mde_rho_tested": at["rho"], "detect_rate_at_tested": at["detect_rate"],
                  "detect_lo_at_tested": at["detect_lo"], "detect_hi_at_tested": at["detect_hi"]}
        if at["rho"] == 0:
            rows.append({**row, **nan, **tested, "statement": f"{attack} / {test}: rejects on {100 * at['detect_rate']:.0f}% "
                         "of the undosed replicates (rho = 0): not calibrated, no minimum detectable effect"})
            continue
        lo = g.iloc[k - 1]
        y0, y1 = lo["detect_rate"], at["detect_rate"]
        rho = _interpolate(lo["rho"], at["rho"], y0, y1, target)
        between = {c: _interpolate(lo[c], at[c], y0, y1, target) for c in ("mean_auc", "mean_tpr_at_1")}
        interpolated = not math.isclose(rho, at["rho"])
        how = (f"interpolated linearly between the doses {100 * lo['rho']:g}% ({100 * y0:.0f}%) and {100 * at['rho']:g}% "
               f"({100 * y1:.0f}%)" if interpolated else "a dose tested")
        rows.append({**row, **tested, "mde_rho": rho, "auc_at_mde": between["mean_auc"], "tpr_at_1_at_mde": between["mean_tpr_at_1"],
                     "interpolated": interpolated,
                     "statement": f"{attack} / {test}: {pct} detection probability at rho = {100 * rho:.2f}% ({how}; "
                                  f"{100 * at['detect_rate']:.0f}% [{100 * at['detect_lo']:.0f}, {100 * at['detect_hi']:.0f}] "
                                  f"of {int(at['n_replicates'])} replicates at {100 * at['rho']:g}%), where the mean AUC is "
                                  f"{100 * between['mean_auc']:.1f}% and TPR@1% {100 * between['mean_tpr_at_1']:.1f}%"})
    return pd.DataFrame(rows, columns=MDE_COLUMNS)


def _assumption_rank(attack: str, test: str) -> tuple[int, int]:
    a = ASSUMPTIONS.index(attack) if attack in ASSUMPTIONS else len(ASSUMPTIONS)
    return a, 0 if test == "mann_whitney" else 1


def null_table(replicates: pd.DataFrame, tests: list[str], alpha: float) -> pd.DataFrame:
    """``results/power_null.csv``: per attack × test, how often the test rejects on the null replicates (scores of
    one pipeline's student against another pipeline's independent membership,
    :func:`tckr.privacy.dose_response.attack_null`): the test's false-positive rate with its 95% Wilson interval, and
    the mean AUC (95% t-interval), which should hold 50%."""
    rows = []
    for attack, g in replicates[replicates["auc"].notna()].groupby("attack", sort=False):
        for test in tests:
            r = _rates(g, test, alpha)
            rows.append({"attack": attack, "test": test, "n_replicates": r["n"], "n_rejected": r["k"],
                         "rejection_rate": r["rate"], "rejection_lo": r["lo"], "rejection_hi": r["hi"],
                         **{c: r[c] for c in ("mean_auc", "mean_auc_lo", "mean_auc_hi")}})
    return pd.DataFrame(rows, columns=NULL_COLUMNS)


def calibrated(null: pd.DataFrame | None, alpha: float) -> set[tuple[str, str]] | None:
    """The attack × test pairs whose null rejection rate is not above ``alpha`` (its Wilson interval reaches down to
    ``alpha``); None without a null table (no pair is excluded)."""
    if null is None or not len(null):
        return None
    return {(r.attack, r.test) for r in null.itertuples() if r.rejection_lo <= alpha}


def _mean_power(power: pd.DataFrame) -> pd.DataFrame:
    """Per attack × test: the mean detection rate over the dosed doses (rho > 0) of the rho series, and the rate at
    the largest dose with its interval."""
    curve = power[power["series"].isin(["rho", "both"]) & (power["rho"] > 0)].sort_values("rho")
    rows = []
    for (attack, test), g in curve.groupby(["attack", "test"], sort=False):
        last = g.iloc[-1]
        rows.append({"attack": attack, "test": test, "mean_detect": float(g["detect_rate"].mean()), "n_doses": len(g),
                     "max_rho": float(last["rho"]), "last": float(last["detect_rate"]), "last_lo": float(last["detect_lo"]),
                     "last_hi": float(last["detect_hi"]), "n_replicates": int(g["n_replicates"].min())})
    return pd.DataFrame(rows)


def propose(mde_table: pd.DataFrame, power: pd.DataFrame | None = None, null: pd.DataFrame | None = None,
            alpha: float = 0.05) -> dict | None:
    """The headline the power study pre-registers, among the pairs the null calibrates (:func:`calibrated`; all of
    them without a null table): the attack × test with the smallest minimum detectable effect (``mde_rho``), ties
    going to fewer assumptions (:data:`ASSUMPTIONS`, then the rank test). When none reaches the power target within
    the grid and ``power`` is given, the one with the largest mean detection rate over the dosed rho doses (``by`` =
    ``mean_power``; the same tie-break). None when neither gives one."""
    ok_pairs = calibrated(null, alpha)
    usable = (lambda a, t: True) if ok_pairs is None else (lambda a, t: (a, t) in ok_pairs)
    tables = mde_table[[usable(a, t) for a, t in zip(mde_table["attack"], mde_table["test"])]]
    ok = tables[tables["mde_rho"].notna()]
    n_null = "" if ok_pairs is None else f"; {len(tables)} of {len(mde_table)} pairs calibrated by the null"
    if len(ok):
        best = min(ok.itertuples(index=False), key=lambda r: (round(float(r.mde_rho), 12), *_assumption_rank(r.attack, r.test)))
        ties = ok[np.isclose(ok["mde_rho"].astype(float), float(best.mde_rho))]
        return {"attack": best.attack, "test": best.test, "mde_rho": float(best.mde_rho), "statement": best.statement + n_null,
                "tie_break": len(ties) > 1, "candidates": len(mde_table), "by": "mde"}
    if power is None:
        return None
    mp = _mean_power(power)
    mp = mp[[usable(a, t) for a, t in zip(mp["attack"], mp["test"])]] if len(mp) else mp
    if not len(mp):
        return None
    best = min(mp.itertuples(index=False), key=lambda r: (-round(r.mean_detect, 12), *_assumption_rank(r.attack, r.test)))
    ties = mp[np.isclose(mp["mean_detect"], best.mean_detect)]
    statement = (f"{best.attack} / {best.test}: no pair reaches the power target within the grid; this one has the "
                 f"largest mean detection rate over the {best.n_doses} dosed rho doses, {100 * best.mean_detect:.0f}% "
                 f"({100 * best.last:.0f}% [{100 * best.last_lo:.0f}, {100 * best.last_hi:.0f}] at rho = "
                 f"{100 * best.max_rho:g}%, {best.n_replicates} replicates){n_null}")
    return {"attack": best.attack, "test": best.test, "mde_rho": float("nan"), "statement": statement,
            "tie_break": len(ties) > 1, "candidates": len(mde_table), "by": "mean_power"}


def proposal_yaml(proposal: dict | None, source: str) -> str:
    """The lines to paste under ``mia:`` of the study's config (or why there are none)."""
    if proposal is None:
        return ("# no attack reached the power target within the dose grid: no headline is proposed; keep mia.headline "
                f"(power study: {source})\n")
    what = ("smallest minimum detectable effect" if proposal.get("by", "mde") == "mde"
            else "largest mean detection rate (no minimum detectable effect within the grid)")
    reason = (f"{what} of {proposal['candidates']} attack x test pairs in the power study "
              f"{source}" + (" (tie broken toward fewer assumptions)" if proposal["tie_break"] else "")
              + f": {proposal['statement']}")
    return (f"mia:\n  headline_attack: {proposal['attack']}\n  headline_test: {proposal['test']}\n"
            f"  headline_reason: {_quoted(reason)}\n")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
