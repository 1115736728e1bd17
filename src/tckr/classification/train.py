"""Training of the teacher (real data D) and students (synthetic data, Generative Knowledge Distillation).

:func:`fit` is the one training loop of the study (teacher, students, LiRA shadows): AdamW, cosine
schedule, label smoothing (hard targets only), the paper's augmentations each switchable in
``cfg.train`` (flip, random crop with padding, AugMix, MixUp), AMP on GPU, early stopping and
best-epoch selection on a validation split — never on the test split.

Data pipeline: images stay decoded ``uint8`` tensors (``N×H×W×3``; read-only memory-maps and streamed
synthetic sets (:func:`tckr.synthesis.stream_synthetic`, which students train on) are indexed per batch with
sorted indices); every augmentation is applied to
whole batches as tensor ops (flip and crop vectorised, AugMix through ``torchvision.transforms.v2``
on chunks of :data:`AUGMIX_CHUNK` images that share one sampled op chain, each image with its own
mixing weights); model and inputs are channels-last. No per-image PIL work.
``bench/bench_dataloader.py`` compares it with the original per-sample PIL ``DataLoader``.

GKD (:func:`student`): the student's target for each augmented synthetic batch is the teacher's
softmax on that same batch at temperature ``gkd.temperature`` (loss: soft cross-entropy between
student and teacher at that temperature, times T²); ``gkd.label_mode: hard`` trains on the
synthetic set's prompted class labels instead (the paper's ablation). ``gkd.regenerate_every: k``
redraws the student's training subset from the largest synthetic set every k epochs.

History CSV columns (one row per epoch, ``run/classifiers/<model>_history.csv``):
``epoch`` (1-based), ``train_loss``, ``train_accuracy`` (argmax vs the target's argmax, in %),
``val_loss``, ``val_accuracy`` (%), ``lr`` (at the epoch's end), ``seconds`` (the epoch's training
time), ``images_per_second``, ``best`` (this epoch is the selected one so far: highest validation
accuracy, ties going to the later epoch; early stopping counts epochs without a strict improvement).

Used by other phases: :func:`fit` (LiRA shadows), :func:`predict_logits` (membership queries
``identity``/``flip``/``shift``), :func:`embed` (memorisation audit), :func:`teacher`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from tckr.classification import classifiers
from tckr.core import io, paths, registry
from tckr.core.config import Config
from tckr.core.progress import tqdm
from tckr.datasets import real, splitting
from tckr.runfolder import artifacts, runs, synthetic
from tckr.runfolder.synthetic import ShardedImages

AUGMIX_CHUNK = 8
QUERY_AUGMENTS = ("identity", "flip", "shift")


# ---------------------------------------------------------------- data pipeline
def normalisation(cfg: Config) -> dict[str, list[float]]:
    """Channel mean/std of the dataset's real train split at the config's image size."""
    return real.channel_stats(cfg.study.dataset, cfg.data.image_size)


def _as_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor | np.ndarray:
    """In-memory images as a uint8 tensor (no copy); read-only memory-maps and streamed synthetic sets
    (:class:`tckr.synthesis.ShardedImages`) stay as they are, read per batch."""
    if isinstance(images, torch.Tensor) or _is_stream(images):
        return images
    arr = images if isinstance(images, np.ndarray) else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be uint8 N×H×W×3, got {arr.dtype} {arr.shape}")
    if isinstance(arr, np.memmap) or not arr.flags.writeable:
        return arr
    return torch.from_numpy(arr)


def _is_stream(images) -> bool:
    return isinstance(images, ShardedImages)


def _take(images: torch.Tensor | np.ndarray, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch ``B×3×H×W`` uint8 on ``device``."""
    if not isinstance(images, torch.Tensor):
        batch = torch.from_numpy(np.ascontiguousarray(images[index.numpy()]))
    else:
        batch = images[index.to(images.device)]
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen, device=gen.device) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to size at a random offset per image."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate down-right by ``pixels`` with zero fill (the deterministic "shift" query)."""
    if pixels <= 0:
        return x
    return F.pad(x, (pixels, 0, pixels, 0))[..., : x.shape[-2], : x.shape[-1]]


def augmix(x: torch.Tensor) -> torch.Tensor:
    op = v2.AugMix()
    return torch.cat([op(chunk) for chunk in x.split(AUGMIX_CHUNK)])


def crop_pixels(cfg: Config) -> int:
    return int(round(cfg.train.crop_padding * cfg.data.image_size))


def augment_batch(x: torch.Tensor, cfg: Config, gen: torch.Generator) -> torch.Tensor:
    """The paper's image augmentations on a uint8 batch ``B×3×H×W`` (MixUp comes later, on floats)."""
    if cfg.train.flip:
        x = random_flip(x, gen)
    x = random_crop(x, crop_pixels(cfg), gen)
    if cfg.train.augmix:
        x = augmix(x)
    return x


class Preprocess(nn.Module):
    """uint8 ``B×3×H×W`` -> normalised float at the classifier's input size, channels-last (the models
    are kept channels-last too: about 1.8× faster MobileNetV3 training on CPU than NCHW)."""

    def __init__(self, norm: dict[str, list[float]], input_size: int):
        super().__init__()
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, 3, 1, 1) * 255.0)
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        return x.contiguous(memory_format=torch.channels_last)


def mixup(x: torch.Tensor, t: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of a float batch and its target distributions with a Beta(alpha, alpha) weight."""
    if alpha <= 0:
        return x, t
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def _hard_to_dist(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    return F.one_hot(labels, num_classes).float() * (1 - smoothing) + smoothing / num_classes


# ---------------------------------------------------------------- training

def _autocast(device: torch.device, cfg: Config):
    enabled = device.type == "cuda" and cfg.train.amp
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled)


def _num_classes(targets: torch.Tensor, cfg: Config) -> int:
    if targets.ndim == 2:
        return targets.shape[1]
    return len(registry.class_names(cfg.study.dataset))


def tensorboard_writer(logdir: Path):
    """A TensorBoard ``SummaryWriter`` on ``logdir`` (``train.log: tensorboard``)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: optional package, only with train.log=tensorboard
    except ImportError as e:
        raise RuntimeError("train.log=tensorboard needs the tensorboard package (pip install tensorboard), "
                           "or set train.log=none") from e
    return SummaryWriter(log_dir=str(logdir))


def fit(cfg: Config, arch: str, images: np.ndarray, targets: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray, *,
        seed: int, epochs: int | None = None, history_path: str | Path | None = None, progress: bool = True, desc: str = "",
        teacher: classifiers.TrainedClassifier | nn.Module | None = None, redraw: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
        num_classes: int | None = None, checkpoint: str | Path | None = None,
        on_epoch: Callable[[int], None] | None = None) -> tuple[classifiers.TrainedClassifier, pd.DataFrame]:
    """Train ``arch`` from ``images`` (uint8 N×H×W×3) and ``targets`` (int64 labels, or float32 N×C
    class distributions) and return the model at its best validation epoch (eval mode, as a
    :class:`tckr.classifiers.TrainedClassifier` whose ``info`` is the training summary) with the history.

    ``teacher``: a model (or :class:`~tckr.classifiers.TrainedClassifier`) whose softmax (``gkd.temperature``) on each augmented batch replaces the
    targets (online GKD). ``redraw(epoch)`` returns a new ``(images, targets)`` training set; it is
    called every ``gkd.regenerate_every`` epochs when that is set.

    ``checkpoint``: a file (safetensors, written atomically after every epoch) holding everything the next
    epoch depends on: weights, best weights, optimiser, schedule, AMP scaler, every RNG state and the history.
    When it exists and was made by the same training (config hash, architecture, seed, epochs, data sizes and
    targets), training continues after its last finished epoch and ends bit-identical to an uninterrupted run;
    otherwise it is said and training starts over. The caller deletes it once the final weights are written
    (:func:`checkpoint_file`). ``on_epoch(epoch)`` is called after each epoch's checkpoint.
    """
    runs.set_threads(cfg)
    dev = runs.device(cfg)
    tc = cfg.train
    epochs = tc.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x_all = _as_tensor(images)
    t_all = torch.as_tensor(np.asarray(targets))
    if len(x_all) != len(t_all):
        raise ValueError(f"{len(x_all)} images but {len(t_all)} targets")
    if t_all.ndim == 1 and t_all.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be int64 labels (N) or float32 distributions (N×C), got {t_all.dtype} {tuple(t_all.shape)}")
    n_cls = num_classes or _num_classes(t_all, cfg)
    xv = _as_tensor(val_images)
    yv = torch.as_tensor(np.asarray(val_labels), dtype=torch.int64)

    runs.seed_everything(seed)
    model = classifiers.build(arch, n_cls, pretrained=cfg.classifier.pretrained, input_size=cfg.classifier.input_size,
                              stem_stride=cfg.classifier.stem_stride)
    norm = normalisation(cfg)
    pre = Preprocess(norm, cfg.classifier.input_size).to(dev)
    model.to(dev, memory_format=torch.channels_last)
    if teacher is not None:
        teacher = classifiers.module_of(teacher).to(dev, memory_format=torch.channels_last).eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)

    steps_per_epoch = max(1, math.ceil(len(x_all) / tc.batch_size))
    total = steps_per_epoch * epochs
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total - 1)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda" and tc.amp)
    temp = cfg.gkd.temperature if teacher is not None else 1.0

    rows: list[dict[str, Any]] = []
    best_acc, best_state, best_epoch, bad = -1.0, None, 0, 0
    start_epoch, stopped = 1, False
    fingerprint = {"config": cfg.hash(), "arch": arch, "seed": int(seed), "epochs": epochs, "n_train": len(x_all),
                   "n_val": len(xv), "num_classes": n_cls, "teacher": teacher is not None,
                   "targets_sha256": _sha256(t_all), "val_labels_sha256": _sha256(yv)}
    saved = _read_checkpoint(checkpoint, fingerprint) if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        if saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        gen.set_state(saved["gen"])
        _set_rng_state(saved["rng"])
        p = saved["progress"]
        rows, best_acc, best_epoch, bad, stopped = p["rows"], p["best_acc"], p["best_epoch"], p["bad"], p["stopped"]
        best_state, start_epoch = saved["best"], p["epoch"] + 1
        k = cfg.gkd.regenerate_every
        if redraw is not None and k > 0:
            last = max((e for e in range(2, start_epoch) if (e - 1) % k == 0), default=None)
            if last is not None:  # the training set the interrupted run was using
                new_x, new_t = redraw(last)
                x_all, t_all = _as_tensor(new_x), torch.as_tensor(np.asarray(new_t))
    # <run>/classifiers/<name>_history.csv -> <run>/tensorboard/<name>/ (no history file: no board)
    board = (tensorboard_writer(Path(history_path).parent.parent / "tensorboard" / Path(history_path).stem.removesuffix("_history"))
             if cfg.train.log == "tensorboard" and history_path is not None else None)
    bar = tqdm(range(start_epoch, 1 if stopped else epochs + 1), desc=desc or arch, unit="epochs", disable=not progress, leave=False)
    for epoch in bar:
        if redraw is not None and cfg.gkd.regenerate_every > 0 and epoch > 1 and (epoch - 1) % cfg.gkd.regenerate_every == 0:
            new_x, new_t = redraw(epoch)
            x_all, t_all = _as_tensor(new_x), torch.as_tensor(np.asarray(new_t))
        model.train()
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0.0
        perm = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(perm), tc.batch_size):
            idx = perm[start:start + tc.batch_size].sort().values
            if len(idx) < 2 and len(perm) > 1:
                continue
            xb = augment_batch(_take(x_all, idx, dev), cfg, gen)
            xb = pre(xb)
            if teacher is None:
                tb = t_all[idx].to(dev)
                tb = tb.float() if tb.ndim == 2 else _hard_to_dist(tb, n_cls, tc.label_smoothing)
                xb, tb = mixup(xb, tb, tc.mixup_alpha, gen)
            else:
                xb, _ = mixup(xb, xb.new_zeros(len(xb), 1), tc.mixup_alpha, gen)
            with _autocast(dev, cfg):
                if teacher is not None:
                    with torch.no_grad():
                        tb = F.softmax(teacher(xb).float() / temp, dim=1)
                logits = model(xb)
            loss = soft_cross_entropy(logits / temp, tb) * temp ** 2
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.detach().argmax(1) == tb.argmax(1)).sum())
            seen += len(idx)
        seconds = time.perf_counter() - t0
        val_loss, val_acc = _evaluate(model, pre, xv, yv, dev, cfg)
        bad = 0 if val_acc > best_acc else bad + 1
        is_best = val_acc >= best_acc
        if is_best:
            best_acc, best_epoch = val_acc, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        rows.append({"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_accuracy": 100 * correct / max(seen, 1),
                     "val_loss": val_loss, "val_accuracy": val_acc, "lr": opt.param_groups[0]["lr"], "seconds": seconds,
                     "images_per_second": seen / max(seconds, 1e-9), "best": is_best})
        if history_path is not None:
            io.save_csv(history_path, pd.DataFrame(rows))
        if board is not None:
            for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
                board.add_scalar(k, rows[-1][k], epoch)
            board.flush()
        bar.set_postfix(loss=f"{rows[-1]['train_loss']:.3f}", val=f"{val_acc:.1f}", best=f"{best_acc:.1f}@{best_epoch}")
        stopped = bool(tc.patience and bad >= tc.patience)
        if checkpoint is not None:
            _write_checkpoint(checkpoint, fingerprint, {
                "model": model.state_dict(), "best": best_state, "opt": opt.state_dict(), "sched": sched.state_dict(),
                "scaler": scaler.state_dict(), "gen": gen.get_state(), "rng": _rng_state(),
                "progress": {"epoch": epoch, "rows": rows, "best_acc": best_acc, "best_epoch": best_epoch, "bad": bad,
                             "stopped": stopped}})
        if on_epoch is not None:
            on_epoch(epoch)
        if stopped:
            break
    bar.close()
    if board is not None:
        board.close()
    if tc.keep == "best":
        model.load_state_dict(best_state)
    else:  # the last epoch's weights stay: record that epoch as the one returned
        best_epoch, best_acc = len(rows), float(rows[-1]["val_accuracy"])
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    history = pd.DataFrame(rows)
    record = {"best_epoch": best_epoch, "epochs_run": len(rows), "kept": tc.keep, "val_accuracy": best_acc,
              "train_seconds": float(history["seconds"].sum()), "train_size": int(len(x_all)), "seed": int(seed)}
    trained = classifiers.TrainedClassifier(
        model=model, arch=arch, num_classes=n_cls, input_size=cfg.classifier.input_size,
        stem_stride=classifiers.resolved_stem_stride(cfg.classifier.input_size, cfg.classifier.stem_stride),
        normalisation=norm, config_hash=cfg.hash(), info=record)
    return trained, history


# ---------------------------------------------------------------- epoch checkpoints
def checkpoint_file(weights: str | Path) -> Path:
    """The epoch checkpoint of the model whose final weights go to ``weights``: ``<stem>.ckpt`` beside them
    (safetensors content; a suffix of its own so nothing that lists ``*.safetensors`` takes it for a model)."""
    return Path(weights).with_suffix(".ckpt")


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _pack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
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
        return {"d": [[k, _pack(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"l" if isinstance(obj, list) else "u": [_pack(v, tensors) for v in obj]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"v": obj}
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if "t" in obj:
        return tensors[obj["t"]]
    if "a" in obj:
        return tensors[obj["a"]].numpy().astype(obj["dtype"])
    if "d" in obj:
        return {k: _unpack(v, tensors) for k, v in obj["d"]}
    if "l" in obj:
        return [_unpack(v, tensors) for v in obj["l"]]
    if "u" in obj:
        return tuple(_unpack(v, tensors) for v in obj["u"])
    return obj["v"]


def _write_checkpoint(path: str | Path, fingerprint: dict[str, Any], state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    packed = _pack(state, tensors)
    io.save_weights(path, tensors, metadata={"tckr_checkpoint": packed, "fingerprint": fingerprint})


def _read_checkpoint(path: str | Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state, or None (said) when there is none, it is damaged or another training made it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        tensors, meta = io.load_weights(path)
        if "tckr_checkpoint" not in meta:
            raise io.CorruptFileError(f"{path}: a safetensors file without a training state")
        state = _unpack(meta["tckr_checkpoint"], tensors)
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


@torch.no_grad()
def _evaluate(model: nn.Module, pre: Preprocess, x: torch.Tensor, y: torch.Tensor, dev: torch.device, cfg: Config,
              batch_size: int = 512) -> tuple[float, float]:
    model.eval()
    loss = correct = 0.0
    for start in range(0, len(x), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(x)))
        with _autocast(dev, cfg):
            logits = model(pre(_take(x, idx, dev))).float()
        yb = y[idx].to(dev)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += float((logits.argmax(1) == yb).sum())
    n = max(len(x), 1)
    return loss / n, 100 * correct / n


# ---------------------------------------------------------------- inference
def _batches(model: classifiers.TrainedClassifier | nn.Module, images: np.ndarray, cfg: Config, augment: str, batch_size: int,
             fn: Callable) -> np.ndarray:
    if augment not in QUERY_AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; accepted: {', '.join(QUERY_AUGMENTS)}")
    runs.set_threads(cfg)
    dev = runs.device(cfg)
    x = _as_tensor(images)
    # a loaded classifier keeps the input size it was saved with; the normalisation is the run's (as trained)
    input_size = (model.input_size if isinstance(model, classifiers.TrainedClassifier) else 0) or cfg.classifier.input_size
    model = classifiers.module_of(model)
    pre = Preprocess(normalisation(cfg), input_size).to(dev)
    was_training = model.training
    model.to(dev, memory_format=torch.channels_last).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = _take(x, torch.arange(start, min(start + batch_size, len(x))), dev)
            if augment == "flip":
                xb = xb.flip(-1)
            elif augment == "shift":
                xb = shift(xb, max(1, crop_pixels(cfg) // 2))
            with _autocast(dev, cfg):
                out.append(fn(pre(xb)).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def predict_logits(model: classifiers.TrainedClassifier | nn.Module, images: np.ndarray, cfg: Config, *, augment: str = "identity",
                   batch_size: int = 512) -> np.ndarray:
    """Logits ``N×C`` float32 of uint8 ``N×H×W×3`` images, optionally horizontally flipped (``flip``)
    or translated down-right by half the crop padding (``shift``, at least one pixel)."""
    return _batches(model, images, cfg, augment, batch_size, classifiers.module_of(model))


def embed(model: classifiers.TrainedClassifier | nn.Module, images: np.ndarray, cfg: Config, batch_size: int = 512) -> np.ndarray:
    """Penultimate features ``N×F`` float32 (timm's ``forward_head(pre_logits=True)``)."""
    net = classifiers.module_of(model)
    return _batches(model, images, cfg, "identity", batch_size,
                    lambda x: net.forward_head(net.forward_features(x), pre_logits=True))


def soft_labels(teacher: classifiers.TrainedClassifier | nn.Module, images: np.ndarray, cfg: Config, temperature: float | None = None) -> np.ndarray:
    """The teacher's softmax ``N×C`` float32 on un-augmented images."""
    t = cfg.gkd.temperature if temperature is None else temperature
    logits = torch.from_numpy(predict_logits(teacher, images, cfg)).double()
    return F.softmax(logits / t, dim=1).float().numpy()


# ---------------------------------------------------------------- teacher and students of a run
def _save_run_model(run: runs.Run, model: classifiers.TrainedClassifier, path: Path, arch: str, info: dict[str, Any]) -> None:
    classifiers.save(model, path, arch=arch, class_names=run.class_names, normalisation=normalisation(run.cfg),
                     config_hash=run.cfg.hash(), extra=info)


def _load_intact(path: Path, arch: str, num_classes: int) -> classifiers.TrainedClassifier | None:
    """A saved model, or None (it is trained again) when its file is damaged: said, never silent."""
    try:
        return classifiers.load_trained(path, arch=arch, num_classes=num_classes)
    except io.CorruptFileError as e:
        print(f"{e}\n-> training it again")
        return None


def teacher(run: runs.Run, *, progress: bool = True, retrain: bool = False) -> classifiers.TrainedClassifier:
    """The run's teacher: trained on ``run.real("D")`` with validation on ``run.real("val")``, or loaded
    from ``run/classifiers/`` when it was trained before. Training info is its ``info``."""
    cfg = run.cfg
    path = artifacts.weights_file(run, "teacher")
    arch = cfg.classifier.teacher_arch
    if path.is_file() and not retrain and (saved := _load_intact(path, arch, len(run.class_names))) is not None:
        return saved
    D, val = run.real("D"), run.real("val")
    model, hist = fit(cfg, arch, D.images, D.labels, val.images, val.labels, seed=run.seed_for(cfg.train.seed),
                      history_path=artifacts.history_file(run, "teacher"), progress=progress, desc="teacher",
                      checkpoint=checkpoint_file(path))
    info = {"role": "teacher", "name": "teacher", "label_mode": "real", "multiple": None, **model.info}
    _save_run_model(run, model, path, arch, info)
    checkpoint_file(path).unlink(missing_ok=True)
    return classifiers.load_trained(path, arch=arch, num_classes=len(run.class_names))


def student(run: runs.Run, multiple: float, teacher_model: classifiers.TrainedClassifier | nn.Module | None = None, *,
            label_mode: str | None = None, progress: bool = True, retrain: bool = False) -> classifiers.TrainedClassifier:
    """A student trained only on the run's synthetic set of ``multiple``×|D| images (validation on the
    real ``val`` split), with the teacher's soft labels (GKD) or the prompted labels (``hard``)."""
    cfg = run.cfg
    mode = label_mode or cfg.gkd.label_mode
    if mode not in ("soft", "hard"):
        raise ValueError(f"label_mode {mode!r}; accepted: 'soft', 'hard'")
    arch = cfg.classifier.student_arch
    name = artifacts.model_name("student", multiple, mode)
    path = artifacts.weights_file(run, "student", multiple, mode)
    if path.is_file() and not retrain and (saved := _load_intact(path, arch, len(run.class_names))) is not None:
        return saved
    synth = synthetic.stream_synthetic(run, multiple)  # read batch by batch: RAM does not grow with the set
    if mode == "soft" and teacher_model is None:
        teacher_model = teacher(run, progress=progress)
    redraw = None
    if cfg.gkd.regenerate_every > 0:
        redraw = _redrawer(run, len(synth.labels), run.seed_for(cfg.train.seed))
    val = run.real("val")
    model, hist = fit(cfg, arch, synth.images, synth.labels, val.images, val.labels, seed=run.seed_for(cfg.train.seed),
                      history_path=artifacts.history_file(run, name), progress=progress, desc=name,
                      teacher=teacher_model if mode == "soft" else None, redraw=redraw, num_classes=len(run.class_names),
                      checkpoint=checkpoint_file(path))
    info = {"role": "student", "name": name, "label_mode": mode, "multiple": float(multiple), **model.info}
    _save_run_model(run, model, path, arch, info)
    checkpoint_file(path).unlink(missing_ok=True)
    return classifiers.load_trained(path, arch=arch, num_classes=len(run.class_names))


def students(run: runs.Run, cardinalities: list[float] | None = None,
             teacher_model: classifiers.TrainedClassifier | nn.Module | None = None, *,
             label_mode: str | None = None, progress: bool = True) -> dict[float, classifiers.TrainedClassifier]:
    """One student per cardinality (default: ``synthesis.cardinalities``), trained or loaded."""
    multiples = [float(m) for m in (cardinalities or run.cfg.synthesis.cardinalities)]
    require_synthetic(run, multiples)
    if (label_mode or run.cfg.gkd.label_mode) == "soft" and teacher_model is None:
        teacher_model = teacher(run, progress=progress)
    return {m: student(run, m, teacher_model, label_mode=label_mode, progress=progress) for m in multiples}


def require_synthetic(run: runs.Run, multiples: list[float]) -> None:
    """``FileNotFoundError`` naming the missing synthetic sets unless all of ``multiples`` exist."""
    synthetic.check(run)
    have = [float(m) for m in synthetic.available_multiples(run)]
    missing = [m for m in multiples if not any(abs(m - h) < 1e-9 for h in have)]
    if missing:
        raise FileNotFoundError(
            f"run {run.dir} has no synthetic set of {', '.join(f'{m:g}' for m in missing)}×|D| "
            f"(it has: {', '.join(f'{h:g}' for h in have) or 'none'}); run notebooks/03_generate.ipynb on this run first")


def _redrawer(run: runs.Run, size: int, seed: int) -> Callable[[int], tuple[np.ndarray, np.ndarray]]:
    """Draws ``size`` images (class-stratified) from the run's largest synthetic set."""
    pool = synthetic.stream_synthetic(run, max(synthetic.available_multiples(run)))

    def draw(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        idx = splitting.stratified_subset(pool.labels, size, seed + epoch)
        images = pool.images.take(idx) if _is_stream(pool.images) else np.asarray(pool.images[idx])
        return images, np.asarray(pool.labels[idx])

    return draw


def export_weights(run: runs.Run) -> list[Path]:
    """Copy the run's teacher and students to ``trained_mbnv3/teachers`` and ``trained_mbnv3/students``."""


    out = []
    for f in sorted((run.dir / "classifiers").glob("*.safetensors")):
        sub = "teachers" if f.stem.endswith("_real") else "students"
        dest = paths.TRAINED / sub / f.name
        for src, dst in ((f, dest), (classifiers.sidecar_path(f), classifiers.sidecar_path(dest))):
            with io.atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        out.append(dest)
    return out
