"""The several-seed study's figure: real-test accuracy against synthetic cardinality, over seeds.

A several-seed result folder (``seed<k>/results/classifiers.csv``) draws its own students; a *companion* folder
carries the same curve further: another several-seed folder of the same seeds whose teachers are the same models
(equal real-test accuracy in every seed) and whose config differs only in which students it trains
(:data:`STUDENT_KEYS`), e.g. ``mini-seeds-5x`` (2x and 5x |D|, no baseline rows) beside ``mini-seeds`` (0.1x-1x with
the baselines). Its students join the curve; rows both folders hold are drawn from the folder itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.privacy import metrics
from tckr.reporting import canvas
from tckr.runfolder import artifacts

# the settings that choose which students a study trains: folders differing only here share their teachers
STUDENT_KEYS = (("study", "name"), ("study", "seeds"), ("synthesis", "cardinalities"), ("gkd", "baselines"),
                ("mia", "pipeline_cardinalities"))


def is_seeds_folder(folder: str | Path) -> bool:
    """A collected several-seed folder: ``seed<k>/`` runs and no results of its own."""
    folder = Path(folder)
    return bool(artifacts.seed_folders(folder)) and not artifacts.result_path(folder, "classifiers.csv").is_file()


def _settings(folder: Path) -> dict:
    """The folder's config without :data:`STUDENT_KEYS` (its own ``config.yaml``, else its first seed's)."""
    source = folder if (folder / "config.yaml").is_file() else artifacts.seed_folders(folder)[0]
    cfg = artifacts.settings(source) if (source / "config.yaml").is_file() else {}
    for section, key in STUDENT_KEYS:
        (cfg.get(section) or {}).pop(key, None)
    return {section: v for section, v in cfg.items() if v not in ({}, None)}


def _teachers(folder: Path) -> dict[int, float]:
    c = artifacts.seed_classifiers(folder)
    return dict(zip(c.loc[c["role"] == "teacher", "seed"], c.loc[c["role"] == "teacher", "test_accuracy"]))


def companions(folder: str | Path, folders: list[str | Path]) -> list[Path]:
    """The folders among ``folders`` that carry ``folder``'s curve further (the module docstring's rule)."""
    folder = Path(folder)
    if not is_seeds_folder(folder):
        return []
    mine, settings = _teachers(folder), _settings(folder)
    out = []
    for other in map(Path, folders):
        if other.resolve() == folder.resolve() or not is_seeds_folder(other):
            continue
        theirs = _teachers(other)
        if theirs and set(theirs) == set(mine) and all(np.isclose(theirs[s], mine[s]) for s in mine) \
                and _settings(other) == settings:
            out.append(other)
    return out


def seeds_cardinality_figure(folder: str | Path, also: list[str | Path] = ()) -> list[Path]:
    """Real-test accuracy against synthetic cardinality over the seeds of a several-seed result folder
    (``seed<k>/results/classifiers.csv``), with the students of its :func:`companions` ``also``: each seed's students
    as dots, their mean with its 95% Student-t interval per row kind, the teacher's mean and interval as a band.
    Saved as ``figures/seeds_cardinality``."""
    folder = Path(folder)
    seeds = artifacts.seed_folders(folder)
    if not seeds:
        raise FileNotFoundError(f"{folder} has no seed<k>/ folders: collect a several-seed run (tckr study --seeds 0 1 2)")
    allc = artifacts.seed_classifiers(folder)
    for other in map(Path, also):
        more = artifacts.seed_classifiers(other)
        more = more[(more["role"] == "student") & ~more["model"].isin(allc["model"])]
        allc = pd.concat([allc, more], ignore_index=True)
    plt = canvas.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    teacher = allc.loc[allc["role"] == "teacher", "test_accuracy"].to_numpy(float)
    if len(teacher):
        m, h = teacher.mean(), metrics.t_halfwidth(teacher)
        ax.axhline(m, color="k", ls="--", lw=1, label=f"teacher (real D): {m:.1f}%"
                   + (f" ± {h:.1f} (95% CI)" if np.isfinite(h) else "") + f", {len(teacher)} seeds")
        if np.isfinite(h):
            ax.axhspan(m - h, m + h, color="k", alpha=0.1)
    students = allc[allc["role"] == "student"]
    # one line per student row: the generator (base = gkd.baselines' base-generator rows) and the labels
    kind = np.where(students["model"].str.startswith("student_base"), "base generator", "LoRA")
    students = students.assign(row=[f"{k}, {'teacher soft' if m == 'soft' else 'prompted-class' if m == 'hard' else m} labels"
                                    for k, m in zip(kind, students["label_mode"])])
    modes = sorted(students["row"].unique())
    for k, (mode, g) in enumerate(students.groupby("row", sort=True)):
        shift = 1.0 + 0.04 * (k - (len(modes) - 1) / 2)  # the rows side by side at one cardinality (log axis)
        g = g.assign(cardinality=g["cardinality"] * shift)
        stats = [(c, v["test_accuracy"].to_numpy(float)) for c, v in g.groupby("cardinality")]
        xs = np.array([c for c, _ in stats])
        means = np.array([v.mean() for _, v in stats])
        half = np.array([metrics.t_halfwidth(v) for _, v in stats])
        line = ax.errorbar(xs, means, yerr=np.where(np.isfinite(half), half, 0), marker="o", capsize=3,
                           label=f"students, {mode} (mean ± 95% CI)")
        ax.scatter(g["cardinality"], g["test_accuracy"], s=10, alpha=0.5, color=line[0].get_color())
    ax.set_xscale("log")
    cards = sorted(students["cardinality"].dropna().unique())  # ticks at the cardinalities run, not powers of ten
    ax.set_xticks(cards, [f"{c:g}×" for c in cards])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("synthetic cardinality (× |D|)")
    ax.set_ylabel("real-test accuracy (%)")
    ax.set_title(f"{folder.name}: {len(seeds)} seeds" + "".join(f" + {Path(o).name}" for o in also))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return canvas.save_figure(fig, folder / "figures" / "seeds_cardinality")
