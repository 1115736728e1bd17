"""Classifier shadows and shadow pipelines in ``study.workers`` one-thread processes against the code before, side by side.

Runs the same work twice, one after the other, on this machine: the code of ``--before`` (a checkout of the commit
before ``study.workers`` existed: one process, ``study.num_threads`` threads) and this checkout's code with
``study.workers`` processes of ``num_threads / workers`` threads. Each variant gets a fresh scratch run of
``--config`` with ``--models`` classifier shadows and as many shadow pipelines (each pipeline's teacher is its
shadow, as in the study), captions first, then times :func:`tckr.privacy.mia.train_shadows` and
:func:`tckr.privacy.pipelines.train_pipelines` as wholes, and reports the two speed-ups and the cost of one shadow
pipeline (its shadow teacher + its own stages). The shadows' validation accuracies are printed beside the times:
the thread count changes the reduction order, so the two variants' models differ within the seed spread, not bit
for bit. Make the before-checkout with ``git worktree add /tmp/before <commit>``.

    python bench/bench_workers.py --before /tmp/before --config configs/mini.yaml --models 2 --out bench/measured/workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(config: str, folder: str, models: int, workers: int) -> dict:
    """One variant, in this process (the code on ``sys.path`` decides which): shadows, then pipelines, timed."""
    import pandas as pd

    from tckr.generation import captions
    from tckr.privacy import mia, pipelines
    from tckr.runfolder import runs

    overrides = {"mia.n_shadows": models, "mia.n_pipelines": models}
    if workers > 1:
        overrides["study.workers"] = workers
    run = runs.open_run(config, folder, overrides=overrides)
    captions.caption_run(run, progress=False)
    pipelines.pool_captions(run, progress=False)
    t0 = time.perf_counter()
    mia.train_shadows(run, progress=False)
    shadows_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipelines.train_pipelines(run, progress=False)
    pipelines_s = time.perf_counter() - t0
    acc = [float(pd.read_csv(run.dir / "mia" / "shadows" / f"{mia.shadow_name(i)}_history.csv")["val_accuracy"].max())
           for i in range(models)]
    stages = pipelines.load_stages(run)
    return {"shadows_s": shadows_s, "pipelines_s": pipelines_s, "shadow_val_accuracy": acc,
            "stage_seconds": stages.groupby("stage")["seconds"].sum().round(1).to_dict()}


def variant(src: Path, config: str, models: int, workers: int) -> dict:
    """Run :func:`measure` in a fresh interpreter whose ``tckr`` is ``src``'s."""
    with tempfile.TemporaryDirectory(prefix="tckr-workers-") as tmp:
        code = (f"import json, sys; sys.path.insert(0, {str(src)!r}); sys.path.insert(1, {str(ROOT / 'bench')!r}); "
                f"import bench_workers as b; print('RESULT', json.dumps(b.measure({config!r}, {tmp + '/run'!r}, {models}, {workers})))")
        env = {**os.environ, "PYTHONPATH": str(src)}
        out = subprocess.run([sys.executable, "-c", code], cwd=src.parent, env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"the variant with {src} failed:\n{out.stderr[-3000:]}")
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="a checkout of the commit before study.workers")
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--models", type=int, default=2, help="classifier shadows and shadow pipelines per variant (even)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    before = Path(args.before).resolve()
    if not (before / "src" / "tckr").is_dir():
        raise SystemExit(f"--before {before}: no src/tckr there; make it with `git worktree add {before} <commit>`")
    commit = subprocess.run(["git", "-C", str(before), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    load0 = os.getloadavg()
    old = variant(before / "src", args.config, args.models, 1)
    new = variant(ROOT / "src", args.config, args.models, args.workers)
    load1 = os.getloadavg()
    per_old = (old["shadows_s"] + old["pipelines_s"]) / args.models
    per_new = (new["shadows_s"] + new["pipelines_s"]) / args.models
    result = {"config": args.config, "models": args.models, "workers": args.workers, "before_commit": commit,
              "before": old, "after": new, "speedup_shadows": old["shadows_s"] / new["shadows_s"],
              "speedup_pipelines": old["pipelines_s"] / new["pipelines_s"],
              "pipeline_cost_before_s": per_old, "pipeline_cost_after_s": per_new, "speedup_pipeline": per_old / per_new,
              "loadavg_before": load0, "loadavg_after": load1}
    print(f"load average {load0[0]:.2f} before, {load1[0]:.2f} after")
    print(f"classifier shadows ({args.models}): {old['shadows_s']:.0f} s before ({commit}) → {new['shadows_s']:.0f} s with "
          f"{args.workers} workers: {result['speedup_shadows']:.2f}×; val accuracy {old['shadow_val_accuracy']} → {new['shadow_val_accuracy']}")
    print(f"shadow pipelines ({args.models}, teachers reused): {old['pipelines_s']:.0f} s → {new['pipelines_s']:.0f} s: "
          f"{result['speedup_pipelines']:.2f}×")
    print(f"one shadow pipeline with its teacher: {per_old:.0f} s → {per_new:.0f} s: {result['speedup_pipeline']:.2f}×")
    if args.out:
        sys.path.insert(0, str(ROOT / "src"))
        from tckr.core import io
        from tckr.reporting import report

        result["record"] = report.bench_record(
            f"{args.models} classifier shadows + {args.models} shadow pipelines of {args.config}: one process × "
            f"threads ({commit}) against {args.workers} one-thread processes: shadows {result['speedup_shadows']:.2f}×, "
            f"pipelines {result['speedup_pipelines']:.2f}×, one pipeline with its teacher {per_old:.0f} s → {per_new:.0f} s "
            f"({result['speedup_pipeline']:.2f}×) (load average {load0[0]:.2f})")
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
