"""bench/same_results.py --runs: two finished folders' result files compared exactly, wall times left out."""

from __future__ import annotations

import json

import pandas as pd


def _folder(path, accuracy, seconds, order=(0, 1)):
    (path / "results").mkdir(parents=True)
    rows = [{"pipeline": 0, "stage": "lora", "seconds": seconds, "detail": "1000 steps"},
            {"pipeline": 1, "stage": "lora", "seconds": 2 * seconds, "detail": "1000 steps"}]
    pd.DataFrame([rows[i] for i in order]).to_csv(path / "results" / "pipeline_stages.csv", index=False)
    pd.DataFrame({"model": ["teacher"], "test_accuracy": [accuracy], "train_seconds": [seconds]}).to_csv(
        path / "results" / "classifiers.csv", index=False)
    (path / "results" / "headline.json").write_text(json.dumps({"attack": "rmia", "n_shadows": 8}))
    pd.DataFrame({"phase": ["00_data"], "seconds": [seconds]}).to_csv(path / "results" / "phases.csv", index=False)


def test_identical_up_to_wall_time_and_a_difference_named(bench, tmp_path, capsys):
    mod = bench("same_results")
    _folder(tmp_path / "a", 83.11, 10.0)
    _folder(tmp_path / "b", 83.11, 12.5, order=(1, 0))  # another wall time, the workers finished in another order
    out = tmp_path / "same.json"
    assert mod.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    # model, accuracy, two json keys, pipeline, stage and detail of two rows
    assert r["identical"] and r["values_compared"] == 10 and r["files_compared"] == 3
    assert r["left_out"] == ["classifiers.csv:train_seconds", "phases.csv", "pipeline_stages.csv:seconds"]
    assert r["wall_seconds"][(tmp_path / "b").as_posix()] == {"phases.csv": {"00_data": 12.5},
                                                              "pipeline_stages.csv": {"lora": 37.5}}
    assert r["record"]["summary"].startswith(f"IDENTICAL: study results of {(tmp_path / 'a').as_posix()} vs ")
    _folder(tmp_path / "c", 83.12, 10.0)
    assert mod.main(["--runs", str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "classifiers.csv: column test_accuracy: 1 of 1 rows differ (row 0: 83.11 != 83.12)" in capsys.readouterr().out
