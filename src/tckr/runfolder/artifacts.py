"""Run artefacts: the paths and readers of a run folder's files (one place that knows the layout).

Phases write through these paths; :mod:`tckr.plots`, :mod:`tckr.report` and :mod:`tckr.ledger` read through them.
This module imports no training, generation or drawing code (``pyproject.toml``'s import-linter contracts keep it so).
Functions take a ``run`` (:class:`tckr.runs.Run`: ``.dir``, ``.cfg``, ``.path()``, ``.splits()``) where they need its
settings, else a run folder (``run_dir``; a ``Run`` is accepted too).

Layout (relative to the run folder):

- ``lora/lora_<generator arch>_<dataset>.safetensors`` (:func:`adapter_path`), ``lora/loss.csv``
  (:func:`read_lora_history`), ``lora/samples/{real,base,lora}.npy`` (:func:`write_lora_samples`).
- ``captions/captions.csv`` (:func:`captions_path`).
- ``synthetic/``: the synthetic-set store, its paths and readers in :mod:`tckr.runfolder.synthetic`.
- ``mia/<parts>`` (:func:`mia_dir`), ``mia/logits/<name>[_population].npy`` (:func:`logits_path`),
  ``mia/roc/<target>_<attack>.csv`` (:func:`read_roc`).
- ``classifiers/<dataset>_mbnv3_{real,synth<k>x[_hard]}.safetensors`` (:func:`weights_file`),
  ``classifiers/<model>_history.csv`` (:func:`history_file`, :func:`classifier_histories`).
- ``results/<name>`` (:func:`read_result`), ``results/headline.json`` (:func:`headline_path`),
  ``results/table.csv|md`` (:func:`write_study_table`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tckr.core import io
from tckr.core.registry import class_names
from tckr.datasets.real import load_real

CAPTIONS_DIR = "captions"
CAPTIONS_FILE = "captions.csv"
LORA_DIR = "lora"
MIA_DIR = "mia"
RESULTS_DIR = "results"
LORA_SAMPLE_KINDS = ("real", "base", "lora")


def run_folder(run_or_dir) -> Path:
    """The folder of a :class:`tckr.runs.Run` or of a path."""
    return Path(getattr(run_or_dir, "dir", run_or_dir))


def seed_folders(folder) -> list[Path]:
    """The ``seed<k>/`` folders of a several-seed run or result folder, in seed order (empty for one seed)."""
    found = [d for d in Path(folder).glob("seed*") if d.is_dir() and d.name[4:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[4:]))


SEEDS_SUFFIX = "-seeds"  # results/<study>-seeds: a study's several-seed folder, beside it (results/mini -> mini-seeds)


def seeds_folder(folder) -> Path | None:
    """The several-seed folder of a study (``<folder>-seeds`` beside it, holding ``seed<k>/``), or None."""
    folder = Path(folder)
    folder = folder if folder.name else folder.absolute()  # "." has no name
    seeds = folder.parent / f"{folder.name}{SEEDS_SUFFIX}"
    return seeds if seed_folders(seeds) else None


def study_name(folder, default: str | None = None) -> str:
    """The ``study.name`` a result or run folder was made under (its ``config.yaml``); ``default`` (else the folder's
    name) without one. Folders of one name are versions of one study: the first listed is the current one."""
    folder = Path(folder)
    cfg = folder / "config.yaml"
    return yaml.safe_load(cfg.read_text())["study"]["name"] if cfg.is_file() else default or folder.name


def settings(run_dir) -> dict[str, Any]:
    """The run's saved settings (``config.yaml``) as a plain dict."""
    f = run_folder(run_dir) / "config.yaml"
    if not f.is_file():
        raise FileNotFoundError(f"{run_folder(run_dir)} is not a run folder (no config.yaml)")
    return yaml.safe_load(f.read_text()) or {}


# --------------------------------------------------------------------------- results


def result_path(run_dir, name: str) -> Path:
    return run_folder(run_dir) / RESULTS_DIR / name


def read_result(run_dir, name: str) -> pd.DataFrame:
    """``results/<name>`` (a CSV); a missing file is an error saying to run the phase that writes it."""
    f = result_path(run_dir, name)
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: run the phase that writes it first")
    return pd.read_csv(f)


def read_optional_result(run_dir, name: str) -> pd.DataFrame | None:
    f = result_path(run_dir, name)
    return pd.read_csv(f) if f.is_file() else None


def seed_classifiers(folder) -> pd.DataFrame:
    """Every seed's ``results/classifiers.csv`` of a several-seed folder (:func:`seed_folders`), one table with a
    ``seed`` column; a seed without the file is an error naming it."""
    return pd.concat([read_result(d, "classifiers.csv").assign(seed=int(d.name[4:])) for d in seed_folders(folder)],
                     ignore_index=True)


def headline_path(run_dir) -> Path:
    """``results/headline.json``: the pre-registered headline attack (written by :func:`tckr.mia.attack`)."""
    return result_path(run_dir, "headline.json")


def read_headline_record(run_dir) -> dict[str, Any] | None:
    """``results/headline.json`` as written (``attack``, ``setting``, ``n_shadows``, ``rule``), None before it exists.
    :func:`tckr.ledger.headline` resolves a run's headline from it."""
    f = headline_path(run_dir)
    return io.read_json(f) if f.is_file() else None


def markdown_cell(value) -> str:
    """``value`` as one cell of a Markdown (GFM) table: ``|`` escaped, which would otherwise end the cell (GFM
    splits on it even inside a code span), and one line."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: pd.DataFrame) -> str:
    """The study table as Markdown (percent, two decimals; ± columns when present)."""
    def fmt(r, col):
        v = r.get(col, np.nan)
        if pd.isna(v):
            return "–"
        ci = r.get(f"{col}_ci", np.nan)
        return f"{v:.2f} ± {ci:.2f}" if not pd.isna(ci) else f"{v:.2f}"

    lines = ["| model | cardinality | accuracy (%) | AUC_MIA (%) | TPR@1% FPR (%) | AOP |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        card = "real" if r["role"] == "teacher" else f"{r['cardinality']:g}×"
        cells = [r["model"], card, fmt(r, "accuracy"), fmt(r, "auc_mia"), fmt(r, "tpr_at_1pct"), fmt(r, "aop")]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_study_table(run_dir, table: pd.DataFrame, per_seed: pd.DataFrame | None = None) -> list[Path]:
    """``results/table.csv`` and ``table.md`` (and ``table_per_seed.csv`` when given): the study table of
    :func:`tckr.ledger.study_table` or :func:`tckr.ledger.seed_summary`."""
    out = [io.save_csv(result_path(run_dir, "table.csv"), table),
           io.write_text(result_path(run_dir, "table.md"), table_markdown(table))]
    if per_seed is not None:
        out.append(io.save_csv(result_path(run_dir, "table_per_seed.csv"), per_seed))
    return out


# --------------------------------------------------------------------------- real images


def run_class_names(run_dir) -> list[str]:
    """Class names of the run's dataset, in label-id order."""
    return class_names(settings(run_dir)["study"]["dataset"])


def real_images(run_dir, split: str = "D") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, labels and class names of one of the run's real train-split partitions (``splits/<split>.npy``)."""
    cfg = settings(run_dir)
    idx = io.load_array(run_folder(run_dir) / "splits" / f"{split}.npy")
    ds = load_real(cfg["study"]["dataset"], "train", size=cfg["data"]["image_size"])
    return ds.images[idx], ds.labels[idx], ds.class_names


# --------------------------------------------------------------------------- captions


def captions_path(run) -> Path:
    """``captions/captions.csv``: one caption per image of D (written by :func:`tckr.captions.caption_run`)."""
    return run_folder(run) / CAPTIONS_DIR / CAPTIONS_FILE


# --------------------------------------------------------------------------- LoRA


def adapter_name(cfg) -> str:
    """``lora_<generator arch>_<dataset>.safetensors`` (the original release's ``lora_sd2_<dataset>`` naming)."""
    return f"lora_{cfg.generator.arch}_{cfg.study.dataset}.safetensors"


def adapter_path(run) -> Path:
    return run.path(LORA_DIR, adapter_name(run.cfg))


def lora_history_path(run_dir) -> Path:
    return run_folder(run_dir) / LORA_DIR / "loss.csv"


def read_lora_history(run_dir) -> pd.DataFrame:
    """The run's per-step LoRA loss table (``lora/loss.csv``)."""
    f = lora_history_path(run_dir)
    if not f.is_file():
        raise FileNotFoundError(f"no LoRA loss history at {f}; run notebooks/02_lora_finetune.ipynb first")
    return pd.read_csv(f)


def lora_samples_dir(run_dir) -> Path:
    return run_folder(run_dir) / LORA_DIR / "samples"


def write_lora_samples(run_dir, samples: dict[str, np.ndarray]) -> list[Path]:
    """``lora/samples/<kind>.npy`` for the real images and the base and adapted model's samples (same prompts, seeds)."""
    return [io.save_array(lora_samples_dir(run_dir) / f"{k}.npy", samples[k]) for k in LORA_SAMPLE_KINDS]


def read_lora_samples(run_dir) -> dict[str, np.ndarray]:
    folder = lora_samples_dir(run_dir)
    missing = [k for k in LORA_SAMPLE_KINDS if not (folder / f"{k}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"no LoRA samples {missing} in {folder}; run tckr.lora.write_samples (notebook 02) first")
    return {k: io.load_array(folder / f"{k}.npy") for k in LORA_SAMPLE_KINDS}


# --------------------------------------------------------------------------- classifiers and membership inference


def model_name(role: str, multiple: float | None = None, label_mode: str = "soft") -> str:
    """``teacher`` or ``student_synth<k>x`` (``_hard`` appended for hard-label students)."""
    if role == "teacher":
        return "teacher"
    return f"student_synth{multiple_tag(multiple)}x" + ("_hard" if label_mode == "hard" else "")


def multiple_tag(multiple: float) -> str:
    return f"{multiple:g}"


def weights_file(run, role: str, multiple: float | None = None, label_mode: str = "soft") -> Path:
    """Run-folder weights path, named like the released files (``<dataset>_mbnv3_real`` / ``_synth<k>x``)."""
    stem = f"{run.dataset}_mbnv3_real" if role == "teacher" else f"{run.dataset}_mbnv3_synth{multiple_tag(multiple)}x"
    if role != "teacher" and label_mode == "hard":
        stem += "_hard"
    return run.path("classifiers", f"{stem}.safetensors")


def history_file(run, name: str) -> Path:
    return run.path("classifiers", f"{name}_history.csv")


def classifier_histories(run_dir) -> dict[str, pd.DataFrame]:
    """Per classifier name, its per-epoch history (``classifiers/<name>_history.csv``), sorted by file name."""
    folder = run_folder(run_dir) / "classifiers"
    files = sorted(folder.glob("*_history.csv"))
    if not files:
        raise FileNotFoundError(f"no training histories in {folder}; train a teacher first")
    return {f.name[: -len("_history.csv")]: pd.read_csv(f) for f in files}


def mia_dir(run, *parts: str) -> Path:
    """``mia/<parts>`` of a run (its parent folders are created)."""
    return run.path(MIA_DIR, *parts)


def logits_path(run, name: str, population: bool = False) -> Path:
    return mia_dir(run, "logits", f"{name}{'_population' if population else ''}.npy")


def roc_path(run_dir, target: str, attack: str) -> Path:
    return run_folder(run_dir) / MIA_DIR / "roc" / f"{target}_{attack}.csv"


def read_roc(run_dir, target: str, attack: str) -> pd.DataFrame:
    """``mia/roc/<target>_<attack>.csv`` (columns ``fpr``, ``tpr``)."""
    f = roc_path(run_dir, target, attack)
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: run the phase that writes it first")
    return pd.read_csv(f)
