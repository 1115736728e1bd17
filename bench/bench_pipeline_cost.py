"""The cost of one shadow pipeline, stage by stage, in units of one LoRA training step and one generation step.

Runs shadow pipeline ``--pipeline`` of a scratch run of ``--config`` from scratch (teacher → captions → LoRA →
synthesis → students → queries, :func:`tckr.pipelines.run_pipeline`, each stage timed by the pipeline itself
in ``mia/pipelines/stages.csv``), then, in the same process and on the same threads, times one LoRA training
step and one generation step (the helpers of ``bench_generator_attack.py``). Every stage is reported in
seconds, in LoRA steps and in generation steps, with the study's total for ``mia.n_pipelines`` pipelines.

    .venv/bin/python bench/bench_pipeline_cost.py --config configs/mini.yaml --out bench/measured/pipeline_cost.json
    .venv/bin/python bench/bench_pipeline_cost.py --config configs/tiny.yaml --run /tmp/pc-tiny   # seconds, plumbing only
    .venv/bin/python bench/bench_pipeline_cost.py --set generator.dtype=bfloat16 --out bench/measured/pipeline_cost_bf16.json

A run folder given with ``--run`` that already holds the pipeline is resumed (finished stages are not
re-timed: use a fresh folder for a measurement). The machine's load average is printed: other processes on
the same cores lower every number alike, the ratios much less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_generator_attack as bga  # noqa: E402


def stage_table(stages, lora_s: float, gen_s: float, n_pipelines: int) -> list[dict]:
    """One row per stage (seconds, LoRA steps, generation steps) and a total row, from ``stages.csv`` rows."""
    rows = [{"stage": str(r.stage), "seconds": float(r.seconds), "detail": str(r.detail)} for r in stages.itertuples()]
    total = sum(r["seconds"] for r in rows)
    rows.append({"stage": "total (one pipeline)", "seconds": total, "detail": ""})
    rows.append({"stage": f"total ({n_pipelines} pipelines)", "seconds": total * n_pipelines, "detail": "extrapolated"})
    for r in rows:
        r["lora_steps"] = r["seconds"] / lora_s
        r["generation_steps"] = r["seconds"] / gen_s
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--run", default=None, help="scratch run folder (default: a temporary folder, removed after)")
    ap.add_argument("--pipeline", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lora-steps", type=int, default=8)
    ap.add_argument("--generation-steps", type=int, default=6)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="section.key=value",
                    help="override one config key (repeatable, as tckr's --set), e.g. --set generator.dtype=bfloat16 "
                    "to cost the pipeline at another precision beside the config's own")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    from tckr.cli.options import parse_set
    from tckr.core import config, io

    overrides = parse_set(args.sets)  # a mistyped key is refused here, before any work
    from tckr.datasets import real
    from tckr.generation import captions, prompt_files, synthesis
    from tckr.privacy import pipelines
    from tckr.runfolder import environment, runs

    cfg = config.load_config(args.config, overrides or None)
    scratch = args.run is None
    folder = Path(tempfile.mkdtemp(prefix="tckr-pipeline-cost-")) if scratch else Path(args.run)
    load_before = os.getloadavg()
    try:
        run = runs.open_run(cfg, folder)
        environment.set_threads(run.cfg)
        torch.set_num_threads(args.threads)
        captions.caption_run(run, progress=False)  # the target's captions: pool_captions reuses D's rows
        pipelines.run_pipeline(run, args.pipeline, progress=False)
        torch.set_num_threads(args.threads)
        stages = pipelines.load_stages(run)
        stages = stages[stages.pipeline == args.pipeline]

        ds = real.load_real(cfg.study.dataset, "train")
        pick = np.random.default_rng(0).choice(len(ds.labels), 256, replace=False)
        images = real.resize_images(ds.images[pick], cfg.generator.resolution)
        prompts = [prompt_files.prompt_for(ds.class_names[int(y)], c)
                   for y, c in zip(ds.labels[pick], captions.attribute_captions(images))]
        lstep = bga.lora_step_seconds(cfg.generator.base, cfg, images, prompts, args.lora_steps)
        pipe = synthesis.load_pipeline(pipelines.open_pipeline(run, args.pipeline))  # the generator its synthesis stage used
        gen = bga.generation_step_seconds(pipe, prompts, args.generation_steps, batch=cfg.synthesis.batch_size,
                                          guidance=cfg.synthesis.guidance_scale, total=cfg.synthesis.steps)
    finally:
        if scratch:
            shutil.rmtree(folder, ignore_errors=True)
    lora_s, gen_s = statistics.median(lstep), statistics.median(gen)
    rows = stage_table(stages, lora_s, gen_s, int(cfg.mia.n_pipelines))
    result = {"config": args.config, "overrides": overrides, "threads": args.threads, "pipeline": args.pipeline,
              "lora_step": {"batch": cfg.lora.batch_size, "median_s": lora_s, "all_s": lstep},
              "generation_step": {"batch": cfg.synthesis.batch_size, "guidance": cfg.synthesis.guidance_scale,
                                  "median_s": gen_s, "all_s": gen},
              "stages": rows, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    print(f"load average before {load_before[0]:.2f}, after {result['loadavg_after'][0]:.2f} ({args.threads} torch threads)")
    print(f"one LoRA step (batch {cfg.lora.batch_size}): {lora_s * 1e3:.0f} ms; one generation step "
          f"(batch {cfg.synthesis.batch_size}, guidance {cfg.synthesis.guidance_scale}): {gen_s * 1e3:.0f} ms")
    print(f"{'stage':28s} {'seconds':>9s} {'LoRA steps':>11s} {'gen. steps':>11s}  detail")
    for r in rows:
        print(f"{r['stage']:28s} {r['seconds']:9.1f} {r['lora_steps']:11.0f} {r['generation_steps']:11.0f}  {r['detail']}")
    if args.out:
        from tckr.reporting import report

        one = next(r for r in rows if r["stage"] == "total (one pipeline)")
        parts = ", ".join(f"{r['stage']} {r['seconds']:.0f} s" for r in rows if not r["stage"].startswith("total"))
        result["record"] = report.bench_record(
            f"one shadow pipeline of {args.config}"
            + "".join(f" --set {k}={v}" for k, v in overrides.items()) + f": {one['seconds'] / 60:.1f} min = {one['lora_steps']:.0f} LoRA steps "
            f"({lora_s * 1e3:.0f} ms each) = {one['generation_steps']:.0f} generation steps ({gen_s * 1e3:.0f} ms each, "
            f"batch {cfg.synthesis.batch_size}); by stage: {parts}")
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
