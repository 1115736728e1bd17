"""Synthesis: the synthetic training set, generated from the run's captions by the (LoRA-adapted) generator.

Prompts are class-balanced and cycled within each class: image ``i`` of the largest set is class ``i mod C``
and uses that class's ``i // C``-th prompt (wrapping around), in D's order. ``synthesis.prompt_mode`` is
``"caption"`` (the run's ``"<class>: <caption>"`` prompts from notebook 01) or ``"class"`` (the class name only,
the ablation). Image ``i`` is drawn with its own noise seed ``run.seed_for(synthesis.seed) * 2**32 + i``: the
seeds of repeated runs (run seeds) never overlap, they never reach the fine-tuning seed (``lora.seed``;
:func:`plan` refuses an overlap), and an image does not depend on which process made it (shards are
bit-identical across processes at the same batch size).

Only the largest cardinality in ``synthesis.cardinalities`` (multiples of |D|) is generated; a smaller one is
a seeded, class-balanced subset of it (subsets are nested: 1× ⊂ 2× ⊂ ...), see :func:`tckr.runfolder.synthetic.subset_index`.
:func:`sampling_plan` is the set of one cardinality: which caption and which noise seed make each of its images.
``generate(run, multiples=[...])`` makes only the rows of the largest set that the sets of ``multiples`` use (a shadow
pipeline that attacks 1× of a run whose largest set is 2×): the plan is still drawn from the largest set, so each of
those sets is exactly the one a full generation would give (the subset draw reads labels, never images): same rows,
prompts and noise seeds; pixels up to the rounding of batches holding other images (tiny generator: at most 1 level,
on 3e-5 of them).

Files under ``<run>/synthetic/``:

- ``manifest.json``: what the set was made with (generator base, adapter path relative to the run folder and
  its sha256, guidance, steps, resolution, prompt mode, seeds, sizes). A rerun with other settings is an error
  instead of a mixed set. Once every shard is finished it also lists each shard's sha256 (``shards_sha256``,
  ``tables_sha256``), so the manifest identifies the whole set's content.
- ``plan.csv``: one row per image made (every image of the largest set, unless ``multiples`` chose fewer): ``i`` (its
  row in the largest set), ``label``, ``class_name``, ``prompt``, ``seed``, ``shard``.
- ``shards/shard_<j>.npy`` (uint8 ``n×H×W×3``), ``shards/shard_<j>.json`` (sidecar: sha256 of the array file and
  of the table) and ``shards/shard_<j>.csv`` (that shard's rows of the plan), all written atomically; the CSV is
  written last, so a shard is finished when its CSV exists and its files match the sidecar's checksums. A
  truncated or damaged shard is therefore unfinished: reading it is an error naming it, and the next
  :func:`generate` makes it again. A rerun skips finished shards; ``shard="k/n"`` (or ``python -m
  tckr.synthesis --shard k/n``) makes only shards ``j`` with ``j mod n == k - 1``, so ``n`` processes or GPUs
  share the work without talking to each other.
- ``truncated_prompts.json`` (only when there are any): the distinct prompts longer than the text encoder's window
  (``max_tokens``), whose ends the encoder never sees (:func:`tckr.generator.truncated_prompts`); generation says
  how many on stderr.
- ``subsets/x<multiple>.npy``: the indices (into the largest set) of each cardinality made.

Paths and readers of these files live in :mod:`tckr.runfolder.synthetic`; the samples figure is
:func:`tckr.reporting.phase_figures.plot_synthetic_samples`.
Reading: :func:`tckr.synthesis.stream_synthetic` memory-maps the shards and returns the subset as an index over them
(:class:`tckr.synthesis.ShardedImages`; student training reads it batch by batch, so RAM does not grow with the set,
see ``bench/bench_streaming.py``); :func:`tckr.synthesis.load_synthetic` is the same set read into RAM.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tckr.core import io, shards
from tckr.core.progress import tqdm
from tckr.datasets import real
from tckr.generation import captions, generator
from tckr.generation.generator import Generator, to_uint8
from tckr.runfolder import artifacts, synthetic
from tckr.runfolder.environment import device as run_device
from tckr.runfolder.environment import set_threads

PLAN_COLUMNS = ("i", "label", "class_name", "prompt", "seed", "shard")
SEED_STRIDE = 2**32  # noise seeds of image i: run.seed_for(synthesis.seed) * SEED_STRIDE + i


# --------------------------------------------------------------------------- plan


def class_prompts(run) -> list[list[str]]:
    """Per class, the prompts synthesis cycles through (``synthesis.prompt_mode``)."""
    names = run.class_names
    mode = run.cfg.synthesis.prompt_mode
    if mode == "class":
        return [[n] for n in names]
    if mode != "caption":
        raise ValueError(f"synthesis.prompt_mode: unknown mode {mode!r}; accepted: 'caption', 'class'")
    table = captions.load_captions(run)
    out = [table.loc[table["label"] == c, "prompt"].tolist() for c in range(len(names))]
    empty = [names[c] for c, p in enumerate(out) if not p]
    if empty:
        raise ValueError(f"no captions for classes {empty} in {artifacts.captions_path(run)}; every class needs at least one")
    return out


def caption_order(run, label: int, n: int) -> np.ndarray:
    """The seeded order in which synthesis cycles the ``n`` captions of class ``label``."""
    return np.random.default_rng([run.seed_for(run.cfg.synthesis.seed), 2, int(label)]).permutation(n)


def _cycled(run, per_class: list) -> list:
    """Item ``i`` of the largest set from per-class lists: class ``i mod C``, that class's ``i // C``-th item in its
    seeded :func:`caption_order` (wrapping around). The one cycle behind both :func:`plan` and :func:`plan_sources`."""
    ordered = [[items[j] for j in caption_order(run, c, len(items))] for c, items in enumerate(per_class)]
    C = len(ordered)
    i = np.arange(synthetic.set_size(run, max(run.cfg.synthesis.cardinalities)), dtype=np.int64)
    return [ordered[c][r % len(ordered[c])] for c, r in zip(i % C, i // C)]


def plan_sources(run) -> np.ndarray:
    """Per row of :func:`plan`, the position in D (``run.real("D")``) of the start image of image-to-image synthesis
    (``synthesis.init_strength`` > 0): image ``i`` of class ``c`` starts from the ``i // C``-th image of class ``c`` in
    the order synthesis cycles that class's captions, i.e. the image whose caption is its prompt (``prompt_mode:
    caption``; with ``class`` prompts, the same cycle over D's images of the class)."""
    D = run.splits().D
    if run.cfg.synthesis.prompt_mode == "caption":
        table = captions.load_captions(run)
        index, labels = table["index"].to_numpy(), table["label"].to_numpy()
    else:
        index, labels = D, run.real("D").labels
    where = {int(ix): p for p, ix in enumerate(D)}
    pos = np.array([where[int(ix)] for ix in index], dtype=np.int64)
    rows = [pos[labels == c] for c in range(len(run.class_names))]
    empty = [run.class_names[c] for c, r in enumerate(rows) if not len(r)]
    if empty:
        raise ValueError(f"no images of classes {empty} in D; image-to-image synthesis needs at least one per class")
    return np.array(_cycled(run, rows), dtype=np.int64)


def plan(run, multiples=None) -> pd.DataFrame:
    """The largest synthetic set, one row per image (columns ``PLAN_COLUMNS``); with ``multiples``, only the rows their
    sets use (:func:`tckr.runfolder.synthetic.made_rows`), sharded in that order."""
    cfg = run.cfg.synthesis
    n = synthetic.set_size(run, max(cfg.cardinalities))
    # Each class cycles its captions in a seeded random order, so a set smaller than |D| (a shadow pipeline's
    # 0.2x set, say) uses a random share of the captions, as the target's 0.2x subset of its larger set does,
    # not the captions of the lowest-index images of D.
    prompts = _cycled(run, class_prompts(run))
    C = len(run.class_names)
    i = np.arange(n, dtype=np.int64)
    labels = i % C
    base = run.seed_for(cfg.seed) * SEED_STRIDE
    lora_seed = run.seed_for(run.cfg.lora.seed)
    if base <= lora_seed < base + n:
        raise ValueError(f"synthesis.seed {cfg.seed}: noise seeds {base}..{base + n - 1} would include the fine-tuning "
                         f"seed {lora_seed}; pick a positive synthesis.seed")
    table = pd.DataFrame({"i": i, "label": labels, "class_name": [run.class_names[c] for c in labels],
                          "prompt": prompts,
                          "seed": base + i, "shard": i // cfg.shard_size})
    if multiples is None:
        return table
    table = table.iloc[synthetic.made_rows(run, multiples)].reset_index(drop=True)
    return table.assign(shard=np.arange(len(table), dtype=np.int64) // cfg.shard_size)


def sampling_plan(run, multiple: float) -> pd.DataFrame:
    """The set of ``multiple`` × |D|, one row per image in training order: ``i`` (row of the largest set), ``label``,
    ``caption`` (the index of the image of D whose caption is the prompt; -1 with ``class`` prompts), ``prompt`` and
    ``seed`` (noise). The target and its shadow pipelines draw theirs with this one procedure."""
    table = plan(run).iloc[synthetic.subset_index(run, multiple)].reset_index(drop=True)
    if run.cfg.synthesis.prompt_mode == "caption":
        own = captions.load_captions(run)
        per_class = [own.loc[own["label"] == c, "index"].tolist() for c in range(len(run.class_names))]
        table["caption"] = np.asarray(_cycled(run, per_class), dtype=np.int64)[table["i"].to_numpy()]
    else:
        table["caption"] = -1
    return table[["i", "label", "caption", "prompt", "seed"]]


# --------------------------------------------------------------------------- generation


def load_pipeline(run, *, use_lora: bool = True, random_weights: bool = False, device=None):
    """The diffusers pipeline of :func:`load_generator` (same arguments)."""
    return load_generator(run, use_lora=use_lora, random_weights=random_weights, device=device).pipe


def load_generator(run, *, use_lora: bool = True, random_weights: bool = False, device=None):
    """The run's generator (:class:`tckr.generator.Generator`: the pipeline with its base and adapter):
    ``generator.base`` with the run's adapter from notebook 02 (an error when it is missing, unless
    ``use_lora=False`` asks for the base on purpose).

    ``random_weights`` builds ``generator.arch`` with random weights instead (mechanics only: its images are noise).
    ``generator.dtype`` float16 runs as float32 on a CPU; bfloat16 is kept (about twice as fast on CPUs with bf16
    instructions, see ``bench/bench_generation.py``).
    """
    dev = device or run_device(run.cfg)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[run.cfg.generator.dtype]
    if dev.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    if random_weights:
        pipe = generator.build_random(run.cfg.generator.arch, dtype=dtype).to(dev)
        return generator.Generator(pipe, base=f"random:{run.cfg.generator.arch}")
    adapter = artifacts.adapter_path(run) if use_lora else None
    if adapter is not None and not adapter.is_file():
        # Never fall back to the base silently: a "synthetic set of the adapted generator" made by the base
        # looks finished and changes every downstream number.
        raise FileNotFoundError(f"no LoRA adapter at {adapter}: synthesis uses the run's adapter from "
                                "notebooks/02_lora_finetune.ipynb (phase 02_lora_finetune); run that first, or pass "
                                f"use_lora=False to generate with the base generator {run.cfg.generator.base!r} on purpose")
    pipe = generator.load(run.cfg.generator.base, lora=adapter, dtype=dtype, device=dev)
    return generator.Generator(pipe, base=str(run.cfg.generator.base), adapter=str(adapter) if adapter else None)


def class_balance(run) -> pd.DataFrame:
    """Images per class (columns) of each available synthetic set (rows, by multiple of |D|)."""
    rows = {m: np.bincount(synthetic.load_synthetic(run, m).labels, minlength=len(run.class_names))
            for m in synthetic.available_multiples(run)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=run.class_names).rename_axis("multiple")


def _settings(run, gen, table: pd.DataFrame, multiples=None) -> dict[str, Any]:
    cfg = run.cfg.synthesis
    adapter = gen.adapter
    return {"base": gen.base,
            "adapter": run.portable(adapter) if adapter else None,
            "adapter_sha256": io.sha256_file(adapter) if adapter else None,
            "arch": run.cfg.generator.arch, "resolution": run.cfg.generator.resolution,
            "guidance_scale": cfg.guidance_scale, "steps": cfg.steps, "prompt_mode": cfg.prompt_mode,
            "seed": run.seed_for(cfg.seed), "shard_size": cfg.shard_size, "n": len(table),
            "prompts_sha256": hashlib.sha256("\n".join(table["prompt"]).encode()).hexdigest()[:16],
            "largest_multiple": max(cfg.cardinalities),
            "cardinalities": sorted(cfg.cardinalities if multiples is None else {float(m) for m in multiples}),
            "d_size": len(run.splits().D), "init_strength": float(cfg.init_strength)}


def _check_manifest(run, settings: dict[str, Any]) -> None:
    path = synthetic.synthetic_dir(run) / "manifest.json"
    if path.is_file():
        old = io.read_json(path)
        if "adapter_sha256" not in old and old.get("adapter") and settings["adapter"]:
            # manifests written before adapters were recorded relative to the run (with a checksum) hold an absolute path
            old["adapter"] = settings["adapter"] if Path(old["adapter"]).name == Path(settings["adapter"]).name else old["adapter"]
        diff = [f"{k}: {old[k]!r} -> {v!r}" for k, v in settings.items() if k in old and old[k] != v]
        if diff:
            raise RuntimeError(f"{synthetic.synthetic_dir(run)} was generated with other settings ({'; '.join(diff)}); "
                               "use a new run folder, or delete that folder to start over")
        if any(k not in old for k in settings):
            io.write_json(path, {**old, **settings})
    else:
        io.write_json(path, settings)


def _write_shard(run, j: int, images: np.ndarray, rows: pd.DataFrame) -> None:
    """Array, then sidecar (checksums of both files), then table: the table marks the shard finished."""
    npy, csv = synthetic.shard_paths(run, j)
    io.save_array(npy, images)
    text = rows.to_csv(index=False)
    io.write_json(synthetic.shard_sidecar(run, j), {"sha256": io.sha256_file(npy), "csv_sha256": hashlib.sha256(text.encode()).hexdigest(),
                                          "n": len(rows), "shape": list(images.shape), "dtype": str(images.dtype)})
    io.write_text(csv, text)


def generate(run, pipe=None, *, shard: str | None = None, progress: bool = True, batch_size: int | None = None,
             multiples=None) -> dict[str, Any]:
    """Generate the run's largest synthetic set (this process's shards of it), skipping finished shards; with
    ``multiples`` (some of ``synthesis.cardinalities``), only the rows of the largest set that their sets use.

    ``pipe`` defaults to :func:`load_generator`; a :class:`tckr.generator.Generator` records its base and adapter in
    the manifest; a bare ``StableDiffusionPipeline`` works too (recorded as ``custom <type>``, no adapter). Returns a summary: shards done/total, images made now, seconds, images per second.
    """


    cfg = run.cfg.synthesis
    set_threads(run.cfg)
    k, n_workers = shards.parse_shard(shard)
    table = plan(run, multiples)
    n_shards = int(table["shard"].max()) + 1 if len(table) else 0
    mine = shards.mine(range(n_shards), shard)
    todo = [j for j in mine if not synthetic.shard_done(run, j, table[table["shard"] == j])]
    summary = {"shards_total": n_shards, "shards_mine": len(mine), "shards_made": 0, "images_made": 0,
               "seconds": 0.0, "images_per_s": None}
    folder = synthetic.synthetic_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    if pipe is None and todo:
        pipe = load_generator(run)
    if pipe is not None:
        gen = pipe if isinstance(pipe, Generator) else Generator(pipe, base=f"custom {type(pipe).__name__}")
        _check_manifest(run, _settings(run, gen, table, multiples))
        pipe = gen.pipe
    if not (folder / "plan.csv").is_file():
        io.save_csv(folder / "plan.csv", table)
    if pipe is not None and todo and getattr(pipe, "tokenizer", None) is not None:
        long = generator.truncated_prompts(pipe.tokenizer, table["prompt"].tolist())
        if long:  # diffusers cuts them with a warning per batch; say once how many, and where the list is
            io.write_json(folder / "truncated_prompts.json", {"max_tokens": int(pipe.tokenizer.model_max_length), "prompts": long})
            print(f"synthesis: {len(long)} of {table['prompt'].nunique()} distinct prompts are longer than the text encoder's "
                  f"{pipe.tokenizer.model_max_length} tokens and are cut at the end (listed in {folder / 'truncated_prompts.json'}), "
                  f"e.g. {long[0]!r}", file=sys.stderr)
    if not todo:
        _write_subsets(run)
        return summary
    res = run.cfg.generator.resolution
    bs = int(batch_size or cfg.batch_size)
    strength = float(cfg.init_strength)
    if strength > 0:
        # Image-to-image: each image starts from its prompt's own image of D, noised to `strength` of the schedule.
        # Positive controls only: near-copies of members on purpose.
        pipe = img2img(pipe)
        starts, D = plan_sources(run), run.real("D")
    start = time.perf_counter()
    bar = tqdm(total=int(table["shard"].isin(todo).sum()), desc=f"synthesis {k}/{n_workers}", unit="images", disable=not progress)
    for j in todo:
        rows = table[table["shard"] == j]
        npy, csv = synthetic.shard_paths(run, j)
        for stale in npy.parent.glob(f".{npy.stem}.*"):
            stale.unlink(missing_ok=True)
        images = np.empty((len(rows), res, res, 3), dtype=np.uint8)
        prompts, seeds = rows["prompt"].tolist(), rows["seed"].tolist()
        for s in range(0, len(rows), bs):
            init = D.images[starts[rows["i"].to_numpy()[s:s + bs]]] if strength > 0 else None
            images[s:s + len(seeds[s:s + bs])] = render(run.cfg, pipe, prompts[s:s + bs], seeds[s:s + bs], init=init, strength=strength)
            bar.update(len(seeds[s:s + bs]))
        _write_shard(run, j, images, rows)
        summary["shards_made"] += 1
        summary["images_made"] += len(rows)
    bar.close()
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["images_per_s"] = round(summary["images_made"] / max(summary["seconds"], 1e-9), 3)
    _write_subsets(run)
    return summary


def img2img(pipe):
    """Diffusers' image-to-image pipeline on the components of ``pipe`` (for :func:`render` with a start image)."""
    from diffusers import StableDiffusionImg2ImgPipeline  # lazy: optional heavy dependency

    out = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    out.set_progress_bar_config(disable=True)
    return out


def render(cfg, pipe, prompts: list[str], seeds: list[int], *, init: np.ndarray | None = None, strength: float = 0.0) -> np.ndarray:
    """One batch of uint8 images ``n×res×res×3``, image ``k`` from ``prompts[k]`` with noise seed ``seeds[k]``
    (``synthesis.steps``, ``synthesis.guidance_scale``); ``strength`` > 0: image-to-image (``pipe`` from :func:`img2img`)
    from ``init[k]`` (uint8 start images, resized to the generator's resolution), ``strength`` of the schedule run."""
    res = cfg.generator.resolution
    gens = [torch.Generator(device="cpu").manual_seed(int(x)) for x in seeds]
    with torch.inference_mode():
        if strength > 0:
            if init.shape[1:3] != (res, res):
                init = real.resize_images(init, res)
            out = pipe(prompt=list(prompts), image=init.astype(np.float32) / 255.0, strength=strength,
                       num_inference_steps=cfg.synthesis.steps, guidance_scale=cfg.synthesis.guidance_scale, generator=gens,
                       output_type="np").images
        else:
            out = pipe(prompt=list(prompts), num_inference_steps=cfg.synthesis.steps, guidance_scale=cfg.synthesis.guidance_scale,
                       height=res, width=res, generator=gens, output_type="np").images
    return to_uint8(out)


def _write_subsets(run) -> None:
    """Once every shard is finished: the subsets' indices, and each shard's checksums in the manifest."""
    if not synthetic.is_complete(run):
        return
    for m in synthetic.available_multiples(run):
        path = synthetic.synthetic_dir(run) / "subsets" / f"x{m:g}.npy"
        if not path.is_file() or not np.array_equal(synthetic._read_or_none(path), synthetic.subset_index(run, m)):
            io.save_array(path, synthetic.subset_index(run, m))
    manifest = synthetic.synthetic_dir(run) / "manifest.json"
    info = io.read_json(manifest)
    sides = [io.read_json(synthetic.shard_sidecar(run, j)) for j in range(synthetic._n_shards(run, info))]
    sealed = {"shards_sha256": [r["sha256"] for r in sides], "tables_sha256": [r["csv_sha256"] for r in sides]}
    if any(info.get(k) != v for k, v in sealed.items()):
        io.write_json(manifest, {**info, **sealed})


def status(run, multiples=None) -> pd.DataFrame:
    """One row per shard of the plan (of ``multiples``, as :func:`generate`): ``shard``, ``images``, ``done``."""
    table = plan(run, multiples)
    per = table.groupby("shard").size()
    return pd.DataFrame({"shard": per.index, "images": per.to_numpy(),
                         "done": [synthetic.shard_done(run, int(j)) for j in per.index]})


# --------------------------------------------------------------------------- command line
