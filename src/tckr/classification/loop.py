"""One training of :func:`tckr.classification.train.fit`, in the pieces its driver calls: :func:`start` (model,
AdamW, warm-up + cosine schedule, AMP scaler, the augmentation generator, and a GKD teacher's outputs computed
once when they can be: :func:`teacher_views`), :func:`train_epoch` (one pass of
:func:`train_step`: augmentation, MixUp, the GKD or label targets, one optimiser step), :func:`validate`,
:func:`select` (best-epoch selection and early stopping), :func:`checkpoint_state` / :func:`resume` (what an epoch
checkpoint holds and its restoration) and :func:`finish` (the kept weights as a
:class:`~tckr.classification.classifiers.TrainedClassifier`).

The draws of one epoch, in order: the batch order (the training's generator), then per batch flip and crop
offsets (the generator), AugMix (torch's global RNG), MixUp's weight (torch's global RNG) and partner
permutation (the generator). Changing that order changes every trained weight.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from tckr.classification import checkpoints, classifiers
from tckr.classification.augment import augment_batch, flip_draw, flip_only, flipped, mixup
from tckr.classification.batches import (
    Preprocess,
    as_tensor,
    autocast,
    normalisation,
    take,
)
from tckr.core.config import Config


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against target distributions (rows summing to 1), averaged over the batch."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def _hard_to_dist(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    return F.one_hot(labels, num_classes).float() * (1 - smoothing) + smoothing / num_classes


@dataclass
class Training:
    """What the epochs of one :func:`~tckr.classification.train.fit` share: the model and its optimisation, and the training set they read."""

    cfg: Config
    model: nn.Module
    norm: dict[str, list[float]]
    pre: Preprocess
    teacher: nn.Module | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    dev: torch.device
    n_cls: int
    temp: float
    x: Any  # training images: uint8 tensor, read-only memory-map or streamed synthetic set
    t: torch.Tensor  # int64 labels or float class distributions
    views: torch.Tensor | None = None  # the frozen teacher's logits on every training image's views (teacher_views)


@dataclass
class Progress:
    """Where training stands after an epoch: the history, the best epoch so far and the early-stopping count."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = -1.0
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    bad: int = 0
    stopped: bool = False


def training_set(images: np.ndarray, targets: np.ndarray) -> tuple[Any, torch.Tensor]:
    """The images (:func:`~tckr.classification.batches.as_tensor`) and targets as tensors, checked."""
    x = as_tensor(images)
    t = torch.as_tensor(np.asarray(targets))
    if len(x) != len(t):
        raise ValueError(f"{len(x)} images but {len(t)} targets")
    if t.ndim == 1 and t.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be int64 labels (N) or float32 distributions (N×C), got {t.dtype} {tuple(t.shape)}")
    return x, t


def redrawn(redraw: Callable[[int], tuple[np.ndarray, np.ndarray]], epoch: int) -> tuple[Any, torch.Tensor]:
    """The training set ``redraw(epoch)`` returns (``gkd.regenerate_every``), as tensors."""
    new_x, new_t = redraw(epoch)
    return as_tensor(new_x), torch.as_tensor(np.asarray(new_t))


def teacher_views(tr: Training, batch_size: int = 512) -> torch.Tensor | None:
    """The teacher's float logits ``V×N×C`` on every training image, un-flipped (``V`` = 0) and, with
    ``train.flip``, mirrored (``V`` = 1); None without a teacher or when the augmentation is more than a flip
    (:func:`~tckr.classification.augment.flip_only`).

    GKD's target for an augmented batch is the frozen teacher's softmax on that batch. When an image can only be
    itself or its mirror, those outputs are computed here once instead of in every epoch's every step: a student
    step then costs one forward fewer. The same numbers, not close ones: the teacher is in eval mode and its
    per-image output does not depend on the batch it is in (``tests/test_train.py`` trains a student both ways and
    compares the weights bit for bit)."""
    if tr.teacher is None or not flip_only(tr.cfg):
        return None
    n = len(tr.x)
    out = torch.empty((2 if tr.cfg.train.flip else 1, n, tr.n_cls), dtype=torch.float32)
    with torch.no_grad():
        for first in range(0, n, batch_size):
            idx = torch.arange(first, min(first + batch_size, n))
            raw = take(tr.x, idx, tr.dev)
            for v in range(len(out)):
                with autocast(tr.dev, tr.cfg):
                    out[v, idx] = tr.teacher(tr.pre(raw.flip(-1) if v else raw)).float().cpu()
    return out


def lr_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to 0 at step ``total`` (a factor of ``train.lr``)."""

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return lr_at


def start(cfg: Config, arch: str, n_cls: int, dev: torch.device, teacher: classifiers.TrainedClassifier | nn.Module | None,
          seed: int, epochs: int, x: Any, t: torch.Tensor) -> Training:
    """A fresh model (after ``environment.seed_everything``), its optimiser, schedule, AMP scaler and augmentation generator."""
    tc = cfg.train
    model = classifiers.build(arch, n_cls, pretrained=cfg.classifier.pretrained, input_size=cfg.classifier.input_size,
                              stem_stride=cfg.classifier.stem_stride)
    norm = normalisation(cfg)
    pre = Preprocess(norm, cfg.classifier.input_size).to(dev)
    model.to(dev, memory_format=torch.channels_last)
    if teacher is not None:
        teacher = classifiers.module_of(teacher).to(dev, memory_format=torch.channels_last).eval()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    steps_per_epoch = max(1, math.ceil(len(x) / tc.batch_size))
    total = steps_per_epoch * epochs
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total - 1)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(warmup, total))
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda" and tc.amp)
    temp = cfg.gkd.temperature if teacher is not None else 1.0
    tr = Training(cfg, model, norm, pre, teacher, opt, sched, scaler, gen, dev, n_cls, temp, x, t)
    tr.views = teacher_views(tr)
    return tr


def new_training_set(tr: Training, x: Any, t: torch.Tensor) -> None:
    """Train on ``(x, t)`` from now on (``gkd.regenerate_every``): the teacher's views are those of the new images."""
    tr.x, tr.t = x, t
    tr.views = teacher_views(tr)


def resume(tr: Training, saved: dict[str, Any], redraw: Callable[[int], tuple[np.ndarray, np.ndarray]] | None) -> tuple[Progress, int]:
    """Restore a checkpoint's state into ``tr``; the progress it records and the epoch to continue with."""
    tr.model.load_state_dict(saved["model"])
    tr.opt.load_state_dict(saved["opt"])
    tr.sched.load_state_dict(saved["sched"])
    if saved["scaler"]:
        tr.scaler.load_state_dict(saved["scaler"])
    tr.gen.set_state(saved["gen"])
    checkpoints.set_rng_state(saved["rng"])
    p = saved["progress"]
    state = Progress(rows=p["rows"], best_acc=p["best_acc"], best_state=saved["best"], best_epoch=p["best_epoch"],
                     bad=p["bad"], stopped=p["stopped"])
    start_epoch = p["epoch"] + 1
    k = tr.cfg.gkd.regenerate_every
    if redraw is not None and k > 0:
        last = max((e for e in range(2, start_epoch) if (e - 1) % k == 0), default=None)
        if last is not None:  # the training set the interrupted run was using
            new_training_set(tr, *redrawn(redraw, last))
    return state, start_epoch


def checkpoint_state(tr: Training, state: Progress, epoch: int) -> dict[str, Any]:
    """What :func:`resume` restores (the key order is the checkpoint's tensor numbering: keep it)."""
    return {"model": tr.model.state_dict(), "best": state.best_state, "opt": tr.opt.state_dict(),
            "sched": tr.sched.state_dict(), "scaler": tr.scaler.state_dict(), "gen": tr.gen.get_state(),
            "rng": checkpoints.rng_state(),
            "progress": {"epoch": epoch, "rows": state.rows, "best_acc": state.best_acc, "best_epoch": state.best_epoch,
                         "bad": state.bad, "stopped": state.stopped}}


def train_step(tr: Training, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on the training images ``idx``: (loss, logits, target distributions)."""
    cfg, tc = tr.cfg, tr.cfg.train
    if tr.views is not None:  # the teacher's outputs were computed once (teacher_views): the same draws, no teacher forward
        flip = flip_draw(len(idx), tr.gen) if tc.flip else None
        raw = take(tr.x, idx, tr.dev)
        xb = tr.pre(raw if flip is None else flipped(raw, flip))
        t_logits = tr.views[0, idx] if flip is None else torch.where(flip[:, None], tr.views[-1, idx], tr.views[0, idx])
        tb = F.softmax(t_logits.to(tr.dev) / tr.temp, dim=1)
        with autocast(tr.dev, cfg):
            logits = tr.model(xb)
        return _optimise(tr, logits, tb)
    xb = tr.pre(augment_batch(take(tr.x, idx, tr.dev), cfg, tr.gen))
    if tr.teacher is None:
        tb = tr.t[idx].to(tr.dev)
        tb = tb.float() if tb.ndim == 2 else _hard_to_dist(tb, tr.n_cls, tc.label_smoothing)
        xb, tb = mixup(xb, tb, tc.mixup_alpha, tr.gen)
    else:
        xb, _ = mixup(xb, xb.new_zeros(len(xb), 1), tc.mixup_alpha, tr.gen)
    with autocast(tr.dev, cfg):
        if tr.teacher is not None:
            with torch.no_grad():
                tb = F.softmax(tr.teacher(xb).float() / tr.temp, dim=1)
        logits = tr.model(xb)
    return _optimise(tr, logits, tb)


def _optimise(tr: Training, logits: torch.Tensor, tb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    loss = soft_cross_entropy(logits / tr.temp, tb) * tr.temp ** 2
    tr.opt.zero_grad(set_to_none=True)
    tr.scaler.scale(loss).backward()
    tr.scaler.step(tr.opt)
    tr.scaler.update()
    tr.sched.step()
    return loss, logits, tb


def train_epoch(tr: Training) -> tuple[float, float, float, float]:
    """One pass over the training set in a random order: (mean loss, accuracy %, seconds, images per second)."""
    batch_size = tr.cfg.train.batch_size
    tr.model.train()
    t0 = time.perf_counter()
    loss_sum = correct = seen = 0.0
    perm = torch.randperm(len(tr.x), generator=tr.gen)
    for first in range(0, len(perm), batch_size):
        idx = perm[first:first + batch_size].sort().values
        if len(idx) < 2 and len(perm) > 1:
            continue
        loss, logits, tb = train_step(tr, idx)
        loss_sum += float(loss.detach()) * len(idx)
        correct += float((logits.detach().argmax(1) == tb.argmax(1)).sum())
        seen += len(idx)
    seconds = time.perf_counter() - t0
    return loss_sum / max(seen, 1), 100 * correct / max(seen, 1), seconds, seen / max(seconds, 1e-9)


@torch.no_grad()
def validate(model: nn.Module, pre: Preprocess, x: torch.Tensor, y: torch.Tensor, dev: torch.device, cfg: Config,
             batch_size: int = 512) -> tuple[float, float]:
    """(mean cross-entropy, accuracy %) on the validation split, un-augmented."""
    model.eval()
    loss = correct = 0.0
    for first in range(0, len(x), batch_size):
        idx = torch.arange(first, min(first + batch_size, len(x)))
        with autocast(dev, cfg):
            logits = model(pre(take(x, idx, dev))).float()
        yb = y[idx].to(dev)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += float((logits.argmax(1) == yb).sum())
    n = max(len(x), 1)
    return loss / n, 100 * correct / n


def select(state: Progress, model: nn.Module, epoch: int, val_acc: float, patience: int) -> bool:
    """Best-epoch selection and early stopping after ``epoch``: keeps the weights of the best validation accuracy
    (ties going to the later epoch), counts epochs without a strict improvement and sets ``stopped`` when they reach
    ``patience`` (0: never). True when ``epoch`` is the best so far."""
    state.bad = 0 if val_acc > state.best_acc else state.bad + 1
    is_best = val_acc >= state.best_acc
    if is_best:
        state.best_acc, state.best_epoch = val_acc, epoch
        state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
    state.stopped = bool(patience and state.bad >= patience)
    return is_best


def finish(tr: Training, state: Progress, arch: str, seed: int) -> tuple[classifiers.TrainedClassifier, pd.DataFrame]:
    """The kept weights (``train.keep``: the best validation epoch's, or the last's) on CPU in eval mode, with the
    training record, and the history."""
    cfg, model = tr.cfg, tr.model
    best_epoch, best_acc = state.best_epoch, state.best_acc
    if cfg.train.keep == "best":
        model.load_state_dict(state.best_state)
    else:  # the last epoch's weights stay: record that epoch as the one returned
        best_epoch, best_acc = len(state.rows), float(state.rows[-1]["val_accuracy"])
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    history = pd.DataFrame(state.rows)
    record = {"best_epoch": best_epoch, "epochs_run": len(state.rows), "kept": cfg.train.keep, "val_accuracy": best_acc,
              "train_seconds": float(history["seconds"].sum()), "train_size": int(len(tr.x)), "seed": int(seed)}
    trained = classifiers.TrainedClassifier(
        model=model, arch=arch, num_classes=tr.n_cls, input_size=cfg.classifier.input_size,
        stem_stride=classifiers.resolved_stem_stride(cfg.classifier.input_size, cfg.classifier.stem_stride),
        normalisation=tr.norm, config_hash=cfg.hash(), info=record)
    return trained, history
