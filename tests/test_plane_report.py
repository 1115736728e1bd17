"""The privacy-utility plane in words (tckr.reporting.plane_report): where the TCKR students sit against the DP
frontier, from planted DP models beside the committed mini study."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tckr.core import paths
from tckr.reporting import plane, plane_report, report

RESULTS = paths.ROOT / "results"


def _dp_row(model, kind, acc, tpr, eps):
    return {"study": "mini-dp", "model": model, "kind": kind, "accuracy": acc, "accuracy_lo": acc - 1, "accuracy_hi": acc + 1,
            "tpr_at_1": tpr, "tpr_at_1_lo": tpr - 0.2, "tpr_at_1_hi": tpr + 0.2, "auc": 50.0, "auc_lo": 49.0, "auc_hi": 51.0,
            "eps_lb": 0.1, "source": "planted", "eps_accountant": eps, "dp_guarantee": "planted"}


def _folders(tmp_path: Path, rows) -> list[Path]:
    mini = Path(shutil.copytree(RESULTS / "mini", tmp_path / "mini", ignore=shutil.ignore_patterns("mia", "images", "figures")))
    dp = tmp_path / "mini-dp"
    (dp / "results").mkdir(parents=True)
    cfg = yaml.safe_load((RESULTS / "mini" / "config.yaml").read_text())
    cfg["study"]["name"], cfg["dp"]["enabled"] = "mini-dp", True
    (dp / "config.yaml").write_text(yaml.safe_dump(cfg))
    pd.DataFrame(rows).to_csv(dp / "results" / "dp_models.csv", index=False)
    for name in ("phases.csv", "classifiers.csv"):  # a DP study's folder holds its phases 00-04 as the study's
        shutil.copyfile(mini / "results" / name, dp / "results" / name)
    return [mini, dp]


def test_frontier_keeps_the_models_with_a_guarantee_and_the_sentences_place_each_student(tmp_path):
    mini, dp = _folders(tmp_path, [_dp_row("dp_teacher_eps1", "dp_teacher", 50.0, 1.0, 0.99),
                                    _dp_row("dp_teacher_eps4", "dp_teacher", 65.0, 0.5, 3.98),
                                    _dp_row("dp_teacher_eps8", "dp_teacher", 75.0, 5.0, 7.9),
                                    _dp_row("dp_lora_eps8_soft", "dp_lora_student", 90.0, 0.1, np.inf)])
    front = plane_report.frontier([dp])
    assert list(front["model"]) == ["dp_teacher_eps1", "dp_teacher_eps4", "dp_teacher_eps8"]  # the soft-label one has no ε
    t = plane.table(mini, dp=[dp]).set_index("model")
    lines = plane_report.sentences(mini, [mini, dp])
    by_model = {s.split("`")[1]: s for s in lines if s.startswith("`student")}
    assert set(by_model) == {"student_synth0.1x", "student_synth0.2x"}  # the TCKR students, not the ablations or baselines
    s01, s02 = t.loc["student_synth0.1x"], t.loc["student_synth0.2x"]
    assert s01["accuracy"] < 65.0 < s02["accuracy"] < 75.0 and s01["tpr_at_1"] > 0.5 and s02["tpr_at_1"] < 5.0
    assert "**below the DP frontier**" in by_model["student_synth0.1x"] and "`dp_teacher_eps4` (ε = 4" in by_model["student_synth0.1x"]
    assert "**above the DP frontier**" in by_model["student_synth0.2x"] and "`dp_teacher_eps8` (ε = 7.9" in by_model["student_synth0.2x"]
    assert "do not overlap" in by_model["student_synth0.2x"]
    assert f"accuracy {s02['accuracy']:.1f}% [{s02['accuracy_lo']:.1f}, {s02['accuracy_hi']:.1f}]" in by_model["student_synth0.2x"]
    assert lines[-1].startswith("The DP frontier of `mini-dp`: `dp_teacher_eps1` 50.0% at ε = 0.99 (AUC 50.0% [49.0, 51.0])")
    assert plane_report.above_chance({"auc_lo": 50.1}) == ", above chance" and plane_report.above_chance({"auc_lo": 50.0}) == ""
    # no DP model as accurate: above, with the distance to the most accurate
    mini2, dp2 = _folders(tmp_path / "b", [_dp_row("dp_teacher_eps1", "dp_teacher", 40.0, 1.0, 0.99)])
    s = [x for x in plane_report.sentences(mini2, [mini2, dp2]) if x.startswith("`student_synth0.2x`")][0]
    assert "no DP model reaches its accuracy" in s and f"{s02['accuracy'] - 40.0:.1f} points below it" in s
    assert plane_report.sentences(mini, [mini]) == []  # no DP study: nothing to say


def test_the_report_carries_the_plane_on_the_results_page_and_its_reading_on_the_front_page(tmp_path):
    mini, dp = _folders(tmp_path, [_dp_row("dp_teacher_eps8", "dp_teacher", 75.0, 5.0, 7.9)])
    page = report.block([mini, dp], images=tmp_path / "images")
    assert "### Privacy–utility plane: `mini` with `mini-dp`" in page
    assert "| mini-dp | dp_teacher_eps8 | dp_teacher | 75.0 [74.0, 76.0] | 5.0 [4.8, 5.2] |" in page
    front = report.front_block([mini, dp])
    assert front.count("- `student_synth") == 2 and "The DP frontier of `mini-dp`" in front
    assert front.endswith("\n" + report.FRONT_END)
    assert "- `student" not in report.front_block([mini])  # without a DP study the front block is the table alone
