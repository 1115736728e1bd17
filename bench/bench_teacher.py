"""Mini-tier teacher: test accuracy against training time for a few MobileNetV3 variants and recipes.

    .venv/bin/python bench/bench_teacher.py --arch mobilenetv3_small_050 --epochs 15
    .venv/bin/python bench/bench_teacher.py --grid          # the variants measured for configs/mini.yaml

Each line trains a teacher with ``tckr.train.fit`` on the mini config's D (validation on ``val``,
best epoch on validation), then prints its accuracy on the real test split and the training time.
Rows are appended to bench/results/teacher_tradeoff.csv. ``fit_cpu_seconds`` (process CPU time, all
threads) is the figure to compare on a shared machine: wall time there depends on other jobs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tckr.classification import inference, train
from tckr.runfolder import runs

GRID = [  # (arch, epochs, overrides): the trade-off measured for configs/mini.yaml (closing note of issue 3)
    ("mobilenetv3_small_050", 15, {"data.train_size": 2000, "train.batch_size": 64, "train.lr": 2e-3, "train.crop_padding": 0.1}),
    ("mobilenetv3_small_050", 30, {"data.train_size": 2000, "train.batch_size": 64, "train.lr": 5e-3, "train.crop_padding": 0.1}),
    ("mobilenetv3_small_100", 8, {"data.train_size": 5000, "train.batch_size": 128, "train.lr": 5e-3, "train.crop_padding": 0.1}),
    ("mobilenetv3_small_050", 8, {"data.train_size": 10000, "train.batch_size": 128, "train.lr": 5e-3, "train.crop_padding": 0.1}),
    ("mobilenetv3_small_050", 8, {"data.train_size": 10000, "train.batch_size": 128, "train.lr": 5e-3, "train.crop_padding": 0.0}),
]


def measure(config: str, arch: str, epochs: int, overrides: dict) -> dict:
    ov = {"classifier.teacher_arch": arch, "train.epochs": epochs, **overrides}
    with tempfile.TemporaryDirectory() as tmp:
        run = runs.open_run(config, Path(tmp) / "run", overrides=ov)
        cfg = run.cfg
        torch.set_num_threads(max(cfg.study.num_threads, 1))
        D, val, test = run.real("D"), run.real("val"), run.real("test")
        t0, c0 = time.perf_counter(), time.process_time()
        model, hist = train.fit(cfg, arch, D.images, D.labels, val.images, val.labels, seed=cfg.train.seed, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        acc = 100 * float(np.mean(inference.predict_logits(model, test.images, cfg).argmax(1) == test.labels))
    row = {"arch": arch, "epochs": epochs, "train_size": len(D), "overrides": json.dumps(overrides, sort_keys=True),
           "epochs_run": len(hist), "best_epoch": int(hist.loc[hist.val_accuracy.idxmax(), "epoch"]),
           "val_accuracy": float(hist.val_accuracy.max()), "test_accuracy": acc,
           "train_seconds": float(hist.seconds.sum()), "fit_wall_seconds": wall, "fit_cpu_seconds": cpu,
           "images_per_second": float(hist.images_per_second.median()), "threads": torch.get_num_threads()}
    print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(__file__).parent / "results" / "teacher_tradeoff.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(out, mode="a", header=not out.is_file(), index=False)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides key=value (YAML values), e.g. train.lr=3e-3")
    args = ap.parse_args()
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.grid:
        for arch, epochs, ov in GRID:
            measure(args.config, arch, epochs, {**ov, **overrides})
    else:
        from tckr.core.config import load_config

        cfg = load_config(args.config)
        measure(args.config, args.arch or cfg.classifier.teacher_arch, args.epochs or cfg.train.epochs, overrides)


if __name__ == "__main__":
    main()
