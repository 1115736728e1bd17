"""tckr.launch: shards as separate processes through submitit's LocalExecutor, then the merge step; the merged
synthetic set equals a single-process run's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tckr.core import io
from tckr.generation import captions, lora, synthesis
from tckr.orchestration import launch
from tckr.runfolder import runs, synthetic


def test_unknown_phase_and_missing_cluster_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not sharded; accepted: 03_generate, 05_mia_lira"):
        launch.launch("configs/tiny.yaml", tmp_path / "run", "04_run_evaluate", 2, local=True)
    if shutil.which("sbatch") is None:
        with pytest.raises(RuntimeError, match="no SLURM cluster found.*--local"):
            launch.executor(tmp_path / "logs", local=False, slurm={})


@pytest.mark.slow
def test_two_local_shards_then_merge_equal_one_process(tmp_path, tiny_sd_base):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "sharded", overrides={"generator.base": str(tiny_sd_base)})
    captions.caption_run(run, progress=False)
    lora.finetune(run, progress=False)
    shutil.copytree(run.dir, tmp_path / "single")

    out = launch.launch(None, run.dir, "03_generate", 2, local=True, log=lambda *_: None)
    assert [r["shard"] for r in out["shards"]] == ["1/2", "2/2"]
    n_shards = out["shards"][0]["shards_total"]
    assert sorted(r["shards_mine"] for r in out["shards"]) == [n_shards // 2, n_shards - n_shards // 2]
    assert sum(r["shards_made"] for r in out["shards"]) == n_shards  # each process made only its own shards
    assert out["merge"]["multiples"] == run.cfg.synthesis.cardinalities
    assert synthetic.is_complete(run) and synthetic.problems(run) == []

    single = runs.open_run(None, tmp_path / "single")
    synthesis.generate(single, progress=False)
    for j in range(n_shards):
        a, b = synthetic.shard_paths(run, j)[0], synthetic.shard_paths(single, j)[0]
        assert np.array_equal(io.load_array(a), io.load_array(b)), f"shard {j} differs"
    for m in run.cfg.synthesis.cardinalities:
        x, y = synthetic.load_synthetic(run, m), synthetic.load_synthetic(single, m)
        assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)
