"""Evaluation of the teacher and the students on the real test split, written as tidy result files.

Accuracies are in percent. A student's test accuracy is its Classification Accuracy Score (CAS).

``run/results/classifiers.csv`` — one row per model (re-evaluating a model replaces its row):
    model          ``teacher`` or ``student_synth<k>x`` (``_hard`` for hard-label students)
    role           ``teacher`` | ``student``
    arch           timm architecture name
    cardinality    the student's synthetic-set size as a multiple of |D| (NaN for the teacher)
    label_mode     ``real`` (teacher), ``soft`` (GKD) or ``hard`` (prompted class labels)
    train_size     images in the training set (|D| for the teacher)
    test_accuracy  accuracy on the real test split (%, the CAS of a student)
    val_accuracy   accuracy on the real validation split at the selected epoch (%)
    best_epoch     epoch selected on validation accuracy (1-based)
    epochs_run     epochs trained before early stopping or the budget
    train_seconds  training time (sum of the epochs' times, validation excluded)
    seed           training seed
``run/results/per_class.csv``: model, class_id, class_name, accuracy (%), support (test images of the class).
``run/results/confusion_<model>.csv``: model, true_id, true_name, predicted_id, predicted_name, count
(every true × predicted pair, zeros included).
``run/figures/classifier_curves.{pdf,png}``: validation accuracy and training loss per epoch, drawn from
``run/classifiers/*_history.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tckr.classification import classifiers, inference
from tckr.core import io
from tckr.runfolder import runs

COLUMNS = ["model", "role", "arch", "cardinality", "label_mode", "train_size", "test_accuracy", "val_accuracy",
           "best_epoch", "epochs_run", "train_seconds", "seed"]


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``C×C``: rows true class, columns predicted class."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def evaluate(run: runs.Run, model: classifiers.TrainedClassifier) -> dict[str, Any]:
    """Test a classifier returned by :func:`tckr.train.teacher` / :func:`tckr.train.student` (or loaded from a run's
    ``classifiers/`` with :func:`tckr.classifiers.load_trained`); write its rows."""
    if not isinstance(model, classifiers.TrainedClassifier) or "name" not in model.info:
        raise ValueError("evaluate() takes the TrainedClassifier returned by tckr.train.teacher or tckr.train.student, or "
                         "tckr.classification.classifiers.load_trained(<run>/classifiers/<file>.safetensors); a bare torch module "
                         f"({type(model).__name__}) does not say which model of the run it is")
    info = model.info
    name = info["name"]
    test = run.real("test")
    pred = inference.predict_logits(model, test.images, run.cfg).argmax(1)
    n_cls = len(run.class_names)
    cm = confusion(test.labels, pred, n_cls)
    support = cm.sum(1)
    row = {"model": name, "role": info["role"], "arch": model.arch,
           "cardinality": np.nan if info.get("multiple") is None else float(info["multiple"]),
           "label_mode": info["label_mode"], "train_size": int(info["train_size"]),
           "test_accuracy": 100.0 * float(np.trace(cm)) / max(int(cm.sum()), 1),
           "val_accuracy": float(info["val_accuracy"]), "best_epoch": int(info["best_epoch"]),
           "epochs_run": int(info["epochs_run"]), "train_seconds": float(info["train_seconds"]), "seed": int(info["seed"])}
    _upsert(run.path("results", "classifiers.csv"), pd.DataFrame([row], columns=COLUMNS))
    per_class = pd.DataFrame({"model": name, "class_id": np.arange(n_cls), "class_name": run.class_names,
                              "accuracy": 100.0 * np.diag(cm) / np.maximum(support, 1), "support": support})
    _upsert(run.path("results", "per_class.csv"), per_class)
    t, p = np.meshgrid(np.arange(n_cls), np.arange(n_cls), indexing="ij")
    names = np.asarray(run.class_names)
    io.save_csv(run.path("results", f"confusion_{name}.csv"), pd.DataFrame({
        "model": name, "true_id": t.ravel(), "true_name": names[t.ravel()], "predicted_id": p.ravel(),
        "predicted_name": names[p.ravel()], "count": cm.ravel()}))
    return row


def _upsert(path: Path, rows: pd.DataFrame) -> None:
    if path.is_file():
        old = pd.read_csv(path)
        rows = pd.concat([old[~old["model"].isin(rows["model"].unique())], rows], ignore_index=True)
    order = rows["model"].map(lambda m: (m != "teacher", m))
    io.save_csv(path, rows.iloc[sorted(range(len(rows)), key=lambda i: order.iloc[i])].reset_index(drop=True))


def results_table(run: runs.Run) -> pd.DataFrame:
    """``results/classifiers.csv`` of the run."""
    path = run.dir / "results" / "classifiers.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; evaluate a teacher or student first (tckr.evaluate.evaluate)")
    return pd.read_csv(path)


def per_class_table(run: runs.Run) -> pd.DataFrame:
    """Per-class test accuracy (%), one column per model."""
    path = run.dir / "results" / "per_class.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; evaluate a teacher or student first (tckr.evaluate.evaluate)")
    pc = pd.read_csv(path)
    return pc.pivot(index="class_name", columns="model", values="accuracy").reindex(run.class_names)
