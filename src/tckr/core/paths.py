"""The project's folders. Every path in the code base is derived from these."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent.parent
CONFIGS = ROOT / "configs"
NOTEBOOKS = ROOT / "notebooks"
# the runs/ of the clone whose src/ is imported (each clone's .venv installs its own, Makefile), not of the current
# directory: the command line and the notebook kernels it starts then agree from any folder; $TCKR_RUNS moves them
RUNS = Path(os.environ.get("TCKR_RUNS", ROOT / "runs"))
PROMPTS = ROOT / "prompts"
LORA = ROOT / "lora_sd2"
TRAINED = ROOT / "trained_mbnv3"
MODELS = ROOT / "models"
IMAGES = ROOT / "images"
ASSETS = PACKAGE / "assets"
CACHE = Path(os.environ.get("TCKR_CACHE", Path.home() / ".cache" / "tckr"))
FASHION_MNIST_DEBIAN = Path(os.environ.get("TCKR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def data_dir() -> Path:
    """Folder of locally saved datasets (``datasets.save_to_disk`` layout, one sub-folder per name)."""
    return Path(os.environ.get("TCKR_DATA_DIR", CACHE / "datasets"))


def resolve(path: str | os.PathLike) -> Path:
    """A path from a config: absolute as given, relative ones against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p
