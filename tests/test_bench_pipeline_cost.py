"""bench/bench_pipeline_cost.py's --set: checked like tckr's, before any work (no pipeline is trained here)."""

from __future__ import annotations

import importlib.util

import pytest

from tckr.cli.options import UsageError
from tckr.core import paths


def _module():
    spec = importlib.util.spec_from_file_location("bench_pipeline_cost", paths.ROOT / "bench" / "bench_pipeline_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_bad_set_is_refused_before_any_work(tmp_path):
    bench = _module()
    with pytest.raises(UsageError, match="--set 'generator.dtyp=bfloat16'"):
        bench.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtyp=bfloat16"])
    with pytest.raises(UsageError, match="generator.dtype"):
        bench.main(["--config", "configs/tiny.yaml", "--run", str(tmp_path / "run"), "--set", "generator.dtype=int8"])
    assert not (tmp_path / "run").exists()
