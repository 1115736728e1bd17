"""GKD sanity check on real inputs: a student trained on the real held-out split H, labelled online by
the teacher's softmax (the GKD loss of tckr.train.fit), should come within 2 points of the teacher.

    .venv/bin/python bench/bench_gkd_sanity.py                       # mini tier
    .venv/bin/python bench/bench_gkd_sanity.py --config configs/tiny.yaml

Trains the teacher on D (same recipe as the study), the student on H (|H| = |D|) with the same
recipe and architecture, evaluates both on the real test split and prints the gap in points.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tckr.classification import inference, train
from tckr.runfolder import runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--run-dir", default=None, help="reuse a run folder's teacher (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=0, help="override study.num_threads (0 keeps the config's)")
    args = ap.parse_args()
    ov = {"study.num_threads": args.threads} if args.threads else None
    with tempfile.TemporaryDirectory() as tmp:
        run = runs.open_run(None, args.run_dir) if args.run_dir else runs.open_run(args.config, Path(tmp) / "run", overrides=ov)
        cfg = run.cfg
        torch.set_num_threads(max(cfg.study.num_threads, 1))
        t0, c0 = time.perf_counter(), time.process_time()
        teacher = train.teacher(run, progress=False)
        t_teacher, c_teacher = time.perf_counter() - t0, time.process_time() - c0
        H, val, test = run.real("H"), run.real("val"), run.real("test")
        t0, c0 = time.perf_counter(), time.process_time()
        targets = inference.soft_labels(teacher, H.images, cfg)
        student, hist = train.fit(cfg, cfg.classifier.student_arch, H.images, targets, val.images, val.labels,
                                  seed=run.seed_for(cfg.train.seed) + 1, teacher=teacher, progress=False, desc="gkd-sanity")
        t_student, c_student = time.perf_counter() - t0, time.process_time() - c0

        def acc(m):
            return 100 * float(np.mean(inference.predict_logits(m, test.images, cfg).argmax(1) == test.labels))

        a_t, a_s = acc(teacher), acc(student)
        agree = 100 * float(np.mean(inference.predict_logits(student, test.images, cfg).argmax(1)
                                    == inference.predict_logits(teacher, test.images, cfg).argmax(1)))
    print(f"config={args.config} |D|={cfg.data.train_size} |H|={len(H)} test={len(test)}")
    print(f"teacher test accuracy {a_t:.2f}% ({t_teacher:.0f} s wall, {c_teacher:.0f} CPU-s)  student (GKD on real H) {a_s:.2f}% ({t_student:.0f} s wall, {c_student:.0f} CPU-s)")
    print(f"gap teacher - student = {a_t - a_s:+.2f} points (goal <= 2); student/teacher test agreement {agree:.1f}%")


if __name__ == "__main__":
    main()
