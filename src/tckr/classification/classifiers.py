"""Classifiers of the study: MobileNetV3 (and any other timm architecture) with a new head.

``build(arch, num_classes, pretrained=, input_size=)`` makes a timm model whose classifier head
has ``num_classes`` outputs, zero-initialised (training starts from uniform predictions; timm's
default head init gives a loss near 4 at step 0 on 10 classes and slows short trainings). Inputs
of 64 pixels or less (the mini tier's 32×32) get a stride-1 stem convolution, so the network keeps
2× more spatial resolution than its ImageNet design; ``classifier.stem_stride`` overrides the rule.

Pretrained weights (paper tier) come from timm's Hugging Face cache. When they cannot be read
(offline machine, no cache) :func:`build` raises :class:`PretrainedUnavailableError` saying how to
get them or to set ``classifier.pretrained: false``: a silently random-initialised "pretrained"
model would change every number of the study. The paper's Once-for-All subnet strings are not
implemented (the ``ofa`` package and its supernet weights are not available offline).

Weights are saved as safetensors with a JSON sidecar of the same stem (``.json``): ``arch``,
``num_classes``, ``class_names``, ``normalisation`` (channel mean/std in [0, 1]), ``input_size``,
``stem_stride``, ``config_hash`` and any ``extra`` information (training summary).
:func:`load` checks the architecture and class count it is asked for and names what differs; every load first
checks the file against the ``sha256`` in its sidecar (:func:`verify`: a file without one is refused).

Provenance is data, not attributes: training (:func:`tckr.train.fit`, :func:`tckr.train.teacher`,
:func:`tckr.train.student`) and :func:`load_trained` return a :class:`TrainedClassifier` (the torch model
and what it was made from); :func:`build` and :func:`load` return the bare torch model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from tckr.core import io

SMALL_INPUT = 64  # inputs at most this side get a stride-1 stem


@dataclass(frozen=True)
class TrainedClassifier:
    """A classifier and its provenance, as its weights file's sidecar records it.

    ``model`` is the torch module (eval mode); ``input_size`` the side its inputs are resized to;
    ``stem_stride`` the stride set on its first convolution (0: the architecture's own);
    ``normalisation`` the channel mean/std in [0, 1] it was trained with; ``class_names`` in label-id order
    (empty when training did not know them); ``config_hash`` of the run config that trained it; ``info`` the
    training record (:func:`tckr.train.fit`'s summary, and role/name/label mode for a run's models);
    ``path`` the weights file it was loaded from or saved to (None while only in memory).
    Calling it calls the model, and the attributes it does not have are the model's (``clf.eval()``,
    ``clf.state_dict()``), so code written when training returned the bare torch module keeps working."""

    model: nn.Module
    arch: str
    num_classes: int
    input_size: int
    stem_stride: int = 0
    normalisation: dict[str, list[float]] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    config_hash: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def __getattr__(self, name: str) -> Any:
        model = self.__dict__.get("model")
        if model is None or name.startswith("__"):  # copy/pickle probe dunders before the fields exist
            raise AttributeError(name)
        return getattr(model, name)

    @property
    def meta(self) -> dict[str, Any]:
        """The sidecar's fields (``arch``, ``num_classes``, ..., ``extra``: the training record)."""
        return {"arch": self.arch, "num_classes": self.num_classes, "class_names": list(self.class_names),
                "normalisation": {k: list(v) for k, v in self.normalisation.items()}, "input_size": self.input_size,
                "stem_stride": self.stem_stride, "config_hash": self.config_hash, "extra": dict(self.info)}


def module_of(model: TrainedClassifier | nn.Module) -> nn.Module:
    """The torch module of a :class:`TrainedClassifier`, or ``model`` itself (every function that takes a
    classifier accepts both)."""
    return model.model if isinstance(model, TrainedClassifier) else model


class PretrainedUnavailableError(RuntimeError):
    """ImageNet weights were asked for but cannot be read."""


class WeightsMismatchError(ValueError):
    """A weights file whose architecture or class count is not the one asked for."""


def default_stem_stride(input_size: int) -> int:
    """1 for small inputs; 0 (keep the architecture's own) otherwise."""
    return 1 if input_size <= SMALL_INPUT else 0


def resolved_stem_stride(input_size: int, stem_stride: int = 0) -> int:
    """The stride :func:`build` sets on the stem: ``stem_stride``, or the rule above when it is 0."""
    return stem_stride or default_stem_stride(input_size)


def build(arch: str, num_classes: int, *, pretrained: bool, input_size: int, stem_stride: int = 0) -> nn.Module:
    """A timm ``arch`` with a fresh ``num_classes``-way head; ``stem_stride`` 0 picks the rule above
    (:func:`resolved_stem_stride` says which stride that is)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:12]
        raise ValueError(f"unknown timm architecture {arch!r}; similar names: {', '.join(close) or 'none'}")
    try:
        model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes)
    except Exception as e:  # hub/network/cache errors: one clear message
        if not pretrained:
            raise
        raise PretrainedUnavailableError(
            f"ImageNet weights for {arch!r} could not be loaded ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Run once on a machine with Hugging Face access so timm caches them (HF_HOME), or set "
            "classifier.pretrained: false to train from random initialisation."
        ) from None
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    stride = resolved_stem_stride(input_size, stem_stride)
    if stride:
        set_stem_stride(model, stride)
    return model


def _stem_conv(model: nn.Module) -> nn.Conv2d | None:
    """timm's ``conv_stem``, else the first ``nn.Conv2d``."""
    conv = getattr(model, "conv_stem", None)
    if not isinstance(conv, nn.Conv2d):
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv


def set_stem_stride(model: nn.Module, stride: int) -> None:
    """Set the stride of the first convolution (timm's ``conv_stem`` or the first ``nn.Conv2d``)."""
    conv = _stem_conv(model)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no convolution whose stride could be set")
    conv.stride = (stride, stride)


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save(model: TrainedClassifier | nn.Module, path: str | Path, *, arch: str, class_names: list[str],
         normalisation: dict[str, list[float]], config_hash: str, extra: dict[str, Any] | None = None,
         input_size: int | None = None, stem_stride: int | None = None) -> Path:
    """Write ``path`` (safetensors) and its JSON sidecar; the metadata is stored in both. ``input_size`` and
    ``stem_stride`` default to a :class:`TrainedClassifier`'s own; for a bare module, to 0 (not recorded: it is
    loaded at 224) and to the stride of its first convolution."""
    trained = model if isinstance(model, TrainedClassifier) else None
    if input_size is None:
        input_size = trained.input_size if trained else 0
    if stem_stride is None:
        conv = _stem_conv(model) if trained is None else None
        stem_stride = trained.stem_stride if trained else (conv.stride[0] if conv is not None else 0)
    meta = {
        "arch": arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "normalisation": {"mean": list(normalisation["mean"]), "std": list(normalisation["std"])},
        "input_size": int(input_size or 0),
        "stem_stride": int(stem_stride or 0),
        "config_hash": config_hash,
        "extra": extra or {},
    }
    state = {k: v for k, v in module_of(model).state_dict().items()}
    io.save_weights(path, state, meta)
    io.write_json(sidecar_path(path), {**meta, "sha256": io.sha256_file(path)})
    return Path(path)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file (the sidecar when present, else the safetensors header)."""
    side = sidecar_path(path)
    if side.is_file():
        return io.read_json(side)
    return io.load_weights(path)[1]


def verify(path: str | Path) -> None:
    """Check a weights file against the sha256 its sidecar recorded when it was saved (:func:`save` writes both).
    A file with no sidecar, or a sidecar without a sha256, is an error too: nothing then says that its content is
    what was trained, and a damaged or replaced file would be used silently."""
    path, side = Path(path), sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if not side.is_file():
        raise io.CorruptFileError(f"{path}: no sidecar {side.name} beside it recording its sha256, so its content cannot be "
                                  "checked; delete it and rerun the phase that trained it")
    want = io.read_json(side).get("sha256")
    if not want:
        raise io.CorruptFileError(f"{path}: its sidecar {side.name} records no sha256, so its content cannot be checked; "
                                  "delete both and rerun the phase that trained it")
    if io.sha256_file(path) != want:
        raise io.CorruptFileError(f"{path}: sha256 differs from the one recorded in {side.name} when it was saved: "
                                  "the file is truncated or damaged; delete it and rerun the phase that trained it")


def load(path: str | Path, *, arch: str | None = None, num_classes: int | None = None) -> nn.Module:
    """The torch model saved at ``path`` (eval mode, CPU); :func:`load_trained` returns it with its metadata."""
    return load_trained(path, arch=arch, num_classes=num_classes).model


def load_trained(path: str | Path, *, arch: str | None = None, num_classes: int | None = None) -> TrainedClassifier:
    """Rebuild the model saved at ``path`` (eval mode, CPU) with its metadata. A file that differs from the sha256
    in its sidecar, has no sidecar, or that safetensors cannot read, is a :class:`tckr.io.CorruptFileError` naming it."""
    verify(path)
    tensors, meta = io.load_weights(path)
    problems = []
    if "arch" not in meta or "num_classes" not in meta:
        raise WeightsMismatchError(f"{path}: no 'arch'/'num_classes' metadata; not a tckr classifier file")
    if arch is not None and meta["arch"] != arch:
        problems.append(f"architecture is {meta['arch']!r}, expected {arch!r}")
    if num_classes is not None and int(meta["num_classes"]) != int(num_classes):
        problems.append(f"class count is {meta['num_classes']}, expected {num_classes}")
    if problems:
        raise WeightsMismatchError(f"{path}: " + "; ".join(problems))
    input_size = int(meta.get("input_size") or 224)
    model = build(meta["arch"], int(meta["num_classes"]), pretrained=False, input_size=input_size,
                  stem_stride=int(meta.get("stem_stride") or 0))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise WeightsMismatchError(f"{path}: weights do not fit {meta['arch']}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return TrainedClassifier(model=model.eval(), arch=meta["arch"], num_classes=int(meta["num_classes"]),
                             input_size=input_size,
                             stem_stride=resolved_stem_stride(input_size, int(meta.get("stem_stride") or 0)),
                             normalisation=dict(meta.get("normalisation") or {}),
                             class_names=tuple(meta.get("class_names") or ()), config_hash=str(meta.get("config_hash", "")),
                             info=dict(meta.get("extra") or {}), path=Path(path))
