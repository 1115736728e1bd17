"""A reader's run beside a committed result folder: ``tckr report compare RUN REFERENCE``.

Each headline number of the README's tables (every model's real-test accuracy, ``results/classifiers.csv``; the
pre-registered headline AUC and TPR@1% FPR of each release point, the headline rows of ``results/ledger.csv``) is
put beside the reference's, with the difference and the spread the study itself shows, and a verdict:

- ``identical``: the same number, bit for bit;
- ``within the seed spread``: ``|difference| <= 2 sd``, the standard deviation of that number over the seeds of the
  matching several-seed folder (``results/<study>-seeds`` beside the reference, when it holds the number for two
  or more seeds);
- ``within the interval``: without seeds, the run's number lies inside the reference row's own 95% interval;
- ``outside``: neither (a number with no recorded spread is within only when identical);
- ``missing``: the reference has the number, the run does not.

The two ``environment.json`` files are compared too (CPU model, instruction-set flags, package versions): float
results can differ in the last bits between CPUs whose SIMD units differ (:func:`tckr.runfolder.environment.cpu`).

    tckr report compare runs/<id> results/mini          # exit 1 when a number is outside or missing
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.reporting import report
from tckr.runfolder import artifacts, phases

# |difference| <= 2 sd over the seeds. A run that differs from the reference only by its seed lands inside with
# probability 0.84 for a normal spread (the difference of two draws has sd sqrt(2) sd: P(|Z| <= sqrt(2)))
SPREAD_SDS = 2.0
LEDGER_METRICS = {"auc": "AUC", "tpr_at_1pct": "TPR@1% FPR"}
FAILING = ("outside", "missing")
COLUMNS = ["number", "run", "reference", "difference", "spread", "verdict"]


@dataclass
class Comparison:
    """The rows (:data:`COLUMNS`, values in percent), the environment lines, the seeds folder used (or None) and
    notes (the run's numbers the reference lacks, a run without a ledger)."""

    rows: pd.DataFrame
    environment: list[str]
    seeds: Path | None
    notes: list[str]

    @property
    def failed(self) -> bool:
        return bool(self.rows["verdict"].isin(FAILING).any())


def result_folder(folder: str | Path) -> Path:
    """The folder holding ``results/``: a run folder, a committed result folder, or its ``results/`` itself."""
    folder = Path(folder)
    if not folder.is_dir():
        raise report.ReportError(f"{folder} is not a folder: give a run folder (runs/<id>) or a result folder "
                                 "(results/<study>)")
    if artifacts.seed_folders(folder):  # before results/: a several-seed folder holds the table over its seeds there
        raise report.ReportError(f"{folder} holds seed<k>/ folders: compare one seed's folder "
                                 f"(e.g. {folder / artifacts.seed_folders(folder)[0].name})")
    if (folder / artifacts.RESULTS_DIR).is_dir():
        return folder
    if folder.name == artifacts.RESULTS_DIR and (folder / "classifiers.csv").is_file():
        return folder.parent
    raise report.ReportError(f"{folder} has no results/ folder: give a run folder (runs/<id>) or a result folder "
                             "(results/<study>)")


def numbers(folder: str | Path) -> pd.DataFrame:
    """The headline numbers of one result folder, in percent: ``key``, ``number`` (its label), ``value`` and the
    row's own 95% interval ``lo``, ``hi`` (NaN where it has none). The ledger's rows only when ``ledger.csv`` is there."""
    folder = Path(folder)
    clf = artifacts.read_result(folder, "classifiers.csv")
    rows = [{"key": ("accuracy", m), "number": f"{m}: test accuracy", "value": float(a), "lo": np.nan, "hi": np.nan}
            for m, a in zip(clf["model"], clf["test_accuracy"])]
    if artifacts.result_path(folder, "ledger.csv").is_file():
        for _, r in report.headline_rows(folder).iterrows():
            for metric, name in LEDGER_METRICS.items():
                if pd.isna(r[metric]):  # a number the folder does not hold (a TPR left out for too few non-members)
                    continue
                rows.append({"key": (metric, r["target"], r["attack"]),
                             "number": f"{r['target']}: {name} ({r['attack']})",
                             "value": 100 * float(r[metric]), "lo": 100 * float(r.get(f"{metric}_lo", np.nan)),
                             "hi": 100 * float(r.get(f"{metric}_hi", np.nan))})
    return pd.DataFrame(rows, columns=["key", "number", "value", "lo", "hi"])


def seed_sd(seeds: Path | None) -> dict[tuple, tuple[float, int]]:
    """Per number: (standard deviation over the seeds, number of seeds), for numbers two or more seeds hold."""
    if seeds is None:
        return {}
    frames = [numbers(d) for d in artifacts.seed_folders(seeds) if artifacts.result_path(d, "classifiers.csv").is_file()]
    if not frames:
        return {}
    allv = pd.concat(frames, ignore_index=True)
    out = {}
    for key, g in allv.groupby("key", sort=False):
        v = g["value"].dropna().to_numpy(float)
        if len(v) > 1:
            out[key] = (float(v.std(ddof=1)), len(v))
    return out


def _verdict(run: float, ref: float, lo: float, hi: float, sd: tuple[float, int] | None) -> tuple[str, str]:
    """(spread text, verdict) of one number."""
    if sd is not None:
        spread = f"sd {sd[0]:.2f} over {sd[1]} seeds"
        within = abs(run - ref) <= SPREAD_SDS * sd[0]
        kind = "within the seed spread"
    elif not (np.isnan(lo) or np.isnan(hi)):
        spread, within, kind = f"[{lo:.2f}, {hi:.2f}] (95% interval)", lo <= run <= hi, "within the interval"
    else:
        spread, within, kind = "none recorded", False, ""
    if np.isnan(run):
        return spread, "missing"
    if run == ref:
        return spread, "identical"
    return spread, kind if within else "outside"


def _diff_text(d: float) -> str:
    if np.isnan(d):
        return "–"
    if d == 0:
        return "0"
    return f"{d:+.2f}" if abs(d) >= 0.005 else f"{d:+.1e}"


def compare(run: str | Path, reference: str | Path, seeds: str | Path | None = None) -> Comparison:
    """Every headline number of ``reference`` beside ``run``'s (:func:`numbers`), judged against the seed spread of
    ``seeds`` (default :func:`tckr.runfolder.artifacts.seeds_folder` of the reference) or the reference row's interval."""
    run, reference = result_folder(run), result_folder(reference)
    seeds = artifacts.seeds_folder(reference) if seeds is None else Path(seeds)
    ours, theirs = numbers(run), numbers(reference)
    sds = seed_sd(seeds)
    found = dict(zip(ours["key"], ours["value"]))
    rows = []
    for _, r in theirs.iterrows():
        v = float(found.get(r["key"], np.nan))
        spread, verdict = _verdict(v, r["value"], r["lo"], r["hi"], sds.get(r["key"]))
        rows.append({"number": r["number"], "run": v, "reference": r["value"], "difference": v - r["value"],
                     "spread": spread, "verdict": verdict})
    extra = [n for k, n in zip(ours["key"], ours["number"]) if k not in set(theirs["key"])]
    notes = [f"not in the reference: {', '.join(extra)}"] if extra else []
    if not artifacts.result_path(run, "ledger.csv").is_file():
        notes.append(f"{artifacts.result_path(run, 'ledger.csv')} is missing ({phases.owner('results/ledger.csv')} "
                     "has not run): the attack numbers are missing")
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), environment_lines(run, reference), seeds, notes)


def _env(folder: Path) -> dict | None:
    f = folder / "environment.json"
    return io.read_json(f) if f.is_file() else None


def environment_lines(run: Path, reference: Path) -> list[str]:
    """Whether the two runs' machines match: CPU model, instruction-set flags, package versions."""
    a, b = _env(run), _env(reference)
    missing = [str(f / "environment.json") for f, e in ((run, a), (reference, b)) if e is None]
    if missing:
        return [f"environment: not compared ({', '.join(missing)} missing)"]
    lines = []
    ca, cb = a.get("cpu") or {}, b.get("cpu") or {}
    for what, key in (("CPU model", "model"), ("CPU flags", "flags")):
        va, vb = ca.get(key), cb.get(key)
        if va is None or vb is None:
            who = " and ".join(n for n, v in (("the run", va), ("the reference", vb)) if v is None)
            lines.append(f"{what}: not recorded by {who} (environment.json written before it recorded the CPU)")
        elif va == vb:
            lines.append(f"{what}: same" + (f" ({va})" if key == "model" else f" ({len(va)} flags)"))
        elif key == "model":
            lines.append(f"{what}: different (run: {va}; reference: {vb})")
        else:
            only_a, only_b = sorted(set(va) - set(vb)), sorted(set(vb) - set(va))
            lines.append(f"{what}: different (only the run's: {' '.join(only_a) or '–'}; "
                         f"only the reference's: {' '.join(only_b) or '–'})")
    pa, pb = a.get("packages") or {}, b.get("packages") or {}
    differ = [f"{p} {pa.get(p)} vs {pb.get(p)}" for p in sorted(set(pa) | set(pb)) if pa.get(p) != pb.get(p)]
    lines.append("packages: " + (f"different ({'; '.join(differ)})" if differ else "same versions"))
    return lines


def markdown(c: Comparison, run: str | Path, reference: str | Path) -> str:
    """The comparison as Markdown: the table, a count per verdict, the environment lines."""
    lines = [f"`{Path(run).as_posix()}` beside `{Path(reference).as_posix()}` (values in %; seed spread from "
             + (f"`{c.seeds.as_posix()}`" if c.seeds is not None else "no several-seed folder") + ")", "",
             "| " + " | ".join(COLUMNS) + " |", "|---|---:|---:|---:|---|---|"]
    for _, r in c.rows.iterrows():
        run_v = "–" if np.isnan(r["run"]) else f"{r['run']:.2f}"
        cells = [r["number"], run_v, f"{r['reference']:.2f}", _diff_text(r["difference"]), r["spread"], r["verdict"]]
        lines.append("| " + " | ".join(artifacts.markdown_cell(x) for x in cells) + " |")
    counts = c.rows["verdict"].value_counts()
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (of {len(c.rows)} numbers)"]
    lines += c.notes
    lines += [""] + [f"- {e}" for e in c.environment]
    return "\n".join(lines) + "\n"
