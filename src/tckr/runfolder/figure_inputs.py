"""Which result files each figure of :mod:`tckr.reporting.plots` is drawn from, and the phase that writes them, so
that asking for figures of an unfinished run (stopped after ``00_data``, say) is one line naming what is missing and
which phase makes it, not an error from deep inside a plot (``max() arg is an empty sequence``)."""

from __future__ import annotations

from pathlib import Path

from tckr.runfolder import artifacts

# result file (relative to the run folder; "*" globs) -> the phase notebook that writes it
MADE_BY = {
    "synthetic/manifest.json": "03_generate",
    "results/classifiers.csv": "04_run_evaluate",
    "classifiers/*_history.csv": "04_run_evaluate",
    "results/ablation.csv": "04_run_evaluate",
    "results/mia.csv": "05_mia_lira",
    "results/ledger.csv": "08_audit_ledger",
    "results/audit.csv": "05_mia_lira",
    "results/audit_summary.csv": "05_mia_lira",
}

# figure (a name of tckr.reporting.plots.FIGURES) -> the files of MADE_BY it reads
FIGURE_INPUTS = {
    "table": ("results/classifiers.csv", "results/mia.csv"),
    "cardinality": ("results/classifiers.csv", "results/mia.csv"),
    "roc": ("results/mia.csv", "results/ledger.csv"),
    "ledger": ("results/ledger.csv",),
    "ledger_headline": ("results/ledger.csv",),
    "privacy_utility": ("results/classifiers.csv", "results/ledger.csv"),
    "samples": ("synthetic/manifest.json",),
    "ablation": ("results/ablation.csv",),
    "audit": ("results/audit.csv", "results/audit_summary.csv"),
    "curves": ("classifiers/*_history.csv",),
}


def missing_inputs(run_dir, which: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """Per figure of ``which`` whose inputs are not all in the run folder, the missing files (figures not in
    :data:`FIGURE_INPUTS` are not checked)."""
    folder = artifacts.run_folder(run_dir)
    out = {}
    for figure in which:
        gone = [f for f in FIGURE_INPUTS.get(figure, ()) if not _present(folder, f)]
        if gone:
            out[figure] = gone
    return out


def _present(folder: Path, pattern: str) -> bool:
    if "*" in pattern:
        return any(not p.name.startswith(".") for p in folder.glob(pattern))
    return (folder / pattern).is_file()


def check(run_dir, which: tuple[str, ...] | list[str]) -> None:
    """A one-line :class:`FileNotFoundError` naming, per missing result file, the figures that need it and the
    phase that writes it, when any figure of ``which`` cannot be drawn yet."""
    missing = missing_inputs(run_dir, which)
    if not missing:
        return
    files = sorted({f for fs in missing.values() for f in fs}, key=lambda f: (MADE_BY[f], f))
    parts = [f"{f} (phase {MADE_BY[f]}; for {', '.join(g for g, fs in missing.items() if f in fs)})" for f in files]
    phases = sorted({MADE_BY[f] for f in files})
    raise FileNotFoundError(f"{artifacts.run_folder(run_dir)} lacks the results of figure(s) {', '.join(missing)}: "
                            f"{'; '.join(parts)}; run phase(s) {', '.join(phases)} first (tckr study --run-dir RUN, "
                            "or their notebooks), or draw only the others with --only")
