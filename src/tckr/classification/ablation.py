"""The paper's ablation at one cardinality: GKD soft labels vs hard (prompted) labels, and
"class: caption" prompts vs class-name-only prompts.

The caption-prompt students come from the run itself (``train.student`` with ``label_mode`` soft/hard).
The class-only prompt set is generated into a sub-run ``<run>/ablation/class_prompts/`` (same config with
``synthesis.prompt_mode: class`` and only this cardinality; same splits, same LoRA adapter, same seeds),
and its students are trained there against the run's teacher. Every ablation student is evaluated like the
others (``tckr.evaluate``): the hard-label caption-prompt student gets a row in the run's
``results/classifiers.csv`` (and is attacked by 05 like every model in ``classifiers/``); the class-prompt
students' rows go to the sub-run's ``results/``.

``run/results/ablation.csv``: prompt_mode (caption | class), label_mode (soft | hard), cardinality
(multiple of |D|), model, test_accuracy (% of the real test split, the student's CAS).
"""

from __future__ import annotations

import shutil

import pandas as pd

from tckr.classification import evaluate, train
from tckr.core import io
from tckr.core.config import config_from_dict
from tckr.generation import synthesis
from tckr.runfolder import artifacts, runs, synthetic

SUBRUN = ("ablation", "class_prompts")


def class_prompt_run(run: runs.Run, multiple: float) -> runs.Run:
    """The sub-run that holds the class-only-prompt synthetic set of ``multiple`` × |D|."""
    # mia.pipeline_cardinalities (and power.cardinality among them) must stay within synthesis.cardinalities; the
    # sub-run attacks nothing and doses nothing
    cfg = config_from_dict(run.cfg.to_dict(), {"synthesis.prompt_mode": "class", "synthesis.cardinalities": [float(multiple)],
                                               "mia.pipeline_cardinalities": [], "power.cardinality": 0.0})
    sub = runs.open_run(cfg, run.dir.joinpath(*SUBRUN), seed=run.seed)
    adapter = artifacts.adapter_path(run)
    if adapter.is_file() and not artifacts.adapter_path(sub).is_file():
        # the record first: it holds the adapter's sha256, without which the copy counts as unchecked (lora.adapter_problem)
        for src in (adapter.parent / "training.json", adapter):
            if src.is_file():
                with io.atomic_path(artifacts.adapter_path(sub).parent / src.name) as tmp:
                    shutil.copyfile(src, tmp)
    return sub


def run_ablation(run: runs.Run, multiple: float | None = None, teacher_model=None, *, progress: bool = True) -> pd.DataFrame:
    """Train (or load) the four ablation students at ``multiple`` (default: the smallest cardinality)."""
    multiple = float(multiple or min(run.cfg.synthesis.cardinalities))
    teacher_model = teacher_model or train.teacher(run, progress=progress)
    sub = class_prompt_run(run, multiple)
    if not synthetic.is_complete(sub):
        synthesis.generate(sub, progress=progress)
    rows = []
    for prompt_mode, r in (("caption", run), ("class", sub)):
        for label_mode in ("soft", "hard"):
            model = train.student(r, multiple, teacher_model, label_mode=label_mode, progress=progress)
            result = evaluate.evaluate(r, model)
            rows.append({"prompt_mode": prompt_mode, "label_mode": label_mode, "cardinality": multiple,
                         "model": result["model"], "test_accuracy": result["test_accuracy"]})
    table = pd.DataFrame(rows)
    io.save_csv(run.path("results", "ablation.csv"), table)
    return table
