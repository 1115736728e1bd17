"""The privacy figures drawn from the ledger's headline rows (``results/ledger.csv``, :func:`tckr.ledger.headlines`),
everything in percent:

- ``figures/roc``: per release point (teacher, generator, synthetic set, student), the ROC of each headline row,
  log-log as LiRA papers draw them (Carlini et al. 2022), with a 95% pointwise bootstrap band and marks at 0.1% and
  1% FPR; the legend's AUC is the ledger table's cell;
- ``figures/ledger_headline``: the front page's ledger, the headline rows only, the canary rows of the same attacks
  in a panel of their own (their AUC reaches far higher and would squeeze the others).

Students attacked through shadow pipelines are drawn through them (the ledger's headline), not through the
classifier shadows of ``results/mia.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tckr.privacy import ledger, metrics
from tckr.reporting import canvas
from tckr.runfolder import artifacts

FPR_MARKS = (0.001, 0.01)
BAND_DRAWS = 200
BAND_SEED = 0
# width and height (inches) at canvas.save_figure's 150 dpi: at most 1600 x 1200 px, README width
FRONT_PAGE_INCHES = (10.0, 7.8)


def roc_stem(row) -> str:
    """The stem of a ledger row's ROC file (``mia/roc/<stem>_<attack>.csv``): a student attacked through shadow
    pipelines is ``<target>_pipeline`` (the stem :mod:`tckr.privacy.pipeline_attacks` writes), every other row its
    target."""
    return f"{row['target']}_pipeline" if row["source"] == "mia_pipeline.csv" else str(row["target"])


def roc_band(fpr, tpr, n_members: int, n_nonmembers: int, grid, n_draws: int = BAND_DRAWS, seed: int = BAND_SEED,
             level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the pointwise percentile bootstrap band of the TPR at each FPR of ``grid`` (the highest TPR whose
    FPR is at most it, the rule of :mod:`tckr.privacy.metrics`). The saved ROC has one point per distinct score, so its
    steps give how many members and non-members share each score; members and non-members are resampled separately
    with replacement (a multinomial over those counts, which is what resampling the examples does to a ROC), seeded."""
    fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
    neg = np.rint(np.diff(fpr) * n_nonmembers).astype(np.int64)
    pos = np.rint(np.diff(tpr) * n_members).astype(np.int64)
    if fpr[0] != 0 or tpr[0] != 0 or neg.sum() != n_nonmembers or pos.sum() != n_members or (neg < 0).any() or (pos < 0).any():
        raise ValueError(f"roc_band: the ROC is not one of {n_members} members and {n_nonmembers} non-members "
                         "(a saved ROC starts at (0, 0) with one point per distinct score)")
    rng = np.random.default_rng(seed)
    fpr_b = np.cumsum(rng.multinomial(n_nonmembers, neg / n_nonmembers, size=n_draws), axis=1) / n_nonmembers
    tpr_b = np.cumsum(rng.multinomial(n_members, pos / n_members, size=n_draws), axis=1) / n_members
    grid = np.asarray(grid, float)
    at = np.empty((n_draws, len(grid)))
    for b in range(n_draws):
        k = np.searchsorted(fpr_b[b], grid, side="right")  # points with FPR <= g, after the (0, 0) start
        at[b] = np.where(k > 0, tpr_b[b][np.maximum(k - 1, 0)], 0.0)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(at, [tail, 100 - tail], axis=0)
    return lo, hi


def row_label(r) -> str:
    """A headline row as a short name: ``teacher``, ``student 0.1× (hard labels, classifier shadows)``, ..."""
    card = "" if pd.isna(r["cardinality"]) else f" {r['cardinality']:g}×"
    notes = ledger.variant_notes(r) + ["classifier shadows"] * (r["release"] == "student" and r["source"] == "mia.csv")
    return f"{r['release']}{card}" + (f" ({', '.join(notes)})" if notes else "")


def auc_text(r) -> str:
    """The AUC of a ledger row as the ledger table shows it (:func:`tckr.ledger.effect_cell`), without the bound:
    ``59.9 [58.7, 61.1]``."""
    return ledger.effect_cell(r, "auc").rpartition(", ≤ ")[0] or "–"


def headline_rows(run_dir: Path) -> pd.DataFrame:
    """The ledger's headline rows (never canary rows)."""
    return ledger.headlines(ledger.with_subset(artifacts.read_result(run_dir, "ledger.csv")))


def roc_figure(run_dir: str | Path):
    """One log-log panel per release point with the ROC of each of its headline rows (percent), a 95% bootstrap band
    (:func:`roc_band`), marks at 0.1% and 1% FPR and the chance diagonal; the legend gives each row's AUC in percent
    with its 95% interval, as the ledger table does."""
    run_dir = Path(run_dir)
    heads = headline_rows(run_dir)
    releases = [r for r in ledger.RELEASES if (heads["release"] == r).any()]
    if not releases:
        raise FileNotFoundError(f"{run_dir / 'results' / 'ledger.csv'} has no headline rows: run notebooks/08_audit_ledger.ipynb")
    n_cols = 2 if len(releases) > 1 else 1
    n_rows = -(-len(releases) // n_cols)
    fig, axes = canvas.pyplot().subplots(n_rows, n_cols, figsize=(5.0 * n_cols, 3.9 * n_rows), squeeze=False)
    for ax in axes.flat[len(releases):]:
        ax.axis("off")
    for ax, release in zip(axes.flat, releases):
        rows = heads[heads["release"] == release]
        n_out = int(rows["n_nonmembers"].max())
        low = min(1.0 / n_out, FPR_MARKS[0]) / 2  # the 0.1% mark stays on the axis however few non-members
        grid = np.geomspace(low, 1.0, 200)
        for k, (_, r) in enumerate(rows.iterrows()):
            roc = artifacts.read_roc(run_dir, roc_stem(r), r["attack"])
            lo, hi = roc_band(roc["fpr"], roc["tpr"], int(r["n_members"]), int(r["n_nonmembers"]), grid)
            color = f"C{k}"
            ax.fill_between(100 * grid, 100 * np.maximum(lo, low), 100 * np.maximum(hi, low), color=color, alpha=0.2, lw=0)
            ax.plot(100 * roc["fpr"], 100 * roc["tpr"], color=color, lw=1.4,
                    label=f"{row_label(r)}: AUC {auc_text(r)}%")
        ax.plot([100 * low, 100], [100 * low, 100], color="grey", lw=0.8, ls=":")
        for x in FPR_MARKS:
            ax.axvline(100 * x, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(100 * low, 100)
        ax.set_ylim(100 * low, 100)
        ax.set_xlabel("false positive rate (%)")
        ax.set_ylabel("true positive rate (%)")
        ax.set_title(f"{release}: {', '.join(rows['attack'].unique())}", fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Headline attack per release point: ROC with 95% bootstrap band; dashed: 0.1% and 1% FPR", fontsize=10)
    fig.tight_layout()
    return fig


def plot_roc(run_dir: str | Path) -> list[Path]:
    """``figures/roc`` (:func:`roc_figure`)."""
    run_dir = Path(run_dir)
    return canvas.save_figure(roc_figure(run_dir), run_dir / "figures" / "roc")


def _canary_rows(t: pd.DataFrame, heads: pd.DataFrame) -> pd.DataFrame:
    """The canary rows of the headline attacks (same source, target and attack)."""
    key = ["source", "target", "attack"]
    canaries = t[t["subset"] == "canaries"]
    wanted = heads.set_index(key).index
    return canaries[canaries.set_index(key).index.isin(wanted)].reset_index(drop=True)


def _ledger_panel(ax, rows: pd.DataFrame, col: str, color: str) -> None:
    y = np.arange(len(rows))[::-1]
    v, lo, hi = (100 * rows[c].to_numpy(float) for c in (col, f"{col}_lo", f"{col}_hi"))
    if col in metrics.FPR_LEVELS:  # the rule of the ledger table: a TPR on too few non-members is left out
        shown = np.array([metrics.tpr_shown(int(n), metrics.FPR_LEVELS[col]) for n in rows["n_nonmembers"]])
        v, lo, hi = (np.where(shown, a, np.nan) for a in (v, lo, hi))
        if not shown.all():
            need = int(round(metrics.MIN_FALSE_POSITIVES / metrics.FPR_LEVELS[col]))
            where = (0.98, 0.02, "right", "bottom") if shown.any() else (0.5, 0.5, "center", "center")
            ax.text(where[0], where[1], f"left out: needs ≥ {need:,} non-members, have {int(rows['n_nonmembers'].min()):,}",
                    transform=ax.transAxes, ha=where[2], va=where[3], fontsize=7, color="0.3")
        if not shown.any():
            ax.set_xticks([])
    err = np.nan_to_num(np.abs(np.vstack([v - lo, hi - v])))
    ax.errorbar(v, y, xerr=err, fmt="o", color=color, ms=4, capsize=2)
    pooled = pd.to_numeric(rows.get("lopo_auc", pd.Series(np.nan, index=rows.index)), errors="coerce").notna().to_numpy()
    if col == "auc" and pooled.any():  # a student's pooled leave-one-pipeline-out AUC: the interval its finding reads
        pv, plo, phi = (100 * pd.to_numeric(rows[c], errors="coerce").to_numpy(float)[pooled] for c in ("lopo_auc", "lopo_auc_lo", "lopo_auc_hi"))
        ax.errorbar(pv, y[pooled] - 0.3, xerr=np.abs(np.vstack([pv - plo, phi - pv])), fmt="D", color="tab:blue", ms=3,
                    capsize=2, label="pooled over the pipelines' students (t-interval)")
        ax.legend(fontsize=6, loc="lower right")
    ax.axvline(50.0 if col == "auc" else 100 * metrics.FPR_LEVELS[col], ls="--", lw=1, color="tab:red")
    ax.set_yticks(y, [f"{row_label(r)}: {r['attack']}" for _, r in rows.iterrows()], fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)


def ledger_headline_figure(run_dir: str | Path):
    """The headline rows of ``results/ledger.csv`` (AUC and TPR at 1% FPR, percent, 95% bootstrap intervals; red:
    no leakage), and below them, in panels of their own, the same attacks scored on the mislabeled canaries alone.
    Sized for the README (:data:`FRONT_PAGE_INCHES` at most)."""
    run_dir = Path(run_dir)
    t = ledger.with_subset(artifacts.read_result(run_dir, "ledger.csv"))
    heads = ledger.headlines(t)
    if heads.empty:
        raise FileNotFoundError(f"{run_dir / 'results' / 'ledger.csv'} has no headline rows: run notebooks/08_audit_ledger.ipynb")
    canaries = _canary_rows(t, heads)
    groups = [(heads, "k", "headline attack per release point (P without canaries)")]
    if len(canaries):
        groups.append((canaries, "tab:purple", f"the same attacks on the {int(canaries['n_members'].iloc[0] + canaries['n_nonmembers'].iloc[0])} mislabeled canaries alone"))
    sizes = [len(g) for g, _, _ in groups]
    width, most = FRONT_PAGE_INCHES
    height = min(most, 0.27 * sum(sizes) + 1.0 * len(groups) + 0.8)
    fig, axes = canvas.pyplot().subplots(len(groups), 2, figsize=(width, height), squeeze=False,
                                         gridspec_kw={"height_ratios": [s + 2 for s in sizes]})
    for (rows, color, title), row_axes in zip(groups, axes):
        for ax, col, name in zip(row_axes, ("auc", "tpr_at_1pct"), ("AUC (%)", "TPR at 1% FPR (%)")):
            _ledger_panel(ax, rows, col, color)
            ax.set_xlabel(name, fontsize=8)
        row_axes[1].set_yticks(row_axes[1].get_yticks(), [])
        row_axes[0].set_title(title, fontsize=8, loc="left")
    fig.suptitle(f"Privacy ledger, headline rows ({artifacts.run_folder(run_dir).name}): 95% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    return fig


def plot_ledger_headline(run_dir: str | Path) -> list[Path]:
    """``figures/ledger_headline`` (:func:`ledger_headline_figure`)."""
    run_dir = Path(run_dir)
    return canvas.save_figure(ledger_headline_figure(run_dir), run_dir / "figures" / "ledger_headline")
