"""What a pretrained model saw, and the check that it saw none of a study's private images.

A base generator (or an audit feature extractor) trained by this project records the exact
train-split indices it was trained on: ``training_index.npy`` (int64, sorted) beside the model and
``training_data.json`` (dataset, split, count, sha256 of the index bytes, how it was made). Every
study checks at start (:func:`check_disjoint`) that those indices share nothing with its D, H, val
and test; a model from the hub (SD2 was trained on LAION) has no such record, and the run's
``environment.json`` says so instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from tckr.core import io, paths

INDEX_FILE = "training_index.npy"
RECORD_FILE = "training_data.json"


class DataLeakError(RuntimeError):
    """A pretrained model saw images of the study's private splits."""


def index_sha256(index: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(index, dtype=np.int64)).tobytes()).hexdigest()


def write_training_data(folder: str | Path, *, dataset: str, split: str, index: np.ndarray, source: str) -> Path:
    """Record the ``split`` indices of ``dataset`` a model in ``folder`` was trained on."""
    folder = Path(folder)
    index = np.sort(np.asarray(index, dtype=np.int64))
    io.save_array(folder / INDEX_FILE, index)
    return io.write_json(folder / RECORD_FILE, {"dataset": dataset, "split": split, "n": int(len(index)),
                                                "sha256": index_sha256(index), "source": source})


def read_training_data(folder: str | Path) -> tuple[dict[str, Any], np.ndarray] | None:
    """The record and indices of a local model folder; None when it has no record. A record whose
    index file is missing or does not match its hash is an error naming the file."""
    folder = Path(folder)
    rec_file = folder / RECORD_FILE
    if not rec_file.is_file():
        return None
    rec = io.read_json(rec_file)
    idx_file = folder / INDEX_FILE
    if not idx_file.is_file():
        raise DataLeakError(f"{rec_file} names training indices but {idx_file} is missing")
    index = io.load_array(idx_file)
    if index_sha256(index) != rec.get("sha256") or len(index) != rec.get("n"):
        raise DataLeakError(f"{idx_file} does not match the sha256/count recorded in {rec_file}: the record cannot be trusted")
    return rec, index


def base_generator_data(base: str) -> dict[str, Any]:
    """What the configured base generator was trained on, for ``environment.json``."""
    folder = paths.resolve(base)
    if not folder.is_dir():
        return {"base": base, "training_data": "not recorded: a hub model (Stable Diffusion 2 was trained on LAION-5B "
                "subsets); nothing to check against the study's splits"}
    found = read_training_data(folder)
    if found is None:
        return {"base": base, "training_data": f"not recorded: {folder} has no {RECORD_FILE}"}
    rec, _ = found
    return {"base": base, "training_data": rec}


def private_indices(run) -> dict[str, np.ndarray]:
    """The run's splits that a pretrained model must never have seen, by split of the real data."""
    out: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    for k in ("D", "H", "val", "test"):  # a carved test set and data.holdout: test move test or H between the two
        out[run.source(k)][k] = run.index(k)
    return out


def overlap(run, rec: dict[str, Any], index: np.ndarray) -> dict[str, int]:
    """Images shared between a model's training indices and each private split of the run."""
    if rec.get("dataset") != run.dataset:
        return {}
    splits = private_indices(run).get(rec.get("split"), {})
    return {k: int(np.intersect1d(index, v).size) for k, v in splits.items()}


def check_disjoint(run, base: str | None = None) -> dict[str, Any]:
    """Stop with :class:`DataLeakError` when the base generator's recorded training images overlap
    D, H, val or test of the run; returns what was checked (for ``environment.json``)."""
    base = base or run.cfg.generator.base
    folder = paths.resolve(base)
    info = base_generator_data(base)
    if not folder.is_dir() or (found := read_training_data(folder)) is None:
        return {**info, "checked": False}
    rec, index = found
    shared = overlap(run, rec, index)
    if any(shared.values()):
        what = ", ".join(f"{v} of {k}" for k, v in shared.items() if v)
        raise DataLeakError(f"base generator {base} was trained on {sum(shared.values())} private images of this study "
                            f"({what}); retrain it on the public partition (tckr pretrain) or change the splits")
    return {**info, "checked": True, "overlap": shared}
