"""Real datasets: loading, the resized-image cache and channel statistics.

``load_real(name, split)`` returns a :class:`RealDataset` of uint8 RGB images. Fashion-MNIST is
read from Debian's ``dataset-fashion-mnist`` files when present (offline); every dataset can also
come from a ``datasets.save_to_disk`` folder under ``$TCKR_DATA_DIR/<name>`` or from the
Hugging Face hub when online.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tckr.core import io, paths
from tckr.core.registry import DatasetSpec, spec

SPLITS = ("train", "test")


class DatasetUnavailableError(RuntimeError):
    """A registered dataset that cannot be read from any of the places looked at."""


@dataclass
class RealDataset:
    """Images ``N×H×W×3`` uint8 RGB, labels ``N`` int64, class names indexed by label id."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> "RealDataset":
        index = np.asarray(index)
        return RealDataset(self.name, self.split, self.images[index], self.labels[index], self.class_names)


def load_real(name: str, split: str, *, size: int | None = None) -> RealDataset:
    """Load a real split (``"train"`` or ``"test"``) as uint8 RGB arrays, optionally resized to ``size``×``size``.

    The split is decoded and resized once per (dataset, split, size, source) into the on-disk cache
    (:func:`real_cache_dir`); every later call, in any process, memory-maps it (``images`` is then a read-only
    memory map)."""
    s = spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; accepted: {', '.join(SPLITS)}")
    fingerprint, decode = _find_source(name, s, split, size)

    def build() -> tuple[np.ndarray, np.ndarray]:
        images, labels = decode()
        if size is not None and images.shape[1:3] != (size, size):
            images = resize_images(images, size)
        return to_rgb(images), np.asarray(labels, dtype=np.int64)

    key = {"version": REAL_CACHE_VERSION, "dataset": name, "split": split, "size": size, "source": fingerprint}
    images, labels = _cached(key, build)
    if labels.size and (labels.min() < 0 or labels.max() >= s.num_classes):
        raise ValueError(f"{name}/{split}: labels outside 0..{s.num_classes - 1} (registry has {s.num_classes} classes)")
    return RealDataset(name, split, images, labels, list(s.class_names))


def check_available(name: str, split: str = "train") -> None:
    """Fail at once (:class:`DatasetUnavailableError`) when Hugging Face's offline mode is on and the dataset is in
    none of the places :func:`load_real` can read offline; online, the hub is not asked (that takes the download).
    :func:`tckr.runfolder.runs.open_run` calls it before it makes a new run folder."""
    s = spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for {name}; accepted: {', '.join(SPLITS)}")
    if hf_offline():
        _find_source(name, s, split, None, hub=False)


def _find_source(name: str, s: DatasetSpec, split: str, size: int | None, *, hub: bool = True):
    """Where the split comes from, as a fingerprint that changes with its content (file sizes and times, or the
    Hugging Face dataset's own fingerprint), and a function that decodes it (images, labels). ``hub=False`` stops
    before the hub is asked (returns None) unless offline mode rules the hub out."""
    tried = []
    if name == "fashion_mnist":
        tried.append(f"Debian files in {paths.FASHION_MNIST_DEBIAN} (apt-get install dataset-fashion-mnist)")
        folder = paths.FASHION_MNIST_DEBIAN
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            prefix = "train" if split == "train" else "t10k"
            files = [folder / f"{prefix}-{kind}-idx{d}-ubyte.gz" for kind, d in (("images", 3), ("labels", 1))]
            return (["debian", *[[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]],
                    lambda: _read_fashion_mnist_idx(folder, split))
    local = paths.data_dir() / name
    tried.append(f"a datasets.save_to_disk folder at {local}")
    if local.exists():
        stats = [[str(f.relative_to(local)), f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(local.rglob("*")) if f.is_file()]
        return ["disk", str(local), stats], lambda: _decode_local(local, s, split, size)
    tried.append(f"the Hugging Face hub id {s.hf_id!r}")
    if hf_offline() and not _in_hf_cache(s):
        # datasets would spend seconds importing and then fail the same way; a paper run found absent took 35-44 s
        raise _unavailable(s, split, tried, f"Hugging Face offline mode is on ({_offline_setting()}) and "
                                            f"{s.hf_id!r} is not in its caches ({', '.join(map(str, _hf_caches()))})")
    if not hub:
        return None
    ds = _load_from_hub(s, split, tried)
    return ["hub", s.hf_id, s.hf_config, getattr(ds, "_fingerprint", None)], lambda: _from_hf_dataset(ds, s, size)


def _decode_local(local: Path, s: DatasetSpec, split: str, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _from_hf_dataset(_load_from_disk(local, s, split), s, size)
    except DatasetUnavailableError:
        raise
    except Exception as e:  # pyarrow/datasets errors of a truncated or damaged folder name no file
        broken = _broken_arrow_files(local)
        where = f"{broken[0]}" if broken else f"{local}"
        raise io.CorruptFileError(
            f"{where}: the saved dataset {s.name!r} ({split}) in {local} cannot be read ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})" + (f"; damaged file(s): {', '.join(map(str, broken[:6]))}" if broken else "")
            + f". Save it again with datasets.load_dataset({s.hf_id!r}).save_to_disk('{local}')") from None


# ---------------------------------------------------------------- resized-image cache
REAL_CACHE_VERSION = 1


def real_cache_dir() -> Path:
    """``$TCKR_CACHE/real`` (default ``~/.cache/tckr/real``): decoded, resized real splits shared by every run."""
    return paths.CACHE / "real"


def _cache_files(key: dict) -> tuple[Path, Path, Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = real_cache_dir() / f"{key['dataset']}_{key['split']}_{key['size'] or 'native'}_{digest}"
    return (stem.with_suffix(".images.npy"), stem.with_suffix(".labels.npy"), stem.with_suffix(".json"),
            stem.with_suffix(".lock"))


def _read_cache(key: dict, quiet: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached split, or None: silently when it was never built, with a message when it is damaged."""
    img_f, lab_f, rec_f, _ = _cache_files(key)
    if not rec_f.is_file():
        return None
    try:
        rec = io.read_json(rec_f)
        if rec.get("key") != key:
            raise io.CorruptFileError(f"{rec_f}: records another key than {key}")
        images, labels = io.load_array(img_f, mmap=True), io.load_array(lab_f)
        if list(images.shape) != rec["shape"] or images.dtype != np.uint8 or labels.shape != (rec["shape"][0],) \
                or img_f.stat().st_size != rec["images_bytes"] or io.sha256_file(lab_f) != rec["labels_sha256"]:
            raise io.CorruptFileError(f"{img_f}: {images.dtype} {images.shape} ({img_f.stat().st_size} bytes) or its labels "
                                      f"do not match {rec_f.name}")
    except (io.CorruptFileError, FileNotFoundError, KeyError, TypeError) as e:
        if not quiet:
                print(f"real-image cache of {key['dataset']}/{key['split']} at size {key['size']} is damaged or partial ({e}); "
                  "rebuilding it")
        return None
    return images, labels


def _cached(key: dict, build) -> tuple[np.ndarray, np.ndarray]:
    """The cache entry of ``key``, built by ``build()`` when missing or damaged. Two processes building at once:
    one builds under an exclusive lock, the other waits and reads it; files are written to a temporary name and
    renamed, the record last, so a reader never sees a partial entry."""
    found = _read_cache(key)
    if found is not None:
        return found
    img_f, lab_f, rec_f, lock_f = _cache_files(key)
    lock_f.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_f, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            found = _read_cache(key, quiet=True) if rec_f.is_file() else None  # built by another process while we waited
            if found is not None:
                return found
            images, labels = build()
            rec_f.unlink(missing_ok=True)  # an entry is valid only once its record is written again
            io.save_array(img_f, images)
            io.save_array(lab_f, labels)
            io.write_json(rec_f, {"key": key, "shape": list(images.shape), "images_bytes": img_f.stat().st_size,
                                  "labels_sha256": io.sha256_file(lab_f)})
            prefix = f"{key['dataset']}_{key['split']}_{key['size'] or 'native'}_"
            for stale in real_cache_dir().glob(prefix + "*"):  # entries of this split made from an older source
                if not stale.name.startswith(img_f.name.split(".")[0]):
                    stale.unlink(missing_ok=True)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return io.load_array(img_f, mmap=True), labels


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_fashion_mnist_idx(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    return images, labels


def _hf_split(s: DatasetSpec, split: str) -> str:
    hf = s.train_split if split == "train" else s.test_split
    if hf is None:
        raise ValueError(f"{s.name} has no {split} split on the hub; carve one from train with tckr.data.make_splits")
    return hf


def _broken_arrow_files(folder: Path) -> list[Path]:
    """The ``.arrow`` files of a ``save_to_disk`` folder that pyarrow cannot read to the end."""
    import pyarrow as pa  # lazy: optional dependency, imported only for Hugging Face sources

    broken = []
    for f in sorted(folder.rglob("*.arrow")):
        try:
            with pa.memory_map(str(f)) as source:
                pa.ipc.open_stream(source).read_all()
        except (pa.ArrowException, OSError, ValueError):
            broken.append(f)
    return broken


def _load_from_disk(folder: Path, s: DatasetSpec, split: str):
    import datasets  # lazy: optional heavy dependency (Hugging Face datasets), imported only for hub/save_to_disk sources

    obj = datasets.load_from_disk(str(folder))
    if isinstance(obj, datasets.DatasetDict):
        hf = _hf_split(s, split)
        if hf not in obj:
            raise DatasetUnavailableError(f"{s.name}: {folder} holds splits {list(obj)}, not {hf!r}")
        return obj[hf]
    return obj


def _load_from_hub(s: DatasetSpec, split: str, tried: list[str]):
    try:
        import datasets  # lazy: optional heavy dependency (Hugging Face datasets), imported only for hub/save_to_disk sources

        return datasets.load_dataset(s.hf_id, s.hf_config, split=_hf_split(s, split))
    except ValueError:
        raise
    except Exception as e:  # network, auth, missing files: one clear message instead of a deep trace
        raise _unavailable(s, split, tried, f"Last error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _unavailable(s: DatasetSpec, split: str, tried: list[str], why: str) -> DatasetUnavailableError:
    how = (
        f"Run on a machine with Hugging Face access once, then `datasets.load_dataset({s.hf_id!r})"
        f".save_to_disk('{paths.data_dir() / s.name}')`, or set TCKR_DATA_DIR to a folder holding '{s.name}/'."
    )
    if s.name == "fashion_mnist":
        how = "Install it offline with `apt-get install -y dataset-fashion-mnist`. " + how
    return DatasetUnavailableError(f"dataset {s.name!r} ({split}) is not reachable. Looked at: {'; '.join(tried)}. "
                                   f"{why}. {how}")


def _from_hf_dataset(ds, s: DatasetSpec, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    for col in (s.image_column, s.label_column):
        if col not in ds.column_names:
            raise DatasetUnavailableError(f"{s.name}: column {col!r} missing; the dataset has {ds.column_names}")
    labels = _label_ids(ds[s.label_column], s)
    out = None
    for i, img in enumerate(ds[s.image_column]):
        arr = _pil_to_rgb(img, size)
        if out is None:
            out = np.empty((len(ds),) + arr.shape, dtype=np.uint8)
        elif arr.shape != out.shape[1:]:
            raise ValueError(f"{s.name}: images of different sizes ({arr.shape} vs {out.shape[1:]}); pass size=")
        out[i] = arr
    if out is None:
        out = np.zeros((0, size or 1, size or 1, 3), dtype=np.uint8)
    return out, labels


def _label_ids(values, s: DatasetSpec) -> np.ndarray:
    """Integer label ids from an int column, a one-item list column (MedMNIST copies) or a class-name column."""
    values = list(values)
    if values and isinstance(values[0], (list, tuple)):
        values = [v[0] for v in values]
    if values and isinstance(values[0], str):
        lookup = {n.lower(): i for i, n in enumerate(s.class_names)}
        unknown = sorted({v for v in values if v.lower().replace("_", " ") not in lookup and v.lower() not in lookup})
        if unknown:
            raise ValueError(f"{s.name}: label names not in the registry: {unknown[:5]}")
        values = [lookup.get(v.lower(), lookup.get(v.lower().replace("_", " "))) for v in values]
    return np.asarray(values, dtype=np.int64)


def _pil_to_rgb(img, size: int | None) -> np.ndarray:
    if not isinstance(img, Image.Image):
        img = Image.fromarray(np.asarray(img))
    img = img.convert("RGB")
    if size is not None and img.size != (size, size):
        w, h = img.size
        side = min(w, h)
        img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """``N×H×W`` or ``N×H×W×1`` grayscale becomes ``N×H×W×3``; RGB passes through."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected N×H×W, N×H×W×1 or N×H×W×3 images, got shape {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return np.ascontiguousarray(images, dtype=np.uint8)


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Resize ``N×H×W[×C]`` uint8 images to ``size``×``size`` (bilinear, antialiased), in chunks."""
    import torch  # lazy: tckr.data sits under the torch-free layers (artifacts, ledger, report): torch only when called
    import torch.nn.functional as F  # lazy: tckr.data sits under the torch-free layers (artifacts, ledger, report): torch only when called

    images = to_rgb(images)
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for start in range(0, len(images), chunk):
        x = torch.from_numpy(images[start:start + chunk]).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


STATS_VERSION = 1


def stats_cache_dir() -> Path:
    """``$TCKR_CACHE/stats``: channel statistics of the real train splits, shared by every run."""
    return paths.CACHE / "stats"


def channel_stats(name: str, size: int | None = None) -> dict[str, list[float]]:
    """Per-channel mean and std (in [0, 1]) of the train split, computed once and cached.

    The cache file records the key of the data the numbers were computed from (dataset, size and the train
    split's source fingerprint, as :func:`load_real`'s cache keys it) and the sha256 of key and numbers; a file
    whose key or checksum does not match (another source, a hand-edited mean) is said and recomputed: every
    classifier's input normalisation, and so every accuracy, rests on these numbers."""
    fingerprint, _ = _find_source(name, spec(name), "train", size)
    key = {"version": STATS_VERSION, "real_cache_version": REAL_CACHE_VERSION, "dataset": name, "split": "train",
           "size": size, "source": fingerprint}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = stats_cache_dir() / f"{name}_{size or 'native'}_{digest}.json"
    if cache.is_file():
        try:
            rec = io.read_json(cache)
            stats = {"mean": rec["mean"], "std": rec["std"]}
            if rec.get("key") != key or rec.get("sha256") != _stats_sha256(key, stats):
                raise io.CorruptFileError(f"{cache}: its numbers or key do not match the sha256 recorded with them")
            return stats
        except (io.CorruptFileError, KeyError, TypeError) as e:
            print(f"channel statistics of {name} at size {size} not usable ({e}); computing them again")
    stats = compute_channel_stats(load_real(name, "train", size=size).images)
    io.write_json(cache, {"key": key, **stats, "sha256": _stats_sha256(key, stats)})
    return stats


def _stats_sha256(key: dict, stats: dict[str, list[float]]) -> str:
    return hashlib.sha256(json.dumps({"key": key, "mean": stats["mean"], "std": stats["std"]}, sort_keys=True).encode()).hexdigest()


def compute_channel_stats(images: np.ndarray, chunk: int = 8192) -> dict[str, list[float]]:
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].reshape(-1, 3).astype(np.float64) / 255.0
        total += x.sum(0)
        total_sq += (x ** 2).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


def hf_offline() -> bool:
    """Whether Hugging Face ``datasets`` runs offline: ``HF_DATASETS_OFFLINE`` when set, else ``HF_HUB_OFFLINE``
    (the precedence of ``datasets.config``)."""
    return _offline_setting() is not None


def _offline_setting() -> str | None:
    """The variable that puts ``datasets`` offline, as ``NAME=value``, or None."""
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        value = os.environ.get(var)
        if value is not None:
            return f"{var}={value}" if value.strip().upper() in ("1", "ON", "YES", "TRUE") else None
    return None


def _hf_caches() -> list[Path]:
    """The Hugging Face ``datasets`` cache and hub cache folders (their environment variables, else the defaults)."""
    home = Path(os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface").expanduser()
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or home / "hub"
    return [Path(os.environ.get("HF_DATASETS_CACHE") or home / "datasets").expanduser(), Path(hub).expanduser()]


def _in_hf_cache(s: DatasetSpec) -> bool:
    """Whether either Hugging Face cache holds a folder of ``s.hf_id`` (``<org>___<name>`` in the datasets cache,
    ``datasets--<org>--<name>`` in the hub cache); offline, ``datasets`` can read nothing else."""
    org, _, name = s.hf_id.rpartition("/")
    want = {(f"{org}___{name}" if org else name).lower(), f"datasets--{s.hf_id.replace('/', '--')}".lower()}
    return any(folder.is_dir() and any(p.name.lower() in want for p in folder.iterdir()) for folder in _hf_caches())

