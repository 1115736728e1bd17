"""Atomic writes of result files, arrays and safetensors weights; readers that name the file they could not read,
and content checksums (:func:`sha256_file`)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class CorruptFileError(ValueError):
    """A file that exists but cannot be read as what it should be (truncated, overwritten, wrong format),
    or whose content does not match its recorded checksum. The message starts with the file's path."""


_SHA_CACHE: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """Hex sha256 of a file's bytes. Cached per process by (path, size, mtime, ctime, inode), so checking
    the same unchanged file twice reads it once; any write to it changes the key."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _corrupt(path: Path, what: str, e: BaseException) -> CorruptFileError:
    detail = str(e).splitlines()[0] if str(e) else ""
    return CorruptFileError(f"{path}: not a readable {what} ({type(e).__name__}: {detail}); "
                            "it is truncated or damaged: delete it and rerun the phase that wrote it")


class DiskFullError(OSError):
    """A write that ran out of space (``ENOSPC``, ``EDQUOT``, or a short write such as numpy's ``122880 requested and
    77696 written``); the message names the file. The partial file is removed."""


def _disk_full(path: Path, e: OSError) -> DiskFullError | None:
    """The :class:`DiskFullError` for ``e`` when it is an out-of-space error, else None. numpy and safetensors report
    a short write without an errno, only as ``<n> requested and <m> written``."""
    short = e.errno is None and "requested and" in str(e) and "written" in str(e)
    if e.errno not in (errno.ENOSPC, errno.EDQUOT) and not short:
        return None
    detail = " ".join(str(e).split()) or errno.errorcode.get(e.errno or 0, "")
    return DiskFullError(errno.ENOSPC, f"{path}: not written, the disk is full ({detail}); free space on the disk "
                                       f"holding {path.parent} and rerun")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds. Running out of
    disk space is a :class:`DiskFullError` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        full = None if isinstance(e, DiskFullError) else _disk_full(path, e)
        if full is None:
            raise
        raise full from e
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = path.read_text(errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _corrupt(path, "JSON file", e) from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def save_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` through a temporary file (``allow_pickle`` is never needed to read it back)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)
    return Path(path)


def load_array(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """An ``.npy`` array; a truncated or damaged file is a :class:`CorruptFileError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no array file at {path}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # bad header, short data ("mmap length is greater than file size")
        raise _corrupt(path, ".npy array", e) from None


def save_csv(path: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def save_weights(path: str | os.PathLike, tensors: dict, metadata: dict[str, Any] | None = None) -> Path:
    """Save tensors as safetensors; metadata values are stored as JSON strings. The same tensors and metadata give
    the same bytes: safetensors writes the metadata in hash-map order, which changes from save to save (and so
    would every recorded sha256), so the header is written again with the metadata keys sorted."""
    from safetensors.torch import (
        save,  # lazy: tckr.io sits under the torch-free layers (artifacts, ledger, report): safetensors only when called
    )

    meta = {k: v if isinstance(v, str) else json.dumps(v, default=_json_default) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = _sorted_metadata(save(tensors, metadata=meta))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _sorted_metadata(data: bytes) -> bytes:
    """A safetensors file's bytes with its header's ``__metadata__`` keys in sorted order (the tensor entries and
    the data untouched; the header padded with spaces to a multiple of 8 bytes, as safetensors pads it)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def load_weights(path: str | os.PathLike) -> tuple[dict, dict[str, Any]]:
    """Load a safetensors file: (tensors, metadata with JSON values decoded)."""
    from safetensors import (
        safe_open,  # lazy: tckr.io sits under the torch-free layers (artifacts, ledger, report): safetensors only when called
    )
    from safetensors.torch import (
        load_file,  # lazy: tckr.io sits under the torch-free layers (artifacts, ledger, report): safetensors only when called
    )

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError, OSError or ValueError for a damaged file
        raise _corrupt(path, "safetensors file", e) from None
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            meta[k] = v
    return tensors, meta
