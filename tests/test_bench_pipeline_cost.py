"""bench/bench_pipeline_cost.py's --set: checked like tckr's, before any work (no pipeline is trained here)."""

from __future__ import annotations

import numpy as np
import pytest

from tckr.cli.options import UsageError


def test_a_bad_set_is_refused_before_any_work(bench, tmp_path):
    mod = bench("bench_pipeline_cost")
    with pytest.raises(UsageError, match="--set 'generator.dtyp=bfloat16'"):
        mod.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtyp=bfloat16"])
    with pytest.raises(UsageError, match="generator.dtype"):
        mod.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtype=int8"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, match", [
    (["--run", "RUN", "--after-set", "classifier.stem_stride=2"], "--after-set goes with --before"),
    (["--before", "TMP", "--after-set", "classifier.stem_strid=2"], "classifier.stem_strid"),
    (["--run", "RUN", "--rounds", "2"], "--rounds 2: .* only with --before"),
    (["--before", "TMP", "--rounds", "0"], "--rounds 0"),
])
def test_side_by_side_options_are_checked_first(bench, tmp_path, extra, match):
    """--after-set and --rounds > 1 go with --before; a bad key or count is refused before any work."""
    mod = bench("bench_pipeline_cost")
    argv = [str(tmp_path / "run") if a == "RUN" else str(tmp_path) if a == "TMP" else a for a in extra]
    with pytest.raises(UsageError, match=match):
        mod.main(["--config", "configs/tiny.yaml", *argv])
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


def test_rounds_give_medians_and_the_geometric_mean_of_the_pipeline_ratios(bench):
    mod = bench("bench_pipeline_cost")

    def pair(lora_b, lora_a, total_b, total_a):
        return mod.speedups({"stages": [{"stage": "lora", "seconds": lora_b}, {"stage": "total (one pipeline)", "seconds": total_b}]},
                            {"stages": [{"stage": "lora", "seconds": lora_a}, {"stage": "total (one pipeline)", "seconds": total_a}]})

    rows, ratio = mod.rounds_summary([pair(90.0, 60.0, 100.0, 100.0), pair(80.0, 40.0, 200.0, 100.0), pair(70.0, 70.0, 400.0, 100.0)])
    lora, total = rows
    assert (lora["before_s"], lora["after_s"], lora["speedup"]) == (80.0, 60.0, 80.0 / 60.0)
    assert lora["per_round"] == [1.5, 2.0, 1.0]
    assert total["per_round"] == [1.0, 2.0, 4.0] and ratio["geometric_mean"] == pytest.approx(2.0)
    # log ratios 0, ln 2, 2 ln 2: sd ln 2, half-width 4.303 ln 2 / sqrt(3) -> 2 x/÷ 2^2.484
    assert ratio["ci_high"] == pytest.approx(2.0 * 2 ** 2.4843, rel=1e-3) and ratio["ci_low"] == pytest.approx(2.0 / 2 ** 2.4843, rel=1e-3)
    one_rows, one = mod.rounds_summary([pair(90.0, 60.0, 100.0, 50.0)])
    assert one_rows[1]["speedup"] == 2.0 and one["geometric_mean"] == pytest.approx(2.0) and np.isnan(one["ci_low"])
