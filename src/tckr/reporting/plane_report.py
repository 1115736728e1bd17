"""The privacy–utility plane in words (docs/dp.md): where a study's TCKR students sit against the DP frontier of its
DP studies, generated from the committed files (the plane's table, :func:`tckr.reporting.plane.table`, and each DP
study's ``results/dp_models.csv``), never written by hand.

The **DP frontier** is the set of models with a finite accountant ε: the DP-SGD teachers and the DP-LoRA students
whose labels keep a guarantee (hard labels: ε of the LoRA; the DP teacher's soft labels: ε_LoRA + ε_teacher). A TCKR
student sits **above** the frontier when no such model is at least as accurate (point estimates) and leaks no more
(TPR at 1% FPR), and **below** it when one is; each sentence gives the numbers with their 95% intervals and says
when the intervals overlap, i.e. when the position is not resolved at the study's power.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.reporting import plane
from tckr.runfolder import artifacts

def _num(v, lo=np.nan, hi=np.nan, unit: str = "%") -> str:
    if pd.isna(v):
        return "–"
    return f"{v:.1f}{unit}" + ("" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.1f}, {hi:.1f}]")


def _point(r) -> str:
    """``name: accuracy A% [lo, hi], TPR@1% T% [lo, hi]`` of a plane row."""
    return (f"accuracy {_num(r['accuracy'], r['accuracy_lo'], r['accuracy_hi'])}, "
            f"TPR at 1% FPR {_num(r['tpr_at_1'], r['tpr_at_1_lo'], r['tpr_at_1_hi'])}")


def above_chance(r) -> str:
    """``", above chance"`` where a row's 95% AUC interval lies above 50%: a measurable leak, whatever a rule says."""
    return ", above chance" if r["auc_lo"] > 50 else ""


def _overlap(a, b, col: str) -> bool:
    return not (a[f"{col}_hi"] < b[f"{col}_lo"] or b[f"{col}_hi"] < a[f"{col}_lo"])


def frontier(dp_folders) -> pd.DataFrame:
    """The DP models with a finite accountant ε of the given DP studies (``results/dp_models.csv`` rows)."""
    frames = [t for f in dp_folders if (t := artifacts.read_optional_result(f, plane.EXTRA_ROWS)) is not None]
    if not frames:
        return pd.DataFrame(columns=[*plane.COLUMNS, "eps_accountant", "dp_guarantee"])
    t = pd.concat(frames, ignore_index=True)
    eps = pd.to_numeric(t["eps_accountant"], errors="coerce")
    return t[np.isfinite(eps.to_numpy(float))].assign(eps_accountant=eps).reset_index(drop=True)


def student_sentence(s, front: pd.DataFrame) -> str:
    """Where one TCKR student (a plane row) sits against ``front`` (:func:`frontier`), in numbers."""
    head = f"`{s['model']}` ({_point(s)})"
    if front.empty:
        return f"{head}: no DP model to compare with."
    as_good = front[front["accuracy"] >= s["accuracy"]]
    if as_good.empty:
        best = front.loc[front["accuracy"].idxmax()]
        resolved = ("by point estimates only: the accuracy intervals overlap, so the position is not resolved"
                    if _overlap(s, best, "accuracy") else "and the accuracy intervals do not overlap")
        return (f"{head} sits **above the DP frontier**: no DP model reaches its accuracy, {resolved}. The most "
                f"accurate, `{best['model']}` (ε = {best['eps_accountant']:.2g}, {_point(best)}), is "
                f"{s['accuracy'] - best['accuracy']:.1f} points below it.")
    cheapest = as_good.loc[as_good["eps_accountant"].idxmin()]
    leaks_less = as_good[as_good["tpr_at_1"] <= s["tpr_at_1"]]
    where = ("**below the DP frontier**: a DP model at least as accurate leaks no more" if len(leaks_less) else
             "**above the DP frontier**: every DP model at least as accurate leaks more")
    resolved = ("by point estimates only: the TPR intervals overlap, so the position is not resolved at this power"
                if _overlap(s, cheapest, "tpr_at_1") else "and the TPR intervals do not overlap")
    return (f"{head} sits {where}, {resolved}. The DP model at least as accurate with the smallest ε is "
            f"`{cheapest['model']}` (ε = {cheapest['eps_accountant']:.2g}, {_point(cheapest)}).")


def _tckr(t: pd.DataFrame) -> pd.DataFrame:
    """The TCKR students of a plane table (:func:`tckr.reporting.plane.is_tckr_student`)."""
    return t[(t["kind"] == "student") & t["model"].map(plane.is_tckr_student)]


def matched_sentence(t: pd.DataFrame) -> str | None:
    """The matched-accuracy teacher beside the teacher and the most accurate TCKR student, or None without one."""
    m, teacher, students = t[t["kind"] == "matched_teacher"], t[t["kind"] == "teacher"], _tckr(t)
    if m.empty or teacher.empty:
        return None
    m, teacher = m.iloc[0], teacher.iloc[0]

    def auc(r) -> str:
        return f"AUC {_num(r['auc'], r['auc_lo'], r['auc_hi'])}"

    out = (f"The teacher's recipe stopped at the first epoch whose validation accuracy reaches the best student's "
           f"(`matched_teacher`: {_point(m)}, {auc(m)}), against the teacher trained to its plateau ({_point(teacher)}, "
           f"{auc(teacher)})")
    if students.empty:
        return out + "."
    best = students.loc[students["accuracy"].idxmax()]
    out += f", beside the most accurate TCKR student `{best['model']}` ({_point(best)}, {auc(best)})."
    if m["accuracy_lo"] > best["accuracy_hi"]:
        out += (f" Epochs are coarse: the matched teacher is {m['accuracy'] - best['accuracy']:.1f} points more accurate "
                "than that student, so it is matched from above.")
    return out


def sentences(folder: str | Path, folders) -> list[str]:
    """The plane's reading for a study with DP studies among ``folders`` (:func:`tckr.reporting.plane.dp_folders`);
    empty without any."""
    dps = plane.dp_folders(folder, folders)
    if not dps:
        return []
    t = plane.table(folder, dp=dps)
    front = frontier(dps)
    out = [student_sentence(s, front) for _, s in _tckr(t).iterrows()]
    if (m := matched_sentence(t)) is not None:
        out.append(m)
    if not front.empty:
        dp_range = ", ".join(f"`{r['model']}` {r['accuracy']:.1f}% at ε = {r['eps_accountant']:.2g} "
                             f"(AUC {_num(r['auc'], r['auc_lo'], r['auc_hi'])}{above_chance(r)})"
                             for _, r in front.sort_values("eps_accountant").iterrows())
        out.append(f"The DP frontier of {', '.join(f'`{d.name}`' for d in dps)}: {dp_range}. A DP model whose AUC "
                   "interval lies above 50% leaks measurably, within what its ε allows.")
    return out


def block(folders, images: str | Path = "images") -> str:
    """The results page's privacy–utility section: per study with DP studies among ``folders``, its plane table, its
    figure (when ``images/<study>/privacy_utility.png`` is there) and :func:`sentences`; empty without any."""
    folders = [Path(f) for f in folders]
    out = []
    for f in folders:
        if not (f / "results" / "ledger.csv").is_file() or not (dps := plane.dp_folders(f, folders)):
            continue
        out += [f"### Privacy–utility plane: `{f.name}` with {', '.join(f'`{d.name}`' for d in dps)}", "",
                "One point per model: real-test accuracy against the pre-registered attack (percent, 95% intervals; "
                "for the DP-LoRA students over classifier references, weaker than a pipeline's; [differential privacy](dp.md)).", "",
                plane.markdown(plane.table(f, plane.control_folders(f, folders), dps)).rstrip("\n"), ""]
        if (Path(images) / f.name / f"{plane.NAME}.png").is_file():
            out += [f"![{f.name}: privacy-utility plane](images/{f.name}/{plane.NAME}.png)", ""]
        out += [f"- {s}" for s in sentences(f, folders)] + [""]
    return "\n".join(out)


def front_sentences(folders) -> list[str]:
    """The README's short reading of the plane: :func:`sentences` of each study with DP studies."""
    folders = [Path(f) for f in folders]
    return [s for f in folders if (f / "results" / "ledger.csv").is_file() for s in sentences(f, folders)]
