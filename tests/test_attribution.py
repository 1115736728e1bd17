"""Paired contrasts between a study's student rows and its baselines (tckr.reporting.attribution)."""

import numpy as np
import pandas as pd
import pytest

from tckr.privacy import metrics
from tckr.reporting import attribution, canvas, report, seeds_figure

ROWS = ("teacher", "student_synth1x", "student_synth1x_hard", "student_base1x", "student_base1x_hard", "student_synth0.2x")


def _seed(folder, k, acc):
    d = folder / f"seed{k}" / "results"
    d.mkdir(parents=True)
    roles = ["teacher" if m == "teacher" else "student" for m in acc]
    pd.DataFrame({"model": list(acc), "role": roles, "cardinality": [None if m == "teacher" else (0.2 if "0.2x" in m else 1.0) for m in acc],
                  "label_mode": ["real" if m == "teacher" else ("hard" if m.endswith("_hard") else "soft") for m in acc],
                  "test_accuracy": list(acc.values())}).to_csv(d / "classifiers.csv", index=False)
    pd.DataFrame({"started": ["2026-01-01T00:00:00"], "phase": ["04_run_evaluate"], "status": ["done"],
                  "seconds": [60.0], "reason": ["has not finished"]}).to_csv(d / "phases.csv", index=False)


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    values = {}
    for k in range(3):
        shift = rng.normal(0, 2)  # shared by every row of the seed: cancels in a paired difference
        acc = {"teacher": 83 + shift, "student_synth1x": 78 + shift + k, "student_synth1x_hard": 73 + shift,
               "student_base1x": 60 + shift, "student_base1x_hard": 40 + shift, "student_synth0.2x": 69 + shift}
        _seed(tmp_path / "study", k, acc)
        values[k] = acc
    return tmp_path / "study", values


def test_contrasts_are_paired_within_seeds(study):
    folder, values = study
    table = attribution.contributions(folder).set_index(["contrast", "cardinality"])
    lora = np.array([values[k]["student_synth1x"] - values[k]["student_base1x"] for k in range(3)])
    row = table.loc[("lora", 1.0)]
    assert row["mean"] == pytest.approx(lora.mean())  # 18, 19, 20: the shared seed shift cancels
    assert row["hi"] - row["mean"] == pytest.approx(metrics.t_halfwidth(lora))
    assert row["n_seeds"] == 3 and row["per_seed"] == "18.00;19.00;20.00"
    assert table.loc[("public_gap", 1.0), "mean"] == pytest.approx(43.0)
    assert table.loc[("teacher", 1.0), "mean"] == pytest.approx(6.0)
    # 0.2x has no baseline rows: only the student gap is listed there
    assert set(table.xs(0.2, level="cardinality").index) == {"student_gap"}


def test_block_in_seeds_page_with_baselines_and_only_the_gap_without(study, tmp_path):
    folder, _ = study
    text = report.seeds_block(folder, images=tmp_path / "images")
    assert "Where the students' accuracy comes from" in text and "| lora | 1× \\|D\\|" in text
    plain = tmp_path / "plain"
    for k in range(2):
        _seed(plain, k, {"teacher": 83.0, "student_synth1x": 80.0 - k})
    block = attribution.contributions_block(plain)
    assert block.startswith("How far each student is below the teacher") and block.count("| student_gap |") == 1
    assert "| student_gap | 1× \\|D\\| | teacher − TCKR student | +3.50 |" in block  # 3.0 and 4.0 over the two seeds
    assert "Where the students'" not in report.seeds_block(plain, images=tmp_path / "images")
    empty = tmp_path / "empty"
    _seed(empty, 0, {"teacher": 83.0})
    assert attribution.contributions_block(empty) == ""


def test_single_run_has_no_interval(tmp_path):
    d = tmp_path / "run" / "results"
    d.mkdir(parents=True)
    pd.DataFrame({"model": ["teacher", "student_synth1x", "student_base1x"], "test_accuracy": [80.0, 75.0, 60.0]}) \
        .to_csv(d / "classifiers.csv", index=False)
    row = attribution.contributions(tmp_path / "run").set_index("contrast").loc["lora"]
    assert row["mean"] == 15.0 and np.isnan(row["lo"]) and row["n_seeds"] == 1
    with pytest.raises(FileNotFoundError, match="classifiers.csv is missing"):
        attribution.contributions(tmp_path)


def test_seeds_figure_draws_each_student_row_apart(study, monkeypatch):
    folder, values = study
    drawn = {}
    save = canvas.save_figure

    def keep(fig, stem):
        drawn["ax"] = fig.axes[0]
        return save(fig, stem)

    monkeypatch.setattr(canvas, "save_figure", keep)
    seeds_figure.seeds_cardinality_figure(folder)
    lines = {c.get_label(): c.lines[0] for c in drawn["ax"].containers}  # errorbar containers carry the labels
    base = lines["students, base generator, teacher soft labels (mean ± 95% CI)"]
    assert base.get_ydata()[0] == pytest.approx(np.mean([values[k]["student_base1x"] for k in range(3)]))
    lora = lines["students, LoRA, teacher soft labels (mean ± 95% CI)"]
    assert list(lora.get_ydata()) == pytest.approx([np.mean([values[k][m] for k in range(3)])
                                                    for m in ("student_synth0.2x", "student_synth1x")])
    assert "students, base generator, prompted-class labels (mean ± 95% CI)" in lines


def test_a_companion_folder_carries_the_seeds_curve_further(study, tmp_path, monkeypatch):
    """Another several-seed folder with the same teachers (same seeds, equal accuracies) and a config that differs
    only in which students it trains joins the curve; a different teacher, or another setting, keeps it apart."""
    folder, values = study
    more = tmp_path / "more"
    for k in range(3):
        _seed(more, k, {"teacher": values[k]["teacher"], "student_synth1x": 0.0})  # a row both hold: drawn from `folder`
        pd.DataFrame({"model": ["teacher", "student_synth1x", "student_synth5x"], "role": ["teacher", "student", "student"],
                      "cardinality": [None, 1.0, 5.0], "label_mode": ["real", "soft", "soft"],
                      "test_accuracy": [values[k]["teacher"], 0.0, 81.0 + k]}).to_csv(
            more / f"seed{k}" / "results" / "classifiers.csv", index=False)
    other = tmp_path / "other"
    for k in range(3):
        _seed(other, k, {"teacher": values[k]["teacher"] + (k == 2), "student_synth1x": 70.0})
    for f, extra in ((folder, ""), (more, "synthesis:\n  cardinalities: [5.0]\n"), (other, "")):
        (f / "config.yaml").write_text("study:\n  name: " + f.name + "\ntrain:\n  epochs: 30\n" + extra)
    assert seeds_figure.companions(folder, [folder, more, other]) == [more]
    (more / "config.yaml").write_text("study:\n  name: more\ntrain:\n  epochs: 8\n")  # another recipe: not a companion
    assert seeds_figure.companions(folder, [folder, more, other]) == []
    (more / "config.yaml").write_text("study:\n  name: more\ntrain:\n  epochs: 30\n")
    drawn = {}
    save = canvas.save_figure
    monkeypatch.setattr(canvas, "save_figure", lambda fig, stem: drawn.setdefault("ax", fig.axes[0]) and save(fig, stem))
    seeds_figure.seeds_cardinality_figure(folder, seeds_figure.companions(folder, [more]))
    lora = {c.get_label(): c.lines[0] for c in drawn["ax"].containers}["students, LoRA, teacher soft labels (mean ± 95% CI)"]
    assert list(lora.get_ydata()) == pytest.approx([np.mean([values[k]["student_synth0.2x"] for k in range(3)]),
                                                    np.mean([values[k]["student_synth1x"] for k in range(3)]), 82.0])
    assert drawn["ax"].get_title() == "study: 3 seeds + more"
