"""What closes the gap between a student and its teacher? Student recipes side by side on one run's synthetic set.

On a finished run (teacher trained, synthetic set of ``--multiple`` × |D| generated; e.g. one seed of
``results/mini-earlier-base-seeds``), trains the GKD student of that cardinality under each recipe below, in one process and on
the same threads, and reports each one's real-test accuracy and its gap to the run's teacher:

- ``run``: the run's own student recipe (``train.*``, ``gkd.*``): the reference; it should match the run's student;
- ``epochs x2``, ``epochs x4``: twice, four times the epochs, run to the end (``train.patience: 0``; the run's
  students still improve at their last epoch, and early stopping would cut a longer cosine schedule while its
  learning rate is still high);
- ``T=4``: GKD temperature 4 (softer teacher targets);
- ``crop``: random-crop augmentation of the synthetic images (``train.crop_padding: 0.125``);
- ``real H`` (with ``--real-h``): the same recipe on real held-out images labelled by the teacher, the ceiling of
  GKD at this size (what ``bench_gkd_sanity.py`` measures).

    .venv/bin/python bench/student_gap.py --run runs/mini-seeds/seed0 --multiple 1 --real-h --out bench/measured/student_gap.json

Students are trained in memory and not saved (the run's own classifiers are not touched).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

RECIPES = {"run": {}, "epochs x2": {"train.epochs": "x2", "train.patience": 0}, "epochs x4": {"train.epochs": "x4", "train.patience": 0},
           "T=4": {"gkd.temperature": 4.0},
           "crop": {"train.crop_padding": 0.125}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished run folder (teacher and synthetic set present)")
    ap.add_argument("--multiple", type=float, default=1.0, help="the synthetic set's cardinality (× |D|)")
    ap.add_argument("--recipes", nargs="+", default=[r for r in RECIPES if r != "epochs x4"], choices=list(RECIPES))
    ap.add_argument("--real-h", action="store_true", help="also train on real H with the teacher's labels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    from tckr.classification import inference, train
    from tckr.core import io
    from tckr.core.config import config_from_dict
    from tckr.runfolder import runs, synthetic

    run = runs.open_run(None, a.run)
    torch.set_num_threads(a.threads)
    teacher = train.teacher(run, progress=False)
    test, val = run.real("test"), run.real("val")

    def accuracy(model, cfg) -> float:
        return 100 * float(np.mean(inference.predict_logits(model, test.images, cfg).argmax(1) == test.labels))

    t_acc = accuracy(teacher, run.cfg)
    synth = synthetic.stream_synthetic(run, a.multiple)
    rows = []
    jobs = [(name, RECIPES[name], "synthetic") for name in a.recipes] + ([("real H", {}, "real H")] if a.real_h else [])
    for name, over, source in jobs:
        over = {k: (int(v[1:]) * run.cfg.train.epochs if isinstance(v, str) and v.startswith("x") else v) for k, v in over.items()}
        cfg = config_from_dict(run.cfg.to_dict(), over) if over else run.cfg
        if source == "real H":
            H = run.real("H")
            images, labels = H.images, H.labels
        else:
            images, labels = synth.images, synth.labels
        start = time.perf_counter()
        model, hist = train.fit(cfg, cfg.classifier.student_arch, images, labels, val.images, val.labels,
                                seed=run.seed_for(cfg.train.seed), progress=False, desc=name, teacher=teacher,
                                num_classes=len(run.class_names))
        torch.set_num_threads(a.threads)
        acc = accuracy(model, cfg)
        rows.append({"recipe": name, "data": source, "overrides": over, "images": int(len(labels)),
                     "epochs": int(cfg.train.epochs), "test_accuracy": acc, "gap_to_teacher": t_acc - acc,
                     "best_epoch": int(model.info.get("best_epoch", -1)), "epochs_run": int(len(hist)),
                     "seconds": time.perf_counter() - start})
        print(f"{name:10s} {source:9s} {len(labels):6d} images  test {acc:6.2f}%  gap {t_acc - acc:+6.2f} points  "
              f"({rows[-1]['seconds']:.0f} s)")
    result = {"run": str(run.dir), "multiple": a.multiple, "teacher_test_accuracy": t_acc, "recipes": rows}
    print(f"teacher {t_acc:.2f}%")
    if a.out:
        from tckr.reporting import report

        best = min((r for r in rows if r["data"] == "synthetic"), key=lambda r: r["gap_to_teacher"])
        parts = "; ".join(f"{r['recipe']} {r['test_accuracy']:.2f}% ({r['gap_to_teacher']:+.2f})" for r in rows)
        result["record"] = report.bench_record(argv=None if argv is None else [__file__, *argv], summary=
            f"{a.multiple:g}× |D| synthetic ({synth.labels.shape[0]:,} images) against the teacher's {t_acc:.2f}%: "
            f"{parts} (gap in points, teacher − student); closest on synthetic data: {best['recipe']}")
        io.write_json(a.out, result)
        print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
