"""Where a student's accuracy comes from: paired differences between the rows of ``gkd.baselines``.

Each seed of a several-seed study (or the one run of a single folder) trains, at every cardinality, the TCKR
student and the baselines of :mod:`tckr.classification.baselines` on the same splits, teacher and plan. The
differences below are taken **within a seed** and then summarised over the seeds (mean, 95% Student-t interval of
the mean, each seed's value), so that seed-to-seed variation shared by the rows cancels:

================= ================================================ =================================================
contrast          rows (a − b)                                     reads as
================= ================================================ =================================================
``lora``          ``student_synth<m>x`` − ``student_base<m>x``     what the LoRA fine-tuned on D adds (teacher labels
                                                                   on both)
``teacher``       ``student_synth<m>x`` − ``student_synth<m>x_hard`` what the teacher's soft labels add
``public_gap``    ``teacher`` − ``student_base<m>x_hard``          how far public data alone is below the teacher
``student_gap``   ``teacher`` − ``student_synth<m>x``              how far the TCKR student is below the teacher
================= ================================================ =================================================

A contrast is listed for a cardinality only where both rows exist in every seed that has either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.privacy import metrics
from tckr.runfolder import artifacts

CONTRASTS = {  # name -> (row a, row b, what a - b is); {m} is the cardinality's name part (0.2x, 1x)
    "lora": ("student_synth{m}", "student_base{m}", "LoRA on D + teacher labels − base generator + teacher labels"),
    "teacher": ("student_synth{m}", "student_synth{m}_hard", "teacher soft labels − prompted class (LoRA set)"),
    "public_gap": ("teacher", "student_base{m}_hard", "teacher − public only (base generator, prompted class)"),
    "student_gap": ("teacher", "student_synth{m}", "teacher − TCKR student"),
}
COLUMNS = ["contrast", "cardinality", "a", "b", "what", "n_seeds", "mean", "lo", "hi", "per_seed"]


def accuracies(folder: str | Path) -> pd.DataFrame:
    """Real-test accuracy (%) of every model of ``folder``: one column per seed folder (``seed<k>``), or one column
    ``seed 0`` for a single run; index = model name."""
    folder = Path(folder)
    runs = artifacts.seed_folders(folder) or [folder]
    cols = {}
    for d in runs:
        f = d / "results" / "classifiers.csv"
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: {d} has no finished phase 04_run_evaluate")
        table = pd.read_csv(f)
        cols[d.name if d is not folder else "seed 0"] = table.set_index("model")["test_accuracy"].astype(float)
    return pd.DataFrame(cols)


def _part(multiple: float) -> str:
    return artifacts.model_name("student", multiple, "soft").removeprefix("student_synth")


def contrast_pairs(models) -> list[tuple[str, float, str, str, str, str]]:
    """``(contrast, cardinality, its name part, row a, row b, what)`` for every contrast of ``CONTRASTS`` at every
    student cardinality whose two rows are among ``models`` (model names), contrasts in ``CONTRASTS`` order, each by
    increasing cardinality."""
    models = set(models)
    cards = sorted({float(m[len("student_synth"):].split("x")[0]) for m in models if m.startswith("student_synth")})
    out = []
    for name, (a, b, what) in CONTRASTS.items():
        for m in cards:
            ra, rb = a.format(m=_part(m)), b.format(m=_part(m))
            if ra in models and rb in models:
                out.append((name, m, _part(m), ra, rb, what))
    return out


def contributions(folder: str | Path) -> pd.DataFrame:
    """The paired contrasts of the module docstring at every student cardinality of ``folder`` (columns ``COLUMNS``;
    ``per_seed`` is the differences joined by ``;``). Points of real-test accuracy."""
    acc = accuracies(folder)
    rows = []
    for name, m, _, ra, rb, what in contrast_pairs(acc.index):
        pair = acc.loc[[ra, rb]].dropna(axis=1)
        if pair.shape[1] == 0:
            continue
        diff = (pair.loc[ra] - pair.loc[rb]).to_numpy(float)
        half = metrics.t_halfwidth(diff)
        rows.append({"contrast": name, "cardinality": m, "a": ra, "b": rb, "what": what, "n_seeds": len(diff),
                     "mean": diff.mean(), "lo": diff.mean() - half, "hi": diff.mean() + half,
                     "per_seed": ";".join(f"{v:.2f}" for v in diff)})
    return pd.DataFrame(rows, columns=COLUMNS)


def contributions_block(folder: str | Path) -> str:
    """The Markdown table of :func:`contributions`; a folder without baseline rows lists only ``student_gap`` (how far
    each TCKR student is below the teacher); empty string when it has none either."""
    table = contributions(folder)
    if table["contrast"].isin(["lora", "public_gap"]).any():
        title = "Where the students' accuracy comes from"
    else:
        table = table[table["contrast"] == "student_gap"]
        title = "How far each student is below the teacher"
    if table.empty:
        return ""
    lines = [f"{title} (points of real-test accuracy, a − b within each seed; mean, 95% t-interval over the seeds):", "",
             "| contrast | cardinality | a − b | mean (points) | 95% CI | n | per seed |", "|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        ci = "–" if np.isnan(r.lo) else f"[{r.lo:+.2f}, {r.hi:+.2f}]"
        lines.append(f"| {r.contrast} | {r.cardinality:g}× \\|D\\| | {r.what} | {r.mean:+.2f} | {ci} | {r.n_seeds} | "
                     f"{r.per_seed.replace(';', ', ')} |")
    return "\n".join(lines) + "\n"
