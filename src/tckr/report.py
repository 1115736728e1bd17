"""The README's results block, written from committed result folders (never typed by hand).

A *result folder* is the small, committable part of a finished run: its ``config.yaml``,
``environment.json`` (commit, machine, base generator check), ``seeds.json`` and ``results/`` (every
CSV/JSON table the phases wrote, the shadow pipelines' stage timings as ``results/pipeline_stages.csv``).
:func:`collect` copies it out of a run folder (``runs/`` is not committed; ``results/<study>/`` is).

:func:`block` turns result folders into the Markdown of the README's results section: per study, the
commit, machine and wall time (``results/phases.csv``), the teacher-vs-student table with each model's
pre-registered headline attack (``tckr.ledger.classifier_headlines``), the headline rows of the privacy
ledger and, for a positive control, whether each attack detected the leakage. :func:`update_readme`
replaces the text between the two markers in ``README.md``; ``--check`` exits 1 when it differs (the
test suite runs it, so the README cannot drift from the committed files).

    python -m tckr.report collect runs/<id> results/mini          # copy a finished run's result files
    python -m tckr.report write results/mini results/mini-leaky   # rewrite README.md's results block
    python -m tckr.report check results/mini results/mini-leaky   # exit 1 when README.md differs
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from . import io, ledger

BEGIN = "<!-- tckr.report:begin (python -m tckr.report write ...; do not edit by hand) -->"
END = "<!-- tckr.report:end -->"
RUN_FILES = ("config.yaml", "environment.json", "seeds.json")
RESULT_SUFFIXES = (".csv", ".json", ".md")
DETECTED = "AUC interval above 50% and TPR@1% FPR interval above 1%"
# tckr.study.PHASES (the report may not import the runner: layers contract; a test checks they agree)
STUDY_PHASES = ("00_data", "01_captions", "02_lora_finetune", "03_generate", "04_run_evaluate", "05_mia_lira", "06_figures")


class ReportError(ValueError):
    """A result folder lacks what the report needs (the message names the file)."""


def collect(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy a finished run's small result files to ``dest`` (``results/*.csv|json|md``, the config,
    environment and seeds, ``mia/pipelines/stages.csv`` as ``results/pipeline_stages.csv``). Files
    already in ``dest`` are replaced; nothing else there is touched. Returns the files written."""
    run_dir, dest = Path(run_dir), Path(dest)
    res = run_dir / "results"
    if not res.is_dir():
        raise ReportError(f"{res} is missing: {run_dir} is not a run folder (or no phase has finished)")
    pairs = [(run_dir / name, dest / name) for name in RUN_FILES if (run_dir / name).is_file()]
    pairs += [(f, dest / "results" / f.name) for f in sorted(res.iterdir())
              if f.is_file() and f.suffix in RESULT_SUFFIXES and not f.name.startswith(".")]
    stages = run_dir / "mia" / "pipelines" / "stages.csv"
    if stages.is_file():
        pairs.append((stages, dest / "results" / "pipeline_stages.csv"))
    out = []
    for src, dst in pairs:
        with io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        out.append(dst)
    return out


def _read(folder: Path, *parts: str) -> pd.DataFrame:
    f = folder.joinpath(*parts)
    if not f.is_file():
        raise ReportError(f"{f} is missing: collect the run's results first (python -m tckr.report collect RUN {folder})")
    return pd.read_csv(f, keep_default_na=False, na_values=[""])


def wall_time(folder: Path, phases: pd.DataFrame | None = None) -> dict[str, float]:
    """Seconds per phase of the study (its last finished attempt, ``results/phases.csv``, or ``phases`` when the
    caller has read it already) and their total."""
    phases = _read(folder, "results", "phases.csv") if phases is None else phases
    done = phases[phases["status"] == "done"].groupby("phase", sort=False)["seconds"].last()
    return {**{p: float(s) for p, s in done.items()}, "total": float(done.sum())}


def _pct(v, lo=np.nan, hi=np.nan, digits: int = 1) -> str:
    if pd.isna(v):
        return "–"
    s = f"{100 * v:.{digits}f}"
    return s + (f" [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]" if not (pd.isna(lo) or pd.isna(hi)) else "")


def classifier_table(folder: Path) -> str:
    """Teacher vs students: real-test accuracy and the pre-registered headline attack on each (percent)."""
    clf = _read(folder, "results", "classifiers.csv")
    variant = io.read_json(folder / "results" / "headline.json")["attack"]
    heads = ledger.classifier_headlines(folder, variant).set_index("target")
    lines = [f"| model | role | cardinality | labels | test accuracy (%) | {variant} AUC (%) [95% CI] | TPR@1% FPR (%) | shadows |",
             "|---|---|---|---|---|---|---|---|"]
    clf = clf.sort_values(["role", "cardinality"], ascending=[False, True], na_position="first")
    for _, r in clf.iterrows():
        h = heads.loc[r["model"]] if r["model"] in heads.index else None
        card = "–" if pd.isna(r.get("cardinality")) else f"{float(r['cardinality']):g}× |D|"
        lines.append(f"| {r['model']} | {r['role']} | {card} | {r.get('label_mode') or '–'} | {r['test_accuracy']:.2f} | "
                     + (f"{_pct(h['auc'], h['auc_lo'], h['auc_hi'])} | {_pct(h['tpr_at_1pct'])} | {h['shadows']} |"
                        if h is not None else "– | – | – |"))
    return "\n".join(lines) + "\n"


def detections(folder: Path) -> pd.DataFrame:
    """Per headline ledger row: detected (AUC lower bound > 50% and TPR@1% lower bound > 1%)?"""
    t = ledger.headlines(_read(folder, "results", "ledger.csv"))
    t = t.assign(detected=(t["auc_lo"] > 0.5) & (t["tpr_at_1pct_lo"] > 0.01))
    return t


def study_block(folder: str | Path, title: str | None = None) -> str:
    """The Markdown of one study's results."""
    folder = Path(folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else None
    if cfg is None:
        raise ReportError(f"{folder / 'config.yaml'} is missing: collect the run's results first")
    env = io.read_json(folder / "environment.json") if (folder / "environment.json").is_file() else {}
    name = cfg["study"]["name"]
    log = _read(folder, "results", "phases.csv")
    wt = wall_time(folder, log)
    git = env.get("git", {})
    commit = (git.get("commit") or "unknown")[:10] + (" (dirty tree)" if git.get("dirty") else "")
    machine = f"{env.get('cpu_count', '?')} CPU cores, {env.get('torch_threads', '?')} torch threads" + (
        f", GPU {env['gpu']}" if env.get("gpu") else ", no GPU")
    phases = ", ".join(f"{p} {s / 60:.1f}" for p, s in wt.items() if p != "total")
    last = log.groupby("phase", sort=False)["status"].last()
    open_phases = [p for p in STUDY_PHASES if last.get(p) != "done"]
    if open_phases:
        phases += f"; **not finished: {', '.join(open_phases)}** (its time is not counted)"
    seeds = cfg["study"].get("seeds", [0])
    out = [f"### {title or name} (`{folder.as_posix()}`)", "",
           f"Config `{name}` (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, single seed"
           f"{'' if len(seeds) == 1 else 's aggregated elsewhere'}), commit `{commit}`, {machine}. "
           f"Wall time **{wt['total'] / 60:.1f} min** (per phase, min: {phases}).", "",
           classifier_table(folder), ]
    lj = folder / "results" / "ledger.json"
    meta = io.read_json(lj) if lj.is_file() else {}
    det = detections(folder)
    out += [f"Privacy ledger, pre-registered headline per release point (`{meta.get('headline_variant', '?')}` or its "
            f"analogue; {meta.get('n_comparisons', '?')} rows in `results/ledger.csv`, Bonferroni level "
            f"{meta.get('bonferroni_level', float('nan')):.4f}; AUC and TPR in %, 95% bootstrap intervals):", "",
            ledger.markdown(det, headline_only=True).rstrip("\n"), "",
            f"Detected ({DETECTED}): " + (", ".join(
                f"{r['release']}{'' if pd.isna(r['cardinality']) else ' ' + format(float(r['cardinality']), 'g') + '×'}"
                f"{' (hard labels)' if r.get('label_mode') == 'hard' else ''} "
                f"{'**yes**' if r['detected'] else 'no'}" for _, r in det.iterrows()) or "–") + ".", ""]
    return "\n".join(out)


def block(folders: list[str | Path]) -> str:
    """The README's whole results block for these result folders, markers included."""
    if not folders:
        raise ReportError("no result folders given (e.g. results/mini results/mini-leaky)")
    body = "\n".join(study_block(f) for f in folders)
    cmd = "python -m tckr.report write " + " ".join(Path(f).as_posix() for f in folders)
    return f"{BEGIN}\n_Written by `{cmd}` from the committed result files._\n\n{body}{END}"


def update_readme(readme: str | Path, folders: list[str | Path], *, check: bool = False) -> bool:
    """Replace the block between the markers in ``readme``; returns True when it changed (with
    ``check`` nothing is written). An error when the markers are missing."""
    readme = Path(readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ReportError(f"{readme} has no results block: put the two marker lines\n{BEGIN}\n{END}\nwhere it goes")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = head + block(folders) + tail
    if new == text:
        return False
    if not check:
        io.write_text(readme, new)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m tckr.report``: the forms of ``tckr report`` (kept here, not handed to tckr.cli: a report imports
    nothing above it, see the import-linter layers)."""
    ap = argparse.ArgumentParser(prog="python -m tckr.report", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="copy a finished run's result files into a result folder")
    c.add_argument("run_dir")
    c.add_argument("dest")
    for name in ("write", "check"):
        w = sub.add_parser(name, help=("rewrite" if name == "write" else "compare") + " README.md's results block")
        w.add_argument("folders", nargs="+")
        w.add_argument("--readme", default="README.md")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "collect":
            files = collect(a.run_dir, a.dest)
            print(f"{len(files)} files -> {a.dest}")
            return 0
        changed = update_readme(a.readme, a.folders, check=a.cmd == "check")
    except (ReportError, FileNotFoundError) as e:
        print(f"tckr.report: error: {e}", file=sys.stderr)
        return 2
    if a.cmd == "check":
        if changed:
            print(f"{a.readme}: the results block differs from `python -m tckr.report write {' '.join(a.folders)}`",
                  file=sys.stderr)
        return int(changed)
    print(f"{a.readme}: results block {'rewritten' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
