"""TCKR: Text-Conditioned Knowledge Recycling.

The code lives in one subpackage per layer, each importing only the layers below it (import-linter contracts in
``pyproject.toml``; ``docs/architecture.md``)::

    cli             the ``tckr`` command
    orchestration   the headless study runner and the SLURM launcher
    reporting       figures, the README's generated blocks, the release folders
    privacy         attack mathematics, shadows, shadow pipelines, generator attacks, audit, ledger
    classification  MobileNetV3 classifiers: training, inference, evaluation
    generation      captions, the generator, LoRA, synthesis, the mini base generator's pretraining
    runfolder       run folders: the run, every path and reader of its artefacts
    datasets        real datasets, splits, canaries, provenance of pretrained models
    core            io, paths, settings, the dataset registry, progress, shards

**The public API facade.** The documented public API (docs/api.md) keeps its import paths —
``tckr.data.load_real``, ``tckr.runs.open_run``, ``tckr.mia.lira``, ... — although the code moved into the
subpackages. :data:`PUBLIC` is that facade, and the only one: each public module path lists, per source module, the
names it shows. ``import tckr.data`` (or ``tckr.data`` after ``import tckr``) builds a module holding exactly those
objects (the same objects, not copies). Code inside the package never imports through it (a test checks).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.1.0"

PUBLIC: dict[str, dict[str, tuple[str, ...]]] = {
    "data": {
        "tckr.core.registry": ("available_datasets", "class_names", "spec", "DatasetSpec"),
        "tckr.datasets.real": ("load_real", "RealDataset", "DatasetUnavailableError", "real_cache_dir", "channel_stats",
                               "resize_images", "to_rgb"),
        "tckr.datasets.splitting": ("make_splits", "Splits", "public_split", "test_split", "has_test_split",
                                    "choose_canaries", "Canaries", "summarise_splits"),
    },
    "config": {"tckr.core.config": ("load_config", "config_from_dict", "Config", "ConfigError")},
    "runs": {"tckr.runfolder.runs": ("open_run", "Run", "latest_run", "find_run", "RunNotFoundError", "LATEST")},
    "launch": {"tckr.orchestration.launch": ("launch",)},
    "progress": {"tckr.core.progress": ("tqdm", "note")},
    "shards": {"tckr.core.shards": ("parse_shard",)},
    "provenance": {"tckr.datasets.provenance": ("write_training_data", "read_training_data", "check_disjoint",
                                                "DataLeakError")},
    "captions": {
        "tckr.generation.captions": ("caption_run", "AttributeCaptioner", "attribute_captions", "Blip2Captioner",
                                     "export_prompts"),
        "tckr.generation.prompt_files": ("read_original_order", "read_grouped_by_class", "write_original_order",
                                         "write_grouped_by_class"),
    },
    "generator": {"tckr.generation.generator": ("build_random", "load", "load_lora", "Generator", "LoraKeyError")},
    "lora": {"tckr.generation.lora": ("finetune",)},
    "synthesis": {
        "tckr.generation.synthesis": ("generate",),
        "tckr.runfolder.synthetic": ("load_synthetic", "stream_synthetic", "available_multiples", "SyntheticSet",
                                     "ShardedImages"),
    },
    "classifiers": {"tckr.classification.classifiers": ("build", "save", "load", "TrainedClassifier", "load_trained",
                                                        "module_of")},
    "train": {
        "tckr.classification.train": ("fit", "teacher", "student", "students"),
        "tckr.classification.inference": ("predict_logits", "embed", "soft_labels"),
        "tckr.classification.checkpoints": ("checkpoint_file",),
    },
    "evaluate": {"tckr.classification.evaluate": ("evaluate",)},
    "mia": {
        "tckr.privacy.attacks": ("lira", "loss_attack", "rmia", "membership_mask"),
        "tckr.privacy.mia": ("train_shadows", "attack", "canary_mask"),
        "tckr.privacy.attack_results": ("write_attack_results", "TargetScores"),
    },
    "attacks": {"tckr.privacy.attacks": ("lira", "lira_from_stable", "lira_from_statistics", "balanced_use",
                                         "pooled_variance", "headline_attack", "loss_attack", "rmia",
                                         "membership_mask"),
                "tckr.privacy.auditing": ("epsilon_one_run",)},
    "metrics": {"tckr.privacy.metrics": ("aop",)},
    "pipelines": {"tckr.privacy.pipelines": ("train_pipelines",),
                  "tckr.privacy.pipeline_attacks": ("run_all", "attack_students", "pipeline_spread")},
    "generator_mia": {"tckr.privacy.generator_mia": ("run_all", "attack_generator", "denoising_errors"),
                      "tckr.privacy.synthetic_mia": ("attack_synthetic",)},
    "audit": {"tckr.privacy.audit": ("audit", "nearest")},
    "ledger": {"tckr.privacy.ledger": ("build", "headline", "headlines", "markdown", "classifier_headlines")},
    "artifacts": {"tckr.runfolder.artifacts": ("write_study_table",)},
    "plots": {"tckr.reporting.plots": ("make_figures",), "tckr.privacy.ledger": ("study_table",)},
    "report": {"tckr.reporting.report": ("collect", "block", "update_readme", "seeds_block", "control_table",
                                         "canary_rows", "bench_record", "bench_table", "update_bench")},
    "release": {"tckr.reporting.release": ("release", "check", "load_released", "load_released_trained",
                                           "released_models", "evaluate_released", "install_released",
                                           "ReleaseError")},
    "study": {"tckr.orchestration.study": ("run_study",), "tckr.runfolder.phases": ("PHASES",)},
}


def facade(name: str) -> types.ModuleType:
    """The public module ``tckr.<name>``: the objects :data:`PUBLIC` lists for it, imported from their homes."""
    module = types.ModuleType(f"{__name__}.{name}", f"Public API facade (tckr.PUBLIC): {', '.join(PUBLIC[name])}.")
    for home, names in PUBLIC[name].items():
        source = importlib.import_module(home)
        for n in names:
            setattr(module, n, getattr(source, n))
    module.__all__ = [n for names in PUBLIC[name].values() for n in names]
    return module


class _FacadeFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import tckr.<public name>`` build the facade module."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix == __name__ and name in PUBLIC:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        return facade(spec.name.partition(".")[2])

    def exec_module(self, module):
        return None


if not any(isinstance(f, _FacadeFinder) for f in sys.meta_path):
    sys.meta_path.append(_FacadeFinder())


def __getattr__(name: str):
    if name in PUBLIC:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
