"""Membership inference on a released synthetic set (docs/privacy.md), and the
attacked examples and reference models that it shares with the generator attack (:mod:`tckr.generator_mia`).

**Synthetic set** (threat model: the synthetic set is public). Per example x of P (or a class-balanced
subset of ``mia.synthetic_examples``): RMS pixel distances (RGB in [0, 1]) to the nearest synthetic
images prompted with x's class; statistics ``[−d_1, −mean of the 5 nearest]``. Attacks per cardinality of
``mia.pipeline_cardinalities`` (empty: ``synthesis.cardinalities``): ``syn_distance`` (global threshold on
``−d_1``, uncalibrated) and ``syn_lira_{online,offline}_fixed`` (the pipelines' synthetic sets of the same
cardinality as IN/OUT references).

Files in the run folder: ``mia/synthetic/subset.npy`` (positions in P of the attacked examples),
``mia/synthetic/x<m>/<model>.npy`` float64 [n, 2] statistics (``<model>`` = ``target`` or ``pipeline_<iii>``),
the scores and ROC files of :func:`tckr.mia.write_attack_results` with ``<target>`` = ``synthetic_x<m>``, and
``results/mia_synthetic.csv`` (the columns of ``results/mia.csv`` plus ``release``).

The attack functions on arrays (:func:`synthetic_statistics`, :func:`synthetic_scores`) take no run folder and no torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tckr.core import io
from tckr.core.progress import note
from tckr.datasets import splitting
from tckr.privacy import attack_results, attacks, mia, pipelines
from tckr.runfolder import artifacts, synthetic

SYNTHETIC_ATTACKS = ("syn_distance", "syn_lira_online_fixed", "syn_lira_offline_fixed")
NEAREST = 5  # synthetic neighbours in the second synthetic-set statistic


# ---------------------------------------------------------------- attack math (numpy only)
def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 -> float32 N×(H·W·3) in [0, 1] / sqrt(H·W·3): Euclidean distance is the RMS pixel difference."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    return x / np.sqrt(max(x.shape[1], 1))


def nearest_distances(queries: np.ndarray, refs: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """[n, min(k, len(refs))]: Euclidean distances from each query row to its k nearest reference rows, ascending.
    Candidates come from a float32 product; the chosen distances are recomputed exactly in float64."""
    q_in, r_in = np.asarray(queries).reshape(len(queries), -1), np.asarray(refs).reshape(len(refs), -1)
    q, r = q_in.astype(np.float32, copy=False), r_in.astype(np.float32, copy=False)
    if len(r) == 0 or q.shape[1] != r.shape[1]:
        raise ValueError(f"queries {q.shape} and refs {r.shape} need the same width and at least one ref")
    kk = min(int(k), len(r))
    r2 = (r.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty((len(q), kk))
    for s in range(0, len(q), chunk):
        qb = q[s:s + chunk]
        d2 = (qb ** 2).sum(1)[:, None] + r2[None, :] - 2.0 * qb @ r.T
        idx = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < len(r) else np.broadcast_to(np.arange(len(r)), d2.shape)
        diff = q_in[s:s + chunk].astype(np.float64)[:, None, :] - r_in[idx].astype(np.float64)
        out[s:s + chunk] = np.sort(np.sqrt((diff ** 2).sum(-1)), axis=1)
    return out


def synthetic_statistics(images: np.ndarray, labels: np.ndarray, synthetic_images: np.ndarray,
                         synthetic_labels: np.ndarray, k: int = NEAREST) -> np.ndarray:
    """float64 [n, 2]: ``[−d_1, −mean of the k nearest]``, RMS pixel distances from each real image to the synthetic
    images of its class (uint8 N×H×W×3, same size)."""
    images, synthetic_images = np.asarray(images), np.asarray(synthetic_images)
    labels, synthetic_labels = np.asarray(labels), np.asarray(synthetic_labels)
    if images.shape[1:] != synthetic_images.shape[1:]:
        raise ValueError(f"real images {images.shape[1:]} and synthetic images {synthetic_images.shape[1:]} differ in size")
    out = np.empty((len(images), 2))
    for c in np.unique(labels):
        rows, refs = np.flatnonzero(labels == c), np.flatnonzero(synthetic_labels == c)
        if not len(refs):
            raise ValueError(f"the synthetic set has no image of class {c}, which {len(rows)} real image(s) have")
        d = nearest_distances(pixels(images[rows]), pixels(synthetic_images[refs]), k)
        out[rows, 0], out[rows, 1] = -d[:, 0], -d.mean(1)
    return out


def synthetic_scores(target_stat: np.ndarray, shadow_stat: np.ndarray | None = None,
                     shadow_in: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scores of :data:`SYNTHETIC_ATTACKS` from the target set's statistics [n, 2] and, for LiRA, the shadow
    sets' [m, n, 2] with their membership ``shadow_in`` bool [m, n]."""
    t = np.asarray(target_stat, dtype=np.float64)
    out = {"syn_distance": t[:, 0].copy()}
    if shadow_stat is None:
        return out
    s = np.asarray(shadow_stat, dtype=np.float64)
    for online in (True, False):
        out[f"syn_lira_{'online' if online else 'offline'}_fixed"] = attacks.lira_from_stable(
            t, s, shadow_in, online=online, fixed_variance=True)
    return out


# ---------------------------------------------------------------- the attacked examples and reference models of both release points
def attack_dir(run, kind: str, *parts: str) -> Path:
    """``mia/<kind>/<parts>`` of a run, ``kind`` = ``generator`` or ``synthetic`` (its parent folders are created)."""
    return run.path("mia", kind, *parts)


def attack_subset(run, kind: str, size: int, tag: int) -> np.ndarray:
    """Positions in P, stratified by (class, membership) so classes and members/non-members stay balanced, drawn
    from P without its mislabeled canaries, then every canary; written once to ``mia/<kind>/subset.npy``."""
    f = attack_dir(run, kind, "subset.npy")
    if f.is_file():
        return io.load_array(f)
    if not artifacts.mia_dir(run, "pool.npz").is_file():
        mia.pool(run)
    saved = np.load(artifacts.mia_dir(run, "pool.npz"))
    strata = saved["labels"] * 2 + saved["member"].astype(np.int64)
    canary = mia.canary_mask(run)
    rest = np.flatnonzero(~canary)  # every position of P when mia.canaries is 0: the draw is unchanged
    pos = rest[splitting.stratified_subset(strata[rest], int(size), run.seed_for(run.cfg.mia.seed) + tag)]
    pos = np.r_[pos, np.flatnonzero(canary)].astype(np.int64)  # the canaries are always attacked (their own rows)
    io.save_array(f, pos)
    return pos


def synthetic_subset(run) -> np.ndarray:
    """Positions in P of the synthetic-set attack's examples (``mia.synthetic_examples``; 0 = all of P)."""
    return attack_subset(run, "synthetic", run.cfg.mia.synthetic_examples, tag=2)


def reference_mask(run, n_pipelines: int, positions: np.ndarray) -> np.ndarray:
    """bool [n_pipelines, len(positions)]: pipeline i trained on P[keep[i]], so rows ``keep[:n_pipelines]`` restricted
    to the attacked positions are the references' membership."""
    keep = mia.ensure_mask(run, max(2, n_pipelines + n_pipelines % 2))
    return np.ascontiguousarray(keep[:n_pipelines][:, positions])


def reference_pipelines(run, n: int, has: Callable, what: str) -> dict[str, object]:
    """Sub-runs of pipelines 0..n-1 that have ``what`` (``has(sub)``); FileNotFoundError naming the others."""
    found, missing = {}, []
    for i in range(n):
        name = pipelines.pipeline_name(i)
        if not pipelines.pipeline_dir(run, i).is_dir():
            missing.append(name)
            continue
        sub = pipelines.open_pipeline(run, i)
        if has(sub):
            found[name] = sub
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {n} shadow pipelines have no {what} yet ({', '.join(missing[:8])}"
                                f"{' ...' if len(missing) > 8 else ''}) under {run.dir / 'mia' / 'pipelines'}; "
                                "train them first (tckr.pipelines), or lower mia.n_pipelines")
    return found


def write_release_results(run, file: str, target: str, role: str, cardinality, release: str,
                          scores: dict[str, np.ndarray], positions: np.ndarray, n_refs: int) -> pd.DataFrame:
    """One release point's rows through :func:`tckr.mia.write_attack_results` (``n_shadows``: the reference
    models of the LiRA attacks, 0 for the threshold attacks)."""
    scored = attack_results.TargetScores(target, scores, {"role": role, "cardinality": cardinality, "label_mode": None, "release": release},
                              n_shadows={a: n_refs if "lira" in a else 0 for a in scores})
    return attack_results.write_attack_results(run, file, [scored], positions=positions, extra_columns=["release"])


# ---------------------------------------------------------------- synthetic-set attack on a run
def synthetic_cardinalities(run) -> list[float]:
    """The cardinalities the synthetic-set attack covers: ``mia.pipeline_cardinalities`` or ``synthesis.cardinalities``."""
    return [float(m) for m in (run.cfg.mia.pipeline_cardinalities or run.cfg.synthesis.cardinalities)]


def has_set(multiple: float) -> Callable:
    """A test of a run (or pipeline sub-run): whether it has a finished synthetic set of ``multiple`` × |D|."""
    return lambda sub: any(np.isclose(m, multiple) for m in synthetic.available_multiples(sub))


def synthetic_stats(run, multiple: float, n_pipelines: int | None = None, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Statistics [n, 2] of the target's synthetic set of ``multiple`` × |D| and of each pipeline's, written per model
    to ``mia/synthetic/x<m>/<model>.npy`` (finished ones are read back)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    if not has_set(multiple)(run):
        raise FileNotFoundError(f"run {run.dir} has no finished synthetic set of {multiple:g}× |D|; run notebooks/03_generate.ipynb")
    models = {"target": run, **(reference_pipelines(run, n, has_set(multiple), f"synthetic set of {multiple:g}× |D|") if n else {})}
    pos = synthetic_subset(run)
    p = None
    out = {}
    for m, r in models.items():
        f = attack_dir(run, "synthetic", f"x{multiple:g}", f"{m}.npy")
        if f.is_file():
            out[m] = io.load_array(f)
            continue
        start = time.perf_counter()
        p = p or mia.pool(run)
        syn = synthetic.load_synthetic(r, multiple)
        out[m] = synthetic_statistics(p.images[pos], p.labels[pos], syn.images, syn.labels)
        io.save_array(f, out[m])
        if progress:
            note(f"synthetic-set attack {multiple:g}×: {m}: {len(pos)} examples against {len(syn)} synthetic images "
                  f"in {time.perf_counter() - start:.1f} s")
    return out


def attack_synthetic(run, multiples: list[float] | None = None, n_pipelines: int | None = None, *,
                     progress: bool = True) -> pd.DataFrame:
    """Score the target's synthetic set of each cardinality (``results/mia_synthetic.csv``)."""
    n = run.cfg.mia.n_pipelines if n_pipelines is None else int(n_pipelines)
    pos = synthetic_subset(run)
    frames = []
    for mult in (synthetic_cardinalities(run) if multiples is None else [float(m) for m in multiples]):
        stats = synthetic_stats(run, mult, n, progress=progress)
        names = [m for m in stats if m != "target"]
        shadow = np.stack([stats[m] for m in names]) if names else None
        scores = synthetic_scores(stats["target"], shadow, reference_mask(run, n, pos) if names else None)
        frames.append(write_release_results(run, "mia_synthetic.csv", f"synthetic_x{mult:g}", "synthetic", mult,
                                            "synthetic", scores, pos, len(names)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
