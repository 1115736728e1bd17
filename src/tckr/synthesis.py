"""Synthesis: the synthetic training set, generated from the run's captions by the (LoRA-adapted) generator.

Prompts are class-balanced and cycled within each class: image ``i`` of the largest set is class ``i mod C``
and uses that class's ``i // C``-th prompt (wrapping around), in D's order. ``synthesis.prompt_mode`` is
``"caption"`` (the run's ``"<class>: <caption>"`` prompts from notebook 01) or ``"class"`` (the class name only,
the ablation). Image ``i`` is drawn with its own noise seed ``run.seed_for(synthesis.seed) * 2**32 + i``: the
seeds of repeated runs (run seeds) never overlap, they never reach the fine-tuning seed (``lora.seed``;
:func:`plan` refuses an overlap), and an image does not depend on which process made it (shards are
bit-identical across processes at the same batch size).

Only the largest cardinality in ``synthesis.cardinalities`` (multiples of |D|) is generated; a smaller one is
a seeded, class-balanced subset of it (subsets are nested: 1× ⊂ 2× ⊂ ...), see :func:`subset_index`.

Files under ``<run>/synthetic/``:

- ``manifest.json``: what the set was made with (generator base, adapter path relative to the run folder and
  its sha256, guidance, steps, resolution, prompt mode, seeds, sizes). A rerun with other settings is an error
  instead of a mixed set. Once every shard is finished it also lists each shard's sha256 (``shards_sha256``,
  ``tables_sha256``), so the manifest identifies the whole set's content.
- ``plan.csv``: one row per image of the largest set: ``i``, ``label``, ``class_name``, ``prompt``, ``seed``,
  ``shard``.
- ``shards/shard_<j>.npy`` (uint8 ``n×H×W×3``), ``shards/shard_<j>.json`` (sidecar: sha256 of the array file and
  of the table) and ``shards/shard_<j>.csv`` (that shard's rows of the plan), all written atomically; the CSV is
  written last, so a shard is finished when its CSV exists and its files match the sidecar's checksums. A
  truncated or damaged shard is therefore unfinished: reading it is an error naming it, and the next
  :func:`generate` makes it again. A rerun skips finished shards; ``shard="k/n"`` (or ``python -m
  tckr.synthesis --shard k/n``) makes only shards ``j`` with ``j mod n == k - 1``, so ``n`` processes or GPUs
  share the work without talking to each other.
- ``subsets/x<multiple>.npy``: the indices (into the largest set) of each smaller cardinality.

Reading: :func:`stream_synthetic` memory-maps the shards and returns the subset as an index over them
(:class:`ShardedImages`; student training reads it batch by batch, so RAM does not grow with the set, see
``bench/bench_streaming.py``); :func:`load_synthetic` is the same set read into RAM.

Figure: ``<run>/figures/synthetic_samples.{pdf,png}``, samples per class (:func:`plot_samples`).
"""

from __future__ import annotations

import argparse
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import io, shards

SYNTHETIC_DIR = "synthetic"
PLAN_COLUMNS = ("i", "label", "class_name", "prompt", "seed", "shard")
SEED_STRIDE = 2**32  # noise seeds of image i: run.seed_for(synthesis.seed) * SEED_STRIDE + i


@dataclass
class SyntheticSet:
    """Synthetic images (uint8 ``N×H×W×3`` RGB), their prompted labels (int64) and prompts."""

    images: np.ndarray
    labels: np.ndarray
    prompts: list[str]
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of the largest set

    def __len__(self) -> int:
        return len(self.labels)


# --------------------------------------------------------------------------- plan


def set_size(run, multiple: float) -> int:
    """Images in the synthetic set of ``multiple`` × |D|."""
    if multiple <= 0:
        raise ValueError(f"a cardinality is a positive multiple of |D|, got {multiple}")
    return int(round(multiple * len(run.splits().D)))


def class_counts(n: int, num_classes: int) -> np.ndarray:
    """Class-balanced counts of ``n`` images: ``n // C`` each, the remainder to the first classes."""
    counts = np.full(num_classes, n // num_classes, dtype=np.int64)
    counts[: n % num_classes] += 1
    return counts


def class_prompts(run) -> list[list[str]]:
    """Per class, the prompts synthesis cycles through (``synthesis.prompt_mode``)."""
    names = run.class_names
    mode = run.cfg.synthesis.prompt_mode
    if mode == "class":
        return [[n] for n in names]
    if mode != "caption":
        raise ValueError(f"synthesis.prompt_mode: unknown mode {mode!r}; accepted: 'caption', 'class'")
    from . import captions

    table = captions.load_captions(run)
    out = [table.loc[table["label"] == c, "prompt"].tolist() for c in range(len(names))]
    empty = [names[c] for c, p in enumerate(out) if not p]
    if empty:
        raise ValueError(f"no captions for classes {empty} in {captions.captions_path(run)}; every class needs at least one")
    return out


def caption_order(run, label: int, n: int) -> np.ndarray:
    """The seeded order in which synthesis cycles the ``n`` captions of class ``label``."""
    return np.random.default_rng([run.seed_for(run.cfg.synthesis.seed), 2, int(label)]).permutation(n)


def plan(run) -> pd.DataFrame:
    """The largest synthetic set, one row per image (columns ``PLAN_COLUMNS``)."""
    cfg = run.cfg.synthesis
    n = set_size(run, max(cfg.cardinalities))
    # Each class cycles its captions in a seeded random order, so a set smaller than |D| (a shadow pipeline's
    # 0.2x set, say) uses a random share of the captions, as the target's 0.2x subset of its larger set does,
    # not the captions of the lowest-index images of D.
    prompts = [[p[j] for j in caption_order(run, c, len(p))] for c, p in enumerate(class_prompts(run))]
    C = len(prompts)
    i = np.arange(n, dtype=np.int64)
    labels, rank = i % C, i // C
    base = run.seed_for(cfg.seed) * SEED_STRIDE
    lora_seed = run.seed_for(run.cfg.lora.seed)
    if base <= lora_seed < base + n:
        raise ValueError(f"synthesis.seed {cfg.seed}: noise seeds {base}..{base + n - 1} would include the fine-tuning "
                         f"seed {lora_seed}; pick a positive synthesis.seed")
    return pd.DataFrame({"i": i, "label": labels, "class_name": [run.class_names[c] for c in labels],
                         "prompt": [prompts[c][r % len(prompts[c])] for c, r in zip(labels, rank)],
                         "seed": base + i, "shard": i // cfg.shard_size})


def subset_index(run, multiple: float) -> np.ndarray:
    """Rows of the largest set that form the set of ``multiple`` × |D| (sorted; seeded; class-balanced; nested)."""
    cfg = run.cfg.synthesis
    largest = max(cfg.cardinalities)
    n_max, n = set_size(run, largest), set_size(run, multiple)
    if n > n_max:
        raise ValueError(f"multiple {multiple} is larger than the largest generated cardinality {largest}")
    C = len(run.class_names)
    labels = np.arange(n_max) % C
    rng = np.random.default_rng([run.seed_for(cfg.seed), 1])
    picks = []
    for c, k in enumerate(class_counts(n, C)):
        rows = np.flatnonzero(labels == c)
        picks.append(rows[rng.permutation(len(rows))[:k]])
    return np.sort(np.concatenate(picks)).astype(np.int64)


# --------------------------------------------------------------------------- generation


def synthetic_dir(run) -> Path:
    return run.dir / SYNTHETIC_DIR


def shard_paths(run, j: int) -> tuple[Path, Path]:
    folder = synthetic_dir(run) / "shards"
    return folder / f"shard_{j:05d}.npy", folder / f"shard_{j:05d}.csv"


def shard_sidecar(run, j: int) -> Path:
    """``shards/shard_<j>.json``: the sha256 of the shard's array (``sha256``) and table (``csv_sha256``)."""
    return shard_paths(run, j)[0].with_suffix(".json")


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"k/n"`` (1 ≤ k ≤ n) as ``(k, n)``; ``None`` is ``(1, 1)`` (:func:`tckr.shards.parse_shard`)."""
    return shards.parse_shard(shard)


def load_pipeline(run, *, use_lora: bool = True, random_weights: bool = False, device=None):
    """The run's generator: ``generator.base`` with the run's adapter from notebook 02 (an error when it is missing,
    unless ``use_lora=False`` asks for the base on purpose).

    ``random_weights`` builds ``generator.arch`` with random weights instead (mechanics only: its images are noise).
    ``generator.dtype`` float16 runs as float32 on a CPU; bfloat16 is kept (about twice as fast on CPUs with bf16
    instructions, see ``bench/bench_generation.py``).
    """
    import torch

    from . import generator, lora
    from .runs import device as run_device

    dev = device or run_device(run.cfg)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[run.cfg.generator.dtype]
    if dev.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    if random_weights:
        pipe = generator.build_random(run.cfg.generator.arch, dtype=dtype).to(dev)
        pipe._tckr_base, pipe._tckr_adapter = f"random:{run.cfg.generator.arch}", None
        return pipe
    adapter = lora.adapter_path(run) if use_lora else None
    if adapter is not None and not adapter.is_file():
        # Never fall back to the base silently: a "synthetic set of the adapted generator" made by the base
        # looks finished and changes every downstream number.
        raise FileNotFoundError(f"no LoRA adapter at {adapter}: synthesis uses the run's adapter from "
                                "notebooks/02_lora_finetune.ipynb (phase 02_lora_finetune); run that first, or pass "
                                f"use_lora=False to generate with the base generator {run.cfg.generator.base!r} on purpose")
    pipe = generator.load(run.cfg.generator.base, lora=adapter, dtype=dtype, device=dev)
    pipe._tckr_adapter = str(adapter) if adapter else None
    return pipe


def class_balance(run) -> pd.DataFrame:
    """Images per class (columns) of each available synthetic set (rows, by multiple of |D|)."""
    rows = {m: np.bincount(load_synthetic(run, m).labels, minlength=len(run.class_names)) for m in available_multiples(run)}
    return pd.DataFrame.from_dict(rows, orient="index", columns=run.class_names).rename_axis("multiple")


def _settings(run, pipe, table: pd.DataFrame) -> dict[str, Any]:
    cfg = run.cfg.synthesis
    adapter = getattr(pipe, "_tckr_adapter", None)
    return {"base": getattr(pipe, "_tckr_base", f"custom {type(pipe).__name__}"),
            "adapter": run.portable(adapter) if adapter else None,
            "adapter_sha256": io.sha256_file(adapter) if adapter else None,
            "arch": run.cfg.generator.arch, "resolution": run.cfg.generator.resolution,
            "guidance_scale": cfg.guidance_scale, "steps": cfg.steps, "prompt_mode": cfg.prompt_mode,
            "seed": run.seed_for(cfg.seed), "shard_size": cfg.shard_size, "n": len(table),
            "prompts_sha256": hashlib.sha256("\n".join(table["prompt"]).encode()).hexdigest()[:16],
            "largest_multiple": max(cfg.cardinalities), "cardinalities": sorted(cfg.cardinalities),
            "d_size": len(run.splits().D)}


def _check_manifest(run, settings: dict[str, Any]) -> None:
    path = synthetic_dir(run) / "manifest.json"
    if path.is_file():
        old = io.read_json(path)
        if "adapter_sha256" not in old and old.get("adapter") and settings["adapter"]:
            # manifests written before adapters were recorded relative to the run (with a checksum) hold an absolute path
            old["adapter"] = settings["adapter"] if Path(old["adapter"]).name == Path(settings["adapter"]).name else old["adapter"]
        diff = [f"{k}: {old[k]!r} -> {v!r}" for k, v in settings.items() if k in old and old[k] != v]
        if diff:
            raise RuntimeError(f"{synthetic_dir(run)} was generated with other settings ({'; '.join(diff)}); "
                               "use a new run folder, or delete that folder to start over")
        if any(k not in old for k in settings):
            io.write_json(path, {**old, **settings})
    else:
        io.write_json(path, settings)


def _shard_problem(run, j: int, rows: pd.DataFrame | None = None) -> str | None:
    """Why shard ``j`` is not a finished, intact shard (None when it is): a file missing, a checksum that differs
    from its sidecar's, or (with ``rows``) a table or array that does not fit the plan's rows."""
    npy, csv = shard_paths(run, j)
    side = shard_sidecar(run, j)
    missing = [f.name for f in (npy, side, csv) if not f.is_file()]
    if missing:
        return f"shard {j} is not finished ({', '.join(missing)} missing)"
    try:
        rec = io.read_json(side)
    except io.CorruptFileError as e:
        return str(e)
    for f, key in ((npy, "sha256"), (csv, "csv_sha256")):
        got = io.sha256_file(f)
        if got != rec.get(key):
            return (f"{f}: sha256 {got[:16]}… differs from {str(rec.get(key))[:16]}… recorded in {side.name} "
                    f"({f.stat().st_size} bytes): the file is truncated or damaged")
    if rows is not None:
        done = pd.read_csv(csv, keep_default_na=False)
        if len(done) != len(rows) or not np.array_equal(done["i"].to_numpy(), rows["i"].to_numpy()):
            return f"{csv}: rows differ from the plan's shard {j}"
        try:
            arr = io.load_array(npy, mmap=True)
        except io.CorruptFileError as e:
            return str(e)
        if arr.shape[0] != len(rows) or arr.dtype != np.uint8:
            return f"{npy}: {arr.dtype} {arr.shape} does not hold the plan's {len(rows)} uint8 images"
    return None


def shard_done(run, j: int, rows: pd.DataFrame | None = None) -> bool:
    """Whether shard ``j`` is finished and intact (its files exist and match its sidecar's sha256; with ``rows``
    its table also matches the plan and its array has the right shape)."""
    return _shard_problem(run, j, rows) is None


def _write_shard(run, j: int, images: np.ndarray, rows: pd.DataFrame) -> None:
    """Array, then sidecar (checksums of both files), then table: the table marks the shard finished."""
    npy, csv = shard_paths(run, j)
    io.save_array(npy, images)
    text = rows.to_csv(index=False)
    io.write_json(shard_sidecar(run, j), {"sha256": io.sha256_file(npy), "csv_sha256": hashlib.sha256(text.encode()).hexdigest(),
                                          "n": len(rows), "shape": list(images.shape), "dtype": str(images.dtype)})
    io.write_text(csv, text)


def generate(run, pipe=None, *, shard: str | None = None, progress: bool = True, batch_size: int | None = None) -> dict[str, Any]:
    """Generate the run's largest synthetic set (this process's shards of it), skipping finished shards.

    ``pipe`` defaults to :func:`load_pipeline`; any ``StableDiffusionPipeline`` works (tests pass one with random
    weights). Returns a summary: shards done/total, images made now, seconds, images per second.
    """
    import time

    import torch
    from tqdm.auto import tqdm

    from .generator import to_uint8
    from .runs import set_threads

    cfg = run.cfg.synthesis
    set_threads(run.cfg)
    k, n_workers = parse_shard(shard)
    table = plan(run)
    n_shards = int(table["shard"].max()) + 1 if len(table) else 0
    mine = shards.mine(range(n_shards), shard)
    todo = [j for j in mine if not shard_done(run, j, table[table["shard"] == j])]
    summary = {"shards_total": n_shards, "shards_mine": len(mine), "shards_made": 0, "images_made": 0,
               "seconds": 0.0, "images_per_s": None}
    folder = synthetic_dir(run)
    folder.mkdir(parents=True, exist_ok=True)
    if pipe is None and todo:
        pipe = load_pipeline(run)
    if pipe is not None:
        _check_manifest(run, _settings(run, pipe, table))
    if not (folder / "plan.csv").is_file():
        io.save_csv(folder / "plan.csv", table)
    if not todo:
        _write_subsets(run)
        return summary
    device = pipe.device
    res = run.cfg.generator.resolution
    bs = int(batch_size or cfg.batch_size)
    start = time.perf_counter()
    bar = tqdm(total=int(table["shard"].isin(todo).sum()), desc=f"synthesis {k}/{n_workers}", unit="img", disable=not progress)
    for j in todo:
        rows = table[table["shard"] == j]
        npy, csv = shard_paths(run, j)
        for stale in npy.parent.glob(f".{npy.stem}.*"):
            stale.unlink(missing_ok=True)
        images = np.empty((len(rows), res, res, 3), dtype=np.uint8)
        prompts, seeds = rows["prompt"].tolist(), rows["seed"].tolist()
        for s in range(0, len(rows), bs):
            gens = [torch.Generator(device="cpu").manual_seed(int(x)) for x in seeds[s:s + bs]]
            with torch.inference_mode():
                out = pipe(prompt=prompts[s:s + bs], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                           height=res, width=res, generator=gens, output_type="np").images
            images[s:s + len(gens)] = to_uint8(out)
            bar.update(len(gens))
        _write_shard(run, j, images, rows)
        summary["shards_made"] += 1
        summary["images_made"] += len(rows)
    bar.close()
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["images_per_s"] = round(summary["images_made"] / max(summary["seconds"], 1e-9), 3)
    _write_subsets(run)
    return summary


def _write_subsets(run) -> None:
    """Once every shard is finished: the subsets' indices, and each shard's checksums in the manifest."""
    if not is_complete(run):
        return
    for m in run.cfg.synthesis.cardinalities:
        path = synthetic_dir(run) / "subsets" / f"x{m:g}.npy"
        if not path.is_file() or not np.array_equal(_read_or_none(path), subset_index(run, m)):
            io.save_array(path, subset_index(run, m))
    manifest = synthetic_dir(run) / "manifest.json"
    info = io.read_json(manifest)
    sides = [io.read_json(shard_sidecar(run, j)) for j in range(_n_shards(run, info))]
    sealed = {"shards_sha256": [r["sha256"] for r in sides], "tables_sha256": [r["csv_sha256"] for r in sides]}
    if any(info.get(k) != v for k, v in sealed.items()):
        io.write_json(manifest, {**info, **sealed})


def _read_or_none(path: Path) -> np.ndarray | None:
    try:
        return io.load_array(path)
    except io.CorruptFileError:
        return None


def _n_shards(run, info: dict[str, Any]) -> int:
    return math.ceil(info["n"] / run.cfg.synthesis.shard_size)


def status(run) -> pd.DataFrame:
    """One row per shard of the plan: ``shard``, ``images``, ``done``."""
    table = plan(run)
    per = table.groupby("shard").size()
    return pd.DataFrame({"shard": per.index, "images": per.to_numpy(),
                         "done": [shard_done(run, int(j)) for j in per.index]})


def is_complete(run) -> bool:
    """Whether every shard of the largest set is finished and intact."""
    folder = synthetic_dir(run)
    if not (folder / "manifest.json").is_file():
        return False
    return all(shard_done(run, j) for j in range(_n_shards(run, io.read_json(folder / "manifest.json"))))


def problems(run) -> list[str]:
    """The damaged shards of the run's synthetic set: present but truncated or changed (sha256 differs from the
    sidecar's), or replaced since the set was finished (sidecar differs from the manifest's list). Shards not
    made yet are not listed (:func:`status` shows them). Empty when every present shard is intact."""
    manifest = synthetic_dir(run) / "manifest.json"
    if not manifest.is_file():
        return []
    info = io.read_json(manifest)
    out = []
    for j in range(_n_shards(run, info)):
        if not all(f.is_file() for f in (*shard_paths(run, j), shard_sidecar(run, j))):
            continue
        bad = _shard_problem(run, j)
        if bad is None and "shards_sha256" in info:
            side = io.read_json(shard_sidecar(run, j))
            if j >= len(info["shards_sha256"]) or side["sha256"] != info["shards_sha256"][j] \
                    or side["csv_sha256"] != info["tables_sha256"][j]:
                bad = (f"{shard_paths(run, j)[0]}: its sidecar's sha256 differs from the one {manifest.name} recorded "
                       "when the set was finished: the shard was replaced")
        if bad:
            out.append(bad)
    return out


def check(run) -> None:
    """:class:`tckr.io.CorruptFileError` naming the first damaged shard (see :func:`problems`), if any."""
    damaged = problems(run)
    if damaged:
        raise io.CorruptFileError(f"{damaged[0]}" + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else "")
                                  + "; rerun notebooks/03_generate.ipynb (phase 03_generate): it makes damaged shards again")


# --------------------------------------------------------------------------- reading


def available_multiples(run) -> list[float]:
    """The cardinalities (multiples of |D|) this run has a finished synthetic set for."""
    if not is_complete(run):
        return []
    return sorted(float(m) for m in io.read_json(synthetic_dir(run) / "manifest.json")["cardinalities"])


class ShardedImages:
    """Read-only images ``N×H×W×3`` uint8 spread over memory-mapped shard arrays, restricted to ``index`` (rows of
    the concatenated shards, in order). Indexing reads only the asked rows (resized to ``size`` when the shards
    hold another resolution), so a training loop holds one batch, never the set: the set's RAM is the page cache.
    ``take(idx)`` is a smaller view (an index, not a copy); ``np.asarray(view)`` materialises it."""

    def __init__(self, arrays: list[np.ndarray], index: np.ndarray | None = None, size: int | None = None):
        if not arrays:
            raise ValueError("ShardedImages needs at least one shard array")
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) != 1 or any(a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3 for a in arrays):
            raise ValueError(f"shards must be uint8 n×H×W×3 of one shape, got {[(str(a.dtype), a.shape) for a in arrays]}")
        self.arrays = arrays
        self.offsets = np.cumsum([0] + [len(a) for a in arrays])
        total = int(self.offsets[-1])
        self.index = np.arange(total, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
        if self.index.ndim != 1 or (len(self.index) and (self.index.min() < 0 or self.index.max() >= total)):
            raise ValueError(f"index must be 1-D rows in 0..{total - 1}")
        native = arrays[0].shape[1]
        self.size = native if size is None else int(size)

    @classmethod
    def open(cls, files: list[str | Path], index: np.ndarray | None = None, size: int | None = None) -> "ShardedImages":
        """Memory-map the ``.npy`` shard ``files`` (a damaged one is a :class:`tckr.io.CorruptFileError` naming it)."""
        return cls([io.load_array(f, mmap=True) for f in files], index, size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index), self.size, self.size, 3)

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __len__(self) -> int:
        return len(self.index)

    def take(self, idx) -> "ShardedImages":
        return ShardedImages(self.arrays, self.index[np.asarray(idx)], self.size)

    def __getitem__(self, key) -> np.ndarray:
        rows = self.index[key]
        single = np.ndim(rows) == 0
        rows = np.atleast_1d(rows)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows),) + self.arrays[0].shape[1:], dtype=np.uint8)
        for j in np.unique(shard):
            at = np.flatnonzero(shard == j)
            local = rows[at] - self.offsets[j]
            # one fancy index per shard reads only those rows of the memory map
            out[at] = self.arrays[j][local]
        if out.shape[1] != self.size:
            from .data import resize_images

            out = resize_images(out, self.size)
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate([self[s:s + 4096] for s in range(0, len(self), 4096)]) if len(self) else np.zeros(self.shape, np.uint8)
        return out if dtype is None else out.astype(dtype)

    def __iter__(self):
        for s in range(0, len(self), 4096):
            yield from self[s:s + 4096]


def stream_synthetic(run, multiple: float) -> SyntheticSet:
    """The synthetic set of ``multiple`` × |D| without reading it into RAM: ``images`` is a :class:`ShardedImages`
    over the memory-mapped shards and the subset's index (same images, labels, prompts and order as
    :func:`load_synthetic`). Student training reads it batch by batch."""
    check(run)
    have = available_multiples(run)
    match = [m for m in have if math.isclose(m, float(multiple), rel_tol=1e-9)]
    if not match:
        what = f"only multiples {have}" if have else "no finished synthetic set"
        raise FileNotFoundError(f"run {run.dir} has {what}, not {multiple}× |D|; run notebooks/03_generate.ipynb "
                                f"(tckr.synthesis.generate) with {multiple} in synthesis.cardinalities")
    files, table = _shard_files(run)
    idx = subset_index(run, match[0])
    images = ShardedImages.open(files, idx, run.cfg.data.image_size)
    return SyntheticSet(images=images, labels=table["label"].to_numpy(np.int64)[idx],
                        prompts=table["prompt"].iloc[idx].tolist(), index=idx)


def load_synthetic(run, multiple: float) -> SyntheticSet:
    """The synthetic set of ``multiple`` × |D| (a seeded class-balanced subset of the largest set) in memory: only
    the subset's rows are read (:func:`stream_synthetic` reads none until asked)."""
    s = stream_synthetic(run, multiple)
    return SyntheticSet(images=np.ascontiguousarray(np.asarray(s.images)), labels=s.labels, prompts=s.prompts, index=s.index)


def _shard_files(run) -> tuple[list[Path], pd.DataFrame]:
    """The shard arrays' paths in order and the concatenated plan rows they hold (checked to cover 0..n-1)."""
    check(run)  # every shard's checksums against its sidecar and the manifest, before any byte is used
    info = io.read_json(synthetic_dir(run) / "manifest.json")
    n = info["n"]
    files, tables = [], []
    for j in range(_n_shards(run, info)):
        npy, csv = shard_paths(run, j)
        files.append(npy)
        tables.append(pd.read_csv(csv, keep_default_na=False, dtype={"prompt": str, "class_name": str}))
    table = pd.concat(tables, ignore_index=True)
    if not np.array_equal(table["i"].to_numpy(), np.arange(n)):
        raise RuntimeError(f"shards under {synthetic_dir(run)} do not cover images 0..{n - 1} in order")
    return files, table


# --------------------------------------------------------------------------- figure


def plot_samples(run, multiple: float | None = None, per_class: int = 8, name: str = "synthetic_samples"):
    """A grid of synthetic samples, one row per class; saved as ``<run>/figures/<name>.{pdf,png}``."""
    from matplotlib.figure import Figure

    multiple = max(available_multiples(run) or [0]) if multiple is None else multiple
    s = load_synthetic(run, multiple)
    names = run.class_names
    fig = Figure(figsize=(1.6 + per_class * 0.8, 0.4 + len(names) * 0.8))
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for c, name_c in enumerate(names):
        rows = np.flatnonzero(s.labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(rows):
                ax.imshow(s.images[rows[j]])
        axes[c, 0].text(-0.1, 0.5, name_c, transform=axes[c, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(f"synthetic samples ({multiple:g}× |D|, prompt mode {run.cfg.synthesis.prompt_mode!r})", fontsize=9)
    fig.subplots_adjust(left=0.18, right=0.99, bottom=0.01, top=0.95, wspace=0.05, hspace=0.05)
    out = []
    for ext in ("pdf", "png"):
        p = run.path("figures", f"{name}.{ext}")
        with io.atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        out.append(p)
    return out


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tckr.synthesis", description="Generate (a share of) a run's synthetic set.")
    parser.add_argument("--config", help="study config (needed when the run folder is new)")
    parser.add_argument("--run-dir", required=True, help="run folder")
    parser.add_argument("--shard", default=None, help="k/n: make only shards j with j mod n == k-1")
    parser.add_argument("--batch-size", type=int, default=None, help="images per pipeline call (default synthesis.batch_size)")
    parser.add_argument("--random-weights", action="store_true",
                        help="mechanics only: generator.arch with random weights instead of generator.base")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from . import runs

    run = runs.open_run(args.config, args.run_dir)
    pipe = load_pipeline(run, random_weights=True) if args.random_weights else None
    summary = generate(run, pipe, shard=args.shard, progress=not args.no_progress, batch_size=args.batch_size)
    print(summary)
    return summary


if __name__ == "__main__":
    main()
