"""Memorisation audit of the synthetic sets: does a synthetic image sit closer to a member (D) than to a
non-member (H)? D and H are equally large draws from the same distribution, so without memorisation
a synthetic image's nearest real neighbour is as likely in H as in D.

For up to ``audit.max_synthetic`` synthetic images of each available multiple (seeded sample), the
nearest image of D and of H is found in two spaces: ``feature`` (the teacher's penultimate features,
L2-normalised, Euclidean distance) and ``pixel`` (RGB in [0, 1], root-mean-square distance).
The same is done for real ``val`` images (neither in D nor in H) as a control.

Files in the run folder:

- ``results/audit.csv``, one row per audited synthetic image: ``multiple, synthetic_index, label``,
  and for ``<space>`` in feature, pixel: ``<space>_dist_D, <space>_dist_H`` (nearest distances),
  ``<space>_nn_D, <space>_nn_H`` (positions in ``run.real("D")`` / ``run.real("H")``),
  ``<space>_closer_to_member`` (bool);
- ``results/audit_summary.csv`` (and ``.json``), one row per (source, multiple, space): ``source``
  (``synthetic`` or ``control_val``), ``n``, ``median_dist_D``, ``median_dist_H``,
  ``frac_closer_to_member``, ``p_wilcoxon`` (paired signed-rank test, one-sided: distance to D smaller),
  ``p_mannwhitney`` (the two distance distributions, one-sided), ``p_binomial`` (fraction closer to D
  above 1/2, one-sided);
- ``figures/mia_audit_distances.{pdf,png}`` and ``figures/mia_audit_pairs.{pdf,png}`` (the closest
  synthetic-member pairs in feature space, with each one's nearest non-member).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import io, plots

SPACES = ("feature", "pixel")


def nearest(queries: np.ndarray, refs: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean nearest neighbour of every row of ``queries`` among ``refs``: (distance, index)."""
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    r = np.asarray(refs, dtype=np.float64).reshape(len(refs), -1)
    if q.shape[1] != r.shape[1] or len(r) == 0:
        raise ValueError(f"queries {q.shape} and refs {r.shape} need the same width and at least one ref")
    r2 = (r ** 2).sum(1)
    dist, idx = np.empty(len(q)), np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qb = q[s:s + chunk]
        d2 = (qb ** 2).sum(1)[:, None] + r2[None, :] - 2.0 * qb @ r.T
        j = d2.argmin(1)
        idx[s:s + chunk] = j
        dist[s:s + chunk] = np.sqrt(np.maximum(d2[np.arange(len(qb)), j], 0.0))
    return dist, idx


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 -> float32 N×(H·W·3) scaled so Euclidean distance is the RMS pixel difference."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    return x / np.sqrt(x.shape[1])


def features(model, images: np.ndarray, cfg) -> np.ndarray:
    """The teacher's penultimate features, L2-normalised."""
    from . import train

    f = train.embed(model, images, cfg).astype(np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def closeness_tests(dist_D: np.ndarray, dist_H: np.ndarray) -> dict[str, float]:
    """Are distances to D smaller than to H? Paired Wilcoxon, Mann-Whitney and binomial tests (one-sided)."""
    from scipy import stats

    dist_D, dist_H = np.asarray(dist_D, float), np.asarray(dist_H, float)
    closer = dist_D < dist_H
    diff = dist_D - dist_H
    out = {"n": int(len(dist_D)), "median_dist_D": float(np.median(dist_D)), "median_dist_H": float(np.median(dist_H)),
           "frac_closer_to_member": float(closer.mean()), "p_wilcoxon": float("nan"), "p_mannwhitney": float("nan"),
           "p_binomial": float("nan")}
    if len(dist_D) >= 2 and np.any(diff != 0):
        out["p_wilcoxon"] = float(stats.wilcoxon(dist_D, dist_H, alternative="less").pvalue)
        out["p_mannwhitney"] = float(stats.mannwhitneyu(dist_D, dist_H, alternative="less").pvalue)
        ties = diff == 0
        out["p_binomial"] = float(stats.binomtest(int(closer.sum()), int((~ties).sum()), 0.5, alternative="greater").pvalue)
    return out


def _neighbours(q_feat: np.ndarray, q_pix: np.ndarray, ref: dict) -> dict[str, np.ndarray]:
    cols = {}
    for space, q in (("feature", q_feat), ("pixel", q_pix)):
        for split in ("D", "H"):
            d, j = nearest(q, ref[space][split])
            cols[f"{space}_dist_{split}"], cols[f"{space}_nn_{split}"] = d, j
        cols[f"{space}_closer_to_member"] = cols[f"{space}_dist_D"] < cols[f"{space}_dist_H"]
    return cols


def audit(run, multiples: Iterable[float] | None = None, max_synthetic: int | None = None, *, progress: bool = True) -> pd.DataFrame:
    """Audit every available synthetic set (or ``multiples``); write the result files and return the summary.
    An empty summary (and no files) when the run has no synthetic set yet."""
    from . import synthesis, train

    cfg = run.cfg
    mults = list(multiples) if multiples is not None else list(synthesis.available_multiples(run))
    if not mults:
        print("no synthetic set in this run yet (run notebooks/03_generate.ipynb): nothing to audit")
        return pd.DataFrame()
    limit = cfg.audit.max_synthetic if max_synthetic is None else int(max_synthetic)
    teacher = train.teacher(run, progress=progress)
    D, H, val = run.real("D"), run.real("H"), run.real("val")
    ref = {"feature": {s: features(teacher, x.images, cfg) for s, x in (("D", D), ("H", H))},
           "pixel": {s: pixels(x.images) for s, x in (("D", D), ("H", H))}}
    rows, summary = [], []
    rng = np.random.default_rng(run.seed_for(cfg.mia.seed))
    for mult in mults:
        synth = synthesis.load_synthetic(run, mult)
        n = len(synth.labels)
        pick = np.sort(rng.choice(n, limit, replace=False)) if 0 < limit < n else np.arange(n)
        imgs = np.asarray(synth.images[pick])
        cols = _neighbours(features(teacher, imgs, cfg), pixels(imgs), ref)
        rows.append(pd.DataFrame({"multiple": float(mult), "synthetic_index": pick, "label": np.asarray(synth.labels)[pick], **cols}))
        for space in SPACES:
            summary.append({"source": "synthetic", "multiple": float(mult), "space": space,
                            **closeness_tests(cols[f"{space}_dist_D"], cols[f"{space}_dist_H"])})
    ctrl_n = min(len(val), limit) if limit > 0 else len(val)
    ctrl = _neighbours(features(teacher, val.images[:ctrl_n], cfg), pixels(val.images[:ctrl_n]), ref)
    for space in SPACES:
        summary.append({"source": "control_val", "multiple": float("nan"), "space": space,
                        **closeness_tests(ctrl[f"{space}_dist_D"], ctrl[f"{space}_dist_H"])})
    table = pd.concat(rows, ignore_index=True)
    summ = pd.DataFrame(summary)
    io.save_csv(run.path("results", "audit.csv"), table)
    io.save_csv(run.path("results", "audit_summary.csv"), summ)
    io.write_json(run.path("results", "audit_summary.json"), summ.to_dict(orient="records"))
    return summ


def plot(run) -> list[Path]:
    """Distance distributions and the closest pairs, from ``results/audit.csv`` (images re-read by index)."""
    from . import synthesis

    if not (run.dir / "results" / "audit.csv").is_file():
        print("no results/audit.csv (no synthetic set audited yet): no audit figures")
        return []
    plt = plots._plt()
    table = pd.read_csv(run.dir / "results" / "audit.csv")
    out = plots.save_figure(plots.audit_distances_figure(run.dir), run.path("figures", "mia_audit_distances"))

    k = int(run.cfg.audit.n_pairs)
    top = table.nsmallest(k, "feature_dist_D")
    D, H = run.real("D"), run.real("H")
    sets = {m: synthesis.load_synthetic(run, m) for m in top["multiple"].unique()}
    fig, axes = plt.subplots(3, len(top), figsize=(1.3 * len(top) + 1, 4.4), squeeze=False)
    for j, (_, r) in enumerate(top.iterrows()):
        imgs = [sets[r["multiple"]].images[int(r["synthetic_index"])], D.images[int(r["feature_nn_D"])], H.images[int(r["feature_nn_H"])]]
        dists = [f"{r['multiple']:g}×", f"{r['feature_dist_D']:.3f}", f"{r['feature_dist_H']:.3f}"]
        for i, (img, txt) in enumerate(zip(imgs, dists)):
            axes[i, j].imshow(img)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, j].set_xlabel(txt, fontsize=7)
    for i, name in enumerate(["synthetic", "nearest D", "nearest H"]):
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Synthetic images closest to a member (teacher feature space)", fontsize=9)
    fig.tight_layout()
    out += plots.save_figure(fig, run.path("figures", "mia_audit_pairs"))
    return out
