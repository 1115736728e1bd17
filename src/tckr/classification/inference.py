"""Inference of a trained classifier on uint8 images ``N×H×W×3``: logits, penultimate features, soft labels.

Every function takes a :class:`tckr.classification.classifiers.TrainedClassifier` (or a bare torch module).
A trained classifier is fed exactly as it was trained: resized to its recorded ``input_size`` and normalised with
its recorded ``normalisation`` (the channel statistics in its sidecar), never with a fresh look-up; a bare module,
which records neither, gets the config's (``classifier.input_size``, :func:`tckr.classification.batches.normalisation`).

Membership queries (:data:`QUERY_AUGMENTS`): ``identity``, ``flip`` (horizontal) and ``shift`` (down-right by half
the crop padding, at least one pixel).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tckr.classification import classifiers
from tckr.classification.augment import crop_pixels, shift
from tckr.classification.batches import (
    Preprocess,
    as_tensor,
    autocast,
    normalisation,
    take,
)
from tckr.core.config import Config
from tckr.runfolder import environment

QUERY_AUGMENTS = ("identity", "flip", "shift")


def input_pipeline(model: classifiers.TrainedClassifier | nn.Module, cfg: Config) -> Preprocess:
    """The :class:`~tckr.classification.batches.Preprocess` a classifier was trained with: its recorded input size
    and normalisation; the config's for what a bare module does not record."""
    trained = model if isinstance(model, classifiers.TrainedClassifier) else None
    input_size = (trained.input_size if trained else 0) or cfg.classifier.input_size
    norm = trained.normalisation if trained and trained.normalisation else normalisation(cfg)
    return Preprocess(norm, input_size)


def _batches(model: classifiers.TrainedClassifier | nn.Module, images: np.ndarray, cfg: Config, augment: str, batch_size: int,
             fn: Callable) -> np.ndarray:
    if augment not in QUERY_AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; accepted: {', '.join(QUERY_AUGMENTS)}")
    environment.set_threads(cfg)
    dev = environment.device(cfg)
    x = as_tensor(images)
    pre = input_pipeline(model, cfg).to(dev)
    model = classifiers.module_of(model)
    was_training = model.training
    model.to(dev, memory_format=torch.channels_last).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = take(x, torch.arange(start, min(start + batch_size, len(x))), dev)
            if augment == "flip":
                xb = xb.flip(-1)
            elif augment == "shift":
                xb = shift(xb, max(1, crop_pixels(cfg) // 2))
            with autocast(dev, cfg):
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
