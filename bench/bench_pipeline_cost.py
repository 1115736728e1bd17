"""The cost of one shadow pipeline, stage by stage, in units of one LoRA training step and one generation step.

Runs shadow pipeline ``--pipeline`` of a scratch run of ``--config`` from scratch (teacher → captions → LoRA →
synthesis → students → queries, :func:`tckr.pipelines.run_pipeline`, each stage timed by the pipeline itself
in ``mia/pipelines/stages.csv``), then, in the same process and on the same threads, times one LoRA training
step and one generation step (the helpers of ``bench_generator_attack.py``). Every stage is reported in
seconds, in LoRA steps and in generation steps, with the study's total for ``mia.n_pipelines`` pipelines.

    .venv/bin/python bench/bench_pipeline_cost.py --config configs/mini.yaml --out bench/measured/pipeline_cost.json
    .venv/bin/python bench/bench_pipeline_cost.py --config configs/tiny.yaml --run /tmp/pc-tiny   # seconds, plumbing only
    .venv/bin/python bench/bench_pipeline_cost.py --set generator.dtype=bfloat16 --out bench/measured/pipeline_cost_bf16.json

``--before CHECKOUT`` costs the same pipeline with the code of another checkout first (``git worktree add
/tmp/before <commit>``; its own ``bench/bench_pipeline_cost.py``, in a fresh interpreter with its ``src`` first on the
path), then with this one, in the same sitting: each stage's speed-up, and which of the pipeline's files (models,
adapter, synthetic sets, logits) are identical bit for bit between the two (:func:`compare_files`).

    .venv/bin/python bench/bench_pipeline_cost.py --before /tmp/before --out bench/measured/pipeline_speedup.json

One side-by-side pair carries the host's drift between its two halves. ``--rounds N`` repeats the pair N times,
alternating the order (before, after; after, before; ...), each run in a fresh scratch folder: every stage's median
over the rounds before and after, and the whole pipeline's ratio in every round with their geometric mean and its 95%
t-interval on the log scale (:func:`rounds_summary`). Files are compared in the first round.

A run folder given with ``--run`` that already holds the pipeline is resumed (finished stages are not
re-timed: use a fresh folder for a measurement). The machine's load average is printed: other processes on
the same cores lower every number alike, the ratios much less.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
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


#: The files of a pipeline that its stages make, compared between two checkouts (relative to the run folder).
COMPARED = ("mia/pipelines/pipeline_{i:03d}/lora/*.safetensors", "mia/pipelines/pipeline_{i:03d}/synthetic/**/*.npy",
            "mia/pipelines/pipeline_{i:03d}/classifiers/*.safetensors", "mia/pipelines/pipeline_{i:03d}/baselines/**/*.safetensors",
            "mia/pipelines/pipeline_{i:03d}/baselines/**/*.npy", "mia/shadows/*.safetensors", "mia/logits/*pipe*")


def _digest(path: Path) -> str:
    """sha256 of a file; of a safetensors file, of its tensors (names, dtypes, shapes, bytes) only: its metadata
    records the training's wall time, which differs between any two runs."""
    if path.suffix != ".safetensors":
        from tckr.core import io

        return io.sha256_file(path)
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(f"{name}|{t.dtype}|{t.shape}|".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def compare_files(before: Path, after: Path, pipeline: int) -> dict:
    """Which of pipeline ``pipeline``'s files (:data:`COMPARED`) the two run folders hold identically (:func:`_digest`),
    which differ, and which only one of them holds."""
    def files(root: Path) -> dict[str, str]:
        found = {}
        for pattern in COMPARED:
            for f in root.glob(pattern.format(i=pipeline)):
                found[f.relative_to(root).as_posix()] = _digest(f)
        return found

    a, b = files(before), files(after)
    return {"identical": sorted(k for k in a.keys() & b.keys() if a[k] == b[k]),
            "different": sorted(k for k in a.keys() & b.keys() if a[k] != b[k]),
            "only_before": sorted(a.keys() - b.keys()), "only_after": sorted(b.keys() - a.keys())}


def speedups(before: dict, after: dict) -> list[dict]:
    """Per stage (and total): seconds before and after and their ratio, from two results of this benchmark."""
    old = {r["stage"]: r["seconds"] for r in before["stages"]}
    rows = []
    for r in after["stages"]:
        if r["stage"] == "total (one pipeline)" or (r["stage"] in old and not r["stage"].startswith("total (")):
            b = old.get(r["stage"])
            rows.append({"stage": r["stage"], "before_s": b, "after_s": r["seconds"],
                         "speedup": b / r["seconds"] if b and r["seconds"] > 0 else None})
    return rows


def rounds_summary(per_round: list[list[dict]]) -> tuple[list[dict], dict]:
    """Rows of :func:`speedups` from several rounds -> per stage the median seconds before and after over the rounds,
    their ratio and each round's ratio; and the whole pipeline's ratios per round with their geometric mean and its
    95% Student-t interval on the log scale (nan bounds with one round)."""
    from tckr.privacy import metrics

    rows = []
    for stage in [r["stage"] for r in per_round[0]]:
        pairs = [(r["before_s"], r["after_s"]) for rs in per_round for r in rs if r["stage"] == stage]
        b, a = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        rows.append({"stage": stage, "before_s": b, "after_s": a, "speedup": b / a if b and a > 0 else None,
                     "per_round": [x / y if x and y > 0 else None for x, y in pairs]})
    total = next(r for r in rows if r["stage"] == "total (one pipeline)")
    logs = np.log(np.asarray(total["per_round"], dtype=float))
    half = metrics.t_halfwidth(logs)
    return rows, {"per_round": total["per_round"], "geometric_mean": float(np.exp(logs.mean())),
                  "ci_low": float(np.exp(logs.mean() - half)), "ci_high": float(np.exp(logs.mean() + half))}


def before_variant(checkout: Path, args, folder: Path) -> dict:
    """This benchmark as ``checkout``'s code runs it (its own script and sources), on run folder ``folder``."""
    script = checkout / "bench" / "bench_pipeline_cost.py"
    if not (checkout / "src" / "tckr").is_dir() or not script.is_file():
        raise SystemExit(f"--before {checkout}: no src/tckr or bench/bench_pipeline_cost.py there; make it with "
                         f"`git worktree add {checkout} <commit>`")
    out = folder.parent / "before.json"
    cmd = [sys.executable, str(script), "--config", str(Path(args.config).resolve()), "--run", str(folder),
           "--pipeline", str(args.pipeline), "--threads", str(args.threads), "--lora-steps", str(args.lora_steps),
           "--generation-steps", str(args.generation_steps), "--out", str(out)]
    for s in args.sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the pipeline with {checkout}'s code failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["commit"] = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                                      text=True).stdout.strip()
    return result


def side_by_side(args) -> None:
    """``--before``: the pipeline with the other checkout's code, then with this one's, compared."""
    work = Path(tempfile.mkdtemp(prefix="tckr-pipeline-speedup-"))
    rest = ["--config", args.config, "--pipeline", str(args.pipeline), "--threads", str(args.threads),
            "--lora-steps", str(args.lora_steps), "--generation-steps", str(args.generation_steps)]
    for s in args.sets + args.after_sets:
        rest += ["--set", s]
    results = []
    try:
        load0 = os.getloadavg()
        for k in range(args.rounds):
            res = {}
            for variant in ("before", "after") if k % 2 == 0 else ("after", "before"):
                folder = work / f"{variant}{k}" / "run"
                if variant == "before":
                    res["before"] = before_variant(Path(args.before).resolve(), args, folder)
                else:
                    main([*rest, "--run", str(folder), "--out", str(work / f"after{k}.json")])
                    res["after"] = json.loads((work / f"after{k}.json").read_text())
            if k == 0:
                same = compare_files(work / "before0" / "run", work / "after0" / "run", args.pipeline)
            for variant in ("before", "after"):  # a round's folders go once measured: disk, and no resuming by mistake
                shutil.rmtree(work / f"{variant}{k}", ignore_errors=True)
            results.append(res)
            whole = next(r for r in speedups(res["before"], res["after"]) if r["stage"] == "total (one pipeline)")
            print(f"round {k + 1}/{args.rounds}: the whole pipeline {whole['speedup']:.3f}x", flush=True)
    finally:
        load1 = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    before, after = results[0]["before"], results[0]["after"]
    rows, ratio = rounds_summary([speedups(r["before"], r["after"]) for r in results])
    total = next(r for r in rows if r["stage"] == "total (one pipeline)")
    print(f"\nbefore ({before['commit']}) -> after, same settings, one after the other (load average {load0[0]:.2f} -> {load1[0]:.2f}):")
    for r in rows:
        print(f"{r['stage']:28s} {r['before_s']:9.1f} {r['after_s']:9.1f}  {r['speedup'] or float('nan'):5.2f}x")
    print(f"files identical bit for bit: {len(same['identical'])}; different: {len(same['different'])} {same['different'][:6]}")
    if args.out:
        from tckr.cli.options import parse_set
        from tckr.core import io
        from tckr.reporting import report

        changed = parse_set(args.after_sets)
        result = {"config": args.config, "threads": args.threads, "before_commit": before["commit"],
                  "after_overrides": changed, "before": before,
                  "after": after, "speedups": rows, "rounds": args.rounds, "total_ratio": ratio, "files": same,
                  "loadavg_before": load0, "loadavg_after": load1}
        teacher = next((r for r in rows if r["stage"] == "teacher"), None)
        result["record"] = report.bench_record(
            f"one shadow pipeline of {args.config}, {before['commit']} against this code"
            + "".join(f" with {k}={v}" for k, v in changed.items()) + ", side by side"
            + (f", {args.rounds} rounds in alternating order (medians)" if args.rounds > 1 else "") + ": "
            f"{total['before_s'] / 60:.1f} -> {total['after_s'] / 60:.1f} min ({total['speedup']:.2f}x)"
            + (f", per round {', '.join(f'{x:.2f}x' for x in ratio['per_round'])}, geometric mean "
               f"{ratio['geometric_mean']:.2f}x [{ratio['ci_low']:.2f}, {ratio['ci_high']:.2f}]" if args.rounds > 1 else "")
            + (f", its teacher (a classifier shadow) {teacher['speedup']:.2f}x" if teacher else "")
            + f"; {len(same['identical'])} of {len(same['identical']) + len(same['different'])} files identical")
        io.write_json(args.out, result)
        print(f"wrote {args.out}")


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
    ap.add_argument("--before", default=None, metavar="CHECKOUT",
                    help="cost the pipeline with this checkout's code first, then with this one, and compare")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --before: repeat the pair this many times in alternating order (before/after, after/before, ...)")
    ap.add_argument("--after-set", dest="after_sets", action="append", default=[], metavar="section.key=value",
                    help="with --before: override one config key for this code's run only (a recipe change costed "
                    "against the code before at its own settings)")
    args = ap.parse_args(argv)
    from tckr.cli.options import UsageError, parse_set
    from tckr.core import config, io

    if args.after_sets and not args.before:
        raise UsageError("--after-set goes with --before (it changes this code's run of a side-by-side only); "
                         "use --set to cost one configuration")
    if args.rounds < 1 or (args.rounds > 1 and not args.before):
        raise UsageError(f"--rounds {args.rounds}: give a count of 1 or more, and more than 1 only with --before")
    overrides = parse_set(args.sets)  # a mistyped key is refused here, before any work
    config.load_config(args.config, {**overrides, **parse_set(args.after_sets)} or None)  # and a bad value
    if args.before:
        return side_by_side(args)
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
