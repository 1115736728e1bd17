"""The measured time each heavy notebook cell states, written from a committed study's result files.

A markdown cell of ``notebooks/*.ipynb`` carries ``<!-- tckr.time:KEY -->text<!-- /tckr.time -->`` before the cell it
describes; :func:`update_notebooks` replaces every ``text`` with :func:`texts` of a result folder (``tckr report
write`` does it from its first folder, ``results/mini``: the study ``make study`` runs), so that the times a reader
sees are the committed run's, never a number typed by hand. ``tckr report check`` fails when one differs.

Keys: ``phase:<phase>`` (a phase's wall time, ``results/phases.csv``), ``lora`` (steps and seconds of the LoRA,
``lora/loss.csv``), ``teacher``, ``students``, ``baselines`` and ``ablation`` (training seconds,
``results/classifiers.csv``), ``pipelines`` (``results/pipeline_stages.csv``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from tckr.core import io, paths
from tckr.runfolder import artifacts

MARK = re.compile(r"(<!-- tckr\.time:(?P<key>[\w:.-]+) -->)(?P<text>.*?)(<!-- /tckr\.time -->)", re.S)
BASELINE_NAMES = {"student_base": "base_soft", "student_base_hard": "public_only", "student_synth_hard": "lora_hard"}


def _phase_seconds(folder: Path) -> dict[str, float]:
    """Each finished phase's seconds (its last ``done`` row of ``results/phases.csv``)."""
    t = artifacts.read_result(folder, "phases.csv")
    return {str(r.phase): float(r.seconds) for r in t[t["status"] == "done"].itertuples()}


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _models(folder: Path) -> pd.DataFrame:
    """``results/classifiers.csv`` with ``kind``: the model name without its cardinality (``student_synth``,
    ``student_base_hard``, ...)."""
    t = artifacts.read_result(folder, "classifiers.csv")
    return t.assign(kind=t["model"].str.replace(r"\d+(\.\d+)?x", "", regex=True))


def _per_cardinality(rows: pd.DataFrame) -> str:
    return " and ".join(f"{_seconds(r.train_seconds)} ({r.cardinality:g}× |D|)" for r in rows.sort_values("cardinality").itertuples())


def texts(folder: str | Path) -> dict[str, str]:
    """Every key's sentence, measured in the result folder ``folder`` (a one-run study, as ``results/mini``); a key
    whose file or row the folder lacks is left out."""
    folder = Path(folder)
    inside = folder.resolve().is_relative_to(paths.ROOT)
    where = f"`{(folder.resolve().relative_to(paths.ROOT) if inside else folder).as_posix()}`"  # as the repository names it
    env = io.read_json(folder / "environment.json") if (folder / "environment.json").is_file() else {}
    on = f" on {env['cpu_count']} CPU cores" if env.get("cpu_count") and not env.get("gpu") else ""
    phases = _phase_seconds(folder)
    out = {f"phase:{p}": f"Measured in {where}{on}: the whole phase took {_seconds(s)} (its `results/phases.csv`)."
           for p, s in phases.items()}
    loss = folder / "lora" / "loss.csv"
    if loss.is_file() and "02_lora_finetune" in phases:
        last = pd.read_csv(loss).iloc[-1]
        out["lora"] = (f"Measured in {where}{on}: {int(last['step']):,} steps in {_seconds(float(last['seconds']))} (its "
                       f"`lora/loss.csv`, column `seconds`); the whole phase, samples included, "
                       f"{_seconds(phases['02_lora_finetune'])} (its `results/phases.csv`).")
    models = _models(folder)
    source = "(its `results/classifiers.csv`, column `train_seconds`)"
    teacher = models[models["role"] == "teacher"]
    if len(teacher):
        out["teacher"] = f"Measured in {where}{on}: {_seconds(float(teacher['train_seconds'].iloc[0]))} of training {source}."
    students = models[models["kind"] == "student_synth"]
    if len(students):
        out["students"] = f"Measured in {where}{on}: {_per_cardinality(students)} of training {source}."
    base = [f"`{name}` {_per_cardinality(models[models['kind'] == kind])}" for kind, name in BASELINE_NAMES.items()
            if (models["kind"] == kind).any()]
    if base:
        out["baselines"] = f"Measured in {where}{on}, training only: {'; '.join(base)} {source}."
    if "04_run_evaluate" in phases:
        out["ablation"] = (f"Measured in {where}{on}: the whole phase (teacher, students, baselines and ablation) took "
                           f"{_seconds(phases['04_run_evaluate'])} (its `results/phases.csv`).")
    stages = artifacts.read_optional_result(folder, "pipeline_stages.csv")
    if stages is not None and len(stages):
        kind = stages["stage"].where(~stages["stage"].str.startswith("student_"), "students")
        per = stages.assign(kind=kind).groupby(["pipeline", "kind"])["seconds"].sum().unstack(fill_value=0.0)
        parts = ", ".join(f"{k.replace('_', ' ')} {per[k].mean():.0f} s" for k in per.columns if per[k].mean() >= 1)
        took = f"; the whole phase took {_seconds(phases['06_shadow_pipelines'])}" if "06_shadow_pipelines" in phases else ""
        cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
        workers = int((cfg.get("study") or {}).get("workers") or 1)
        each = f", {workers} at a time in one-thread processes" if workers > 1 else ""
        out["pipelines"] = (f"Measured in {where}{on}: {per.sum(axis=1).mean():.0f} s per pipeline on average over "
                            f"{len(per)} pipelines{each} (its `results/pipeline_stages.csv`, mean per pipeline: {parts}){took}.")
    return out


def rewritten(notebook: Path, text: str, sentences: dict[str, str]) -> str:
    """The notebook ``text`` (of ``notebook``) with every marked sentence replaced; an error naming a key without one."""
    nb = json.loads(text)
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or not MARK.search(source):
            continue
        missing = sorted({m["key"] for m in MARK.finditer(source)} - set(sentences))
        if missing:
            raise ValueError(f"{notebook}: no measured time for {', '.join(missing)} in the result folder "
                             f"(keys it has: {', '.join(sorted(sentences))})")
        source = MARK.sub(lambda m: f"{m[1]}{sentences[m['key']]}{m[4]}", source)
        cell["source"] = source.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def update_notebooks(notebooks: str | Path, folder: str | Path, *, check: bool = False) -> list[Path]:
    """Rewrite the marked times of every notebook under ``notebooks`` from ``folder`` (:func:`texts`); the notebooks
    that changed (with ``check``, that would change: nothing is written)."""
    files = {f: text for f in sorted(Path(notebooks).glob("*.ipynb")) if MARK.search(text := f.read_text())}
    sentences = texts(folder) if files else {}
    changed = [(f, new) for f, old in files.items() if (new := rewritten(f, old, sentences)) != old]
    for f, new in [] if check else changed:
        io.write_text(f, new)
    return [f for f, _ in changed]
