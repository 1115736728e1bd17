"""Generation throughput of the tiny generator on CPU at the mini settings, with a batch-size sweep.

    .venv/bin/python bench/bench_generation.py                       # 2 threads, 32×32, 20 steps, guidance 2
    .venv/bin/python bench/bench_generation.py --batch-sizes 32 64 --images 256

Uses ``models/tiny-sd-fashion`` when it exists, else the tiny architecture with random weights (same compute).
Prints one row per dtype (float32, bfloat16) and batch size (images/s, seconds per batch, ratio to the best; the
dtypes alternate so both see the same machine load) and the compute per image
(UNet, VAE decoder, text encoder) counted with ``torch.utils.flop_counter``. The machine's load average is
printed before and after: other processes on the same cores lower the numbers. The ``sd2`` architecture in
fp16 on a GPU is not measured here (no GPU on the machine this was written on).
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def load_pipe(base: str, dtype: torch.dtype = torch.float32):
    from tckr.core import paths
    from tckr.generation import generator

    if (paths.resolve(base)).is_dir():
        return generator.load(base, dtype=dtype), base
    return generator.build_random("tiny", dtype=dtype), "tiny architecture, random weights"


def flops_per_image(pipe, size: int, steps: int, guidance: float) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    lat = size // pipe.vae_scale_factor
    tokens = pipe.tokenizer.model_max_length
    ctx = torch.zeros(1, tokens, pipe.text_encoder.config.hidden_size)
    out = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            pipe.unet(torch.randn(1, 4, lat, lat), 500, encoder_hidden_states=ctx)
        out["unet"] = fc.get_total_flops() * steps * (2 if guidance > 1 else 1)
        with FlopCounterMode(display=False) as fc:
            pipe.vae.decode(torch.randn(1, 4, lat, lat))
        out["vae"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            pipe.text_encoder(torch.zeros(1, tokens, dtype=torch.long))
        out["text"] = fc.get_total_flops() * (2 if guidance > 1 else 1)
    return {k: v / 1e9 for k, v in out.items()}


def measure(pipe, batch: int, n_images: int, size: int, steps: int, guidance: float) -> float:
    prompts = ["Trouser: a medium-sized bright textured object, tall and narrow, symmetric, on a dark background"]
    done, seconds = 0, 0.0
    with torch.inference_mode():
        pipe(prompt=prompts * min(batch, 4), num_inference_steps=2, guidance_scale=guidance, height=size, width=size,
             output_type="np")  # warm-up
        while done < n_images:
            gens = [torch.Generator().manual_seed(done + i) for i in range(batch)]
            t = time.perf_counter()
            pipe(prompt=prompts * batch, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                 generator=gens, output_type="np")
            seconds += time.perf_counter() - t
            done += batch
    return done / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/tiny-sd-fashion")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--images", type=int, default=128, help="images timed per batch size (at least one batch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {d: load_pipe(args.base, getattr(torch, d)) for d in args.dtypes}
    pipe, what = pipes[args.dtypes[0]]
    print(f"generator: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.size}x{args.size}, {args.steps} steps, guidance {args.guidance}")
    f = flops_per_image(pipe, args.size, args.steps, args.guidance)
    print("GFLOP per image: " + ", ".join(f"{k} {v:.2f}" for k, v in f.items()) + f", total {sum(f.values()):.2f}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = [(d, b, measure(pipes[d][0], b, max(args.images, b), args.size, args.steps, args.guidance))
            for b in args.batch_sizes for d in args.dtypes]
    best = max(r for *_, r in rows)
    print(f"{'dtype':>9} {'batch':>6} {'images/s':>9} {'s/batch':>8} {'vs best':>8} {'GFLOP/s':>8}")
    for d, b, r in rows:
        print(f"{d:>9} {b:>6} {r:>9.2f} {b / r:>8.2f} {r / best:>8.2f} {r * sum(f.values()):>8.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}; goal >= 15 images/s; best {best:.2f} images/s")


if __name__ == "__main__":
    main()
