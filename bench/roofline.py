"""A roofline of the study: every stage's FLOPs, time and fraction of this machine's measured float32 peak.

    .venv/bin/python bench/roofline.py --out bench/measured/roofline.json
    .venv/bin/python bench/roofline.py --threads 1 --processes 2 --out bench/measured/roofline_workers.json
    .venv/bin/python bench/roofline.py --dtype bfloat16 --out bench/measured/roofline_bf16.json
    .venv/bin/python bench/roofline.py --repeats 2 --lira-examples 1000   # plumbing only

``--dtype bfloat16`` measures what bfloat16 would buy on a CPU with bf16 instructions (AVX512-BF16, AMX): the peak's
matmul and convolution in bfloat16, the UNet forwards (synthesis, generator attack) with bfloat16 weights as
``generator.dtype: bfloat16`` loads them, and the LoRA, classifier and query stages under CPU autocast to bfloat16
(float32 weights and optimiser, as ``lora.mixed_precision: bf16`` trains). Without such instructions bfloat16 is
emulated and many times slower.

With ``--processes N`` every stage runs in N spawned processes of ``--threads`` threads at once, in step (a barrier
before each stage), as the study's ``study.workers`` processes train independent models: the FLOP/s and items/s of
the N processes add up, against the peak of one process with all N × threads threads.

The peak is measured, not quoted: the best of ``--peak-repeats`` runs of a 2048×2048 float32 matmul and of a dense
3×3 convolution at a MobileNet-like shape (64 → 64 channels, 32×32, batch 64), at ``--threads`` torch threads (the
study's ``study.num_threads``: 2). Then each stage of ``--config`` (``configs/mini.yaml``) on the committed tiny
base (``models/tiny-sd-fashion``), float32 on the CPU:

- synthesis: one UNet forward of a synthesis batch (``synthesis.batch_size`` images, ×2 rows for classifier-free
  guidance above 1, as diffusers' pipeline does);
- lora step: ``lora.denoising_loss`` forward and backward of the UNet with its LoRA, and the AdamW step, at
  ``lora.batch_size`` (the VAE and text encoder, which run without gradients, are left out: latents and prompt
  embeddings are precomputed);
- teacher / student step: ``loop.train_step`` (augmentation, forward, backward, AdamW, schedule) of
  ``classifier.teacher_arch`` / ``student_arch`` at ``train.batch_size``; the student's GKD targets are its teacher's
  outputs, computed once before the steps (``loop.teacher_views``, when the augmentation is at most a flip, as in the
  mini configs) or by a teacher forward in the step (otherwise);
- query pass: ``inference.predict_logits`` of ``--query-batch`` images in one batch;
- generator attack: one UNet forward of ``generator_mia.ATTACK_BATCH`` examples (×2 rows: prompt and null);
- LiRA: ``attacks.lira_from_stable`` on ``--lira-shadows`` × ``--lira-examples`` × 2 queries. It is numpy
  (means, variances and normal log-densities, no matmul), so it gets no FLOP count: its row reports time and
  examples/s.

FLOPs are what ``torch.utils.flop_counter.FlopCounterMode`` counts in one pass: matmuls, convolutions and attention
(forward and backward), 2 FLOPs per multiply-add; element-wise work (normalisation, activations, AdamW) is not
counted, so a stage dominated by it shows a low fraction of peak although it keeps the cores busy. Time is the
median of ``--repeats`` runs after one warm-up. The machine's load average is printed and stored: other processes
on the same cores lower every number alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PRECISION = {"dtype": torch.float32}  # set once from --dtype (in every process) before anything is built


def _autocast():
    """CPU autocast to bfloat16 under ``--dtype bfloat16``; a no-op context under float32."""
    dtype = PRECISION["dtype"]
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


def _in_precision(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with _autocast():
            return fn()
    return run


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """A convolution's backward: its forward's FLOPs once for the input gradient and once for the weight gradient.

    torch 2.14's own formula counts the weight gradient of a grouped convolution as if it were dense, ``groups``
    times too many: a depthwise 3×3 conv of 16 channels counted 17× its forward for the backward instead of 2×, and
    mobilenetv3_small_050's training step 12.9 GFLOP instead of 1.6 (pytorch/pytorch#183405 divides that
    term by ``groups``). The weight shape already holds ``c_in / groups``, so the forward count is right."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn: Callable[[], object]) -> int:
    """The FLOPs ``FlopCounterMode`` counts in one call of ``fn`` (2 per multiply-add; matmul, conv, attention),
    with :func:`conv_backward_flops` for convolutions' backward."""
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
        fn()
    return int(counter.get_total_flops())


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def stage_row(stage: str, detail: str, flops: int | None, seconds: list[float], peak_gflops: float,
              items: int | None = None) -> dict:
    """One row of the table: median seconds, achieved GFLOP/s and its fraction of ``peak_gflops`` (None without a
    FLOP count), and ``items``/s when given."""
    median = statistics.median(seconds)
    gflops = None if flops is None else flops / median / 1e9
    return {"stage": stage, "detail": detail, "gflop": None if flops is None else flops / 1e9, "median_s": median,
            "all_s": seconds, "gflops": gflops, "fraction_of_peak": None if gflops is None else gflops / peak_gflops,
            "items": items, "items_per_s": None if items is None else items / median}


def peak(repeats: int, n: int = 2048) -> dict:
    """Best-of-``repeats`` GFLOP/s of an ``n``×``n`` matmul and of a dense 3×3 convolution, in ``--dtype``."""
    g, dtype = torch.Generator().manual_seed(0), PRECISION["dtype"]
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    x = torch.randn(64, 64, 32, 32, generator=g).to(dtype)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(dtype)
    out = {}
    with torch.inference_mode():
        for name, fn, shape in [("matmul", lambda: a @ b, f"{n}×{n} @ {n}×{n}"),
                                ("conv3x3", lambda: conv(x), "3×3 conv, 64→64 channels, 32×32, batch 64")]:
            flops = count_flops(fn)
            best = min(timings(fn, repeats))
            out[name] = {"shape": shape, "gflop": flops / 1e9, "best_s": best, "gflops": flops / best / 1e9}
    return out


def _unet_forward(pipe, rows: int, prompt_emb: torch.Tensor) -> Callable[[], object]:
    unet = pipe.unet
    c, size = unet.config.in_channels, unet.config.sample_size
    x = torch.randn(rows, c, size, size, generator=torch.Generator().manual_seed(0)).to(unet.dtype)
    t = torch.full((rows,), 500, dtype=torch.long)
    emb = prompt_emb.to(unet.dtype).expand(rows, -1, -1)

    def run():
        with torch.inference_mode():
            return unet(x, t, encoder_hidden_states=emb).sample
    return run


def _lora_step(base: str, cfg) -> Callable[[], object]:
    from tckr.generation import generator, lora
    from tckr.privacy import generator_mia as gm

    lc = cfg.lora
    pipe = generator.load(base, dtype=torch.float32)
    params = lora.trainable_lora(pipe, lc)
    opt = torch.optim.AdamW(params, lr=lc.learning_rate)
    g = torch.Generator().manual_seed(0)
    c, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    z = torch.randn(lc.batch_size, c, size, size, generator=g) * pipe.vae.config.scaling_factor
    emb = gm.encode_prompts(pipe, ["a photo of a t-shirt"]).expand(lc.batch_size, -1, -1).contiguous()

    def step():
        with _autocast():
            loss = lora.denoising_loss(pipe.unet, pipe.scheduler, z, emb, generator=g)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _classifier_step(cfg, arch: str, teacher_arch: str | None, images: np.ndarray, labels: np.ndarray) -> Callable[[], object]:
    from tckr.classification import classifiers, loop

    dev = torch.device("cpu")
    n_cls = int(labels.max()) + 1
    teacher = None
    if teacher_arch is not None:
        teacher = classifiers.build(teacher_arch, n_cls, pretrained=False, input_size=cfg.classifier.input_size,
                                    stem_stride=cfg.classifier.stem_stride)
    x, t = loop.training_set(images, labels)
    tr = loop.start(cfg, arch, n_cls, dev, teacher, 0, 1000, x, t)
    tr.model.train()
    rng = torch.Generator().manual_seed(0)
    bs = cfg.train.batch_size
    return _in_precision(lambda: loop.train_step(tr, torch.randperm(len(images), generator=rng)[:bs]))


def _query_pass(cfg, images: np.ndarray) -> Callable[[], object]:
    from tckr.classification import classifiers, inference

    cc = cfg.classifier
    model = classifiers.build(cc.teacher_arch, 10, pretrained=False, input_size=cc.input_size, stem_stride=cc.stem_stride)
    return _in_precision(lambda: inference.predict_logits(model, images, cfg, batch_size=len(images)))


def _lira(shadows: int, examples: int) -> Callable[[], object]:
    from tckr.privacy import attacks

    rng = np.random.default_rng(0)
    shadow_in = np.zeros((shadows, examples), dtype=bool)
    for j in range(examples):  # every example IN for exactly half the shadows, as the study's masks
        shadow_in[rng.permutation(shadows)[: shadows // 2], j] = True
    shadow_phi = rng.normal(size=(shadows, examples, 2)) + shadow_in[..., None]
    target_phi = rng.normal(size=(examples, 2))
    return lambda: attacks.lira_from_stable(target_phi, shadow_phi, shadow_in, online=True)


def summary(result: dict) -> str:
    """The record's one line: the peaks and each stage's fraction of the matmul peak (LiRA in examples/s)."""
    p = result["peak"]
    parts = []
    for r in result["stages"]:
        if r["fraction_of_peak"] is None:
            parts.append(f"{r['stage']} {r['items_per_s']:,.0f} examples/s (numpy, no FLOP count)")
        else:
            parts.append(f"{r['stage']} {r['gflops']:.1f} GFLOP/s = {100 * r['fraction_of_peak']:.0f}%")
    load = result["loadavg_before"][0]
    how = (f"{result['processes']} processes × {result['threads']} thread(s) at once"
           if result.get("processes", 1) > 1 else f"{result['threads']} threads")
    return (f"stages in {how}; peak at {result['threads'] * result.get('processes', 1)} threads, {result.get('dtype', 'float32')}: matmul {p['matmul']['gflops']:.1f} GFLOP/s, 3×3 conv "
            f"{p['conv3x3']['gflops']:.1f}; of the matmul peak: " + "; ".join(parts) + f" (load average {load:.2f})")


def stage_list(args, cfg) -> list[tuple[str, str, Callable[[], Callable[[], object]], int]]:
    """(name, detail, builder of the timed function, items per run) of every stage but LiRA."""
    from tckr.classification import augment
    from tckr.generation import generator
    from tckr.privacy import generator_mia as gm

    pipe = generator.load(args.base, dtype=PRECISION["dtype"])  # the UNet forwards: weights in --dtype, as synthesis loads them
    emb = gm.encode_prompts(pipe, ["a photo of a t-shirt"])
    sb = cfg.synthesis.batch_size
    syn_rows = sb * (2 if cfg.synthesis.guidance_scale > 1 else 1)
    att_rows = 2 * gm.ATTACK_BATCH
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(max(4 * cfg.train.batch_size, args.query_batch), cfg.data.image_size,
                                        cfg.data.image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=len(images))
    cc = cfg.classifier
    return [
        ("synthesis UNet batch", f"{sb} images × {syn_rows // sb} (guidance {cfg.synthesis.guidance_scale}) = {syn_rows} "
         "UNet rows, forward", lambda: _unet_forward(pipe, syn_rows, emb), syn_rows),
        ("LoRA step", f"batch {cfg.lora.batch_size}, UNet forward + backward + AdamW (rank {cfg.lora.rank})",
         lambda: _lora_step(args.base, cfg), cfg.lora.batch_size),
        ("teacher step", f"{cc.teacher_arch} {cc.input_size}px, batch {cfg.train.batch_size}, forward + backward + AdamW",
         lambda: _classifier_step(cfg, cc.teacher_arch, None, images, labels), cfg.train.batch_size),
        ("student step", f"{cc.student_arch} {cc.input_size}px, batch {cfg.train.batch_size}, GKD "
         f"({'teacher outputs computed once' if augment.flip_only(cfg) else 'teacher forward'}) + forward + backward + AdamW", lambda: _classifier_step(cfg, cc.student_arch, cc.teacher_arch, images, labels),
         cfg.train.batch_size),
        ("query pass", f"{cc.teacher_arch} inference, batch {args.query_batch}",
         lambda: _query_pass(cfg, images[:args.query_batch]), args.query_batch),
        ("generator attack batch", f"{gm.ATTACK_BATCH} examples × 2 (prompt, null) = {att_rows} UNet rows, forward",
         lambda: _unet_forward(pipe, att_rows, emb), att_rows),
    ]


def _process(k: int, args, barrier, queue) -> None:
    """One of ``--processes`` concurrent processes: every stage built, then timed in step with the others (a barrier
    before each stage), so that the processes share the cores stage by stage as the study's workers do."""
    torch.set_num_threads(args.threads)
    PRECISION["dtype"] = DTYPE[args.dtype]
    from tckr.core import config

    cfg = config.load_config(args.config)
    for name, _detail, make, _items in stage_list(args, cfg):
        fn = make()
        flops = count_flops(fn) if k == 0 else None
        barrier.wait()
        queue.put((k, name, flops, timings(fn, args.repeats)))


def concurrent_rows(args, cfg, top: float) -> list[dict]:
    """Each stage timed in ``--processes`` processes at once: FLOP/s and items/s summed over the processes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(args.processes), ctx.Queue()
    procs = [ctx.Process(target=_process, args=(k, args, barrier, queue)) for k in range(args.processes)]
    for p in procs:
        p.start()
    names = [(n, d, items) for n, d, _m, items in stage_list(args, cfg)]
    got: dict[str, dict[int, tuple]] = {}
    for _ in range(len(names) * args.processes):
        k, name, flops, ts = queue.get()
        got.setdefault(name, {})[k] = (flops, ts)
    for p in procs:
        p.join()
    rows = []
    for name, detail, items in names:
        flops = got[name][0][0]
        medians = [statistics.median(got[name][k][1]) for k in range(args.processes)]
        row = stage_row(name, f"{detail}; {args.processes} processes × {args.threads} thread(s) at once", flops,
                        got[name][0][1], top, items)
        row["process_medians_s"] = medians
        row["gflops"] = sum(flops / m for m in medians) / 1e9
        row["fraction_of_peak"] = row["gflops"] / top
        row["items_per_s"] = sum(items / m for m in medians)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/tiny-sd-fashion")
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (of each process, with --processes)")
    ap.add_argument("--processes", type=int, default=1, help="time every stage in this many processes at once (the "
                    "study's study.workers); the peak is measured at processes × threads threads in one process")
    ap.add_argument("--peak-repeats", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each stage (after one warm-up); the median counts")
    ap.add_argument("--query-batch", type=int, default=512)
    ap.add_argument("--lira-shadows", type=int, default=16)
    ap.add_argument("--lira-examples", type=int, default=8000)
    ap.add_argument("--dtype", choices=tuple(DTYPE), default="float32", help="the precision of every stage and of the "
                    "peak (the module docstring says how; default %(default)s)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    total_threads = args.threads * args.processes
    torch.set_num_threads(total_threads)
    PRECISION["dtype"] = DTYPE[args.dtype]
    from tckr.core import config, io

    cfg = config.load_config(args.config)
    load_before = os.getloadavg()
    pk = peak(args.peak_repeats)
    top = pk["matmul"]["gflops"]
    print(f"load average {load_before[0]:.2f}; peak ({total_threads} threads, {args.dtype}): matmul {top:.1f} GFLOP/s, "
          f"3×3 conv {pk['conv3x3']['gflops']:.1f} GFLOP/s")
    if args.processes > 1:
        rows = concurrent_rows(args, cfg, top)
    else:
        rows = []
        for name, detail, make, items in stage_list(args, cfg):
            fn = make()
            flops = count_flops(fn)
            rows.append(stage_row(name, detail, flops, timings(fn, args.repeats), top, items))
    lira = _lira(args.lira_shadows, args.lira_examples)
    rows.append(stage_row("LiRA scoring", f"lira_from_stable, {args.lira_shadows} shadows × {args.lira_examples} examples "
                          "× 2 queries (numpy float64)", None, timings(lira, args.repeats), top, args.lira_examples))
    result = {"base": args.base, "config": args.config, "threads": args.threads, "processes": args.processes,
              "dtype": args.dtype, "peak": pk, "stages": rows, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}

    print(f"{'stage':24s} {'GFLOP':>8s} {'ms':>9s} {'GFLOP/s':>8s} {'% peak':>7s} {'items/s':>9s}  detail")
    for r in rows:
        gf = "-" if r["gflop"] is None else f"{r['gflop']:.2f}"
        rate = "-" if r["gflops"] is None else f"{r['gflops']:.1f}"
        frac = "-" if r["fraction_of_peak"] is None else f"{100 * r['fraction_of_peak']:.0f}%"
        print(f"{r['stage']:24s} {gf:>8s} {1e3 * r['median_s']:9.1f} {rate:>8s} {frac:>7s} {r['items_per_s']:9.0f}  {r['detail']}")
    print(f"load average before {load_before[0]:.2f}, after {result['loadavg_after'][0]:.2f}")
    if args.out:
        from tckr.reporting import report

        result["record"] = report.bench_record(summary(result))
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
