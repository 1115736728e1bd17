"""The privacy–utility plane of a study: real-test accuracy against leakage, one point per released classifier
(teacher, each student), with the students of a positive-control study beside them and any rows of
``results/dp_models.csv`` (DP-trained models, the same columns). Written, never by hand, by the figure command:

    tckr report figures results/mini results/mini-leaky   # images/mini/privacy_utility.png|csv|md

Leakage is the ledger's pre-registered headline attack of each model (:func:`tckr.ledger.headlines`): TPR at 1% FPR
with its 95% bootstrap interval, left out (empty) where the ledger leaves it out for too few non-members, and AUC
beside it. Accuracy is the mean over the seeds of the study's several-seed folder (``<study>-seeds`` beside it) with
its 95% Student-t interval, else the run's accuracy with a 95% Wilson interval over its test images
(``results/splits.csv``). Every number in percent; ``source`` says where each row's numbers come from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.privacy import ledger, metrics
from tckr.reporting import canvas
from tckr.runfolder import artifacts

COLUMNS = ["study", "model", "kind", "accuracy", "accuracy_lo", "accuracy_hi", "tpr_at_1", "tpr_at_1_lo", "tpr_at_1_hi",
           "auc", "auc_lo", "auc_hi", "eps_lb", "source"]
EXTRA_ROWS = "dp_models.csv"  # results/dp_models.csv: DP-trained models, rows of COLUMNS
CONTROL_INFIX = "-leaky"  # results/<study>-leaky*: the study's positive controls (built to leak)
NAME = "privacy_utility"


def control_folders(folder: str | Path, folders) -> list[Path]:
    """The positive controls of a study among ``folders``: those named ``<study>-leaky...``, the first folder of each
    control config (:func:`tckr.runfolder.artifacts.study_name`; later ones are its earlier versions, as in the front
    table)."""
    name, seen, out = Path(folder).name + CONTROL_INFIX, set(), []
    for f in map(Path, folders):
        if f.name.startswith(name) and (study := artifacts.study_name(f)) not in seen:
            seen.add(study)
            out.append(f)
    return out


def wilson(accuracy_pct: float, n: int) -> tuple[float, float]:
    """95% Wilson interval (percent) of an accuracy over ``n`` test examples (:func:`tckr.privacy.metrics.wilson`)."""
    lo, hi = metrics.wilson(accuracy_pct / 100 * n, n)
    return 100 * lo, 100 * hi


def _accuracies(folder: Path) -> tuple[dict[str, tuple[float, float, float]], str]:
    """Per model over the study's seeds: (mean, lo, hi) with its 95% Student-t interval, and the source text."""
    seeds = artifacts.seeds_folder(folder)
    if seeds is None:
        return {}, ""
    dirs = artifacts.seed_folders(seeds)
    allc = pd.concat([pd.read_csv(artifacts.result_path(d, "classifiers.csv")) for d in dirs], ignore_index=True)
    out = {}
    for model, g in allc.groupby("model", sort=False):
        v = g["test_accuracy"].to_numpy(float)
        if len(v) > 1:
            h = metrics.t_halfwidth(v)
            out[model] = (float(v.mean()), float(v.mean() - h), float(v.mean() + h))
    return out, f"accuracy: mean of {len(dirs)} seeds ({seeds.name}), 95% Student t"


def _test_size(folder: Path) -> int | None:
    splits = artifacts.read_optional_result(folder, "splits.csv")
    return int(splits["test"].sum()) if splits is not None and "test" in splits and splits["test"].sum() > 0 else None


def study_rows(folder: str | Path, kinds: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per classifier of a study folder (:data:`COLUMNS`); ``kinds`` maps a role (``teacher``, ``student``) to
    its kind (default: the role), and a role it does not map is left out."""
    folder = Path(folder)
    kinds = {"teacher": "teacher", "student": "student"} if kinds is None else kinds
    clf = artifacts.read_result(folder, "classifiers.csv")
    heads = ledger.headlines(ledger.with_subset(artifacts.read_result(folder, "ledger.csv"))).set_index("target")
    seeded, seeds_text = _accuracies(folder)
    n_test = _test_size(folder)
    rows = []
    for _, c in clf[clf["role"].isin(list(kinds))].iterrows():
        model = c["model"]
        row = {"study": folder.name, "model": model, "kind": kinds[c["role"]]}
        if model in seeded:
            row.update(zip(("accuracy", "accuracy_lo", "accuracy_hi"), seeded[model]))
            acc_src = seeds_text
        else:
            lo, hi = wilson(c["test_accuracy"], n_test) if n_test else (np.nan, np.nan)
            row.update(accuracy=float(c["test_accuracy"]), accuracy_lo=lo, accuracy_hi=hi)
            acc_src = f"accuracy: one run, 95% Wilson over {n_test:,} test images" if n_test else "accuracy: one run, no interval"
        if model in heads.index:
            h = heads.loc[model]
            shown = metrics.tpr_shown(int(h["n_nonmembers"]), metrics.FPR_LEVELS["tpr_at_1pct"])
            for ours, theirs in (("tpr_at_1", "tpr_at_1pct"), ("auc", "auc")):
                keep = shown or ours == "auc"
                for suffix in ("", "_lo", "_hi"):
                    row[ours + suffix] = 100 * float(h[theirs + suffix]) if keep else np.nan
            row["eps_lb"] = float(h["eps_lb"]) if "eps_lb" in h and pd.notna(h["eps_lb"]) else np.nan
            leak_src = f"leakage: ledger headline {h['attack']} ({h['family']})"
        else:
            leak_src = "leakage: no headline row in the ledger"
        row["source"] = f"{acc_src}; {leak_src}"
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def extra_rows(folder: str | Path) -> pd.DataFrame | None:
    """``results/dp_models.csv`` of a study (rows of :data:`COLUMNS`, ``study`` filled in where empty), or None."""
    t = artifacts.read_optional_result(folder, EXTRA_ROWS)
    if t is None:
        return None
    missing = [c for c in COLUMNS if c not in t.columns]
    if missing:
        raise ValueError(f"{artifacts.result_path(folder, EXTRA_ROWS)}: missing columns {', '.join(missing)}; "
                         f"it holds the columns of {NAME}.csv: {', '.join(COLUMNS)}")
    t = t[COLUMNS].copy()
    t["study"] = t["study"].where(t["study"].notna() & (t["study"].astype(str) != ""), Path(folder).name)
    return t


def table(folder: str | Path, controls=()) -> pd.DataFrame:
    """The privacy–utility table of a study: its teacher and students, the students of each control study
    (``kind`` = ``control_student``) and the rows of its ``results/dp_models.csv``."""
    frames = [study_rows(folder)]
    frames += [study_rows(c, {"student": "control_student"}) for c in controls]
    extra = extra_rows(folder)
    if extra is not None:
        frames.append(extra)
    return pd.concat([f for f in frames if len(f)], ignore_index=True).reindex(columns=COLUMNS)


def _cell(r, col: str) -> str:
    v, lo, hi = (r.get(c, np.nan) for c in (col, f"{col}_lo", f"{col}_hi"))
    if pd.isna(v):
        return "–"
    return f"{v:.1f}" + ("" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.1f}, {hi:.1f}]")


def markdown(t: pd.DataFrame) -> str:
    """The table as Markdown (percent, estimate [95% interval]; ``–`` where a value is missing)."""
    lines = ["| study | model | kind | accuracy (%) | TPR@1% FPR (%) | AUC (%) | ε ≥ |", "|---|---|---|---|---|---|---|"]
    for _, r in t.iterrows():
        eps = "–" if pd.isna(r["eps_lb"]) else f"{float(r['eps_lb']):.2f}"
        cells = [r["study"], r["model"], r["kind"], _cell(r, "accuracy"), _cell(r, "tpr_at_1"), _cell(r, "auc"), eps]
        lines.append("| " + " | ".join(artifacts.markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _short(r) -> str:
    """``student_synth0.1x_hard`` as ``0.1× hard``; other names as they are; a control's student with its study."""
    name = str(r["model"])
    if name.startswith("student_synth"):
        name = name.removeprefix("student_synth").replace("x_", "× ", 1)
        name = name[:-1] + "×" if name.endswith("x") else name
    return f"{r['study']} {name}" if r["kind"] == "control_student" else name


def figure(t: pd.DataFrame, title: str):
    """Accuracy (y) against TPR at 1% FPR and against AUC (x), one point per row with its intervals, by kind."""
    fig, axes = canvas.pyplot().subplots(1, 2, figsize=(10, 4.3), sharey=True)
    kinds = list(dict.fromkeys(t["kind"]))
    for ax, col, name, ref in ((axes[0], "tpr_at_1", "TPR at 1% FPR (%)", 1.0), (axes[1], "auc", "AUC (%)", 50.0)):
        for k, kind in enumerate(kinds):
            g = t[(t["kind"] == kind) & t[col].notna()]
            if g.empty:
                continue
            x, y = g[col].to_numpy(float), g["accuracy"].to_numpy(float)
            xerr = np.nan_to_num(np.abs(np.vstack([x - g[f"{col}_lo"].to_numpy(float), g[f"{col}_hi"].to_numpy(float) - x])))
            yerr = np.nan_to_num(np.abs(np.vstack([y - g["accuracy_lo"].to_numpy(float), g["accuracy_hi"].to_numpy(float) - y])))
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="os^Dv<>p"[k % 8], color=f"C{k}", ms=5, capsize=2, lw=1, label=kind)
            for (_, r), xi, yi in zip(g.iterrows(), x, y):
                ax.annotate(_short(r), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axvline(ref, ls="--", lw=1, color="tab:red")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    left_out = t[t["tpr_at_1"].isna() & t["auc"].notna()]
    if len(left_out):
        axes[0].text(0.02, 0.02, f"TPR@1% left out (too few non-members): {', '.join(left_out['study'].unique())}",
                     transform=axes[0].transAxes, fontsize=7, color="0.3")
    axes[0].set_ylabel("real-test accuracy (%)")
    axes[1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_privacy_utility(folder: str | Path, controls=()) -> list[Path]:
    """``figures/privacy_utility.pdf|png`` with ``privacy_utility.csv`` and ``.md`` beside them (:func:`table`)."""
    folder = Path(folder)
    t = table(folder, controls)
    out = folder / "figures" / NAME
    seeds = artifacts.seeds_folder(folder)
    title = (f"{folder.name}: privacy–utility, headline attack per model; accuracy "
             + (f"over the seeds of {seeds.name}" if seeds else "of one run") + " (95% intervals)")
    paths = canvas.save_figure(figure(t, title), out)
    paths.append(io.save_csv(out.with_suffix(".csv"), t))
    paths.append(io.write_text(out.with_suffix(".md"), markdown(t)))
    return paths
