"""Baseline students: which part of TCKR a student's accuracy comes from (``gkd.baselines``).

Every row is a student of the same architecture, recipe and cardinality; they differ in the generator that made
the synthetic set and in the labels:

=============== =================================== ===================================================
variant         synthetic set                       labels
=============== =================================== ===================================================
``lora_soft``   the run's (base + LoRA on D)         the teacher's soft labels (GKD): the TCKR student
``lora_hard``   the run's (base + LoRA on D)         the prompted class
``base_soft``   the base generator's (no LoRA)       the teacher's soft labels: knowledge distillation
``public_only`` the base generator's (no LoRA)       the prompted class: no D, no teacher
=============== =================================== ===================================================

The run's own student (``student_synth<m>x``, ``gkd.label_mode``) is always made; ``gkd.baselines`` lists the others.
The base generator's set is made once per run in a sub-run folder, ``<run>/baselines/base/`` (an ordinary run
folder holding a copy of the run's splits and canaries, so :func:`tckr.generation.synthesis.generate` and
:func:`tckr.train.student` run on it unchanged), with **class-name prompts and no image-to-image start**
(``synthesis.prompt_mode: class``, ``init_strength: 0``): it depends on no image or caption of D, so ``public_only``
owes nothing to D. The base set's noise seeds and class order are the run's plan. Its students are written to the
sub-run's ``classifiers/`` and their rows to the run's ``results/classifiers.csv`` as ``student_base<m>x`` (soft) and
``student_base<m>x_hard``.

Every row is attacked through shadow pipelines that replicate its training (:mod:`tckr.pipelines`): a pipeline is a
sub-run, so it has its own base sub-run (``<pipeline>/baselines/base/``, the pipeline's seed and half of P) and
trains each variant's student there with :func:`student`, ``base_soft`` from the pipeline's teacher; its base set is
drawn by the target's procedure with the pipeline's own noise seeds and class order (the base set depends on no
private image, but a shadow that reused the target's would share its public randomness too), and only the rows of the
attacked cardinalities are made (:func:`base_synthetic` with ``multiples``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torch import nn

from tckr.classification import classifiers, evaluate, train
from tckr.core import io
from tckr.core.config import Config, config_from_dict
from tckr.generation import synthesis
from tckr.runfolder import artifacts, runs, synthetic

VARIANTS = {"lora_soft": ("lora", "soft"), "lora_hard": ("lora", "hard"), "base_soft": ("base", "soft"),
            "public_only": ("base", "hard")}  # name -> (generator, label mode); the accepted names: tckr.core.config.STUDENT_VARIANTS
BASE_DIR = ("baselines", "base")


def main_variant(cfg: Config) -> str:
    """The run's own student: the adapted generator's set with ``gkd.label_mode`` labels."""
    return f"lora_{cfg.gkd.label_mode}"


def variants(cfg: Config) -> list[str]:
    """The run's student variants: its own (:func:`main_variant`), then ``gkd.baselines`` in their order."""
    return [main_variant(cfg), *cfg.gkd.baselines]


def variant_name(variant: str, multiple: float) -> str:
    """The results-table name of ``variant``'s student of ``multiple`` × |D|: ``student_synth<m>x[_hard]`` for the
    adapted generator's sets, ``student_base<m>x[_hard]`` for the base generator's."""
    source, mode = VARIANTS[variant]
    name = artifacts.model_name("student", multiple, mode)
    return name if source == "lora" else name.replace("student_synth", "student_base", 1)


def open_base(run: runs.Run) -> runs.Run:
    """The sub-run holding the base generator's synthetic sets and their students: the run's config and seed (hence
    its noise seeds and class order) with class-name prompts and text-to-image only (no D in any prompt), and the
    run's own splits and canaries (a shadow pipeline's half of P, not the one its config would draw)."""
    cfg = config_from_dict(run.cfg.to_dict(), {"synthesis.prompt_mode": "class", "synthesis.init_strength": 0.0})
    folder = run.dir.joinpath(*BASE_DIR)
    have = {**run.splits().as_dict(), "test": run.test_index()}
    for name, index in have.items():  # before the sub-run opens: its provenance check reads them
        if not (f := folder / "splits" / f"{name}.npy").is_file():
            io.save_array(f, index)
    canaries, f = run.canaries(), folder / "splits" / runs.CANARIES_FILE
    if len(canaries) and not f.is_file():
        runs.write_canaries(f, canaries)
    return runs.open_run(cfg, folder, seed=run.seed)


def base_synthetic(run: runs.Run, *, multiples: list[float] | None = None, progress: bool = True) -> runs.Run:
    """The base sub-run with every synthetic set of ``synthesis.cardinalities`` (of ``multiples`` only: the rows those
    sets use, as :func:`tckr.generation.synthesis.generate`) made by the base generator (no adapter); finished shards
    are kept."""
    base = open_base(run)
    if not synthetic.is_complete(base):
        synthesis.generate(base, synthesis.load_generator(base, use_lora=False), progress=progress, multiples=multiples)
    return base


def student_file(run: runs.Run, variant: str, multiple: float) -> Path:
    """Where ``variant``'s student of ``multiple`` × |D| is saved: the run's ``classifiers/`` for the adapted
    generator's variants, the base sub-run's (:func:`open_base`) for the base generator's."""
    source, mode = VARIANTS[variant]
    return artifacts.weights_file(run if source == "lora" else open_base(run), "student", multiple, mode)


def student(run: runs.Run, variant: str, multiple: float, teacher_model: classifiers.TrainedClassifier | nn.Module | None,
            *, progress: bool = True) -> classifiers.TrainedClassifier:
    """``variant``'s student of ``multiple`` × |D| (trained, or loaded when it was), named as in the results table."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown student variant {variant!r}; accepted: {', '.join(VARIANTS)}")
    source, mode = VARIANTS[variant]
    if source == "lora":
        return train.student(run, multiple, teacher_model, label_mode=mode, progress=progress)
    base = base_synthetic(run, progress=progress)
    model = train.student(base, multiple, teacher_model, label_mode=mode, progress=progress)
    return dataclasses.replace(model, info={**model.info, "name": variant_name(variant, multiple), "variant": variant})


def run_baselines(run: runs.Run, cardinalities: list[float] | None = None,
                  teacher_model: classifiers.TrainedClassifier | nn.Module | None = None, *,
                  progress: bool = True) -> dict[str, dict]:
    """Train (or load) and test every ``gkd.baselines`` student at each cardinality (default
    ``synthesis.cardinalities``); their rows go to ``results/classifiers.csv``. Returns the rows by model name."""
    multiples = [float(m) for m in (cardinalities or run.cfg.synthesis.cardinalities)]
    rows = {}
    for variant in run.cfg.gkd.baselines:
        needs_teacher = VARIANTS[variant][1] == "soft"
        if needs_teacher and teacher_model is None:
            teacher_model = train.teacher(run, progress=progress)
        for m in multiples:
            model = student(run, variant, m, teacher_model if needs_teacher else None, progress=progress)
            rows[variant_name(variant, m)] = evaluate.evaluate(run, model)
    return rows
