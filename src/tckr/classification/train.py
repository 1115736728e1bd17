"""Training of the teacher (real data D) and students (synthetic data, Generative Knowledge Distillation).

:func:`fit` is the one training loop of the study (teacher, students, LiRA shadows): AdamW, cosine
schedule, label smoothing (hard targets only), the paper's augmentations each switchable in
``cfg.train`` (flip, random crop with padding, AugMix, MixUp: :mod:`tckr.classification.augment`), AMP on GPU,
early stopping and best-epoch selection on a validation split — never on the test split. It drives the pieces of
:mod:`tckr.classification.loop` (one epoch, validation, selection); its batches come from
:mod:`tckr.classification.batches` (uint8 images indexed per batch, channels-last model and inputs), its epoch
checkpoints are :mod:`tckr.classification.checkpoints`; inference of the trained models (``predict_logits``,
``embed``, ``soft_labels``) is :mod:`tckr.classification.inference`.

GKD (:func:`student`): the student's target for each augmented synthetic batch is the teacher's
softmax on that same batch at temperature ``gkd.temperature`` (loss: soft cross-entropy between
student and teacher at that temperature, times T²; when an image can only be itself or its mirror, the teacher's
outputs are computed once per image and view, :func:`tckr.classification.loop.teacher_views`, with the same
numbers); ``gkd.label_mode: hard`` trains on the
synthetic set's prompted class labels instead (the paper's ablation). ``gkd.regenerate_every: k``
redraws the student's training subset from the largest synthetic set every k epochs.

History CSV columns (one row per epoch, ``run/classifiers/<model>_history.csv``):
``epoch`` (1-based), ``train_loss``, ``train_accuracy`` (argmax vs the target's argmax, in %),
``val_loss``, ``val_accuracy`` (%), ``lr`` (at the epoch's end), ``seconds`` (the epoch's training
time), ``images_per_second``, ``best`` (this epoch is the selected one so far: highest validation
accuracy, ties going to the later epoch; early stopping counts epochs without a strict improvement).

Used by other phases: :func:`fit` (LiRA shadows), :func:`teacher`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from tckr.classification import checkpoints, classifiers, loop
from tckr.classification.batches import as_tensor, is_stream, normalisation
from tckr.core import io, paths, registry
from tckr.core.config import Config
from tckr.core.progress import tqdm
from tckr.datasets import splitting
from tckr.runfolder import artifacts, environment, runs, synthetic


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


# ---------------------------------------------------------------- the training loop
#: A training's checkpoint is rewritten after an epoch once this many seconds have passed since it was last
#: written (after every epoch when ``fit`` has an ``on_epoch`` callback, which may stop there): a killed fit loses
#: at most this much work, and a student of a few seconds an epoch does not spend 7% of its time writing them.
CHECKPOINT_SECONDS = 30.0

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

    ``checkpoint``: a file (safetensors, written atomically after an epoch, every :data:`CHECKPOINT_SECONDS`) holding everything the next
    epoch depends on: weights, best weights, optimiser, schedule, AMP scaler, every RNG state and the history.
    When it exists and was made by the same training (config hash, architecture, seed, epochs, data sizes and
    targets), training continues after its last finished epoch and ends bit-identical to an uninterrupted run;
    otherwise it is said and training starts over. The caller deletes it once the final weights are written
    (:func:`tckr.classification.checkpoints.checkpoint_file`). ``on_epoch(epoch)`` is called after each epoch's checkpoint.
    """
    environment.set_threads(cfg)
    dev = environment.device(cfg)
    epochs = cfg.train.epochs if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x_all, t_all = loop.training_set(images, targets)
    n_cls = num_classes or _num_classes(t_all, cfg)
    xv = as_tensor(val_images)
    yv = torch.as_tensor(np.asarray(val_labels), dtype=torch.int64)

    environment.seed_everything(seed)
    tr = loop.start(cfg, arch, n_cls, dev, teacher, seed, epochs, x_all, t_all)
    fingerprint = {"config": cfg.hash(), "arch": arch, "seed": int(seed), "epochs": epochs, "n_train": len(x_all),
                   "n_val": len(xv), "num_classes": n_cls, "teacher": teacher is not None,
                   "targets_sha256": checkpoints.tensor_digest(t_all), "val_labels_sha256": checkpoints.tensor_digest(yv)}
    state, start_epoch = loop.Progress(), 1
    saved = checkpoints.read_checkpoint(checkpoint, fingerprint) if checkpoint is not None else None
    if saved is not None:
        state, start_epoch = loop.resume(tr, saved, redraw)
    board = _board(cfg, history_path)
    written = time.monotonic()
    bar = tqdm(range(start_epoch, 1 if state.stopped else epochs + 1), desc=desc or arch, unit="epochs", disable=not progress, leave=False)
    for epoch in bar:
        if redraw is not None and cfg.gkd.regenerate_every > 0 and epoch > 1 and (epoch - 1) % cfg.gkd.regenerate_every == 0:
            loop.new_training_set(tr, *loop.redrawn(redraw, epoch))
        train_loss, train_acc, seconds, speed = loop.train_epoch(tr)
        val_loss, val_acc = loop.validate(tr.model, tr.pre, xv, yv, dev, cfg)
        is_best = loop.select(state, tr.model, epoch, val_acc, cfg.train.patience)
        state.rows.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                           "val_accuracy": val_acc, "lr": tr.opt.param_groups[0]["lr"], "seconds": seconds,
                           "images_per_second": speed, "best": is_best})
        _log_epoch(state, epoch, history_path, board)
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val_acc:.1f}", best=f"{state.best_acc:.1f}@{state.best_epoch}")
        if checkpoint is not None and (on_epoch is not None or time.monotonic() - written >= CHECKPOINT_SECONDS):
            checkpoints.write_checkpoint(checkpoint, fingerprint, loop.checkpoint_state(tr, state, epoch))
            written = time.monotonic()
        if on_epoch is not None:
            on_epoch(epoch)
        if state.stopped:
            break
    bar.close()
    if board is not None:
        board.close()
    return loop.finish(tr, state, arch, seed)


def _board(cfg: Config, history_path: str | Path | None):
    """``<run>/classifiers/<name>_history.csv`` -> a TensorBoard writer on ``<run>/tensorboard/<name>/`` (no history
    file: no board)."""
    if cfg.train.log != "tensorboard" or history_path is None:
        return None
    return tensorboard_writer(Path(history_path).parent.parent / "tensorboard" / Path(history_path).stem.removesuffix("_history"))


def _log_epoch(state: loop.Progress, epoch: int, history_path: str | Path | None, board) -> None:
    if history_path is not None:
        io.save_csv(history_path, pd.DataFrame(state.rows))
    if board is not None:
        for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            board.add_scalar(k, state.rows[-1][k], epoch)
        board.flush()


# ---------------------------------------------------------------- teacher and students of a run
def _save_run_model(run: runs.Run, model: classifiers.TrainedClassifier, path: Path, arch: str, info: dict[str, Any]) -> None:
    # the statistics it was trained with (fit records them); the run's for a classifier made elsewhere
    classifiers.save(model, path, arch=arch, class_names=run.class_names, normalisation=model.normalisation or normalisation(run.cfg),
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
                      checkpoint=checkpoints.checkpoint_file(path))
    info = {"role": "teacher", "name": "teacher", "label_mode": "real", "multiple": None, **model.info}
    _save_run_model(run, model, path, arch, info)
    checkpoints.checkpoint_file(path).unlink(missing_ok=True)
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
                      checkpoint=checkpoints.checkpoint_file(path))
    info = {"role": "student", "name": name, "label_mode": mode, "multiple": float(multiple), **model.info}
    _save_run_model(run, model, path, arch, info)
    checkpoints.checkpoint_file(path).unlink(missing_ok=True)
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
        images = pool.images.take(idx) if is_stream(pool.images) else np.asarray(pool.images[idx])
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
