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
    .venv/bin/python bench/student_gap.py --run runs/mini-seeds-5x/seed{0,1,2} --recipes --real-h --out bench/measured/student_gap_real_h.json

With several ``--run`` folders (the seeds of a several-seed run) each recipe's gap is summarised as its mean and 95%
t-interval over them; ``--recipes`` with no name trains only what ``--real-h`` asks for.

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


def _one(run_dir: str, a) -> dict:
    """Every recipe of ``a`` on the run folder ``run_dir``: its teacher's test accuracy and one row per recipe."""
    from tckr.classification import inference, train
    from tckr.core.config import config_from_dict
    from tckr.runfolder import runs, synthetic

    run = runs.open_run(None, run_dir)
    torch.set_num_threads(a.threads)
    teacher = train.teacher(run, progress=False)
    test, val = run.real("test"), run.real("val")

    def accuracy(model, cfg) -> float:
        return 100 * float(np.mean(inference.predict_logits(model, test.images, cfg).argmax(1) == test.labels))

    t_acc = accuracy(teacher, run.cfg)
    synth = synthetic.stream_synthetic(run, a.multiple) if a.recipes else None
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
        print(f"{run_dir}: {name:10s} {source:9s} {len(labels):6d} images  test {acc:6.2f}%  gap {t_acc - acc:+6.2f} "
              f"points  ({rows[-1]['seconds']:.0f} s)")
    print(f"{run_dir}: teacher {t_acc:.2f}%")
    return {"run": str(run.dir), "multiple": a.multiple, "teacher_test_accuracy": t_acc, "recipes": rows}


def _summary(results: list[dict], multiple: float) -> str:
    """The record's line: each recipe's accuracy and gap (one run), or its mean gap with a 95% t-interval (several)."""
    from tckr.privacy import metrics

    what = f"{multiple:g}× |D| synthetic" if any(r["data"] == "synthetic" for r in results[0]["recipes"]) else "no synthetic recipe"
    if len(results) == 1:
        res, rows = results[0], results[0]["recipes"]
        parts = "; ".join(f"{r['recipe']} {r['test_accuracy']:.2f}% ({r['gap_to_teacher']:+.2f})" for r in rows)
        synth = [r for r in rows if r["data"] == "synthetic"]
        best = f"; closest on synthetic data: {min(synth, key=lambda r: r['gap_to_teacher'])['recipe']}" if synth else ""
        return f"{what} against the teacher's {res['teacher_test_accuracy']:.2f}%: {parts} (gap in points, teacher − student){best}"
    parts = []
    for k, row in enumerate(results[0]["recipes"]):
        gaps = np.array([r["recipes"][k]["gap_to_teacher"] for r in results])
        half = metrics.t_halfwidth(gaps)
        parts.append(f"{row['recipe']} ({row['data']}, {row['images']:,} images) gap {gaps.mean():+.2f} points "
                     f"[{gaps.mean() - half:+.2f}, {gaps.mean() + half:+.2f}] (per run {', '.join(f'{g:+.2f}' for g in gaps)})")
    teachers = ", ".join(f"{r['teacher_test_accuracy']:.2f}" for r in results)
    return (f"{len(results)} runs (teachers {teachers}%), teacher − student, mean and 95% t-interval over the runs: "
            + "; ".join(parts))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, nargs="+", help="finished run folder(s) (teacher and synthetic set present); "
                    "several (e.g. the seeds of a several-seed run) give each recipe's mean gap over them")
    ap.add_argument("--multiple", type=float, default=1.0, help="the synthetic set's cardinality (× |D|)")
    ap.add_argument("--recipes", nargs="*", default=[r for r in RECIPES if r != "epochs x4"], choices=list(RECIPES),
                    help="the synthetic-data recipes (none: only --real-h)")
    ap.add_argument("--real-h", action="store_true", help="also train on real H with the teacher's labels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = ap.parse_args(argv)
    if not a.recipes and not a.real_h:
        ap.error("nothing to train: give --recipes or --real-h")
    from tckr.core import io

    results = [_one(r, a) for r in a.run]
    result = results[0] if len(results) == 1 else {"runs": results, "multiple": a.multiple}
    if a.out:
        from tckr.reporting import report

        result["record"] = report.bench_record(argv=None if argv is None else [__file__, *argv],
                                               summary=_summary(results, a.multiple))
        io.write_json(a.out, result)
        print(f"wrote {a.out}")
    return result


if __name__ == "__main__":
    main()
