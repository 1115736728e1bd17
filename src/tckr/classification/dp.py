"""DP-SGD classifiers: the teacher's architecture trained with :mod:`tckr.generation.dp_sgd` (per-example clipping,
Gaussian noise, Poisson batches, Opacus's accountant), and the non-private teacher stopped at a matched accuracy.

A DP model differs from the teacher's recipe in three places, each forced by DP-SGD: batch normalisation mixes the
examples of a batch, so every BatchNorm becomes a GroupNorm (:func:`group_norm`, what Opacus's
``ModuleValidator.fix`` does for plain ``nn.BatchNorm2d``; timm's ``BatchNormAct2d`` keeps its activation); no
augmentation (each example must be one record); and the batches are Poisson draws of expected size
``dp.batch_size`` (0 = ``train.batch_size``). AdamW with the teacher's learning rate and cosine schedule steps on
the private gradient (post-processing: the optimiser does not change ε). The epoch with the best validation
accuracy is kept: the validation split is disjoint from D, so the choice costs D no privacy.

Files (:func:`save`): ``<name>.safetensors`` (the weights) and ``<name>.json`` beside it: the architecture, the
:class:`tckr.generation.dp_sgd.Budget` record (``epsilon_target``, ``epsilon_accountant``, ``delta``,
``noise_multiplier``, ``sample_rate``, ``steps``, ``max_grad_norm``, ``accountant``), the validation accuracy and
the weights' sha256.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from tckr.classification import classifiers, loop
from tckr.classification.batches import Preprocess, as_tensor, normalisation, take
from tckr.core import io
from tckr.core.config import Config
from tckr.core.progress import tqdm
from tckr.generation import dp_sgd
from tckr.runfolder import environment


def group_norm(model: nn.Module) -> nn.Module:
    """``model`` with every batch normalisation replaced by a GroupNorm of gcd(32, channels) groups (in place)."""
    from timm.layers.norm_act import BatchNormAct2d, GroupNormAct  # lazy: timm is heavy

    for name, child in model.named_children():
        if isinstance(child, BatchNormAct2d):
            g = GroupNormAct(child.num_features, num_groups=math.gcd(32, child.num_features), apply_act=False)
            g.act, g.drop = child.act, child.drop
            setattr(model, name, g)
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(model, name, nn.GroupNorm(math.gcd(32, child.num_features), child.num_features))
        else:
            group_norm(child)
    return model


def build(cfg: Config, arch: str, num_classes: int, *, pretrained: bool | None = None) -> nn.Module:
    """The DP classifier: :func:`tckr.classification.classifiers.build` with GroupNorm for BatchNorm (ImageNet weights
    when ``pretrained``, default ``classifier.pretrained``)."""
    pretrained = cfg.classifier.pretrained if pretrained is None else pretrained
    return group_norm(classifiers.build(arch, num_classes, pretrained=pretrained,
                                        input_size=cfg.classifier.input_size, stem_stride=cfg.classifier.stem_stride))


def resolved_delta(cfg: Config, n: int) -> float:
    """``dp.delta``, or 1 / (10 n) for ``auto`` (below 1/n, the usual ceiling for a set of n records)."""
    return 1.0 / (10 * n) if cfg.dp.delta == "auto" else float(cfg.dp.delta)


def budget_for(cfg: Config, n: int, epsilon: float, epochs: int | None = None) -> dp_sgd.Budget:
    """The budget of a DP training on ``n`` records at target ``epsilon``: q = batch / n, epochs / q steps."""
    batch = cfg.dp.batch_size or cfg.train.batch_size
    q = min(1.0, batch / n)
    epochs = epochs or cfg.dp.epochs or cfg.train.epochs
    steps = max(1, int(round(epochs / q)))
    return dp_sgd.calibrate(epsilon, resolved_delta(cfg, n), q, steps, cfg.dp.max_grad_norm, cfg.dp.accountant)


def cross_entropy_one(model: nn.Module, buffers: dict[str, torch.Tensor]):
    """The loss of one (preprocessed image, label) as a function of the parameters, for per-example gradients."""

    def loss_one(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (params, buffers), (x[None],)), y[None])

    return loss_one


def fit_private(cfg: Config, arch: str, images: np.ndarray, labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
                budget: dp_sgd.Budget, *, seed: int, num_classes: int, model: nn.Module | None = None, progress: bool = True,
                desc: str = "dp", chunk: int = 64) -> tuple[nn.Module, pd.DataFrame]:
    """Train a DP classifier on ``images`` / ``labels`` for ``budget.steps`` Poisson steps; returns the model at its
    best validation epoch (eval mode) and the history (``epoch, val_loss, val_accuracy, seconds``). ``model``: a
    module to train instead of :func:`build`'s (the audit test's tiny MLP takes flat float inputs: no preprocessing)."""
    environment.set_threads(cfg)
    dev = environment.device(cfg)
    environment.seed_everything(seed)
    net = (model if model is not None else build(cfg, arch, num_classes)).to(dev)
    image_input = model is None
    pre = Preprocess(normalisation(cfg), cfg.classifier.input_size).to(dev) if image_input else nn.Identity()
    x = as_tensor(images) if image_input else torch.as_tensor(images)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    xv = as_tensor(val_images) if image_input else torch.as_tensor(val_images)
    yv = torch.as_tensor(np.asarray(val_labels), dtype=torch.int64)
    params = {k: p for k, p in net.named_parameters() if p.requires_grad}
    buffers = dict(net.named_buffers())
    opt = torch.optim.AdamW(params.values(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, loop.lr_schedule(0, budget.steps))
    gen = torch.Generator().manual_seed(int(seed))
    loss_one = cross_entropy_one(net, buffers)
    n = len(y)
    per_epoch = max(1, round(1 / budget.sample_rate))
    rows, best, best_acc = [], None, -1.0
    bar = tqdm(range(budget.steps), desc=desc, unit="steps", disable=not progress, leave=False)
    t0 = time.time()
    for step in bar:
        net.train()
        idx = dp_sgd.poisson_batch(n, budget.sample_rate, gen)
        xb = pre(take(x, idx, dev)) if image_input else x[idx].to(dev)
        dp_sgd.private_step(opt, params, loss_one, (xb, y[idx].to(dev)), budget, budget.sample_rate * n, gen, chunk)
        sched.step()
        if (step + 1) % per_epoch == 0 or step + 1 == budget.steps:
            val_loss, val_acc = _validate(net, pre, xv, yv, dev, cfg, image_input)
            rows.append({"epoch": len(rows) + 1, "step": step + 1, "val_loss": val_loss, "val_accuracy": val_acc,
                         "seconds": time.time() - t0})
            if val_acc >= best_acc:
                best_acc, best = val_acc, copy.deepcopy(net.state_dict())
            bar.set_postfix(val=f"{val_acc:.1f}", best=f"{best_acc:.1f}")
    bar.close()
    net.load_state_dict(best)
    return net.eval(), pd.DataFrame(rows)


def _validate(net: nn.Module, pre: nn.Module, xv, yv: torch.Tensor, dev: torch.device, cfg: Config, image_input: bool) -> tuple[float, float]:
    if image_input:
        return loop.validate(net, pre, xv, yv, dev, cfg)
    net.eval()
    with torch.no_grad():
        logits = net(xv.to(dev)).float()
    return float(F.cross_entropy(logits, yv.to(dev))), 100 * float((logits.argmax(1) == yv.to(dev)).float().mean())


def save(model: nn.Module, path: Path, *, arch: str, budget: dp_sgd.Budget | None, history: pd.DataFrame,
         extra: dict[str, Any] | None = None) -> Path:
    """Weights as safetensors and, beside them (``.json``), the budget record, the best validation accuracy and the
    weights' sha256; the JSON is written last, so a model is finished when its JSON exists."""
    path = Path(path)
    io.save_weights(path, {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, {"arch": arch})
    record = {"arch": arch, **(budget.record() if budget is not None else {"epsilon_accountant": math.inf}),
              "val_accuracy": float(history["val_accuracy"].max()) if len(history) else math.nan,
              "history": history.to_dict("records"), "weights_sha256": io.sha256_file(path), **(extra or {})}
    io.write_json(path.with_suffix(".json"), record)
    return path


def load(path: Path, cfg: Config, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    """A model written by :func:`save` (checked against its recorded sha256) and its JSON record."""
    path = Path(path)
    record = io.read_json(path.with_suffix(".json"))
    if io.sha256_file(path) != record.get("weights_sha256"):
        raise io.CorruptFileError(f"{path}: sha256 differs from the one recorded in {path.with_suffix('.json').name}; delete both to train it again")
    tensors, _ = io.load_weights(path)
    model = build(cfg, record["arch"], num_classes, pretrained=False)  # every weight comes from the file
    model.load_state_dict(tensors)
    return model.eval(), record


def is_done(path: Path) -> bool:
    """Whether :func:`save` finished this model (its JSON, written last, exists)."""
    return Path(path).with_suffix(".json").is_file() and Path(path).is_file()


def matched_epoch(history: pd.DataFrame, accuracy: float) -> int | None:
    """The first epoch whose validation accuracy reaches ``accuracy`` (percent), or None when none does."""
    hit = history.loc[history["val_accuracy"] >= accuracy, "epoch"]
    return int(hit.iloc[0]) if len(hit) else None
