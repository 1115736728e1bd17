"""The privacy ledger: leakage at each release point under each attack family, in one table.

A TCKR study can release four things, each with its own threat model (``docs/privacy.md``): the **teacher** (trained
on D), the **generator** (the LoRA-adapted base), the **synthetic set** and the **student** of each cardinality. This
module lays every (release point, attack) pair of the run's attack result files side by side: ``results/mia.csv``
(classifier-shadow LiRA, LOSS, RMIA on teacher and students), ``mia_pipeline.csv`` (students with shadow
*pipelines*, :mod:`tckr.privacy.pipelines`), ``mia_generator.csv`` and ``mia_synthetic.csv`` (the adapted generator
and the released synthetic sets, :mod:`tckr.privacy.generator_mia`).

The run's pre-registered headline attack is resolved here and nowhere else (:func:`headline`: ``mia.headline_attack``
when a power study set it, else the attack ``results/headline.json`` records, else the ``mia.headline`` rule), and so
are the tables built on it (:func:`study_table`, teacher vs students; :func:`seed_summary`, its mean over seeds). One
attack per release point is the headline (:func:`headline_rules`), with the shadows that replicate that release
point's training; every other row is reported beside it, never maximised over. Intervals are 95% bootstrap intervals
of each row; ``results/ledger.json`` gives the number of comparisons and the Bonferroni level. A null is read as a
bound, never as "no leakage": each row carries one-sided 95% upper bounds (``auc_ub``, ``tpr_at_<x>_ub``), the
empirical epsilon lower bound of its scores (``eps_lb`` on P, ``eps_lb_canaries`` on the canaries, at ``eps_delta``)
and, for a student attacked through shadow pipelines, the pooled leave-one-pipeline-out AUC (``lopo_*``, the
pipelines' students as replicate targets, :func:`lopo_summary`). :func:`leaks_measurably` is the one place that says
when a row leaks measurably (:func:`leak_rule`, which rule reads it). Rows on the mislabeled canaries alone
(``subset`` = ``canaries``) come last and are never a headline; every other row is on P without them.

Pure reading and tabulating: no training, no drawing (``tckr.plots.plot_ledger`` draws it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.core.config import MiaConfig
from tckr.privacy import metrics
from tckr.privacy.attacks import headline_attack, headline_rule
from tckr.runfolder import artifacts

SOURCES = {"mia.csv": "classifier", "mia_pipeline.csv": "pipeline", "mia_generator.csv": "generator",
           "mia_synthetic.csv": "synthetic"}
RELEASES = ("teacher", "generator", "synthetic set", "student")
METRIC_COLUMNS = ["auc", "auc_lo", "auc_hi", "tpr_at_1pct", "tpr_at_1pct_lo", "tpr_at_1pct_hi", "tpr_at_0.1pct",
                  "tpr_at_0.1pct_lo", "tpr_at_0.1pct_hi", "n_members", "n_nonmembers",
                  "auc_ub", "tpr_at_1pct_ub", "tpr_at_0.1pct_ub", "tpr_at_10pct", "tpr_at_10pct_lo", "tpr_at_10pct_hi",
                  "tpr_at_10pct_ub", "tpr_note", "eps_lb", "eps_lb_canaries", "eps_delta",
                  "lopo_n_pipelines", "lopo_auc", "lopo_auc_lo", "lopo_auc_hi", "lopo_share_above_50"]
# computed here, not read from the attack result files
_DERIVED = ("eps_lb_canaries", "lopo_n_pipelines", "lopo_auc", "lopo_auc_lo", "lopo_auc_hi", "lopo_share_above_50")
LOPO_FILE = "mia_pipeline_lopo.csv"
COLUMNS = ["release", "cardinality", "label_mode", "target", "family", "attack", "subset", "headline", *METRIC_COLUMNS,
           "n_reference_models", "source", "shadow_gaps"]
CLASSIFIER_GAP = "classifier shadows: no captioning, LoRA or synthesis"


def with_subset(table: pd.DataFrame) -> pd.DataFrame:
    """An attack-result table with its ``subset`` column (``all`` where a file written before canaries lacks it)."""
    subset = table["subset"].fillna("all") if "subset" in table else pd.Series("all", index=table.index, dtype=object)
    return table.assign(subset=subset)


def main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows on P without its mislabeled canaries (``subset`` = ``all``): what headlines, AOP and figures use."""
    t = with_subset(table)
    return t[t["subset"] == "all"]


def leak_rule(table: pd.DataFrame, run_dir: str | Path | None = None) -> pd.Series:
    """Per ledger row, the pre-registered rule that reads it (:func:`leaks_measurably`): ``pooled`` for a student with
    a pooled leave-one-pipeline-out AUC, else the ``headline_test`` of ``run_dir``'s ledger.json (``mann_whitney`` or
    ``auc_ci``; ``auc_ci`` where none was pre-registered)."""
    f = Path(run_dir or ".") / "results" / "ledger.json"
    test = (io.read_json(f).get("headline_test") if run_dir is not None and f.is_file() else "") or "auc_ci"
    pooled = pd.Series(pd.to_numeric(table.get("lopo_auc_lo", np.nan), errors="coerce"), index=table.index).notna()
    return pd.Series(np.where(pooled, "pooled", test), index=table.index)


def leaks_measurably(table: pd.DataFrame, run_dir: str | Path | None = None, rule: pd.Series | None = None) -> pd.Series:
    """Per ledger row, whether it leaks measurably under its :func:`leak_rule` (``rule``, if already read): ``pooled``,
    the 95% t-interval of the mean over the pipelines' students lies above 50% (the replicate mean: more powerful than
    one target's test in the dose-response control, ``docs/power.md``); ``mann_whitney``, the one-sided rank test from
    the row's AUC has p < 0.05; ``auc_ci``, the row's own 95% AUC interval lies above 50%."""
    rule = leak_rule(table, run_dir) if rule is None else rule
    pooled = pd.Series(pd.to_numeric(table.get("lopo_auc_lo", np.nan), errors="coerce"), index=table.index) > 0.5
    ranks = pd.Series(False, index=table.index)
    if (rule == "mann_whitney").any():
        ranks = pd.Series(metrics.mann_whitney_p_from_auc(table["auc"], table["n_members"], table["n_nonmembers"]) < 0.05,
                          index=table.index)
    return pooled.where(rule == "pooled", ranks.where(rule == "mann_whitney", table["auc_lo"] > 0.5)).astype(bool)


def lopo_summary(lopo: pd.DataFrame) -> pd.DataFrame:
    """The leave-one-pipeline-out AUCs (``results/mia_pipeline_lopo.csv``; ``student`` only with ``gkd.baselines``)
    pooled per ([student,] cardinality, attack), the pipelines' students as replicate targets: ``lopo_n_pipelines``,
    ``lopo_auc`` (mean), ``lopo_auc_lo`` / ``lopo_auc_hi`` (95% Student-t interval) and ``lopo_share_above_50``."""
    keys, rows = ["student"] * ("student" in lopo) + ["cardinality", "attack"], []
    for key, g in lopo.groupby(keys, sort=False):
        p = metrics.t_interval(g["auc"])
        rows.append({**dict(zip(keys, key)), "lopo_n_pipelines": p["n"], "lopo_auc": p["mean"],
                     "lopo_auc_lo": p["lo"], "lopo_auc_hi": p["hi"], "lopo_share_above_50": p["share_above"]})
    return pd.DataFrame(rows, columns=[*keys, *_DERIVED[1:]])


def with_lopo(table: pd.DataFrame, lopo: pd.DataFrame | None) -> pd.DataFrame:
    """Ledger rows with the ``lopo_*`` columns of :func:`lopo_summary` filled in on the rows of students attacked
    through shadow pipelines (``source`` = ``mia_pipeline.csv``, ``subset`` = ``all``) of the same [student (target),]
    cardinality and attack; ``lopo`` is ``results/mia_pipeline_lopo.csv`` (None: the columns stay empty)."""
    table = with_subset(table).copy()
    table = table.assign(**{c: np.nan for c in _DERIVED[1:] if c not in table})
    if lopo is None or not len(lopo):
        return table
    pooled, named = lopo_summary(lopo), "student" in lopo
    pooled = pooled.set_index(list(pooled.columns[: 2 + named]))
    for i in table.index[(table["source"] == "mia_pipeline.csv") & (table["subset"] == "all")]:
        key = (table.at[i, "target"],) * named + (float(table.at[i, "cardinality"]), table.at[i, "attack"])
        if key in pooled.index:
            for c in _DERIVED[1:]:
                table.at[i, c] = pooled.at[key, c]
    return table


def _family(source: str, attack: str) -> str:
    kind, lira = SOURCES[source], "lira" in attack
    if kind in ("classifier", "pipeline"):
        name = "LiRA" if lira else "RMIA" if attack.startswith("rmia") else "LOSS threshold" if attack == "loss" else attack
        return name + ("" if name in ("LOSS threshold", attack) else ", shadow pipelines" if kind == "pipeline"
                       else ", classifier shadows" if lira else ", classifier references")
    if kind == "generator":
        return "LiRA, shadow LoRAs" if lira else "denoising-error threshold"
    return "LiRA, shadow synthetic sets" if lira else "distance threshold"


def headline_record(setting: str, n_shadows: int, *, attack: str = "", test: str = "", reason: str = "") -> dict[str, Any]:
    """The pre-registered headline of a study whose ``mia.headline`` is ``setting``, attacked with ``n_shadows``
    shadows: ``{"attack", "setting", "n_shadows", "rule"}``, as :func:`tckr.mia.attack` writes ``results/headline.json``.
    ``attack`` (``mia.headline_attack``, set from a power study with its ``test`` and ``reason``) replaces the rule."""
    m = int(n_shadows)
    if attack:
        return {"attack": attack, "setting": setting, "n_shadows": m, "test": test, "reason": reason,
                "rule": f"pre-registered by power: mia.headline_attack = {attack} (test {test}): {reason}"}
    return {"attack": headline_attack(setting, m), "setting": setting, "n_shadows": m, "rule": headline_rule(setting)}


def headline(run_dir: str | Path) -> str:
    """The run's pre-registered headline attack: ``mia.headline_attack`` of its settings when set (by a power study),
    else the one ``results/headline.json`` records (written by :func:`tckr.mia.attack`), else the ``mia.headline`` rule
    of the run's saved settings with the shadow count of ``results/mia.csv`` (of the settings before any attack ran)."""
    if attack := _mia_settings(run_dir).get("headline_attack"):
        return attack
    if (record := artifacts.read_headline_record(run_dir)) is not None:
        return record["attack"]
    mia_cfg = artifacts.settings(run_dir).get("mia") or {}
    n_shadows = mia_cfg.get("n_shadows", MiaConfig.n_shadows)
    if (res := artifacts.read_optional_result(run_dir, "mia.csv")) is not None:
        n_shadows = int(res["n_shadows"].max())
    return headline_record(mia_cfg.get("headline", MiaConfig.headline), n_shadows)["attack"]


def headline_rules(variant: str) -> dict[str, list[tuple[str, str]]]:
    """Per release point, the (source kind, attack) pairs tried in order for the headline: the first present is the
    headline. ``variant`` is the run's pre-registered attack; generator and synthetic set take its LiRA analogue, and
    fixed-variance online LiRA for an attack without one (RMIA, LOSS: the power study measured the students only)."""
    short = variant.replace("lira_", "") if variant.startswith("lira_") else "online_fixed"
    return {
        "teacher": [("classifier", variant)],
        "student": [("pipeline", variant), ("classifier", variant)],
        "generator": [("generator", f"gen_lira_{short}"), ("generator", "gen_loss")],
        "synthetic set": [("synthetic", f"syn_lira_{short}"), ("synthetic", "syn_distance")],
    }


def _rows(run_dir: Path) -> pd.DataFrame:
    frames = []
    for name in SOURCES:
        if not (f := run_dir / "results" / name).is_file() or (t := pd.read_csv(f)).empty:
            continue
        t["source"] = name
        frames.append(with_subset(t))
    if not frames:
        raise FileNotFoundError(f"no attack results under {run_dir / 'results'} (expected one of {', '.join(SOURCES)}): "
                                "run notebooks/05_mia_lira.ipynb first")
    return pd.concat(frames, ignore_index=True)


def shadow_gaps(table: pd.DataFrame) -> pd.Series:
    """Per ledger row, what the shadows of a student row do not replicate of the student's training: "" for shadow
    pipelines (they replicate it all), :data:`CLASSIFIER_GAP` for classifier shadows and references, led by
    ``<m>x: no pipelines`` where that student has no pipeline row. "" for threshold attacks and other release points."""
    student = table["release"] == "student"
    piped = {k for k, src in zip(zip(table["cardinality"], table["label_mode"].fillna("")), table["source"])
             if src == "mia_pipeline.csv"}
    out = pd.Series("", index=table.index, dtype=object)
    for i in table.index[student & (table["source"] == "mia.csv") & (table["family"] != "LOSS threshold")]:
        card, mode = table.at[i, "cardinality"], table.at[i, "label_mode"]
        mode = "" if pd.isna(mode) else mode
        lead = "" if (card, mode) in piped else f"{card:g}x{'' if mode in ('', 'soft') else f' {mode} labels'}: no pipelines; "
        out[i] = lead + CLASSIFIER_GAP
    return out


def _release(row: pd.Series) -> str:
    kind = {"generator": "generator", "synthetic": "synthetic set"}.get(SOURCES[row["source"]])
    return kind or ("teacher" if row.get("role") == "teacher" else "student")


def build(run_dir: str | Path, variant: str | None = None) -> pd.DataFrame:
    """``results/ledger.csv`` (and ``ledger.json``) from the run's attack result files; ``variant`` is
    the pre-registered LiRA variant (default: the run's, :func:`headline`). Returns the table."""
    run_dir = Path(run_dir)
    variant = headline(run_dir) if variant is None else variant
    raw = _rows(run_dir)
    raw = raw[raw["auc"].notna()].reset_index(drop=True)  # variants skipped for too few shadows (their note says why)
    out = pd.DataFrame({
        "release": raw.apply(_release, axis=1),
        "cardinality": raw.get("cardinality", pd.Series(np.nan, index=raw.index)),
        "label_mode": raw.get("label_mode", pd.Series("", index=raw.index)),
        "target": raw["target"],
        "family": [_family(s, a) for s, a in zip(raw["source"], raw["attack"])],
        "attack": raw["attack"],
        "subset": raw["subset"],
    })
    for c in METRIC_COLUMNS:
        out[c] = raw[c] if c in raw and c not in _DERIVED else np.nan
    out["tpr_note"] = raw["tpr_note"].astype(object).where(raw["tpr_note"].notna(), "") if "tpr_note" in raw else ""
    if "eps_lb" in raw:  # each row on P gets the epsilon of the same attack on the same target's canaries
        key = ["source", "target", "attack"]
        canary_eps = raw[raw["subset"] == "canaries"].set_index(key)["eps_lb"]
        main = raw["subset"] == "all"
        out.loc[main, "eps_lb_canaries"] = [canary_eps.get(k, np.nan) for k in raw.loc[main, key].itertuples(index=False)]
    refs = raw["n_pipelines"] if "n_pipelines" in raw else pd.Series(np.nan, index=raw.index)
    out["n_reference_models"] = refs.fillna(raw["n_shadows"] if "n_shadows" in raw else np.nan)
    out["source"] = raw["source"]
    out = with_lopo(out, artifacts.read_optional_result(run_dir, LOPO_FILE))
    out["shadow_gaps"] = shadow_gaps(out)
    out.loc[out["release"] == "teacher", "cardinality"] = np.nan
    kinds = raw["source"].map(SOURCES)
    out["headline"] = False
    rules = headline_rules(variant)
    regular = out[out["subset"] == "all"]  # canary rows are reported apart, never a headline
    student = regular["target"].where(regular["release"] == "student", "")  # one headline per student row (gkd.baselines)
    for (release, card, mode, _), group in regular.groupby(["release", "cardinality", "label_mode", student], dropna=False):
        for kind, attack in rules[release]:
            hit = group.index[(kinds[group.index] == kind) & (group["attack"] == attack)]
            if len(hit):
                out.loc[hit[0], "headline"] = True
                break
    order = {r: i for i, r in enumerate(RELEASES)}
    out = out.assign(_c=out["subset"] != "all", _r=out["release"].map(order)).sort_values(
        ["_c", "_r", "cardinality", "label_mode", "headline", "family", "attack"],
        ascending=[True, True, True, True, False, True, True], na_position="first").drop(columns=["_c", "_r"]).reset_index(drop=True)[COLUMNS]
    io.save_csv(run_dir / "results" / "ledger.csv", out)
    n = len(out)
    io.write_json(run_dir / "results" / "ledger.json", {
        "headline_variant": variant, "n_comparisons": n, "n_headline": int(out["headline"].sum()),
        "n_canary_rows": int((out["subset"] == "canaries").sum()),
        "interval": "95% bootstrap, per row (examples resampled within members and within non-members)",
        "upper_bound": "one-sided 95%: the 95th percentile of the same bootstrap, never below the estimate "
                       "(<metric>_ub)",
        "tpr_shown": f"a TPR at FPR x only when n_nonmembers * x >= {metrics.MIN_FALSE_POSITIVES} "
                     "(else NaN, tpr_note says why)",
        "epsilon": "one-run empirical lower bound (Steinke, Nasr & Jagielski 2023) at significance 0.05 and eps_delta, "
                   "on P without canaries (eps_lb) and on the canaries alone (eps_lb_canaries)",
        "lopo": "students attacked through shadow pipelines: mean leave-one-pipeline-out AUC over the pipelines, "
                "95% Student-t interval, share above 50% (results/mia_pipeline_lopo.csv)",
        "bonferroni_level": 0.05 / max(n, 1),
        "headline_rules": {k: [f"{a} ({s})" for s, a in v] for k, v in rules.items()}, **_power_headline(run_dir, variant)})
    return out


def _mia_settings(run_dir) -> dict[str, Any]:
    return (artifacts.settings(run_dir).get("mia") or {}) if (artifacts.run_folder(run_dir) / "config.yaml").is_file() else {}


def _power_headline(run_dir: Path, variant: str) -> dict[str, str]:
    """``headline_test`` and ``headline_reason`` when a power study pre-registered ``variant`` (ledger.json), else {}."""
    m = _mia_settings(run_dir)
    return {k: m.get(k, "") for k in ("headline_test", "headline_reason")} if m.get("headline_attack") == variant else {}


def headlines(ledger: pd.DataFrame) -> pd.DataFrame:
    """The pre-registered rows of a ledger, one per release point (and cardinality, label mode)."""
    return ledger[ledger["headline"]].reset_index(drop=True)


def _num(r, c):
    v = r.get(c, np.nan)
    return np.nan if v is None or (isinstance(v, str) and not v) else float(v)


def _left_out(r, metric: str) -> bool:
    n = _num(r, "n_nonmembers")
    return metric in metrics.FPR_LEVELS and not np.isnan(n) and not metrics.tpr_shown(int(n), metrics.FPR_LEVELS[metric])


def effect_cell(r, metric: str = "auc") -> str:
    """One metric of a ledger row in percent: ``51.2 [50.4, 52.6], ≤ 52.4`` (estimate, 95% interval, one-sided 95%
    upper bound); ``–`` for what the row lacks (a result file written before the bound, a TPR left out for too few
    non-members)."""
    v, lo, hi, ub = (_num(r, c) for c in (metric, f"{metric}_lo", f"{metric}_hi", f"{metric}_ub"))
    if _left_out(r, metric):
        return "–"  # the rule of metrics.summarise, applied to files written before it too
    if np.isnan(v):
        return "–"
    s = f"{100 * v:.1f}" + ("" if np.isnan(lo) or np.isnan(hi) else f" [{100 * lo:.1f}, {100 * hi:.1f}]")
    return s + ", ≤ " + ("–" if np.isnan(ub) else f"{100 * ub:.1f}")


def effect_text(r, metric: str = "auc") -> str:
    """One metric of a ledger row as a phrase: ``AUC 51.2% [50.4, 52.6], ≤ 52.4%``."""
    name = "AUC" if metric == "auc" else metrics.LABELS[metric]
    cell = effect_cell(r, metric)
    if _left_out(r, metric):
        need = int(round(metrics.MIN_FALSE_POSITIVES / metrics.FPR_LEVELS[metric]))
        return f"{name} – (needs ≥ {need:,} non-members; have {int(_num(r, 'n_nonmembers')):,})"
    if cell == "–":
        return f"{name} –"
    head, _, ub = cell.rpartition(", ≤ ")
    v, _, ci = head.partition(" ")
    return f"{name} {v}%" + (f" {ci}" if ci else "") + ", ≤ " + ("–" if ub == "–" else f"{ub}%")


def _eps_cell(r) -> str:
    p, c = _num(r, "eps_lb"), _num(r, "eps_lb_canaries")
    if np.isnan(p) and np.isnan(c):
        return "–"
    return ("–" if np.isnan(p) else f"{p:.2f}") + ("" if np.isnan(c) else f" (canaries {c:.2f})")


def _lopo_cell(r) -> str:
    v, lo, hi, n, share = (_num(r, c) for c in ("lopo_auc", "lopo_auc_lo", "lopo_auc_hi", "lopo_n_pipelines",
                                                 "lopo_share_above_50"))
    if np.isnan(v):
        return "–"
    ci = "" if np.isnan(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * v:.1f}{ci}, {int(round(share * n))}/{int(n)} > 50"


def variant_notes(r) -> list[str]:
    """How a student row was made: ``["base generator"]``, ``["hard labels"]``, both, or ``[]`` (any other row)."""
    parts = ["base generator"] * ("_base" in str(r.get("target", ""))) + ["hard labels"] * (r.get("label_mode") == "hard")
    return parts if r.get("release") == "student" else []


def variant_label(r) -> str:
    """:func:`variant_notes` in words: `` (hard labels)``, `` (base generator, hard labels)``; "" without notes."""
    notes = variant_notes(r)
    return f" ({', '.join(notes)})" if notes else ""


def markdown(ledger: pd.DataFrame, headline_only: bool = False) -> str:
    """The ledger as a Markdown table (percent: estimate [95% interval], ≤ one-sided 95% upper bound; the epsilon lower
    bound; the pooled leave-one-pipeline-out AUC), with a line saying why a TPR is left out; mislabeled-canary rows,
    if any, in a second table after it (never with ``headline_only``). ``–`` where a row lacks a value."""
    ledger = with_subset(ledger)
    t = headlines(ledger) if headline_only else ledger
    deltas = pd.to_numeric(t["eps_delta"], errors="coerce").dropna() if "eps_delta" in t else pd.Series(dtype=float)
    eps_head = f"ε ≥ (δ = {deltas.iloc[0]:g})" if len(deltas) else "ε ≥"

    def table(rows: pd.DataFrame) -> list[str]:
        lines = ["| release | cardinality | attack family | attack | AUC (%) | TPR@1% FPR (%) | TPR@0.1% FPR (%) | "
                 f"TPR@10% FPR (%) | {eps_head} | leave-one-pipeline-out AUC (%) |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in rows.iterrows():
            card = "–" if pd.isna(r["cardinality"]) else f"{r['cardinality']:g}×{variant_label(r)}"
            name = f"**{r['attack']}**" if r["headline"] else r["attack"]
            lines.append(f"| {r['release']} | {card} | {r['family']} | {name} | {effect_cell(r, 'auc')} | "
                         f"{effect_cell(r, 'tpr_at_1pct')} | {effect_cell(r, 'tpr_at_0.1pct')} | "
                         f"{effect_cell(r, 'tpr_at_10pct')} | {_eps_cell(r)} | {_lopo_cell(r)} |")
        notes = sorted({f for n in rows["n_nonmembers"].dropna() for f in metrics.tpr_note(int(n)).split(". ") if f},
                       key=lambda f: (f.split(" ")[0], -int(f.rsplit(" ", 1)[1].replace(",", ""))))
        if notes:
            lines += ["", f"TPR left out (–) where fewer than {metrics.MIN_FALSE_POSITIVES} non-members could be false "
                      "positives: " + ". ".join(notes) + "."]
        return lines

    canaries = t[t["subset"] == "canaries"]
    if len(canaries) == len(t):  # canary rows alone (tckr.report's canary table): one table, no heading
        return "\n".join(table(canaries)) + "\n"
    lines = table(t[t["subset"] != "canaries"])
    if len(canaries):
        n = int(canaries["n_members"].iloc[0] + canaries["n_nonmembers"].iloc[0])
        lines += ["", f"Mislabeled canaries ({n} examples of P, scored on the canaries alone; never a headline):", ""]
        lines += table(canaries)
    return "\n".join(lines) + "\n"


def classifier_headlines(run_dir: str | Path, variant: str) -> pd.DataFrame:
    """One row per released classifier (teacher, students): the AUC and TPR of its pre-registered headline,
    ``variant`` scored with the shadows that replicate its training (``shadows``: ``pipeline`` for a
    student attacked through shadow pipelines, else ``classifier``). The single source of AOP and the
    teacher-vs-student table."""
    run_dir = Path(run_dir)
    cols = ["target", "role", "cardinality", "label_mode", "auc", "auc_lo", "auc_hi", "tpr_at_1pct"]
    base = main_rows(pd.read_csv(run_dir / "results" / "mia.csv"))
    base = base[base["attack"] == variant][cols].assign(shadows="classifier")
    f = run_dir / "results" / "mia_pipeline.csv"
    if f.is_file():
        pipe = main_rows(pd.read_csv(f))
        pipe = pipe[pipe["attack"] == variant][cols].assign(shadows="pipeline")
        base = pd.concat([pipe, base[~base["target"].isin(pipe["target"])]], ignore_index=True)
    return base.assign(attack=variant).reset_index(drop=True)


def study_table(run_dir: str | Path, *, attacks: bool = True) -> pd.DataFrame:
    """Teacher vs students: accuracy, AUC_MIA, TPR@1% FPR and AOP (all in percent), all from the run's headline attack
    (:func:`headline`, :func:`classifier_headlines`). Reads only; notebook 06 writes it
    (:func:`tckr.artifacts.write_study_table`). ``attacks=False``: accuracy only (a run stopped before 05_mia_lira),
    the attack columns empty."""
    run_dir = Path(run_dir)
    clf = artifacts.read_result(run_dir, "classifiers.csv")
    if attacks:
        artifacts.read_result(run_dir, "mia.csv")  # its own error when 05_mia_lira has not run
        attack = headline(run_dir)
        m = classifier_headlines(run_dir, attack).set_index("target")
    else:
        attack, m = None, pd.DataFrame(index=pd.Index([], name="target"))
    rows = []
    for _, r in clf.iterrows():
        row = {"model": r["model"], "role": r["role"], "cardinality": r.get("cardinality", np.nan),
               "label_mode": r.get("label_mode", ""), "accuracy": r["test_accuracy"]}
        if r["model"] in m.index:
            mr = m.loc[r["model"]]
            row.update(auc_mia=100 * mr["auc"], auc_lo=100 * mr.get("auc_lo", np.nan), auc_hi=100 * mr.get("auc_hi", np.nan),
                       tpr_at_1pct=100 * mr["tpr_at_1pct"], aop=100 * metrics.aop(r["test_accuracy"] / 100, mr["auc"]),
                       shadows=mr["shadows"])
        else:
            row.update(auc_mia=np.nan, auc_lo=np.nan, auc_hi=np.nan, tpr_at_1pct=np.nan, aop=np.nan, shadows="")
        row["attack"] = attack
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["role", "cardinality"], ascending=[False, True], na_position="first").reset_index(drop=True)


def seed_summary(seed_dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per_seed, table)``: every seed run's study table, and their mean ± 95% CI (Student t) per model. Reads only;
    :func:`tckr.study.run_study` writes them (:func:`tckr.artifacts.write_study_table`). When a seed has no attack
    results (a study of phases 00–04), the table is of accuracies only, its attack columns empty."""
    attacks = all(artifacts.result_path(d, "mia.csv").is_file() for d in seed_dirs)
    allt = pd.concat([study_table(d, attacks=attacks).assign(seed_run=i) for i, d in enumerate(seed_dirs)], ignore_index=True)
    columns = ["accuracy", "auc_mia", "tpr_at_1pct", "aop"]
    rows = []
    for (model, role), g in allt.groupby(["model", "role"], sort=False):
        row = {"model": model, "role": role, "cardinality": g["cardinality"].iloc[0], "n_seeds": len(g),
               "attack": g["attack"].iloc[0]}
        for m in columns:
            v = g[m].dropna().to_numpy()
            row[m] = v.mean() if len(v) else np.nan
            row[f"{m}_ci"] = metrics.t_halfwidth(v)
        rows.append(row)
    return allt, pd.DataFrame(rows)
