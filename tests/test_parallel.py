"""study.workers: independent models trained by several one-thread processes (tckr.runfolder.parallel) give the
same files as one process at the same thread count; a failing worker is named; the setting is checked."""

import numpy as np
import pytest

from tckr.core.config import ConfigError, load_config
from tckr.privacy import mia
from tckr.runfolder import parallel, runs

TINY = {"data.train_size": 60, "data.val_size": 30, "mia.population_size": 40, "mia.shadow_epochs": 1,
        "mia.n_shadows": 4, "train.batch_size": 32, "mia.n_bootstrap": 10}


def test_workers_get_their_shards_and_threads(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"study.workers": 2})
    out = parallel.run_shards(run, "parallel_targets:report", kwargs={"tag": "x"}, progress=False)
    assert [r[0]["shard"] for r in out] == ["1/2", "2/2"]
    assert {r[0]["threads"] for r in out} == {1} and len({r[0]["pid"] for r in out}) == 2
    assert {r[0]["run"] for r in out} == {str(run.dir)} and {r[0]["tag"] for r in out} == {"x"}


def test_a_failing_worker_is_named(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"study.workers": 2})
    with pytest.raises(RuntimeError, match=r"shard 2/2: ValueError: planted failure"):
        parallel.run_shards(run, "parallel_targets:fail_on_shard_two", progress=False)


def test_shadows_in_two_processes_equal_one_process_at_one_thread(tmp_path):
    both = runs.open_run("configs/tiny.yaml", tmp_path / "workers", overrides={**TINY, "study.workers": 2})
    one = runs.open_run("configs/tiny.yaml", tmp_path / "one", overrides={**TINY, "study.num_threads": 1})
    assert mia.train_shadows(both, progress=False) == [0, 1, 2, 3]
    assert mia.train_shadows(one, progress=False) == [0, 1, 2, 3]
    for i in range(4):
        a = np.load(both.dir / "mia" / "logits" / f"shadow_{i:03d}.npy")
        b = np.load(one.dir / "mia" / "logits" / f"shadow_{i:03d}.npy")
        assert np.array_equal(a, b), f"shadow {i} differs between 2 workers × 1 thread and 1 process × 1 thread"
    assert mia.train_shadows(both, progress=False) == []  # resumable: nothing left


def test_workers_setting_is_checked():
    with pytest.raises(ConfigError, match=r"study.workers: 3 .*at most study.num_threads \(2\)"):
        load_config("configs/tiny.yaml", {"study.workers": 3})
    with pytest.raises(ConfigError, match="study.workers"):
        load_config("configs/tiny.yaml", {"study.workers": 0})
