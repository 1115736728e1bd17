"""bench/student_gap.py's record line over several runs (no training: the summary of given results)."""

from __future__ import annotations

import pytest


def _result(teacher: float, real_h: float) -> dict:
    return {"teacher_test_accuracy": teacher, "recipes": [{"recipe": "real H", "data": "real H", "images": 4000,
                                                           "test_accuracy": real_h, "gap_to_teacher": teacher - real_h}]}


def test_several_runs_give_each_recipes_mean_gap_with_its_t_interval(bench):
    mod = bench("student_gap")
    line = mod._summary([_result(83.0, 82.0), _result(84.0, 82.0), _result(82.0, 82.0)], 5.0)
    # gaps 1, 2, 0: mean 1, t(0.975, 2) = 4.303 x 1 / sqrt(3) = 2.48
    assert "3 runs (teachers 83.00, 84.00, 82.00%)" in line
    assert "real H (real H, 4,000 images) gap +1.00 points [-1.48, +3.48] (per run +1.00, +2.00, +0.00)" in line
    one = mod._summary([_result(83.0, 82.0)], 5.0)
    assert one == "no synthetic recipe against the teacher's 83.00%: real H 82.00% (+1.00) (gap in points, teacher − student)"


def test_nothing_to_train_is_refused(bench):
    with pytest.raises(SystemExit):
        bench("student_gap").main(["--run", "runs/none", "--recipes"])
