"""Generator-attack throughput (UNet passes/s) beside one LoRA training step and one generation step, in one run.

    .venv/bin/python bench/bench_generator_attack.py --out bench/measured/generator_attack.json
    .venv/bin/python bench/bench_generator_attack.py --threads 1 --examples 256

All three on the committed tiny base (``models/tiny-sd-fashion``) at the settings of ``--config``
(``configs/mini.yaml``): the attack (:func:`tckr.generator_mia.denoising_errors`, ``mia.generator_queries``
queries × 2 prompts per example, :data:`tckr.generator_mia.ATTACK_BATCH` examples per UNet call) and the
generation step run in ``generator.dtype`` (float16 becomes float32 on a CPU, as ``synthesis.load_pipeline``
does); the LoRA step is ``lora.finetune``'s (VAE encode, text encode, ``lora.denoising_loss`` forward and
backward, AdamW) at ``lora.batch_size`` in float32 (the mini tier trains with ``mixed_precision: "no"``).
The generation step is one DPM-Solver++ step of a batch of 128 at guidance 2 (256 UNet rows). One UNet
pass = one latent row through the UNet. Real Fashion-MNIST images with their attribute-caption prompts.
The machine's load average is printed: other processes on the same cores lower every number alike.
``--dtype float32`` overrides ``generator.dtype``: on a CPU without bf16 instructions (AVX2 only) bfloat16
ran the tiny UNet ~20× slower than float32 (6 vs 120 rows/s, 1 thread, 2026-11-30).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def _prompts(images, labels, names):
    from tckr.generation import captions, prompt_files

    return [prompt_files.prompt_for(names[int(y)], c) for y, c in zip(labels, captions.attribute_captions(images))]


def attack_rate(pipe, images, prompts, queries: int, resolution: int) -> dict:
    from tckr.privacy import generator_mia as gm

    latents = gm.encode_images(pipe, images, resolution=resolution)
    gm.denoising_errors(pipe, None, prompts[:16], n_queries=queries, latents=latents[:16])  # warm-up
    start = time.perf_counter()
    gm.denoising_errors(pipe, None, prompts, n_queries=queries, latents=latents)
    seconds = time.perf_counter() - start
    passes = len(prompts) * queries * 2
    return {"examples": len(prompts), "queries": queries, "unet_passes": passes, "seconds": seconds,
            "passes_per_s": passes / seconds, "rows_per_unet_call": 2 * min(gm.ATTACK_BATCH, len(prompts))}


def lora_step_seconds(base, cfg, images, prompts, steps: int) -> list[float]:
    from tckr.generation import generator, lora

    lc = cfg.lora
    pipe = generator.load(base, dtype=torch.float32)
    params = lora.trainable_lora(pipe, lc)
    opt = torch.optim.AdamW(params, lr=lc.learning_rate)
    tok = pipe.tokenizer
    ids = torch.tensor(tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids)
    g = torch.Generator().manual_seed(0)
    bs = lc.batch_size
    out = []
    for step in range(steps + 2):
        idx = np.arange(step * bs, (step + 1) * bs) % len(images)
        start = time.perf_counter()
        x = lora.preprocess(images[idx], cfg.generator.resolution, center_crop=lc.center_crop)
        with torch.no_grad():
            post = pipe.vae.encode(x).latent_dist
            z = (post.mean + post.std * torch.randn(post.mean.shape, generator=g)) * pipe.vae.config.scaling_factor
            emb = pipe.text_encoder(ids[idx])[0]
        lora.denoising_loss(pipe.unet, pipe.scheduler, z, emb, generator=g).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 2:  # the first two are warm-up
            out.append(time.perf_counter() - start)
    return out


def generation_step_seconds(pipe, prompts, steps: int, batch: int = 128, guidance: float = 2.0, total: int = 20) -> list[float]:
    from tckr.privacy import generator_mia as gm

    dtype = pipe.unet.dtype
    cond = gm.encode_prompts(pipe, (prompts * batch)[:batch]).to(dtype)
    emb = torch.cat([gm.encode_prompts(pipe, [""]).to(dtype).expand(batch, -1, -1), cond])
    sched = pipe.scheduler
    sched.set_timesteps(total)
    c = pipe.unet.config.in_channels
    size = pipe.unet.config.sample_size
    latents = torch.randn(batch, c, size, size, generator=torch.Generator().manual_seed(0)) * sched.init_noise_sigma
    out = []
    with torch.inference_mode():
        for i, t in enumerate(sched.timesteps[: steps + 1]):
            start = time.perf_counter()
            x = sched.scale_model_input(torch.cat([latents, latents]), t).to(dtype)
            uncond, text = pipe.unet(x, t, encoder_hidden_states=emb).sample.float().chunk(2)
            latents = sched.step(uncond + guidance * (text - uncond), t, latents).prev_sample
            if i >= 1:  # the first is warm-up
                out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="models/tiny-sd-fashion")
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--examples", type=int, default=512, help="examples timed in the attack")
    ap.add_argument("--lora-steps", type=int, default=8)
    ap.add_argument("--generation-steps", type=int, default=6)
    ap.add_argument("--dtype", default="config", choices=["config", "float32", "bfloat16"],
                    help="attack and generation dtype (config: generator.dtype, float16 as float32 on a CPU)")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tckr.core import config, io
    from tckr.datasets import real
    from tckr.generation import generator

    cfg = config.load_config(args.config)
    want = cfg.generator.dtype if args.dtype == "config" else args.dtype
    dtype = {"float16": torch.float32, "bfloat16": torch.bfloat16, "float32": torch.float32}[want]
    ds = real.load_real(cfg.study.dataset, "train")
    pick = np.random.default_rng(0).choice(len(ds.labels), args.examples, replace=False)
    images = real.resize_images(ds.images[pick], cfg.generator.resolution)
    prompts = _prompts(images, ds.labels[pick], ds.class_names)
    load_before = os.getloadavg()

    pipe = generator.load(args.base, dtype=dtype)
    attack = attack_rate(pipe, images, prompts, cfg.mia.generator_queries, cfg.generator.resolution)
    gen = generation_step_seconds(pipe, prompts, args.generation_steps)
    lstep = lora_step_seconds(args.base, cfg, images, prompts, args.lora_steps)
    lora_s, gen_s = statistics.median(lstep), statistics.median(gen)
    rate = attack["passes_per_s"]
    result = {
        "base": args.base, "config": args.config, "threads": args.threads, "attack_dtype": str(dtype),
        "attack": attack,
        "lora_step": {"batch": cfg.lora.batch_size, "dtype": "float32", "median_s": lora_s, "all_s": lstep},
        "generation_step": {"batch": 128, "guidance": 2.0, "unet_rows": 256, "dtype": str(dtype), "median_s": gen_s,
                            "all_s": gen, "unet_rows_per_s": 256 / gen_s},
        "ratios": {"attack_passes_per_lora_step": lora_s * rate, "attack_passes_per_generation_step": gen_s * rate,
                   "attack_vs_generation_rows_per_s": rate / (256 / gen_s)},
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }
    k = attack["queries"]
    print(f"load average before {load_before[0]:.2f}, after {result['loadavg_after'][0]:.2f} ({args.threads} torch threads)")
    print(f"generator attack: {rate:.0f} UNet passes/s ({attack['rows_per_unet_call']} rows per call, {dtype}) "
          f"= {rate / (2 * k):.1f} examples/s per model at K = {k}")
    print(f"one LoRA training step (batch {cfg.lora.batch_size}, float32): {lora_s * 1e3:.0f} ms = "
          f"{lora_s * rate:.0f} attack passes = {lora_s * rate / (2 * k):.1f} attacked examples")
    print(f"one generation step (batch 128, guidance 2, 256 UNet rows): {gen_s * 1e3:.0f} ms = {gen_s * rate:.0f} attack passes; "
          f"generation runs {256 / gen_s:.0f} UNet rows/s, the attack {rate / (256 / gen_s):.2f}× that")
    if args.out:
        from tckr.reporting import report

        result["record"] = report.bench_record(
            f"generator attack {rate:.0f} UNet passes/s ({dtype}) = {rate / (2 * k):.1f} examples/s per model at K = {k}; "
            f"one LoRA step = {lora_s * rate:.0f} attack passes, one generation step = {gen_s * rate:.0f}; "
            f"the attack runs {rate / (256 / gen_s):.2f}× generation's UNet rows/s")
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
