"""bench/recipe_change.py: a recipe change's paired accuracy differences over seeds and its phase times (no training)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tckr.core import paths
from tckr.core.config import load_config


def _study(folder, teacher, student, seconds, stem):
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(
        load_config(paths.ROOT / "configs" / "mini.yaml", {"classifier.stem_stride": stem}).to_dict()))
    for k, (t, s) in enumerate(zip(teacher, student)):
        d = folder / f"seed{k}" / "results"
        d.mkdir(parents=True)
        pd.DataFrame({"model": ["teacher", "student_synth0.1x"], "test_accuracy": [t, s]}).to_csv(d / "classifiers.csv", index=False)
        pd.DataFrame({"phase": ["03_generate", "04_run_evaluate"], "seconds": seconds}).to_csv(d / "phases.csv", index=False)


def test_paired_differences_spread_and_phase_ratios(bench, tmp_path):
    mod = bench("recipe_change")
    _study(tmp_path / "ref", [83.0, 84.0, 82.0], [60.0, 62.0, 58.0], [100.0, 400.0], 0)
    _study(tmp_path / "new", [82.0, 84.0, 80.0], [60.0, 62.0, 70.0], [50.0, 200.0], 2)
    mod.main([str(tmp_path / "ref"), str(tmp_path / "new"), "--out", str(tmp_path / "r.json")])
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["changes"] == {"classifier.stem_stride": 2}
    teacher, student = r["accuracy"]
    # teacher differences -1, 0, -2: mean -1, t(0.975, 2) = 4.303 x 1 / sqrt(3) = 2.48; spread 83 +- 2 leaves out 80
    assert teacher["model"] == "teacher" and teacher["mean_difference"] == pytest.approx(-1.0)
    assert teacher["ci_low"] == pytest.approx(-3.484, abs=1e-3) and teacher["within_spread"] == [True, True, False]
    assert student["within_spread"] == [True, True, False]  # 70 lies outside 60 +- 4
    assert [(p["phase"], p["speedup"]) for p in r["phases"]] == [("03_generate", 2.0), ("04_run_evaluate", 2.0)]
    assert "0 of 2 models within the reference's seed spread on every seed (not: teacher, student_synth0.1x)" in r["record"]["summary"]
    assert "teacher -1.00 points [-3.48, +1.48]" in r["record"]["summary"]


def test_a_folder_without_seeds_is_refused(bench, tmp_path):
    mod = bench("recipe_change")
    _study(tmp_path / "ref", [83.0], [60.0], [1.0, 1.0], 0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text((tmp_path / "ref" / "config.yaml").read_text())
    with pytest.raises(SystemExit, match="seed<k>/results/classifiers.csv"):
        mod.main([str(tmp_path / "ref"), str(tmp_path / "empty")])


def test_the_lora_contrast_is_paired_within_seeds(bench, tmp_path):
    """A change can keep each model within its spread yet narrow what the LoRA adds: the contrast per seed, its change."""
    mod = bench("recipe_change")
    for name, base, stem in (("ref", [40.0, 38.0, 42.0], 0), ("new", [50.0, 47.0, 50.0], 2)):
        _study(tmp_path / name, [83.0, 84.0, 82.0], [60.0, 62.0, 58.0], [1.0, 1.0], stem)
        for k, b in enumerate(base):
            f = tmp_path / name / f"seed{k}" / "results" / "classifiers.csv"
            table = pd.read_csv(f)
            pd.concat([table, pd.DataFrame({"model": ["student_base0.1x"], "test_accuracy": [b]})]).to_csv(f, index=False)
    mod.main([str(tmp_path / "ref"), str(tmp_path / "new"), "--out", str(tmp_path / "r.json")])
    r = json.loads((tmp_path / "r.json").read_text())
    lora = next(c for c in r["contrasts"] if c["contrast"] == "lora")
    # reference 20, 24, 16 (mean 20); changed 10, 15, 8 (mean 11); changes -10, -9, -8: mean -9, half-width 4.303 / sqrt(3)
    assert lora["cardinality"] == "0.1x" and lora["reference"] == [20.0, 24.0, 16.0] and lora["changed"] == [10.0, 15.0, 8.0]
    assert lora["mean_difference"] == pytest.approx(-9.0) and lora["ci_high"] == pytest.approx(-9.0 + 2.484, abs=1e-3)
    gap = next(c for c in r["contrasts"] if c["contrast"] == "student_gap")
    assert gap["mean_difference"] == pytest.approx(0.0)
    assert "; lora contrast (points) 0.1x +20.00 -> +11.00; its change -9.00 [-11.48, -6.52] (per seed -10.00, -9.00, -8.00)" in r["record"]["summary"]
