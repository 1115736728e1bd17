"""One classifier training step in each setting the speed work tried, side by side in one process.

The mini tier's classifier (``classifier.student_arch`` at ``classifier.input_size``, ``train.batch_size`` images,
``--threads`` torch threads: one, as each of the study's workers runs) trained for ``--steps`` steps after a warm-up in
each variant, one after the other, and its median step time against the study's own setting (channels-last, oneDNN,
float32, the resolved stem stride):

- ``channels-first``: the model and the batches in the default NCHW layout;
- ``no oneDNN``: ``torch.backends.mkldnn.enabled = False`` (PyTorch's own convolution kernels);
- ``oneDNN bf16 maths``: float32 tensors, oneDNN's convolutions and matmuls in bfloat16 inside
  (``torch.backends.mkldnn.{conv,matmul}.fp32_precision = "bf16"``);
- ``stem stride 2``: ``classifier.stem_stride: 2`` (the feature maps a quarter the size: a recipe change);
- ``GKD, teacher forward``: a student step that also runs its teacher on the batch, as every step did before
  ``loop.teacher_views``;
- ``torch.compile`` (with ``--compile``): the step compiled by inductor; its compile time is reported apart.

    python bench/classifier_step.py --compile --out bench/measured/classifier_step.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F


@contextmanager
def backend(mkldnn: bool = True, precision: str = "ieee"):
    """oneDNN on or off and its float32 maths precision, restored afterwards."""
    old = (torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision,
           torch.backends.mkldnn.matmul.fp32_precision)
    torch.backends.mkldnn.enabled = mkldnn
    torch.backends.mkldnn.conv.fp32_precision = precision
    torch.backends.mkldnn.matmul.fp32_precision = precision
    try:
        yield
    finally:
        (torch.backends.mkldnn.enabled, torch.backends.mkldnn.conv.fp32_precision,
         torch.backends.mkldnn.matmul.fp32_precision) = old


def step_seconds(cfg, *, fmt=torch.channels_last, stem_stride: int | None = None, teacher: bool = False,
                 compiled: bool = False, steps: int = 15) -> dict:
    """Median seconds of one training step (forward, soft cross-entropy, backward, AdamW) in one setting."""
    from tckr.classification import classifiers

    torch.manual_seed(0)
    stem = cfg.classifier.stem_stride if stem_stride is None else stem_stride
    make = lambda: classifiers.build(cfg.classifier.student_arch, 10, pretrained=False,  # noqa: E731
                                     input_size=cfg.classifier.input_size, stem_stride=stem).to(memory_format=fmt)
    model, frozen = make(), make().eval()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    size = cfg.classifier.input_size
    x = torch.randn(cfg.train.batch_size, 3, size, size).contiguous(memory_format=fmt)
    uniform = torch.full((len(x), 10), 0.1)

    def one(m, t, xb):
        if t is not None:
            with torch.no_grad():
                target = F.softmax(t(xb), 1)
        else:
            target = uniform
        loss = -(target * F.log_softmax(m(xb), 1)).sum(1).mean()
        loss.backward()
        return loss

    run = torch.compile(one) if compiled else one
    t0 = time.perf_counter()
    for _ in range(3):
        run(model, frozen if teacher else None, x)
        opt.step()
        opt.zero_grad(set_to_none=True)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run(model, frozen if teacher else None, x)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "all_s": times, "warm_up_s": warm}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from tckr.core import config, io

    cfg = config.load_config(args.config)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    variants = {"the study's (channels-last, oneDNN, float32)": {}, "channels-first": {"fmt": torch.contiguous_format},
                "no oneDNN": {"mkldnn": False, "steps": 3}, "oneDNN bf16 maths": {"precision": "bf16"},
                "stem stride 2": {"stem_stride": 2}, "GKD, teacher forward": {"teacher": True}}
    if args.compile:
        variants["torch.compile"] = {"compiled": True}
    rows = []
    for name, v in variants.items():
        v = dict(v)
        with backend(v.pop("mkldnn", True), v.pop("precision", "ieee")):
            r = step_seconds(cfg, steps=v.pop("steps", args.steps), **v)
        rows.append({"variant": name, **r})
        print(f"{name:44s} {1e3 * r['median_s']:8.1f} ms a step (warm-up {r['warm_up_s']:.1f} s)", flush=True)
    base = rows[0]["median_s"]
    for r in rows:
        r["speedup"] = base / r["median_s"]
    result = {"config": args.config, "threads": args.threads, "batch": cfg.train.batch_size, "arch": cfg.classifier.student_arch,
              "variants": rows, "loadavg_before": load0, "loadavg_after": os.getloadavg()}
    if args.out:
        from tckr.reporting import report

        parts = "; ".join(f"{r['variant']} {1e3 * r['median_s']:.0f} ms ({r['speedup']:.2f}×)" for r in rows)
        compiled = next((r for r in rows if r["variant"] == "torch.compile"), None)
        result["record"] = report.bench_record(
            f"{cfg.classifier.student_arch} training step, batch {cfg.train.batch_size}, {args.threads} thread(s): {parts}"
            + (f"; torch.compile's warm-up {compiled['warm_up_s']:.0f} s" if compiled else ""))
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
