"""The machine a run executes on: package versions and git commit (``environment.json``), seeds, torch's CPU
threads and the torch device a config asks for."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
import random
import subprocess
import sys
from typing import Any

import numpy as np

from tckr.core import paths
from tckr.core.config import Config, ConfigError


def environment() -> dict[str, Any]:
    """Versions, machine and git commit, written into every run folder."""
    pkgs = {}
    for name in ("torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "timm", "datasets",
                 "numpy", "pandas", "scikit-learn", "papermill"):
        try:
            pkgs[name] = md.version(name)
        except md.PackageNotFoundError:
            pkgs[name] = None
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "processor": platform.machine(), "packages": pkgs, "git": git_commit()}
    try:
        import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

        env["cuda"] = torch.cuda.is_available()
        env["gpu"] = torch.cuda.get_device_name(0) if env["cuda"] else None
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    env["cpu_count"] = os.cpu_count()
    env["created"] = _dt.datetime.now().isoformat(timespec="seconds")
    return env


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

        torch.manual_seed(seed)
    except ImportError:
        pass


def set_threads(cfg: Config) -> None:
    """torch's CPU threads as ``study.num_threads`` asks (0 leaves torch's default)."""
    import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

    if cfg.study.num_threads and torch.get_num_threads() != cfg.study.num_threads:
        torch.set_num_threads(cfg.study.num_threads)


def device(cfg: Config):
    """The torch device the config asks for (``auto``: CUDA when available); one this machine lacks is an error
    (:func:`check_device`)."""
    import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

    want = cfg.study.device
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(cfg)
    return torch.device(want)


def check_device(cfg: Config) -> None:
    """A :class:`ConfigError` when ``study.device`` names a device this machine does not have (``cuda``/``cuda:N``
    without that many CUDA GPUs, ``mps`` without Apple's MPS); ``auto`` and ``cpu`` always pass, without importing
    torch. :func:`tckr.runfolder.runs.open_run` checks it before it makes a new run folder."""
    want = cfg.study.device
    if want in ("auto", "cpu"):
        return
    import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

    if want == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("study.device is 'mps' but this machine has no MPS (Apple GPU) device; use 'auto' or 'cpu'")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(want.partition(":")[2] or 0)
    if index >= count:
        have = f"{count} CUDA GPU(s) (cuda:0..cuda:{count - 1})" if count else "no CUDA GPU"
        raise ConfigError(f"study.device is {want!r} but this machine has {have}; use 'auto' (CUDA when available) "
                          f"or 'cpu'{', or a GPU it has' if count else ''}")
