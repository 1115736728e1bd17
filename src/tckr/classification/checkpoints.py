"""Epoch checkpoints of :func:`tckr.classification.train.fit`: one safetensors file per training, rewritten
atomically after every epoch, holding everything the next epoch depends on.

The state (weights, best weights, optimiser, schedule, AMP scaler, every RNG state, the history) is a nested
structure of dicts, lists, tensors, arrays and numbers; :func:`pack` moves its tensors and arrays into the
safetensors tensors and keeps the rest as JSON in the metadata (``tckr_checkpoint``), so no pickle is ever read.
The metadata's ``fingerprint`` says which training made the file (config hash, architecture, seed, epochs, data
sizes, digests of the targets): :func:`read_checkpoint` returns the state only when it is the same training.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tckr.core import io


def checkpoint_file(weights: str | Path) -> Path:
    """The epoch checkpoint of the model whose final weights go to ``weights``: ``<stem>.ckpt`` beside them
    (safetensors content; a suffix of its own so nothing that lists ``*.safetensors`` takes it for a model)."""
    return Path(weights).with_suffix(".ckpt")


def tensor_digest(t: torch.Tensor) -> str:
    """The first 16 hex digits of the sha256 of a CPU tensor's bytes (a fingerprint field)."""
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, numpy, python, and CUDA when present) that training draws from."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A nested state (dicts with int or str keys, lists, tuples, tensors, arrays, numbers) as JSON, its
    tensors and arrays moved into ``tensors`` (safetensors holds tensors only; no pickle anywhere)."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().clone()
        return {"t": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj.copy())
        return {"a": key, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"d": [[k, pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"l" if isinstance(obj, list) else "u": [pack(v, tensors) for v in obj]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The state :func:`pack` was given."""
    if "t" in obj:
        return tensors[obj["t"]]
    if "a" in obj:
        return tensors[obj["a"]].numpy().astype(obj["dtype"])
    if "d" in obj:
        return {k: unpack(v, tensors) for k, v in obj["d"]}
    if "l" in obj:
        return [unpack(v, tensors) for v in obj["l"]]
    if "u" in obj:
        return tuple(unpack(v, tensors) for v in obj["u"])
    return obj["v"]


def write_checkpoint(path: str | Path, fingerprint: dict[str, Any], state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    packed = pack(state, tensors)
    io.save_weights(path, tensors, metadata={"tckr_checkpoint": packed, "fingerprint": fingerprint})


def read_checkpoint(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None (said) when there is none, it is damaged or another training made it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        tensors, meta = io.load_weights(path)
        if "tckr_checkpoint" not in meta:
            raise io.CorruptFileError(f"{path}: a safetensors file without a training state")
        state = unpack(meta["tckr_checkpoint"], tensors)
    except (io.CorruptFileError, KeyError, TypeError, ValueError) as e:
        print(f"{e}\n-> epoch checkpoint {path} not usable; training starts from epoch 1")
        return None
    saved = meta.get("fingerprint", {})
    diff = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in fingerprint.items() if saved.get(k) != v]
    if diff:
        print(f"epoch checkpoint {path} was made by another training ({'; '.join(diff[:4])}); training starts from epoch 1")
        return None
    print(f"resuming from epoch checkpoint {path} after epoch {state['progress']['epoch']}")
    return state
