"""bench/bench_pipeline_cost.py's --set: checked like tckr's, before any work (no pipeline is trained here)."""

from __future__ import annotations

import pytest

from tckr.cli.options import UsageError


def test_a_bad_set_is_refused_before_any_work(bench, tmp_path):
    mod = bench("bench_pipeline_cost")
    with pytest.raises(UsageError, match="--set 'generator.dtyp=bfloat16'"):
        mod.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtyp=bfloat16"])
    with pytest.raises(UsageError, match="generator.dtype"):
        mod.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtype=int8"])
    assert not (tmp_path / "run").exists()


def test_after_set_needs_before_and_is_checked_first(bench, tmp_path):
    mod = bench("bench_pipeline_cost")
    with pytest.raises(UsageError, match="--after-set goes with --before"):
        mod.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--after-set", "classifier.stem_stride=2"])
    with pytest.raises(UsageError, match="classifier.stem_strid"):
        mod.main(["--config", "configs/tiny.yaml", "--before", str(tmp_path), "--after-set", "classifier.stem_strid=2"])
    assert not (tmp_path / "run").exists()


def test_files_are_compared_by_tensors_and_stages_by_ratio(bench, tmp_path):
    """Two runs' pipeline files: a safetensors file whose metadata alone differs (the training's wall time) is
    identical; another tensor or another array is different; the stages' ratios come from the two tables."""
    import numpy as np
    from safetensors.numpy import save_file

    mod = bench("bench_pipeline_cost")
    for name, meta, value in (("a", "1.0", 1.0), ("b", "2.0", 1.0)):
        d = tmp_path / name / "mia" / "pipelines" / "pipeline_000" / "classifiers"
        d.mkdir(parents=True)
        save_file({"w": np.full(3, value, np.float32)}, str(d / "m.safetensors"), metadata={"train_seconds": meta})
        save_file({"w": np.full(3, value if name == "a" else 2.0, np.float32)}, str(d / "n.safetensors"))
        (tmp_path / name / "mia" / "logits").mkdir(parents=True)
        np.save(tmp_path / name / "mia" / "logits" / "pipeline_000_s.npy", np.arange(4) * (1 if name == "a" else 2))
    same = mod.compare_files(tmp_path / "a", tmp_path / "b", 0)
    assert same["identical"] == ["mia/pipelines/pipeline_000/classifiers/m.safetensors"]
    assert same["different"] == ["mia/logits/pipeline_000_s.npy", "mia/pipelines/pipeline_000/classifiers/n.safetensors"]
    rows = mod.speedups({"stages": [{"stage": "lora", "seconds": 90.0}, {"stage": "total (one pipeline)", "seconds": 100.0},
                                      {"stage": "total (8 pipelines)", "seconds": 800.0}]},
                          {"stages": [{"stage": "lora", "seconds": 45.0}, {"stage": "queries", "seconds": 5.0},
                                      {"stage": "total (one pipeline)", "seconds": 50.0}, {"stage": "total (8 pipelines)", "seconds": 400.0}]})
    assert [(r["stage"], r["speedup"]) for r in rows] == [("lora", 2.0), ("total (one pipeline)", 2.0)]
