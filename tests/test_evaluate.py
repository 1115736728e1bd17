"""tckr.evaluate: test accuracy, per-class accuracy and confusion counts of planted classifiers on the tiny run's real
test split (tiny untrained networks whose head always answers one class: the right numbers are known exactly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tckr.classification import classifiers, evaluate
from tckr.runfolder import runs

ARCH = "mobilenetv3_small_050"


def planted(cls: int, name: str, role: str = "student", multiple: float | None = 0.5, label_mode: str = "soft"):
    """A classifier whose logits are the same for every image, highest for class ``cls``."""
    torch.manual_seed(0)
    net = classifiers.build(ARCH, 10, pretrained=False, input_size=32)
    with torch.no_grad():
        net.get_classifier().bias[cls] = 5.0  # the head's weights are zero: the bias alone decides
    info = {"role": role, "name": name, "label_mode": label_mode, "multiple": multiple, "train_size": 50, "val_accuracy": 12.5,
            "best_epoch": 3, "epochs_run": 4, "train_seconds": 1.5, "seed": 7}
    return classifiers.TrainedClassifier(net.eval(), ARCH, 10, input_size=32, stem_stride=1,
                                         normalisation={"mean": [0.3] * 3, "std": [0.3] * 3}, info=info)


@pytest.fixture
def run(tmp_path):
    return runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"study.num_threads": 1})


def test_confusion_counts_true_rows_predicted_columns():
    cm = evaluate.confusion(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_evaluate_writes_the_planted_models_numbers(run):
    labels = run.real("test").labels
    support = np.bincount(labels, minlength=10)
    assert (support > 0).sum() >= 5  # several classes, so a constant answer is wrong for most images
    student = evaluate.evaluate(run, planted(7, "student_synth0.5x"))  # evaluated first, listed after the teacher
    teacher = evaluate.evaluate(run, planted(3, "teacher", "teacher", None, "real"))
    assert teacher["test_accuracy"] == pytest.approx(100 * np.mean(labels == 3))
    assert student["test_accuracy"] == pytest.approx(100 * np.mean(labels == 7))
    table = evaluate.results_table(run)
    assert list(table.columns) == evaluate.COLUMNS and list(table.model) == ["teacher", "student_synth0.5x"]
    row = table.set_index("model").loc["student_synth0.5x"]
    assert (row.role, row.arch, row.cardinality, row.label_mode, row.train_size) == ("student", ARCH, 0.5, "soft", 50)
    assert (row.val_accuracy, row.best_epoch, row.epochs_run, row.train_seconds, row.seed) == (12.5, 3, 4, 1.5, 7)
    assert np.isnan(table.set_index("model").loc["teacher", "cardinality"])

    per_class = pd.read_csv(run.dir / "results" / "per_class.csv")
    mine = per_class[per_class.model == "teacher"].set_index("class_id")
    np.testing.assert_array_equal(mine["support"], support)
    np.testing.assert_array_equal(mine["accuracy"], np.where(np.arange(10) == 3, 100.0, 0.0))
    assert list(mine["class_name"]) == run.class_names
    pivot = evaluate.per_class_table(run)
    assert list(pivot.index) == run.class_names and pivot.loc[run.class_names[7], "student_synth0.5x"] == 100.0

    conf = pd.read_csv(run.dir / "results" / "confusion_teacher.csv")
    assert len(conf) == 100 and conf["count"].sum() == len(labels)
    counts = conf.pivot(index="true_id", columns="predicted_id", values="count").to_numpy()
    np.testing.assert_array_equal(counts[:, 3], support)  # every image answered 3
    assert counts.sum() == counts[:, 3].sum()

    evaluate.evaluate(run, planted(labels[0], "teacher", "teacher", None, "real"))  # re-evaluated: its row replaced
    table = evaluate.results_table(run)
    assert len(table) == 2 and table.set_index("model").loc["teacher", "test_accuracy"] == pytest.approx(
        100 * np.mean(labels == labels[0]))


def test_evaluate_names_what_it_takes(run):
    with pytest.raises(FileNotFoundError, match="evaluate a teacher or student first"):
        evaluate.results_table(run)
    with pytest.raises(FileNotFoundError, match="evaluate a teacher or student first"):
        evaluate.per_class_table(run)
    bare = planted(3, "teacher")
    with pytest.raises(ValueError, match="a bare torch module"):
        evaluate.evaluate(run, bare.model)
    with pytest.raises(ValueError, match="TrainedClassifier returned by"):
        evaluate.evaluate(run, classifiers.TrainedClassifier(bare.model, ARCH, 10, input_size=32))  # no name: which model?
