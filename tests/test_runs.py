import json

import numpy as np
import pytest

from tckr.core.config import ConfigError
from tckr.runfolder import runs


def test_run_folder_records_everything(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    for f in ("config.yaml", "environment.json", "seeds.json"):
        assert (run.dir / f).is_file()
    env = json.loads((run.dir / "environment.json").read_text())
    assert env["packages"]["torch"] and "commit" in env["git"]
    s = run.splits()
    assert len(s.D) == run.cfg.data.train_size == len(s.H)
    assert not set(s.D) & set(s.H) and not set(s.D) & set(s.val)
    D = run.real("D")
    assert D.images.shape == (len(s.D), 32, 32, 3) and D.split == "D"
    assert len(run.real("test")) == run.cfg.data.test_size
    again = runs.open_run(None, run.dir)
    assert again.cfg.hash() == run.cfg.hash()
    assert np.array_equal(again.splits().D, s.D)


def test_reopening_with_other_settings_fails(tmp_path):
    runs.open_run("configs/tiny.yaml", tmp_path / "r")
    with pytest.raises(ConfigError, match="train.epochs: 2 -> 9"):
        runs.open_run("configs/tiny.yaml", tmp_path / "r", overrides={"train.epochs": 9})
    with pytest.raises(ValueError, match="no config given"):
        runs.open_run(None, tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown real split"):
        runs.open_run(None, tmp_path / "r").real("train")


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    import os

    from tckr.core import io

    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    io.write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == [target]
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~io._umask()


def test_reopening_a_run_reads_it_without_rewriting_seeds(tmp_path):
    import os

    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    seeds = run.dir / "seeds.json"
    os.utime(seeds, ns=(1_000_000_000, 1_000_000_000))
    again = runs.open_run(None, run.dir)
    assert seeds.stat().st_mtime_ns == 1_000_000_000 and again.seed == run.seed
    other = runs.open_run(None, tmp_path / "r", seed=run.seed)
    assert other.seed_for(5) == run.seed_for(5) and seeds.stat().st_mtime_ns == 1_000_000_000
