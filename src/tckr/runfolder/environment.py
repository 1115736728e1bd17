"""The machine a run executes on: package versions, git commit, CPU model and instruction sets, and the math
libraries' builds (``environment.json``); seeds, torch's CPU threads and the torch device a config asks for."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import os
import platform
import random
import subprocess
import sys
from pathlib import Path
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
    env["cpu"] = cpu()
    env["math_libraries"] = math_libraries()
    env["created"] = _dt.datetime.now().isoformat(timespec="seconds")
    return env


def cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The processor: ``model`` and instruction-set ``flags`` (the SIMD units that decide which kernels the math
    libraries run, so float results can differ between machines in the last bits), from ``/proc/cpuinfo`` on
    Linux (x86 ``model name``/``flags``, ARM ``Features``); elsewhere ``platform.processor()`` and no flags."""
    model, flags = platform.processor() or platform.machine() or None, None
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return {"model": model, "flags": flags}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())  # the first processor's; all cores are alike
    model = fields.get("model name") or fields.get("cpu model") or fields.get("hardware") or model
    listed = fields.get("flags") or fields.get("features")
    return {"model": model, "flags": listed.split() if listed else flags}


def math_libraries() -> dict[str, Any]:
    """The builds the arithmetic runs on: torch's (``torch.__config__.show()``: BLAS/LAPACK, oneDNN, OpenMP, the
    CPU capability its kernels use) and every BLAS/OpenMP library loaded in this process (threadpoolctl, when
    installed: vendor, version, threading layer, the architecture it tuned its kernels for)."""
    out: dict[str, Any] = {"torch": None, "torch_cpu_capability": None, "threadpools": None}
    try:
        import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

        out["torch"] = torch_build(torch.__config__.show())
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    try:
        import threadpoolctl  # lazy: optional (scikit-learn installs it); it only reads the loaded libraries
    except ImportError:
        return out
    keep = ("user_api", "internal_api", "prefix", "version", "threading_layer", "architecture", "num_threads")
    out["threadpools"] = [{k: pool[k] for k in keep if k in pool} for pool in threadpoolctl.threadpool_info()]
    return out


def torch_build(shown: str) -> list[str]:
    """``torch.__config__.show()`` in short: one line per library and feature (compiler, MKL, oneDNN, OpenMP, LAPACK,
    CPU capability), and of the build settings only the BLAS and LAPACK vendors (the rest are compiler flags)."""
    lines = []
    for raw in shown.splitlines():
        if not raw.strip().startswith("- "):
            continue  # the heading, and the continuation of a long item
        line = raw.strip().removeprefix("- ").strip()
        if line.startswith("Build settings:"):
            settings = [s.strip() for s in line.removeprefix("Build settings:").split(",")]
            lines += [s for s in settings if s.startswith(("BLAS_INFO=", "LAPACK_INFO=", "TORCH_VERSION="))]
        else:
            lines.append(line)
    return lines


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


_pinned_threads: int | None = None  # a worker process's own thread count (pin_threads), which set_threads keeps


def pin_threads(n: int) -> None:
    """Fix this process's torch CPU threads at ``n`` (a worker of :mod:`tckr.runfolder.parallel`): later
    :func:`set_threads` calls keep it instead of ``study.num_threads``."""
    global _pinned_threads
    import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

    _pinned_threads = int(n)
    torch.set_num_threads(_pinned_threads)


def set_threads(cfg: Config) -> None:
    """torch's CPU threads as ``study.num_threads`` asks (0 leaves torch's default), or the worker's pinned count."""
    import torch  # lazy: tckr.runs sits under the torch-free layers (artifacts, ledger, report): torch only when called

    want = _pinned_threads or cfg.study.num_threads
    if want and torch.get_num_threads() != want:
        torch.set_num_threads(want)


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
