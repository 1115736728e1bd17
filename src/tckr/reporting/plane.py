"""The privacy–utility plane of a study: real-test accuracy against leakage, one point per released classifier
(teacher, each student), with the students of a positive-control study beside them and the rows of
``results/dp_models.csv`` (DP-trained models, the same columns) of the study and of its DP studies (``<study>-dp``
folders made under the same config apart from its ``study`` and ``dp`` sections: the same data, teacher and students,
:func:`dp_folders`). Written, never by hand, by the figure command:

    tckr report figures results/mini results/mini-dp results/mini-leaky   # images/mini/privacy_utility.png|csv|md

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
DP_INFIX = "-dp"  # results/<study>-dp*: the study's DP studies (tckr dp on the same config with a dp section)
SAME_APART_FROM = ("study", "dp")  # the config sections a DP study may change against its study
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


def _comparable(a: Path, b: Path) -> bool:
    """Whether two folders' saved configs agree apart from :data:`SAME_APART_FROM`."""
    sa, sb = ({k: v for k, v in artifacts.settings(f).items() if k not in SAME_APART_FROM} for f in (a, b))
    return sa == sb


def dp_folders(folder: str | Path, folders) -> list[Path]:
    """The DP studies of a study among ``folders``: named ``<study>-dp...``, holding ``results/dp_models.csv`` and made
    under the study's config apart from :data:`SAME_APART_FROM` (so their DP models stand beside the study's teacher and
    students); the first folder of each config, as :func:`control_folders`. A folder of the name made under another
    config is refused: its points would sit on a plane they do not belong to."""
    name, seen, out = Path(folder).name + DP_INFIX, set(), []
    for f in map(Path, folders):
        if not f.name.startswith(name) or artifacts.read_optional_result(f, EXTRA_ROWS) is None:
            continue
        if not _comparable(Path(folder), f):
            raise ValueError(f"{f} is named as a DP study of {folder} but its config.yaml differs from {folder}'s in more "
                             f"than the sections {', '.join(SAME_APART_FROM)}: its models were not made on the same data and recipe")
        if (study := artifacts.study_name(f)) not in seen:
            seen.add(study)
            out.append(f)
    return out


def base_study(folder: str | Path, folders) -> Path | None:
    """The study a DP study (``<study>-dp...``, :func:`dp_folders`) belongs to among ``folders``, or None."""
    folder = Path(folder)
    for f in map(Path, folders):
        if f != folder and folder.name.startswith(f.name + DP_INFIX) and (f / "results" / "ledger.csv").is_file() \
                and folder in dp_folders(f, folders):
            return f
    return None


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
    allc = artifacts.seed_classifiers(seeds)
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


def table(folder: str | Path, controls=(), dp=()) -> pd.DataFrame:
    """The privacy–utility table of a study: its teacher and students, the students of each control study
    (``kind`` = ``control_student``) and the rows of the ``results/dp_models.csv`` of the study and of each ``dp``
    folder (:func:`dp_folders`)."""
    frames = [study_rows(folder)]
    frames += [study_rows(c, {"student": "control_student"}) for c in controls]
    frames += [e for e in map(extra_rows, (folder, *dp)) if e is not None]
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
    """A point's label: ``0.1×`` (TCKR student), ``0.1× hard``, ``public-only 0.1×`` and ``base-soft 0.1×`` (the
    base generator's sets: prompted labels, teacher's labels), ``T ε8`` (DP teacher), ``L ε8 hard`` (DP-LoRA student),
    ``matched``; a control's student with its study."""
    name = str(r["model"])
    if name.startswith("student_base"):
        card, _, hard = name.removeprefix("student_base").partition("_")
        name = ("public-only " if hard else "base-soft ") + card.removesuffix("x") + "×"
    elif name.startswith("student_"):
        name = name.removeprefix("student_").removeprefix("synth").replace("x_", "× ", 1)
        name = name[:-1] + "×" if name.endswith("x") else name
    elif name.startswith("dp_teacher_eps"):
        name = "T ε" + name.removeprefix("dp_teacher_eps")
    elif name.startswith("dp_lora_eps"):
        eps, _, mode = name.removeprefix("dp_lora_eps").partition("_")
        name = f"L ε{eps} {mode.replace('_', '-')}"
    elif name == "matched_teacher":
        name = "matched"
    return f"{r['study']} {name}" if r["kind"] == "control_student" else name


def is_tckr_student(model: str) -> bool:
    """Whether a study's student is a TCKR student: the adapted generator's set with the teacher's soft labels (not
    the hard-label ablation, not a base-generator baseline)."""
    return str(model).startswith("student_synth") and not str(model).endswith("_hard")


def shown_kind(r) -> str:
    """The legend's group of a point: the TCKR students (:func:`is_tckr_student`) apart from the study's other
    students (baselines and hard-label ablations)."""
    if r["kind"] == "student":
        return "TCKR student" if is_tckr_student(r["model"]) else "baseline / ablation"
    return str(r["kind"])


def guaranteed(t: pd.DataFrame) -> pd.Series:
    """The rows with a DP guarantee: DP teachers and DP-LoRA students on hard or DP-teacher labels (not ``_soft``
    alone: the non-private teacher's soft labels void it)."""
    m = t["model"].astype(str)
    return (t["kind"] == "dp_teacher") | ((t["kind"] == "dp_lora_student") & ~(m.str.endswith("_soft") & ~m.str.endswith("_dp_soft")))


def pareto(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (less leakage ``x`` and more accuracy ``y``), by increasing ``x``."""
    order, best, out = np.lexsort((-y, x)), -np.inf, []
    for i in order:
        if y[i] > best:
            best = y[i]
            out.append(i)
    return np.asarray(out, int)


def figure(t: pd.DataFrame, title: str):
    """Accuracy (y) against TPR at 1% FPR and against AUC (x), one point per row with its intervals, by
    :func:`shown_kind`; the DP frontier (the Pareto front of the :func:`guaranteed` rows) as a dashed step."""
    fig, axes = canvas.pyplot().subplots(1, 2, figsize=(10.5, 5), sharey=True)
    t = t.assign(shown=[shown_kind(r) for _, r in t.iterrows()])
    kinds = list(dict.fromkeys(t["shown"]))
    for ax, col, name, ref in ((axes[0], "tpr_at_1", "TPR at 1% FPR (%)", 1.0), (axes[1], "auc", "AUC (%)", 50.0)):
        for k, kind in enumerate(kinds):
            g = t[(t["shown"] == kind) & t[col].notna()]
            if g.empty:
                continue
            x, y = g[col].to_numpy(float), g["accuracy"].to_numpy(float)
            xerr = np.nan_to_num(np.abs(np.vstack([x - g[f"{col}_lo"].to_numpy(float), g[f"{col}_hi"].to_numpy(float) - x])))
            yerr = np.nan_to_num(np.abs(np.vstack([y - g["accuracy_lo"].to_numpy(float), g["accuracy_hi"].to_numpy(float) - y])))
            faint = kind == "baseline / ablation"  # in the table; drawn light, only the public-only points named
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="os^Dv<>p"[k % 8], color=f"C{k}", ms=4 if faint else 5, capsize=2,
                        lw=0.8, alpha=0.35 if faint else 0.9, label=kind)
            for (_, r), xi, yi in zip(g.iterrows(), x, y):
                if not faint or str(r["model"]).endswith("_hard") and str(r["model"]).startswith("student_base"):
                    ax.annotate(_short(r), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=6.5, color=f"C{k}")
        dp_ = t[guaranteed(t) & t[col].notna()]
        if len(dp_) > 1:
            x, y = dp_[col].to_numpy(float), dp_["accuracy"].to_numpy(float)
            front = pareto(x, y)
            ax.step(x[front], y[front], where="post", ls="--", lw=1, color="0.4", label="DP frontier (Pareto)")
        ax.axvline(ref, ls="--", lw=1, color="tab:red")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    left_out = t[t["tpr_at_1"].isna() & t["auc"].notna()]
    if len(left_out):
        axes[0].text(0.02, 0.02, f"TPR@1% left out (too few non-members): {', '.join(left_out['study'].unique())}",
                     transform=axes[0].transAxes, fontsize=7, color="0.3")
    axes[0].set_ylabel("real-test accuracy (%)")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_privacy_utility(folder: str | Path, controls=(), dp=(), into: str | Path | None = None) -> list[Path]:
    """``figures/privacy_utility.pdf|png`` with ``privacy_utility.csv`` and ``.md`` beside them (:func:`table`), in
    ``folder`` or in ``into`` (a DP study's folder, drawing the plane of the study it belongs to)."""
    folder = Path(folder)
    t = table(folder, controls, dp)
    out = Path(into or folder) / "figures" / NAME
    seeds = artifacts.seeds_folder(folder)
    title = (f"{folder.name}: privacy–utility, headline attack per model; accuracy "
             + (f"over the seeds of {seeds.name}" if seeds else "of one run") + " (95% intervals)")
    paths = canvas.save_figure(figure(t, title), out)
    paths.append(io.save_csv(out.with_suffix(".csv"), t))
    paths.append(io.write_text(out.with_suffix(".md"), markdown(t)))
    return paths
