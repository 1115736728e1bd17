"""The teacher trained to its validation plateau: the mini teacher's recipe with a larger epoch budget and the
config's early stopping, against the committed budget, on the same split and seed.

    python bench/teacher_plateau.py --config configs/mini.yaml --epochs 8 30 --out bench/measured/teacher_plateau.json

For each budget: the epochs run (``train.patience`` stops early), the best validation epoch (``train.keep: best``), whether
it lies in the last fifth of the epochs run (then the teacher had not reached its plateau), and the real-test accuracy.
The learning-rate schedule is cosine over the budget, so a larger budget is a different schedule, not only more epochs.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 30])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run", default="runs/teacher-plateau", help="scratch run folder (its splits and data caches)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    from tckr.classification import evaluate, train
    from tckr.core import io
    from tckr.runfolder import runs

    rows = []
    load0 = os.getloadavg()
    for epochs in a.epochs:
        run = runs.open_run(a.config, f"{a.run}-e{epochs}", overrides={"train.epochs": epochs, "study.num_threads": a.threads})
        torch.set_num_threads(a.threads)
        t0, c0 = time.perf_counter(), time.process_time()
        teacher = train.teacher(run)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        test = evaluate.evaluate(run, teacher)
        info = teacher.info
        last_fifth = info["best_epoch"] > info["epochs_run"] - max(1, info["epochs_run"] // 5)
        rows.append({"epochs_budget": epochs, "patience": run.cfg.train.patience, "epochs_run": info["epochs_run"],
                     "best_epoch": info["best_epoch"], "best_in_last_fifth": bool(last_fifth),
                     "val_accuracy": info["val_accuracy"], "test_accuracy": float(test["test_accuracy"]),
                     "wall_s": wall, "cpu_s": cpu})
        print(rows[-1], flush=True)
    result = {"config": a.config, "threads": a.threads, "rows": rows, "loadavg_before": load0, "loadavg_after": os.getloadavg()}
    if a.out:
        from tckr.reporting import report

        result["record"] = report.bench_record(
            f"{a.config} teacher, patience {rows[0]['patience']}: " + "; ".join(
                f"budget {r['epochs_budget']} epochs: ran {r['epochs_run']}, best epoch {r['best_epoch']}"
                f"{' (in the last fifth)' if r['best_in_last_fifth'] else ''}, test {r['test_accuracy']:.2f}%"
                for r in rows) + f" (load average {load0[0]:.2f})")
        io.write_json(a.out, result)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
