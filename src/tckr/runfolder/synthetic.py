"""The synthetic-set store of a run folder (written by :mod:`tckr.generation.synthesis`): paths, integrity checks
and readers of ``<run>/synthetic/`` (``manifest.json``, ``plan.csv``, ``shards/shard_<j>.{npy,json,csv}``,
``subsets/x<m>.npy``; the format is described in :mod:`tckr.generation.synthesis`).

Like :mod:`tckr.runfolder.artifacts`, it imports no training, generation or drawing code. :func:`load_synthetic` reads a
set into RAM; :func:`stream_synthetic` memory-maps its shards (:class:`ShardedImages`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.datasets.real import resize_images

SYNTHETIC_DIR = "synthetic"


@dataclass
class SyntheticSet:
    """Synthetic images (uint8 ``N×H×W×3`` RGB), their prompted labels (int64) and prompts."""

    images: np.ndarray
    labels: np.ndarray
    prompts: list[str]
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of the largest set

    def __len__(self) -> int:
        return len(self.labels)


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


def subset_index(run, multiple: float) -> np.ndarray:
    """Rows of the largest set that form the set of ``multiple`` × |D| (sorted; seeded; class-balanced; nested).

    It reads only the largest set's labels (row ``i`` is class ``i mod C``) and the run's seed, never an image, so
    the rows that no wanted cardinality selects need not be generated (:func:`made_rows`). Nested: every call draws
    the same per-class permutations and keeps a prefix of each."""
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


def made_rows(run, multiples=None) -> np.ndarray:
    """Rows of the largest set that generation makes for the sets of ``multiples`` (None: every cardinality): all rows
    when the largest cardinality is wanted, else the rows of the largest wanted one (the smaller ones are inside it)."""
    cards = [float(m) for m in run.cfg.synthesis.cardinalities]
    want = cards if multiples is None else [float(m) for m in multiples]
    if not want or any(not any(math.isclose(m, c) for c in cards) for m in want):
        raise ValueError(f"cardinalities to make: {want} is not accepted; accepted: one or more of synthesis.cardinalities {cards}")
    if math.isclose(max(want), max(cards)):
        return np.arange(set_size(run, max(cards)), dtype=np.int64)
    return subset_index(run, max(want))


def synthetic_dir(run) -> Path:
    return run.dir / SYNTHETIC_DIR


def shard_paths(run, j: int) -> tuple[Path, Path]:
    folder = synthetic_dir(run) / "shards"
    return folder / f"shard_{j:05d}.npy", folder / f"shard_{j:05d}.csv"


def shard_sidecar(run, j: int) -> Path:
    """``shards/shard_<j>.json``: the sha256 of the shard's array (``sha256``) and table (``csv_sha256``)."""
    return shard_paths(run, j)[0].with_suffix(".json")


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


def _read_or_none(path: Path) -> np.ndarray | None:
    try:
        return io.load_array(path)
    except io.CorruptFileError:
        return None


def _n_shards(run, info: dict[str, Any]) -> int:
    return math.ceil(info["n"] / run.cfg.synthesis.shard_size)


def is_complete(run) -> bool:
    """Whether every shard of the set made (the largest set, or the rows :func:`made_rows` chose) is finished and intact."""
    folder = synthetic_dir(run)
    if not (folder / "manifest.json").is_file():
        return False
    return all(shard_done(run, j) for j in range(_n_shards(run, io.read_json(folder / "manifest.json"))))


def problems(run) -> list[str]:
    """The damaged shards of the run's synthetic set: present but truncated or changed (sha256 differs from the
    sidecar's), or replaced since the set was finished (sidecar differs from the manifest's list). Shards not
    made yet are not listed (:func:`tckr.generation.synthesis.status` shows them). Empty when every present shard
    is intact."""
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
    made = table["i"].to_numpy()
    at = np.searchsorted(made, idx)  # positions in the shards of the subset's rows of the largest set
    if len(idx) and (at.max() >= len(made) or not np.array_equal(made[at], idx)):
        raise RuntimeError(f"shards under {synthetic_dir(run)} lack rows of the {match[0]}× set; rerun synthesis in a new folder")
    images = ShardedImages.open(files, at, run.cfg.data.image_size)
    return SyntheticSet(images=images, labels=table["label"].to_numpy(np.int64)[at],
                        prompts=table["prompt"].iloc[at].tolist(), index=idx)


def load_synthetic(run, multiple: float) -> SyntheticSet:
    """The synthetic set of ``multiple`` × |D| (a seeded class-balanced subset of the largest set) in memory: only
    the subset's rows are read (:func:`stream_synthetic` reads none until asked)."""
    s = stream_synthetic(run, multiple)
    return SyntheticSet(images=np.ascontiguousarray(np.asarray(s.images)), labels=s.labels, prompts=s.prompts, index=s.index)


def _shard_files(run) -> tuple[list[Path], pd.DataFrame]:
    """The shard arrays' paths in order and the concatenated plan rows they hold (checked to be the rows made:
    0..n-1, or :func:`made_rows` of the manifest's cardinalities when only those were made)."""
    check(run)  # every shard's checksums against its sidecar and the manifest, before any byte is used
    info = io.read_json(synthetic_dir(run) / "manifest.json")
    n = info["n"]
    sparse = max(info["cardinalities"]) < info.get("largest_multiple", 0)  # only the rows of smaller sets were made
    rows = made_rows(run, info["cardinalities"]) if sparse else np.arange(n)
    files, tables = [], []
    for j in range(_n_shards(run, info)):
        npy, csv = shard_paths(run, j)
        files.append(npy)
        tables.append(pd.read_csv(csv, keep_default_na=False, dtype={"prompt": str, "class_name": str}))
    table = pd.concat(tables, ignore_index=True)
    if len(rows) != n or not np.array_equal(table["i"].to_numpy(), rows):
        what = f"the {n} rows of the largest set that the {max(info['cardinalities'])}× set uses" if sparse else f"images 0..{n - 1}"
        raise RuntimeError(f"shards under {synthetic_dir(run)} do not cover {what} in order")
    return files, table


def _read_all(run) -> tuple[np.ndarray, pd.DataFrame]:
    """Every shard of the largest set read into RAM with its plan rows (the in-memory path ``bench/bench_streaming.py``
    compares against)."""
    files, table = _shard_files(run)
    return np.concatenate([io.load_array(f, mmap=True) for f in files]), table
