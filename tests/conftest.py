"""Shared fixtures. ``tiny_chain`` runs every phase notebook through papermill on configs/tiny.yaml once per
test session (the end-to-end tier); tests of each phase read the result files it leaves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> Path:
    """The run folder of the whole notebook chain (00_data … 09_figures) on configs/tiny.yaml."""
    from tckr.orchestration import study

    run_dir = tmp_path_factory.mktemp("tiny_chain") / "run"
    messages = []
    study.run_study("configs/tiny.yaml", run_dir, log=messages.append)
    return run_dir


@pytest.fixture(scope="session")
def tiny_sd_base(tmp_path_factory) -> Path:
    """A local ``save_pretrained`` folder of the tiny Stable-Diffusion architecture with random weights."""
    import torch

    from tckr.generation import generator

    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("tiny_sd") / "base"
    generator.build_random("tiny", seed=1).save_pretrained(str(d), safe_serialization=True)
    return d


def bench_script(name: str):
    """``bench/<name>.py`` imported as a module (the benchmarks are scripts, not a package)."""
    import importlib.util

    from tckr.core import paths

    spec = importlib.util.spec_from_file_location(name, paths.ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def bench():
    """:func:`bench_script`: ``bench("roofline")`` is ``bench/roofline.py`` as a module."""
    return bench_script
