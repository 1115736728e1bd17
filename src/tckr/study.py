"""The whole study headless: every phase notebook, in order, on one config.

    python -m tckr.study configs/mini.yaml [--run-dir runs/<id>] [--force] [--phases 03_generate,04_run_evaluate]

Executed notebooks go to ``<run>/notebooks/``; finished phases are skipped unless ``--force``;
per-phase wall times go to ``<run>/results/phases.csv``. With several ``study.seeds`` each seed runs
in ``<run>/seed<k>/`` and ``<run>/results/`` gets the mean ± 95% CI table over seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import io, paths, provenance, runs
from .config import load_config
from .notebook import execute_notebook

PHASES = ("00_data", "01_captions", "02_lora_finetune", "03_generate", "04_run_evaluate", "05_mia_lira", "06_figures")


class PhaseFailed(RuntimeError):
    """A phase notebook raised; the message names the phase and its executed notebook."""


def _done_marker(run_dir: Path, phase: str) -> Path:
    return run_dir / "notebooks" / f".{phase}.done.json"


def run_phases(run: runs.Run, phases: tuple[str, ...] = PHASES, force: bool = False, log=print) -> list[dict]:
    """Execute ``phases`` on an open run; returns one record per phase (phase, status, seconds)."""
    records = []
    config_file = str(run.dir / runs.CONFIG_FILE)
    for i, phase in enumerate(phases, 1):
        marker = _done_marker(run.dir, phase)
        head = f"[{i}/{len(phases)}] {phase:<18}"
        if marker.is_file() and not force:
            rec = {**io.read_json(marker), "status": "skipped (done)"}
            log(f"{head} skipped: finished earlier in {rec['seconds']:.1f} s (--force redoes it)")
            records.append(rec)
            continue
        log(f"{head} running ...")
        start = time.perf_counter()
        out = run.dir / "notebooks" / f"{phase}.ipynb"
        try:
            execute_notebook(phase, run.dir, {"config": config_file}, output=out)
        except Exception as e:  # papermill wraps the cell's error; report it with the notebook's path
            seconds = time.perf_counter() - start
            what = getattr(e, "ename", type(e).__name__)
            detail = getattr(e, "evalue", str(e))
            records.append({"phase": phase, "status": "failed", "seconds": round(seconds, 1)})
            _write_phases(run, records)
            raise PhaseFailed(f"phase {phase} failed after {seconds:.1f} s: {what}: {detail}\n"
                              f"executed notebook (open it to see the failing cell): {out}") from None
        seconds = time.perf_counter() - start
        rec = {"phase": phase, "status": "done", "seconds": round(seconds, 1)}
        io.write_json(marker, rec)
        records.append(rec)
        _write_phases(run, records)
        log(f"{head} done in {seconds:.1f} s")
    return records


def _write_phases(run: runs.Run, records: list[dict]) -> None:
    import pandas as pd

    io.save_csv(run.path("results", "phases.csv"), pd.DataFrame(records))


def run_study(config: str | Path, run_dir: str | Path | None = None, *, phases: tuple[str, ...] = PHASES,
              force: bool = False, seeds: list[int] | None = None, log=print) -> Path:
    """Run the study for every seed of the config; return the run folder."""
    overrides = {"study.seeds": list(seeds)} if seeds else None
    cfg = load_config(config, overrides)
    root = paths.resolve(run_dir) if run_dir else paths.RUNS / runs.new_run_id(cfg)
    seeds = cfg.study.seeds
    total = time.perf_counter()
    log(f"study {cfg.study.name} ({cfg.study.dataset}, {cfg.study.tier} tier) -> {root}")
    for seed in seeds:
        folder = root if len(seeds) == 1 else root / f"seed{seed}"
        run = runs.open_run(cfg, folder, seed=seed)
        provenance.check_disjoint(run)
        if len(seeds) > 1:
            log(f"== seed {seed}: {folder}")
        run_phases(run, phases, force=force, log=log)
    if len(seeds) > 1:
        runs.open_run(cfg, root, seed=seeds[0])
        from . import plots

        plots.aggregate_seeds(root, [root / f"seed{s}" for s in seeds])
    log(f"study finished in {time.perf_counter() - total:.1f} s: {root}")
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tckr.study", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="study config, e.g. configs/mini.yaml")
    ap.add_argument("--run-dir", help="run folder (default runs/<name>-<time>); an existing one is resumed")
    ap.add_argument("--force", action="store_true", help="redo phases that finished before")
    ap.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)}")
    ap.add_argument("--seeds", type=int, nargs="+", help="override study.seeds")
    args = ap.parse_args(argv)
    phases = PHASES
    if args.phases:
        phases = tuple(p.strip() for p in args.phases.split(","))
        bad = [p for p in phases if p not in PHASES]
        if bad:
            ap.error(f"unknown phase(s) {bad}; accepted: {', '.join(PHASES)}")
    try:
        run_study(args.config, args.run_dir, phases=phases, force=args.force, seeds=args.seeds,
                  log=lambda m: print(m, flush=True))
    except (PhaseFailed, provenance.DataLeakError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
