"""Every figure of the study, drawn only from a run's files read through :mod:`tckr.artifacts` (no training or
generation code is imported; ``pyproject.toml``'s import-linter contracts keep it so). Drawing never writes results:
:func:`tckr.ledger.study_table` returns the table, :func:`tckr.artifacts.write_study_table` writes it.

    tckr figures --run-dir runs/<run_id> [--images]   # every figure, PDF and PNG, into <run>/figures/

Every AUC and TPR is drawn in percent, as the tables show them. Inputs (written by the phases):
``results/classifiers.csv`` (04; accuracies in percent), ``results/mia.csv`` (05; AUC and TPR as fractions),
``results/headline.json`` (05; the pre-registered headline attack), ``results/ledger.csv`` (08; the headline rows
that :mod:`tckr.reporting.privacy_figures` and :mod:`tckr.reporting.plane` draw),
``mia/roc/<target>_<attack>.csv`` (05), ``results/audit.csv``, ``audit_control.csv`` and
``audit_summary.csv`` (05), ``results/ablation.csv`` (04), ``synthetic/`` shards (03) and the real split
indices, ``lora/loss.csv`` and ``lora/samples/`` (02). Outputs: ``figures/*.pdf|png``. :func:`tckr.ledger.study_table` (teacher vs
students: accuracy, AUC_MIA, TPR@1% FPR and AOP, all from the headline attack) is written to ``results/table.csv|md``
by notebook 06 (:func:`tckr.artifacts.write_study_table`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.privacy import ledger, metrics
from tckr.reporting import canvas, phase_figures, plane, power_figure, privacy_figures, seeds_figure
from tckr.runfolder import artifacts, runs, synthetic

FIGURES = ("table", "cardinality", "roc", "ledger", "ledger_headline", "privacy_utility", "samples", "ablation", "audit",
           "curves")
# drawn from images (real and synthetic, nearest pairs) that a result folder (tckr.report.collect) does not hold
IMAGE_FIGURES = ("samples", "audit")
PRIVACY_FIGURES = ("table", "cardinality", "roc", "ledger", "ledger_headline", "privacy_utility")  # need results/mia.csv


def plot_table(run_dir: Path) -> list[Path]:
    table = ledger.study_table(run_dir)
    plt = canvas.pyplot()
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
    return canvas.save_figure(fig, run_dir / "figures" / "table")


def plot_cardinality(run_dir: Path) -> list[Path]:
    table = ledger.study_table(run_dir)
    plt = canvas.pyplot()
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
    return canvas.save_figure(fig, run_dir / "figures" / "cardinality")


def roc_axes(title: str):
    """A figure with a linear and a log-log ROC panel (percent), the chance diagonal drawn in both."""
    fig, (lin, log) = canvas.pyplot().subplots(1, 2, figsize=(10, 4.2))
    for ax in (lin, log):
        ax.plot([1e-3, 100], [1e-3, 100], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate (%)")
        ax.set_ylabel("true positive rate (%)")
        ax.grid(alpha=0.3)
    log.set_xscale("log")
    log.set_yscale("log")
    lin.set_title(title)
    log.set_title("log-log")
    return fig, lin, log


def _roc_lines(ax_pair, run_dir: Path, r, label: str, lw: float = 1.3) -> None:
    roc = artifacts.read_roc(run_dir, r["target"], r["attack"])
    for ax in ax_pair:
        ax.plot(100 * roc["fpr"], 100 * roc["tpr"], lw=lw,
                label=f"{label} (AUC {100 * r['auc']:.1f}%, TPR@1% {100 * r['tpr_at_1pct']:.1f}%)")


def mia_roc_figure(run_dir: str | Path, target: str | None = None):
    """Linear and log-log ROC from ``mia/roc/`` and ``results/mia.csv``: every attack against ``target``
    (the headline drawn thicker), or with ``target=None`` the headline attack against every target."""
    run_dir = Path(run_dir)
    res = ledger.main_rows(artifacts.read_result(run_dir, "mia.csv"))  # canary rows have their own ROC files, not drawn here
    head = ledger.headline(run_dir)
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
    log.set_xlim(100.0 / max(n_ex, 1), 100)
    log.set_ylim(100.0 / max(n_ex, 1), 100)
    lin.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _per_target_roc(run_dir: Path) -> list[Path]:
    out = []
    for t in ledger.main_rows(artifacts.read_result(run_dir, "mia.csv"))["target"].unique():
        out += canvas.save_figure(mia_roc_figure(run_dir, t), run_dir / "figures" / f"mia_roc_{t}")
    return out


def plot_mia_roc(run_dir: str | Path) -> list[Path]:
    """What 05_mia_lira shows before the ledger exists: ``figures/mia_roc`` (the headline attack with classifier
    shadows, every target) and ``figures/mia_roc_<target>`` (every attack)."""
    run_dir = Path(run_dir)
    return canvas.save_figure(mia_roc_figure(run_dir), run_dir / "figures" / "mia_roc") + _per_target_roc(run_dir)


def plot_roc(run_dir: str | Path) -> list[Path]:
    """``figures/roc``: the ledger's headline rows of every release point with bootstrap bands
    (:func:`tckr.reporting.privacy_figures.roc_figure`), and ``figures/mia_roc_<target>`` (every attack)."""
    run_dir = Path(run_dir)
    return privacy_figures.plot_roc(run_dir) + _per_target_roc(run_dir)


def _synthetic_images(run_dir: Path):
    """The run's largest synthetic set, read from its shards."""
    run = runs.open_run(None, run_dir)
    s = synthetic.load_synthetic(run, max(synthetic.available_multiples(run)))
    return s.images, s.labels


def plot_samples(run_dir: Path, per_class: int = 6) -> list[Path]:
    real, real_y, names = artifacts.real_images(run_dir)
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
    fig = canvas.image_grid(rows, labels, title=f"real (left {per_class}) vs synthetic (right {per_class}) per class")
    return canvas.save_figure(fig, run_dir / "figures" / "real_vs_synthetic")


def plot_ablation(run_dir: Path) -> list[Path]:
    ab = artifacts.read_result(run_dir, "ablation.csv")
    plt = canvas.pyplot()
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
    return canvas.save_figure(fig, run_dir / "figures" / "ablation")


def audit_distances_figure(run_dir: str | Path):
    """Nearest-member (D) and nearest-non-member (H) distances of the audited synthetic images, with the
    control images' nearest-member distances and the duplicate thresholds, one panel per (cardinality,
    space); titles give the share closer to D with its D/H re-split permutation test, and the near-copy
    rates towards D and towards H beside the control's
    (``results/audit.csv``, ``audit_control.csv``, ``audit_summary.csv``)."""
    run_dir = Path(run_dir)
    table = artifacts.read_result(run_dir, "audit.csv")
    summ = artifacts.read_result(run_dir, "audit_summary.csv")
    if "dup_threshold_D" not in summ:  # written before the D/H re-split test: near copies of D only
        summ = summ.rename(columns={"dup_threshold": "dup_threshold_D", "near_copies_dup": "near_copies_dup_D",
                                    "frac_near_copies_dup": "frac_near_copies_dup_D"})
    ctrl = artifacts.read_optional_result(run_dir, "audit_control.csv")
    spaces = [s for s in ("feature", "pixel") if f"{s}_dist_D" in table.columns]
    mults = sorted(table["multiple"].unique())
    fig, axes = canvas.pyplot().subplots(len(mults), len(spaces), figsize=(5.5 * len(spaces), 3.4 * len(mults)), squeeze=False)
    for row, mult in zip(axes, mults):
        sub = table[table["multiple"] == mult]
        for ax, space in zip(row, spaces):
            d_m, d_n = sub[f"{space}_dist_D"], sub[f"{space}_dist_H"]
            bins = np.histogram_bin_edges(np.r_[d_m, d_n], bins=40)
            ax.hist(d_m, bins=bins, alpha=0.6, density=True, label="synthetic: nearest member (D)")
            ax.hist(d_n, bins=bins, alpha=0.6, density=True, label="synthetic: nearest non-member (H)")
            s = summ[(summ["source"] == "synthetic") & (summ["multiple"] == mult) & (summ["space"] == space)].iloc[0]
            c = summ[summ["source"].str.startswith("control") & (summ["space"] == space)]
            if ctrl is not None:
                ax.hist(ctrl[f"{space}_dist_D"], bins=bins, density=True, histtype="step", color="k", lw=1.0,
                        label="held-out real: nearest member (D)")
            ax.axvline(s["dup_threshold_D"], color="r", ls="--", lw=1.0, label="duplicate threshold (D)")
            if "dup_threshold_H" in s:
                ax.axvline(s["dup_threshold_H"], color="tab:orange", ls=":", lw=1.0, label="duplicate threshold (H)")
            ax.set_title(_audit_title(s, c, mult, space), fontsize=7)
            ax.set_xlabel("nearest-neighbour distance")
            ax.set_ylabel("density")
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _audit_title(s, c, mult, space: str) -> str:
    """A panel's title: the share closer to D with its re-split test, and the near-copy rates beside the control's
    (an ``audit_summary.csv`` written before the re-split test has neither the test nor the rates towards H)."""
    title = f"{mult:g}×, {space}: {100 * s['frac_closer_to_member']:.1f}% closer to D"
    if "p_perm_frac_closer" in s:
        title += (f" (re-split null 95% {100 * s['null_lo_frac_closer']:.1f}–{100 * s['null_hi_frac_closer']:.1f}%)\n"
                  f"permutation p={s['p_perm_frac_closer']:.2g} (one-sided, {int(s['n_permutations'])} D/H re-splits)")
    else:
        title += "\n(audit written before the D/H re-split test)"
    title += f"\nnear copies of D {int(s['near_copies_dup_D'])}/{int(s['n'])} = {100 * s['frac_near_copies_dup_D']:.1f}%"
    if "near_copies_dup_H" in s:
        title += f", of H {int(s['near_copies_dup_H'])} = {100 * s['frac_near_copies_dup_H']:.1f}%"
    if len(c):
        title += f"; control D {100 * c['frac_near_copies_dup_D'].iloc[0]:.1f}%"
        title += f", H {100 * c['frac_near_copies_dup_H'].iloc[0]:.1f}%" if "frac_near_copies_dup_H" in c else ""
    return title


def audit_pairs_figure(run_dir: str | Path):
    """The ``audit.n_pairs`` synthetic images closest to a member in feature space, each with its nearest
    member and nearest non-member (images re-read by the indices in ``results/audit.csv``)."""
    run_dir = Path(run_dir)
    table = artifacts.read_result(run_dir, "audit.csv")
    k = int((artifacts.settings(run_dir).get("audit") or {}).get("n_pairs", 16))
    top = table.nsmallest(k, "feature_dist_D")
    run = runs.open_run(None, run_dir)
    D, H = run.real("D").images, run.real("H").images
    sets = {m: synthetic.load_synthetic(run, m) for m in top["multiple"].unique()}
    plt = canvas.pyplot()
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
    out = canvas.save_figure(audit_distances_figure(run_dir), run_dir / "figures" / "audit_distances")
    return out + canvas.save_figure(audit_pairs_figure(run_dir), run_dir / "figures" / "audit_pairs")


def plot_curves(run_dir: str | Path) -> list[Path]:
    """Validation accuracy (★ the selected epoch) and training loss per epoch of every classifier, from
    ``classifiers/*_history.csv``: ``figures/classifier_curves``."""
    run_dir = Path(run_dir)
    histories = artifacts.classifier_histories(run_dir)
    plt = canvas.pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, h in histories.items():
        line, = ax_acc.plot(h["epoch"], h["val_accuracy"], marker="o", ms=3, label=name)
        best = h.loc[h["val_accuracy"].idxmax()]
        ax_acc.plot([best["epoch"]], [best["val_accuracy"]], marker="*", ms=10, color=line.get_color())
        ax_loss.plot(h["epoch"], h["train_loss"], marker="o", ms=3, color=line.get_color(), label=name)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy (★ selected epoch)")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    return canvas.save_figure(fig, run_dir / "figures" / "classifier_curves")


def plot_ledger(run_dir: str | Path) -> list[Path]:
    """``figures/ledger``: AUC (95% interval) and TPR at 1% FPR of every attack at every release point, from
    ``results/ledger.csv``; the pre-registered headline of each release point in black, the rest in grey."""
    run_dir = Path(run_dir)
    t = artifacts.read_result(run_dir, "ledger.csv")
    plt = canvas.pyplot()
    card = ["" if pd.isna(c) else f" {c:g}×" for c in t["cardinality"]]
    subset = ledger.with_subset(t)["subset"]
    # a student's LiRA variants run twice (shadow pipelines and classifier shadows): the family tells them apart
    via = [" via pipelines" if str(f).endswith("shadow pipelines") else " via classifier shadows" if r == "student" and str(f).startswith(("LiRA", "RMIA")) else ""
           for r, f in zip(t["release"], t["family"])]
    labels = [f"{r}{c}: {a}{v}" + (" (base)" if "_base" in str(tg) else "") + (" (hard)" if m == "hard" else "")
              + (" [canaries]" if sub == "canaries" else "")
              for r, c, a, v, m, sub, tg in zip(t["release"], card, t["attack"], via, t["label_mode"], subset, t["target"])]
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
    return canvas.save_figure(fig, run_dir / "figures" / "ledger")


PLOTTERS = {"table": plot_table, "cardinality": plot_cardinality, "roc": plot_roc, "ledger": plot_ledger,
            "ledger_headline": privacy_figures.plot_ledger_headline, "privacy_utility": plane.plot_privacy_utility,
            "samples": plot_samples, "ablation": plot_ablation, "audit": plot_audit, "curves": plot_curves}
COPIED = (".png", ".csv", ".md")  # what goes to the images folder: the PNGs and the tables written beside a figure


def make_figures(run_dir: str | Path, which: tuple[str, ...] = FIGURES, images_dir: str | Path | None = None,
                 strict: bool = True, log=print) -> dict[str, list[Path]]:
    """Draw every figure of a finished run from its result files; optionally copy the PNGs (and the tables drawn
    beside them, :data:`COPIED`) to ``images_dir``."""
    if run_dir is None:
        raise ValueError("run_dir: give a finished run folder, e.g. runs/mini-20261129-190000")
    run_dir = Path(run_dir)
    artifacts.settings(run_dir)  # a clear error when it is not a run folder
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
                if p.suffix in COPIED:
                    shutil.copyfile(p, images_dir / p.name)
    return out


def result_figures(folders: list[str | Path], images: str | Path = "images", which: tuple[str, ...] | None = None,
                   log=print) -> dict[str, list[Path]]:
    """Redraw every figure of each result folder from its committed files (``<folder>/figures/``, ignored by git)
    and copy the PNGs (and the tables drawn beside them) to ``images/<study>/``. The figures drawn from images (samples,
    audit pairs) need the run's shards: their PNGs, copied by :func:`tckr.report.collect` into ``<folder>/images/``, are
    used as they are. A study's privacy–utility figure sets the students of its positive controls among ``folders``
    beside its own (:func:`tckr.reporting.plane.control_folders`) and the models of its DP studies
    (:func:`tckr.reporting.plane.dp_folders`); a DP study's folder gets the plane of the study it belongs to. Returns
    the copied files per folder."""
    out = {}
    for folder in map(Path, folders):
        # a several-seed result folder: seed<k>/ runs (its own config.yaml, when collected with one, is their parent's)
        if seeds_figure.is_seeds_folder(folder):
            drawn = {"seeds_cardinality": seeds_figure.seeds_cardinality_figure(
                folder, seeds_figure.companions(folder, folders))}
        elif not (folder / "config.yaml").is_file():
            raise FileNotFoundError(f"{folder / 'config.yaml'} is missing: {folder} is not a result folder (collect one first)")
        else:
            names = which or tuple(f for f in FIGURES if f not in IMAGE_FIGURES)
            has_mia = (folder / "results" / "mia.csv").is_file()
            if not which and not has_mia:  # phases 00-04 only: no privacy figures
                names = tuple(f for f in names if f not in PRIVACY_FIGURES)
            drawn = make_figures(folder, tuple(f for f in names if f != "privacy_utility"), log=log)
            base = folder if has_mia else plane.base_study(folder, folders)  # a DP study's folder: its study's plane
            if which and "privacy_utility" in which and base is None:
                raise FileNotFoundError(f"{folder}: no privacy-utility plane: it has no results/mia.csv and is no DP study "
                                        "of a study among the folders given (plane.base_study)")
            if base is not None and (not which or "privacy_utility" in which):
                drawn["privacy_utility"] = plane.plot_privacy_utility(
                    base, plane.control_folders(base, folders), plane.dp_folders(base, folders), into=folder)
                log(f"{'privacy_utility':<12} -> {', '.join(str(p) for p in drawn['privacy_utility'])}")
            if (folder / "results" / "audit.csv").is_file():
                drawn["audit"] = canvas.save_figure(audit_distances_figure(folder), folder / "figures" / "audit_distances")
            if (folder / "lora" / "loss.csv").is_file():
                drawn["lora_loss"] = phase_figures.plot_lora_loss(folder)
            if (folder / "results" / "power.csv").is_file():  # a dose-response study (tckr power)
                drawn["power"] = power_figure.plot_power(folder, stem=folder / "figures" / "power")
        pngs = [p for ps in drawn.values() for p in ps if p.suffix in COPIED]
        pngs += sorted((folder / "images").glob("*.png"))  # drawn from images at collect time, copied as they are
        target = Path(images) / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for png in pngs:
            if png.parent != target:
                with io.atomic_path(target / png.name) as tmp:
                    shutil.copyfile(png, tmp)
        out[folder.as_posix()] = [target / p.name for p in pngs]
        log(f"{folder}: {len(pngs)} figures -> {target}")
    return out
