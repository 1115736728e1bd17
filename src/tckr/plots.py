"""Figures and tables, drawn only from a run's result files (no training code is imported).

    python -m tckr.plots runs/<run_id> [--images]   # every figure, PDF and PNG, into <run>/figures/

Inputs (written by the phases): ``results/classifiers.csv`` (04; accuracies in percent), ``results/mia.csv``
(05; AUC and TPR as fractions), ``results/headline.json`` (05; the pre-registered headline attack),
``mia/roc/<target>_<attack>.csv`` (05), ``results/audit.csv``, ``audit_control.csv`` and
``audit_summary.csv`` (05), ``results/ablation.csv`` (04), ``synthetic/`` shards (03) and the real split
indices. Outputs: ``figures/*.pdf|png`` and ``results/table.csv|md`` (teacher vs students: accuracy,
AUC_MIA, TPR@1% FPR and AOP, all from the headline attack).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import attacks, io, ledger
from .metrics import aop

FIGURES = ("table", "cardinality", "roc", "ledger", "samples", "ablation", "audit", "curves")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path_stem: Path) -> list[Path]:
    """Save a matplotlib figure as PDF and PNG (atomically) and close it."""
    out = []
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        target = path_stem.parent / f"{path_stem.name}.{ext}"
        with io.atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        out.append(target)
    _plt().close(fig)
    return out


def headline_attack(run_dir: str | Path) -> str:
    """The run's pre-registered headline attack: ``results/headline.json`` (written by
    ``tckr.mia.attack``), else the ``mia.headline`` rule of the run's config with its shadow count."""
    import yaml

    from .config import MiaConfig

    run_dir = Path(run_dir)
    f = run_dir / "results" / "headline.json"
    if f.is_file():
        return io.read_json(f)["attack"]
    mia_cfg = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("mia") or {}
    n_shadows = mia_cfg.get("n_shadows", MiaConfig.n_shadows)
    res = run_dir / "results" / "mia.csv"
    if res.is_file():
        n_shadows = int(pd.read_csv(res)["n_shadows"].max())
    return attacks.headline_attack(mia_cfg.get("headline", MiaConfig.headline), n_shadows)


def _read(run_dir: Path, *parts: str) -> pd.DataFrame:
    f = run_dir.joinpath(*parts)
    if not f.is_file():
        raise FileNotFoundError(f"{f} is missing: run the phase that writes it first")
    return pd.read_csv(f)


def study_table(run_dir: str | Path) -> pd.DataFrame:
    """Teacher vs students: accuracy, AUC_MIA, TPR@1% FPR and AOP (all in percent), written to results/table.csv and .md."""
    run_dir = Path(run_dir)
    clf = _read(run_dir, "results", "classifiers.csv")
    _read(run_dir, "results", "mia.csv")
    attack = headline_attack(run_dir)
    m = ledger.classifier_headlines(run_dir, attack).set_index("target")
    rows = []
    for _, r in clf.iterrows():
        row = {"model": r["model"], "role": r["role"], "cardinality": r.get("cardinality", np.nan),
               "label_mode": r.get("label_mode", ""), "accuracy": r["test_accuracy"]}
        if r["model"] in m.index:
            mr = m.loc[r["model"]]
            row.update(auc_mia=100 * mr["auc"], auc_lo=100 * mr.get("auc_lo", np.nan), auc_hi=100 * mr.get("auc_hi", np.nan),
                       tpr_at_1pct=100 * mr["tpr_at_1pct"], aop=100 * aop(r["test_accuracy"] / 100, mr["auc"]),
                       shadows=mr["shadows"])
        else:
            row.update(auc_mia=np.nan, auc_lo=np.nan, auc_hi=np.nan, tpr_at_1pct=np.nan, aop=np.nan, shadows="")
        row["attack"] = attack
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.sort_values(["role", "cardinality"], ascending=[False, True], na_position="first").reset_index(drop=True)
    io.save_csv(run_dir / "results" / "table.csv", table)
    io.write_text(run_dir / "results" / "table.md", table_markdown(table))
    return table


def table_markdown(table: pd.DataFrame) -> str:
    """The study table as Markdown (percent, two decimals; ± columns when present)."""
    def fmt(r, col):
        v = r.get(col, np.nan)
        if pd.isna(v):
            return "–"
        ci = r.get(f"{col}_ci", np.nan)
        return f"{v:.2f} ± {ci:.2f}" if not pd.isna(ci) else f"{v:.2f}"

    lines = ["| model | cardinality | accuracy (%) | AUC_MIA (%) | TPR@1% FPR (%) | AOP |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        card = "real" if r["role"] == "teacher" else f"{r['cardinality']:g}×"
        lines.append(f"| {r['model']} | {card} | {fmt(r, 'accuracy')} | {fmt(r, 'auc_mia')} | {fmt(r, 'tpr_at_1pct')} | {fmt(r, 'aop')} |")
    return "\n".join(lines) + "\n"


def plot_table(run_dir: Path) -> list[Path]:
    table = study_table(run_dir)
    plt = _plt()
    cols = ["model", "accuracy", "auc_mia", "tpr_at_1pct", "aop"]
    labels = ["model", "accuracy %", f"AUC_MIA % ({table['attack'].iloc[0]})", "TPR@1%FPR %", "AOP"]
    cells = [[r["model"]] + [("–" if pd.isna(r[c]) else f"{r[c]:.2f}") for c in cols[1:]] for _, r in table.iterrows()]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(cells) + 0.9))
    ax.axis("off")
    t = ax.table(cellText=cells, colLabels=labels, loc="center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(9)
    t.scale(1, 1.4)
    ax.set_title("Teacher (real data) vs students (synthetic data)")
    return save_figure(fig, run_dir / "figures" / "table")


def plot_cardinality(run_dir: Path) -> list[Path]:
    table = study_table(run_dir)
    plt = _plt()
    teacher = table[table["role"] == "teacher"]
    students = table[(table["role"] == "student")].sort_values("cardinality")
    if "label_mode" in students and students["label_mode"].notna().any():
        main_mode = students["label_mode"].mode().iloc[0]
        students = students[students["label_mode"] == main_mode]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, col, name in zip(axes, ["accuracy", "auc_mia", "aop"], ["CAS / accuracy (%)", "AUC_MIA (%)", "AOP"]):
        ax.plot(students["cardinality"], students[col], "o-", label="students (synthetic)")
        if len(teacher) and not pd.isna(teacher[col].iloc[0]):
            ax.axhline(teacher[col].iloc[0], ls="--", color="k", label="teacher (real)")
        ax.set_xscale("log")
        ax.set_xlabel("synthetic cardinality (× |D|)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return save_figure(fig, run_dir / "figures" / "cardinality")


def roc_axes(title: str):
    """A figure with a linear and a log-log ROC panel, the chance diagonal drawn in both."""
    fig, (lin, log) = _plt().subplots(1, 2, figsize=(10, 4.2))
    for ax in (lin, log):
        ax.plot([1e-5, 1], [1e-5, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.grid(alpha=0.3)
    log.set_xscale("log")
    log.set_yscale("log")
    lin.set_title(title)
    log.set_title("log-log")
    return fig, lin, log


def _roc_lines(ax_pair, run_dir: Path, r, label: str, lw: float = 1.3) -> None:
    roc = _read(run_dir, "mia", "roc", f"{r['target']}_{r['attack']}.csv")
    for ax in ax_pair:
        ax.plot(roc["fpr"], roc["tpr"], lw=lw, label=f"{label} (AUC {r['auc']:.3f}, TPR@1% {100 * r['tpr_at_1pct']:.1f}%)")


def mia_roc_figure(run_dir: str | Path, target: str | None = None):
    """Linear and log-log ROC from ``mia/roc/`` and ``results/mia.csv``: every attack against ``target``
    (the headline drawn thicker), or with ``target=None`` the headline attack against every target."""
    run_dir = Path(run_dir)
    res = _read(run_dir, "results", "mia.csv")
    head = headline_attack(run_dir)
    n_ex = int(res["n_members"].iloc[0] + res["n_nonmembers"].iloc[0])
    if target is None:
        rows = res[res["attack"] == head]
        if rows.empty:
            raise FileNotFoundError(f"{run_dir / 'results' / 'mia.csv'} has no rows of the headline attack {head!r}: run tckr.mia.attack")
        fig, lin, log = roc_axes(f"ROC of the headline attack ({head}): teacher vs students")
        for _, r in rows.iterrows():
            _roc_lines((lin, log), run_dir, r, r["target"], lw=2.0 if r["role"] == "teacher" else 1.2)
    else:
        rows = res[res["target"] == target]
        fig, lin, log = roc_axes(f"MIA ROC: {target} ({int(rows['n_shadows'].iloc[0])} shadows)")
        for _, r in rows.iterrows():
            is_head = r["attack"] == head
            _roc_lines((lin, log), run_dir, r, r["attack"] + (" [headline]" if is_head else ""), lw=2.2 if is_head else 1.2)
    log.set_xlim(1.0 / max(n_ex, 1), 1)
    log.set_ylim(1.0 / max(n_ex, 1), 1)
    lin.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_mia_roc(run_dir: str | Path) -> list[Path]:
    """``figures/roc`` (the headline attack, every target) and ``figures/mia_roc_<target>`` (every attack)."""
    run_dir = Path(run_dir)
    out = save_figure(mia_roc_figure(run_dir), run_dir / "figures" / "roc")
    for t in _read(run_dir, "results", "mia.csv")["target"].unique():
        out += save_figure(mia_roc_figure(run_dir, t), run_dir / "figures" / f"mia_roc_{t}")
    return out


def image_grid(rows: list[np.ndarray], row_labels: list[str], title: str = "", col_header: str | None = None):
    """A figure with one row of uint8 images per label."""
    plt = _plt()
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(0.9 * ncols + 1.5, 0.9 * len(rows) + 0.5), squeeze=False)
    for i, (imgs, label) in enumerate(zip(rows, row_labels)):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(imgs):
                ax.imshow(imgs[j])
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _real_images(run_dir: Path, split: str = "D"):
    import yaml

    from . import data

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    idx = io.load_array(run_dir / "splits" / f"{split}.npy")
    ds = data.load_real(cfg["study"]["dataset"], "train", size=cfg["data"]["image_size"])
    return ds.images[idx], ds.labels[idx], ds.class_names


def _synthetic_images(run_dir: Path):
    """The run's largest synthetic set, read from its shards."""
    from . import synthesis
    from .runs import open_run

    run = open_run(None, run_dir)
    s = synthesis.load_synthetic(run, max(synthesis.available_multiples(run)))
    return s.images, s.labels


def plot_samples(run_dir: Path, per_class: int = 6) -> list[Path]:
    real, real_y, names = _real_images(run_dir)
    syn, syn_y = _synthetic_images(run_dir)
    rows, labels = [], []
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        r = real[real_y == c]
        s = syn[syn_y == c]
        r = r[rng.permutation(len(r))[:per_class]]
        s = s[rng.permutation(len(s))[:per_class]]
        rows.append(np.concatenate([r, s]))
        labels.append(name)
    fig = image_grid(rows, labels, title=f"real (left {per_class}) vs synthetic (right {per_class}) per class")
    return save_figure(fig, run_dir / "figures" / "real_vs_synthetic")


def plot_ablation(run_dir: Path) -> list[Path]:
    ab = _read(run_dir, "results", "ablation.csv")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f"{r.prompt_mode} prompts\n{r.label_mode} labels" for r in ab.itertuples()]
    ax.bar(range(len(ab)), ab["test_accuracy"], color=["C0" if m == "soft" else "C1" for m in ab["label_mode"]])
    for i, v in enumerate(ab["test_accuracy"]):
        ax.text(i, v + 0.5, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(ab)), labels, fontsize=8)
    ax.set_ylabel("student CAS (%)")
    card = ab["cardinality"].iloc[0] if "cardinality" in ab else ""
    ax.set_title(f"Ablation at {card:g}× |D|: GKD soft labels and caption prompts")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, run_dir / "figures" / "ablation")


def audit_distances_figure(run_dir: str | Path):
    """Nearest-member (D) and nearest-non-member (H) distances of the audited synthetic images, with the
    control images' nearest-member distances and the duplicate threshold, one panel per (cardinality,
    space); titles give the two-sided tests and the near-copy rates beside the control's
    (``results/audit.csv``, ``audit_control.csv``, ``audit_summary.csv``)."""
    run_dir = Path(run_dir)
    table = _read(run_dir, "results", "audit.csv")
    summ = _read(run_dir, "results", "audit_summary.csv")
    ctrl_file = run_dir / "results" / "audit_control.csv"
    ctrl = pd.read_csv(ctrl_file) if ctrl_file.is_file() else None
    spaces = [s for s in ("feature", "pixel") if f"{s}_dist_D" in table.columns]
    mults = sorted(table["multiple"].unique())
    fig, axes = _plt().subplots(len(mults), len(spaces), figsize=(5.5 * len(spaces), 3.4 * len(mults)), squeeze=False)
    for row, mult in zip(axes, mults):
        sub = table[table["multiple"] == mult]
        for ax, space in zip(row, spaces):
            d_m, d_n = sub[f"{space}_dist_D"], sub[f"{space}_dist_H"]
            bins = np.histogram_bin_edges(np.r_[d_m, d_n], bins=40)
            ax.hist(d_m, bins=bins, alpha=0.6, density=True, label="synthetic: nearest member (D)")
            ax.hist(d_n, bins=bins, alpha=0.6, density=True, label="synthetic: nearest non-member (H)")
            s = summ[(summ["source"] == "synthetic") & (summ["multiple"] == mult) & (summ["space"] == space)].iloc[0]
            c = summ[summ["source"].str.startswith("control") & (summ["space"] == space)]
            ctrl_rate = f", control {100 * c['frac_near_copies_dup'].iloc[0]:.1f}%" if len(c) else ""
            if ctrl is not None:
                ax.hist(ctrl[f"{space}_dist_D"], bins=bins, density=True, histtype="step", color="k", lw=1.0,
                        label="held-out real: nearest member (D)")
            ax.axvline(s["dup_threshold"], color="r", ls="--", lw=1.0, label="duplicate threshold")
            ax.set_title(f"{mult:g}×, {space}: {100 * s['frac_closer_to_member']:.1f}% closer to D, Wilcoxon p={s['p_wilcoxon_two_sided']:.2g} "
                         f"(two-sided)\nnear copies {int(s['near_copies_dup'])}/{int(s['n'])} = {100 * s['frac_near_copies_dup']:.1f}%{ctrl_rate}",
                         fontsize=8)
            ax.set_xlabel("nearest-neighbour distance")
            ax.set_ylabel("density")
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def audit_pairs_figure(run_dir: str | Path):
    """The ``audit.n_pairs`` synthetic images closest to a member in feature space, each with its nearest
    member and nearest non-member (images re-read by the indices in ``results/audit.csv``)."""
    import yaml

    from . import synthesis
    from .runs import open_run

    run_dir = Path(run_dir)
    table = _read(run_dir, "results", "audit.csv")
    k = int(((yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("audit") or {}).get("n_pairs", 16))
    top = table.nsmallest(k, "feature_dist_D")
    run = open_run(None, run_dir)
    D, H = run.real("D").images, run.real("H").images
    sets = {m: synthesis.load_synthetic(run, m) for m in top["multiple"].unique()}
    plt = _plt()
    fig, axes = plt.subplots(3, len(top), figsize=(1.3 * len(top) + 1, 4.4), squeeze=False)
    for j, (_, r) in enumerate(top.iterrows()):
        imgs = [sets[r["multiple"]].images[int(r["synthetic_index"])], D[int(r["feature_nn_D"])], H[int(r["feature_nn_H"])]]
        dists = [f"{r['multiple']:g}×", f"{r['feature_dist_D']:.3f}", f"{r['feature_dist_H']:.3f}"]
        for i, (img, txt) in enumerate(zip(imgs, dists)):
            axes[i, j].imshow(img)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, j].set_xlabel(txt, fontsize=7)
    for i, name in enumerate(["synthetic", "nearest D", "nearest H"]):
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Synthetic images closest to a member (features of the public-data classifier)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_audit(run_dir: str | Path) -> list[Path]:
    """``figures/audit_distances`` and ``figures/audit_pairs`` from the audit's result files."""
    run_dir = Path(run_dir)
    out = save_figure(audit_distances_figure(run_dir), run_dir / "figures" / "audit_distances")
    return out + save_figure(audit_pairs_figure(run_dir), run_dir / "figures" / "audit_pairs")


def plot_curves(run_dir: str | Path) -> list[Path]:
    """Validation accuracy (★ the selected epoch) and training loss per epoch of every classifier, from
    ``classifiers/*_history.csv``: ``figures/classifier_curves``."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "classifiers").glob("*_history.csv"))
    if not files:
        raise FileNotFoundError(f"no training histories in {run_dir / 'classifiers'}; train a teacher first")
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    for f in files:
        h = pd.read_csv(f)
        name = f.name[: -len("_history.csv")]
        line, = ax_acc.plot(h["epoch"], h["val_accuracy"], marker="o", ms=3, label=name)
        best = h.loc[h["val_accuracy"].idxmax()]
        ax_acc.plot([best["epoch"]], [best["val_accuracy"]], marker="*", ms=10, color=line.get_color())
        ax_loss.plot(h["epoch"], h["train_loss"], marker="o", ms=3, color=line.get_color(), label=name)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy (★ selected epoch)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, run_dir / "figures" / "classifier_curves")


def plot_ledger(run_dir: str | Path) -> list[Path]:
    """``figures/ledger``: AUC (95% interval) and TPR at 1% FPR of every attack at every release point, from
    ``results/ledger.csv``; the pre-registered headline of each release point in black, the rest in grey."""
    run_dir = Path(run_dir)
    t = _read(run_dir, "results", "ledger.csv")
    plt = _plt()
    card = ["" if pd.isna(c) else f" {c:g}×" for c in t["cardinality"]]
    labels = [f"{r}{c}: {a}" + (" (hard)" if m == "hard" else "") for r, c, a, m in zip(t["release"], card, t["attack"], t["label_mode"])]
    y = np.arange(len(t))[::-1]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.26 * len(t) + 1.4), sharey=True)
    for ax, col, name, ref in ((axes[0], "auc", "AUC (%)", 50.0), (axes[1], "tpr_at_1pct", "TPR at 1% FPR (%)", 1.0)):
        for head, color in ((False, "0.6"), (True, "k")):
            sel = (t["headline"] == head).to_numpy()
            v = 100 * t[col].to_numpy(float)[sel]
            err = np.abs(np.vstack([v - 100 * t[f"{col}_lo"].to_numpy(float)[sel], 100 * t[f"{col}_hi"].to_numpy(float)[sel] - v]))
            ax.errorbar(v, y[sel], xerr=np.nan_to_num(err), fmt="o", color=color, ms=4, capsize=2,
                        label="pre-registered headline" if head else "other attacks")
        ax.axvline(ref, ls="--", lw=1, color="tab:red", label="no leakage" if col == "auc" else "chance (1%)")
        ax.set_xlabel(name)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels, fontsize=7)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Privacy ledger: {len(t)} comparisons, 95% bootstrap intervals")
    fig.tight_layout()
    return save_figure(fig, run_dir / "figures" / "ledger")


PLOTTERS = {"table": plot_table, "cardinality": plot_cardinality, "roc": plot_mia_roc, "ledger": plot_ledger,
            "samples": plot_samples, "ablation": plot_ablation, "audit": plot_audit, "curves": plot_curves}


def make_figures(run_dir: str | Path, which: tuple[str, ...] = FIGURES, images_dir: str | Path | None = None,
                 strict: bool = True, log=print) -> dict[str, list[Path]]:
    """Draw every figure of a finished run from its result files; optionally copy PNGs to ``images_dir``."""
    if run_dir is None:
        raise ValueError("run_dir: give a finished run folder, e.g. runs/mini-20261129-190000")
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    out, missing = {}, []
    for name in which:
        try:
            out[name] = PLOTTERS[name](run_dir)
            log(f"{name:<12} -> {', '.join(str(p) for p in out[name])}")
        except FileNotFoundError as e:
            missing.append(f"{name}: {e}")
            log(f"{name:<12} skipped: {e}")
    if missing and strict:
        raise FileNotFoundError("some figures could not be drawn:\n" + "\n".join(missing))
    if images_dir:
        images_dir = Path(images_dir)
        images_dir.mkdir(parents=True, exist_ok=True)
        for paths_ in out.values():
            for p in paths_:
                if p.suffix == ".png":
                    shutil.copyfile(p, images_dir / p.name)
    return out


def aggregate_seeds(root: str | Path, seed_dirs: list[Path]) -> pd.DataFrame:
    """Mean ± 95% CI (Student t) of the study table over seed runs; written to ``root/results/table.csv|md``."""
    from scipy import stats

    frames = []
    for i, d in enumerate(seed_dirs):
        t = study_table(d)
        t["seed_run"] = i
        frames.append(t)
    allt = pd.concat(frames, ignore_index=True)
    io.save_csv(Path(root) / "results" / "table_per_seed.csv", allt)
    metrics = ["accuracy", "auc_mia", "tpr_at_1pct", "aop"]
    rows = []
    for (model, role), g in allt.groupby(["model", "role"], sort=False):
        row = {"model": model, "role": role, "cardinality": g["cardinality"].iloc[0], "n_seeds": len(g),
               "attack": g["attack"].iloc[0]}
        for m in metrics:
            v = g[m].dropna().to_numpy()
            row[m] = v.mean() if len(v) else np.nan
            row[f"{m}_ci"] = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    io.save_csv(Path(root) / "results" / "table.csv", table)
    io.write_text(Path(root) / "results" / "table.md", table_markdown(table))
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m tckr.plots RUN_DIR [--only ...]``: ``tckr figures`` (tckr.cli)."""
    from .cli import alias

    return alias("figures", argv)


def plot_real_samples(run_dir: str | Path, per_class: int = 10) -> list[Path]:
    """A grid of real images of D per class (figures/real_samples)."""
    run_dir = Path(run_dir)
    real, y, names = _real_images(run_dir)
    rows = [real[y == c][:per_class] for c in range(len(names))]
    return save_figure(image_grid(rows, names, title="real training images (D) per class"), run_dir / "figures" / "real_samples")


def show(figures: dict[str, list[Path]] | list[Path]) -> None:
    """Display the PNGs of saved figures inline in a notebook."""
    from IPython.display import Image, display

    items = [p for ps in figures.values() for p in ps] if isinstance(figures, dict) else list(figures)
    for p in items:
        if Path(p).suffix == ".png":
            display(Image(filename=str(p)))


if __name__ == "__main__":
    sys.exit(main())
