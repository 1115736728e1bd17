"""The study's phases, in order: each one's notebook, the settings and run files it reads, and what it writes.

The one home of the phase list (the runner, :mod:`tckr.orchestration.study`, and the report read it here).
Paths are relative to the run folder. ``outputs`` are what a phase writes, results and caches alike: a folder
(ending in ``/``) holds every file under it, a pattern globs with ``*`` inside one folder. A file belongs to
the phase whose longest pattern matches it: ``mia/logits/pipeline_*`` (06, the shadow pipelines' students) is
carved out of ``mia/logits/`` (05, the classifier shadows and the targets), so each file has one owner and
invalidating a phase never removes a file another phase made. A phase's done-record lists every file it owns
after it ran (:func:`owned_files`); ``required`` are the files without which it did not finish. ``inputs`` are
the files it reads that other phases make; ``{adapter}`` stands for ``lora/<adapter name>``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

ADAPTER = "{adapter}"
HISTORY = "results/phases.csv"  # the runner's own log of attempts: no phase's output


@dataclass(frozen=True)
class Phase:
    """One phase: ``notebooks/<name>.ipynb``, the phases it reads from, and what it reads and writes."""

    name: str
    upstream: tuple[str, ...]
    config: tuple[str, ...]  # config sections it reads ("study.dataset" for one key, "*" for all)
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    required: tuple[str, ...] = ()

    @property
    def notebook(self) -> str:
        return f"notebooks/{self.name}.ipynb"


_ALL = (
    Phase("00_data", (), ("study.dataset", "data"), (),
          ("splits/", "results/splits.csv", "figures/real_samples.*"),
          ("splits/D.npy", "splits/H.npy", "splits/val.npy", "splits/pool.npy", "splits/public.npy")),
    Phase("01_captions", ("00_data",), ("captions",), ("splits/D.npy",), ("captions/",), ("captions/captions.csv",)),
    Phase("02_lora_finetune", ("01_captions",), ("generator", "lora"), ("splits/D.npy", "captions/captions.csv"),
          ("lora/", "figures/lora_*"), (ADAPTER,)),
    Phase("03_generate", ("01_captions", "02_lora_finetune"), ("generator", "synthesis"), (ADAPTER, "captions/captions.csv"),
          ("synthetic/", "figures/synthetic_samples.*"),
          ("synthetic/manifest.json", "synthetic/shards/*", "synthetic/subsets/*.npy")),
    # baselines/: the base generator's synthetic set and the students of gkd.baselines (tckr.classification.baselines)
    Phase("04_run_evaluate", ("03_generate",), ("classifier", "train", "gkd", "synthesis", "generator"),
          ("synthetic/manifest.json", "synthetic/subsets/*.npy"),
          ("classifiers/", "ablation/", "baselines/", "results/classifiers.csv", "results/per_class.csv", "results/confusion_*.csv",
           "results/ablation.csv", "results/released.csv"),
          ("classifiers/*.safetensors", "results/classifiers.csv")),
    # the membership mask, the classifier shadows (weights and logits: 06 reads them, 05 owns them), the targets'
    # logits and the attacks on them
    Phase("05_mia_lira", ("04_run_evaluate",), ("classifier", "train", "mia"), ("classifiers/*.safetensors",),
          ("mia/keep.npy", "mia/pool.npz", "mia/queries.json", "mia/shadows/", "mia/logits/", "mia/scores/", "mia/roc/",
           "results/mia.csv", "results/headline.json"),
          ("mia/keep.npy", "results/mia.csv", "results/headline.json")),
    Phase("06_shadow_pipelines", ("05_mia_lira",), ("captions", "generator", "lora", "synthesis", "classifier", "train", "gkd", "mia"),
          ("captions/captions.csv", "classifiers/*.safetensors", "mia/keep.npy", "mia/shadows/*.safetensors"),
          ("mia/pipelines/", "mia/logits/pipeline_*", "mia/scores/*_pipeline_*", "mia/roc/*_pipeline_*",
           "results/mia_pipeline.csv", "results/mia_pipeline_lopo.csv")),
    Phase("07_generator_attacks", ("02_lora_finetune", "03_generate", "06_shadow_pipelines"), ("generator", "lora", "synthesis", "mia"),
          (ADAPTER, "captions/captions.csv", "synthetic/manifest.json", "mia/keep.npy", "mia/pipelines/*/lora/*.safetensors",
           "mia/pipelines/*/synthetic/manifest.json"),
          ("mia/generator/", "mia/synthetic/", "mia/scores/generator*", "mia/scores/synthetic_*", "mia/roc/generator_*",
           "mia/roc/synthetic_*", "results/mia_generator.csv", "results/mia_synthetic.csv")),
    # AOP here, not in 05: a student's AOP takes its shadow-pipeline attack (06) when there is one
    Phase("08_audit_ledger", ("05_mia_lira", "06_shadow_pipelines", "07_generator_attacks"), ("classifier", "train", "mia", "audit"),
          ("synthetic/manifest.json", "results/classifiers.csv", "results/mia*.csv", "results/headline.json"),
          ("audit/", "results/audit*", "results/ledger.*", "results/aop.csv"),
          ("results/ledger.csv", "results/aop.csv", "results/audit.csv")),
    # every figure the others draw too (they draw them to show them; this phase draws them from the result files)
    Phase("09_figures", ("04_run_evaluate", "05_mia_lira", "08_audit_ledger"), ("*",),
          ("results/*.csv", "results/*.json", "mia/roc/*.csv"),
          ("figures/", "results/table.csv", "results/table.md"), ("results/table.csv",)),
)
PHASE: dict[str, Phase] = {p.name: p for p in _ALL}
PHASES: tuple[str, ...] = tuple(PHASE)
# The phase list before 05_mia_lira's shadow pipelines, generator attacks, audit and ledger became phases 06-08: the
# logs (results/phases.csv) of runs made then name these.
FORMER_PHASES = ("00_data", "01_captions", "02_lora_finetune", "03_generate", "04_run_evaluate", "05_mia_lira", "06_figures")


def phase_list(logged: set[str]) -> tuple[str, ...]:
    """The phase list a run's log was written under: the former one when it names a phase no longer in the study."""
    return FORMER_PHASES if logged - set(PHASES) and logged <= set(FORMER_PHASES) else PHASES


def matches(pattern: str, rel: str) -> bool:
    """Whether the run-relative path ``rel`` is under the folder ``pattern`` (ends in "/") or matches its glob."""
    if pattern.endswith("/"):
        return rel.startswith(pattern)
    want, got = pattern.split("/"), rel.split("/")
    return len(want) == len(got) and all(fnmatch.fnmatchcase(g, w) for g, w in zip(got, want))


def owner(rel: str) -> str | None:
    """The phase that writes ``rel`` (the one with the longest matching output pattern), or None."""
    best = max(((len(pat), p.name) for p in _ALL for pat in p.outputs if matches(pat, rel)), default=None)
    return best[1] if best else None


def _visible(rel: str) -> bool:
    return rel != HISTORY and not any(part.startswith(".") for part in rel.split("/"))


def owned_files(run_dir: Path, phase: str) -> list[str]:
    """Every file now under ``phase``'s outputs that it owns (hidden temporary files excluded), sorted."""
    found: set[str] = set()
    for pat in PHASE[phase].outputs:
        if pat.endswith("/"):
            folder = run_dir / pat
            files = folder.rglob("*") if folder.is_dir() else ()
        else:
            files = run_dir.glob(pat)
        found |= {f.relative_to(run_dir).as_posix() for f in files if f.is_file()}
    return sorted(rel for rel in found if _visible(rel) and owner(rel) == phase)
