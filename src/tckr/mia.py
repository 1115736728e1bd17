"""Membership inference: standard LiRA (Carlini et al. 2022) against the teacher and the students,
with the LOSS attack and RMIA (Zarifzadeh et al. 2024) as baselines.

Protocol. The MIA pool is P = D ∪ H (D first, then H; |H| = |D|, H never in D). A seeded membership
mask ``keep`` (shadows × examples of P) is written before any training: shadows come in pairs that
train on complementary class-stratified halves of P, so every example is IN for exactly half of the
shadows and every shadow trains on |D| images. Shadows use the teacher's architecture, recipe and
epoch budget (``mia.shadow_epochs``; 0 = the teacher's). Every model (shadows, teacher, students)
is queried on every example of P under each of ``mia.queries`` and on a population sample Z of
``mia.population_size`` real images from the public ``pool`` split (RMIA's z samples). Targets:
the teacher (trained on D) and every student in ``run/classifiers/``; members = D, non-members = H.

Attacks (scores: higher = more likely a member), all from the stable logit of the true class
``phi = log p_y - log sum_{y' != y} p_y'`` computed from logits in float64:
``lira_online`` / ``lira_offline`` (per-example variances), ``lira_online_fixed`` /
``lira_offline_fixed`` (one global variance), ``loss`` (global threshold on the target's
cross-entropy on the un-augmented image), ``rmia`` (all reference models) and ``rmia_offline``
(OUT reference models, ``p(x) = ((1 + a) p_out(x) + 1 - a) / 2``).

Files in the run folder:

- ``mia/keep.npy`` bool [shadows, n]: the membership mask; ``mia/pool.npz``: ``index`` (positions in
  the real train split), ``labels``, ``member`` (True = in D) of P and ``population_index`` /
  ``population_labels`` of Z; ``mia/queries.json``: the query order of the logits arrays;
- ``mia/shadows/shadow_<i>.safetensors`` (+ sidecar JSON, ``_history.csv``): shadow weights;
- ``mia/logits/<model>.npy`` float32 [n, q, c] and ``mia/logits/<model>_population.npy`` [|Z|, q, c],
  ``<model>`` = ``shadow_<i>`` or a target name;
- ``mia/scores/<target>_<attack>.npy`` float64 [n] raw scores, ``mia/scores/membership.npy`` bool [n],
  ``mia/scores/<target>.csv``: ``index, label, member`` and one column per attack;
- ``mia/roc/<target>_<attack>.csv``: ``fpr, tpr``;
- ``results/mia.csv`` one row per (target, attack): ``target, role, cardinality, label_mode, attack,
  auc, auc_lo, auc_hi, tpr_at_0.1pct(_lo/_hi), tpr_at_1pct(_lo/_hi), balanced_accuracy(_lo/_hi),
  n_shadows, n_members, n_nonmembers`` (fractions in [0, 1], 95% bootstrap intervals);
- ``results/aop.csv``: ``target, role, cardinality, label_mode, test_accuracy, auc, aop`` with
  ``test_accuracy`` from ``results/classifiers.csv`` (percent), ``auc`` the ``lira_online`` AUC
  (fraction) and ``aop`` in percent;
- ``figures/mia_roc_<target>.{pdf,png}`` (linear and log-log ROC of every attack) and
  ``figures/mia_roc_lira_online.{pdf,png}`` (every target), drawn from ``mia/roc/``.

CLI (one shard of the shadows per process or GPU): ``python -m tckr.mia --config configs/mini.yaml
--run-dir runs/<id> --shard k/n`` trains shadows ``i`` with ``i % n == k``; ``--attack`` then attacks.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import io, metrics
from .plots import roc_axes, save_figure, show

ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia", "rmia_offline")
_CHUNK_BYTES = 32 << 20


# ---------------------------------------------------------------- attack math (pure numpy)
def _phi_block(block: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = np.array(block, dtype=np.float64)
    idx = np.broadcast_to(labels.reshape((1,) * (x.ndim - 3) + (-1, 1, 1)), x.shape[:-1] + (1,))
    zy = np.take_along_axis(x, idx, axis=-1)[..., 0]
    np.put_along_axis(x, idx, -np.inf, axis=-1)
    mx = x.max(axis=-1, keepdims=True)
    x -= mx
    np.exp(x, out=x)
    return zy - (np.log(x.sum(axis=-1)) + mx[..., 0])


def _workers(workers: int | None) -> int:
    if workers:
        return max(1, int(workers))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(8, os.cpu_count() or 1))


def _chunks(n: int, per_example_bytes: int) -> list[slice]:
    step = max(1, _CHUNK_BYTES // max(1, per_example_bytes))
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _check_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if logits.ndim < 3:
        raise ValueError(f"logits must be [..., n, q, c], got shape {logits.shape}")
    n, c = logits.shape[-3], logits.shape[-1]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits {logits.shape}, got {labels.shape}")
    if c < 2:
        raise ValueError("logits need at least two classes")
    if len(labels) and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"labels must lie in [0, {c}), got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def stable_logit(logits: np.ndarray, labels: np.ndarray, *, workers: int | None = None) -> np.ndarray:
    """``log p_y - log sum_{y' != y} p_y'`` in float64, [..., n, q, c] -> [..., n, q], in chunks of
    examples (memory stays bounded for memory-mapped inputs)."""
    logits = logits if isinstance(logits, np.ndarray) else np.asarray(logits)
    labels = _check_labels(logits, labels)
    out = np.empty(logits.shape[:-1], dtype=np.float64)
    per = int(np.prod(logits.shape)) // max(1, logits.shape[-3]) * 8

    def work(sl: slice) -> None:
        out[..., sl, :] = _phi_block(logits[..., sl, :, :], labels[sl])

    _map(work, _chunks(logits.shape[-3], per), workers)
    return out


def _map(fn, items: list, workers: int | None) -> None:
    w = min(_workers(workers), len(items))
    if w <= 1:
        for it in items:
            fn(it)
        return
    with ThreadPoolExecutor(w) as pool:
        list(pool.map(fn, items))


@dataclass
class _Stats:
    """Per-example IN/OUT statistics of the shadows' stable logits, [n, q] each (counts [n])."""

    target: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    ss_in: np.ndarray
    ss_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray

    @classmethod
    def empty(cls, n: int, q: int) -> "_Stats":
        z = lambda: np.zeros((n, q))  # noqa: E731
        return cls(z(), z(), z(), z(), z(), np.zeros(n), np.zeros(n))

    def fill(self, sl: slice, target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray) -> None:
        w = shadow_in.astype(np.float64)[:, :, None]
        n_in = shadow_in.sum(0).astype(np.float64)
        n_out = shadow_in.shape[0] - n_in
        s_in = (shadow_phi * w).sum(0)
        s_all = shadow_phi.sum(0)
        mean_in = s_in / np.maximum(n_in, 1)[:, None]
        mean_out = (s_all - s_in) / np.maximum(n_out, 1)[:, None]
        dev_in = (shadow_phi - mean_in) * w
        dev_out = (shadow_phi - mean_out) * (1.0 - w)
        self.target[sl], self.mean_in[sl], self.mean_out[sl] = target_phi, mean_in, mean_out
        self.ss_in[sl], self.ss_out[sl] = (dev_in ** 2).sum(0), (dev_out ** 2).sum(0)
        self.n_in[sl], self.n_out[sl] = n_in, n_out


def _check_mask(shadow_in: np.ndarray, m: int, n: int) -> np.ndarray:
    shadow_in = np.asarray(shadow_in)
    if shadow_in.shape != (m, n) or shadow_in.dtype != bool:
        raise ValueError(f"shadow_in must be bool [{m}, {n}] (shadows × examples), got {shadow_in.dtype} {shadow_in.shape}")
    return shadow_in


def _lira_finish(st: _Stats, online: bool, fixed_variance: bool) -> np.ndarray:
    from scipy.special import log_ndtr

    need = 1 if fixed_variance else 2
    if (st.n_out < need).any() or (online and (st.n_in < need).any()):
        groups = "IN and OUT" if online else "OUT"
        raise ValueError(f"every example needs at least {need} {groups} shadows for this LiRA variant "
                         f"(min IN {int(st.n_in.min())}, min OUT {int(st.n_out.min())}); add shadows or use fixed_variance=True")
    if fixed_variance:
        if online:
            dof = (st.n_in - 1).sum() + (st.n_out - 1).sum()
            var = (st.ss_in.sum() + st.ss_out.sum()) / max(dof, 1)
        else:
            var = st.ss_out.sum() / max((st.n_out - 1).sum(), 1)
        var_in = var_out = np.full_like(st.mean_in, max(var, 1e-12))
    else:
        var_in = np.maximum(st.ss_in / np.maximum(st.n_in - 1, 1)[:, None], 1e-12)
        var_out = np.maximum(st.ss_out / np.maximum(st.n_out - 1, 1)[:, None], 1e-12)
    t = st.target
    if online:
        ll_in = -0.5 * ((t - st.mean_in) ** 2 / var_in + np.log(var_in))
        ll_out = -0.5 * ((t - st.mean_out) ** 2 / var_out + np.log(var_out))
        score = ll_in - ll_out
    else:
        score = log_ndtr((t - st.mean_out) / np.sqrt(var_out))
    return score.mean(axis=1)


def lira(target_logits: np.ndarray, shadow_logits: np.ndarray, labels: np.ndarray, shadow_in: np.ndarray, *,
         online: bool = True, fixed_variance: bool = False, workers: int | None = None) -> np.ndarray:
    """LiRA scores, one per example (higher = more likely a member).

    ``target_logits`` [n, q, c], ``shadow_logits`` [m, n, q, c] (may be memory-mapped), ``labels`` [n],
    ``shadow_in`` bool [m, n]. Each query is scored by its stable logit (float64); online: the
    log-likelihood ratio of Gaussians fitted per example to the IN and the OUT shadows; offline: the
    one-sided ``log P(phi_OUT <= phi_target)``; ``fixed_variance``: one global (pooled within-example)
    variance instead of one per example. Scores are averaged over queries.
    """
    target_logits = np.asarray(target_logits)
    if shadow_logits.ndim != 4 or target_logits.shape != shadow_logits.shape[1:]:
        raise ValueError(f"target_logits [n, q, c] and shadow_logits [m, n, q, c] must agree, got {target_logits.shape} and {shadow_logits.shape}")
    labels = _check_labels(target_logits, labels)
    m, n, q, c = shadow_logits.shape
    shadow_in = _check_mask(shadow_in, m, n)
    st = _Stats.empty(n, q)

    def work(sl: slice) -> None:
        st.fill(sl, _phi_block(target_logits[sl], labels[sl]), _phi_block(shadow_logits[:, sl], labels[sl]), shadow_in[:, sl])

    _map(work, _chunks(n, (m + 1) * q * c * 8 * 3), workers)
    return _lira_finish(st, online, fixed_variance)


def lira_from_stable(target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray, *, online: bool = True,
                     fixed_variance: bool = False) -> np.ndarray:
    """:func:`lira` on precomputed stable logits: ``target_phi`` [n, q], ``shadow_phi`` [m, n, q]."""
    m, n, q = shadow_phi.shape
    if target_phi.shape != (n, q):
        raise ValueError(f"target_phi must be [{n}, {q}] to match shadow_phi {shadow_phi.shape}, got {target_phi.shape}")
    st = _Stats.empty(n, q)
    st.fill(slice(0, n), target_phi, shadow_phi, _check_mask(shadow_in, m, n))
    return _lira_finish(st, online, fixed_variance)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


def loss_attack(target_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LOSS attack: minus the target's cross-entropy (averaged over queries when [n, q, c]);
    thresholding it globally is the attack."""
    x = np.asarray(target_logits)
    x = x[:, None, :] if x.ndim == 2 else x
    phi = stable_logit(x, labels, workers=1)
    return -np.logaddexp(0.0, -phi).mean(axis=1)


def rmia_from_stable(target_phi: np.ndarray, ref_phi: np.ndarray, ref_in: np.ndarray, target_z_phi: np.ndarray,
                     ref_z_phi: np.ndarray, *, online: bool = True, a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """RMIA on stable logits (p_y = sigmoid(phi), averaged over queries): the fraction of population
    samples z with ``(p(x|target)/p(x)) / (p(z|target)/p(z)) > gamma``. ``online``: p(x) and p(z)
    average all reference models; offline: only the OUT ones, corrected to ``((1 + a) p_out + 1 - a) / 2``."""
    m, n, q = ref_phi.shape
    ref_in = _check_mask(ref_in, m, n)
    if target_phi.shape != (n, q) or target_z_phi.shape[1:] != (q,) or ref_z_phi.shape != (m, *target_z_phi.shape):
        raise ValueError(f"rmia: shapes disagree: target {target_phi.shape}, refs {ref_phi.shape}, "
                         f"target z {target_z_phi.shape}, refs z {ref_z_phi.shape}")
    if len(target_z_phi) == 0:
        raise ValueError("rmia needs population samples z")
    p_x = _sigmoid(target_phi).mean(1)
    p_ref = _sigmoid(ref_phi).mean(2)
    p_z = _sigmoid(target_z_phi).mean(1)
    p_ref_z = _sigmoid(ref_z_phi).mean(2)
    if online:
        px_pop, pz_pop = p_ref.mean(0), p_ref_z.mean(0)
    else:
        out = ~ref_in
        if (out.sum(0) < 1).any():
            raise ValueError("offline RMIA needs at least one OUT reference model per example")
        mean_out = (p_ref * out).sum(0) / out.sum(0)
        px_pop = 0.5 * ((1 + a) * mean_out + (1 - a))
        pz_pop = 0.5 * ((1 + a) * p_ref_z.mean(0) + (1 - a))
    ratio_x = p_x / np.maximum(px_pop, 1e-300)
    ratio_z = np.sort(p_z / np.maximum(pz_pop, 1e-300))
    return np.searchsorted(ratio_z, ratio_x / gamma, side="left") / len(ratio_z)


def rmia(target_logits: np.ndarray, ref_logits: np.ndarray, labels: np.ndarray, ref_in: np.ndarray,
         target_z_logits: np.ndarray, ref_z_logits: np.ndarray, z_labels: np.ndarray, *, online: bool = True,
         a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """RMIA scores from logits: target [n, q, c], references [m, n, q, c] with membership ``ref_in``
    [m, n], population samples z (target [k, q, c], references [m, k, q, c], labels [k])."""
    return rmia_from_stable(stable_logit(target_logits, labels), stable_logit(ref_logits, labels), ref_in,
                            stable_logit(target_z_logits, z_labels), stable_logit(ref_z_logits, z_labels),
                            online=online, a=a, gamma=gamma)


def membership_mask(n_shadows: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """Bool [n_shadows, n]: shadows ``2i`` and ``2i+1`` take complementary class-stratified random halves,
    so every example is IN for exactly half of the shadows. Pair ``i`` depends only on ``(seed, i)``:
    the mask for fewer shadows is a prefix of the mask for more."""
    if n_shadows < 2 or n_shadows % 2:
        raise ValueError(f"n_shadows must be a positive even number, got {n_shadows}")
    labels = np.asarray(labels)
    keep = np.zeros((n_shadows, len(labels)), dtype=bool)
    for pair in range(n_shadows // 2):
        rng = np.random.default_rng([int(seed), pair])
        half = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            ix = rng.permutation(np.flatnonzero(labels == c))
            take = len(ix) // 2 + (int(rng.integers(2)) if len(ix) % 2 else 0)
            half[ix[:take]] = True
        keep[2 * pair], keep[2 * pair + 1] = half, ~half
    return keep


def score(attack: str, target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray, *,
          target_z_phi: np.ndarray | None = None, shadow_z_phi: np.ndarray | None = None, queries: list[str] | None = None,
          rmia_a: float = 0.3, rmia_gamma: float = 1.0) -> np.ndarray:
    """Scores of one named attack (see :data:`ATTACKS`) from stable logits."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; accepted: {', '.join(ATTACKS)}")
    if attack.startswith("lira"):
        return lira_from_stable(target_phi, shadow_phi, shadow_in, online="online" in attack, fixed_variance=attack.endswith("fixed"))
    if attack == "loss":
        q0 = (queries or ["identity"]).index("identity")
        return -np.logaddexp(0.0, -target_phi[:, q0])
    if target_z_phi is None or shadow_z_phi is None:
        raise ValueError("rmia needs population samples (target_z_phi, shadow_z_phi)")
    return rmia_from_stable(target_phi, shadow_phi, shadow_in, target_z_phi, shadow_z_phi, online=attack == "rmia",
                            a=rmia_a, gamma=rmia_gamma)


# ---------------------------------------------------------------- the run's ground truth
@dataclass
class Pool:
    """The MIA pool P = D ∪ H (D first) and the population sample Z."""

    images: np.ndarray
    labels: np.ndarray
    member: np.ndarray
    index: np.ndarray
    population_images: np.ndarray
    population_labels: np.ndarray
    population_index: np.ndarray


def mia_dir(run, *parts: str) -> Path:
    return run.path("mia", *parts)


def _population(run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from . import data

    split = "pool" if len(run.splits().pool) else "val"
    src = run.real(split)
    pos = data.stratified_subset(src.labels, run.cfg.mia.population_size, run.seed_for(run.cfg.mia.seed))
    index = getattr(run.splits(), split)[pos]
    return src.images[pos], src.labels[pos], index


def pool_index(run) -> np.ndarray:
    """Train-split indices of P = D ∪ H (D first), without loading images."""
    s = run.splits()
    return np.r_[s.D, s.H].astype(np.int64)


def pool(run) -> Pool:
    """P = D ∪ H with labels and membership (True = in D), and Z; ``mia/pool.npz`` records the indices."""
    D, H = run.real("D"), run.real("H")
    s = run.splits()
    if len(D) != len(H) or np.intersect1d(s.D, s.H).size:
        raise ValueError(f"the MIA pool needs |H| = |D| and H disjoint from D (|D|={len(D)}, |H|={len(H)})")
    z_img, z_lab, z_idx = _population(run)
    p = Pool(np.concatenate([D.images, H.images]), np.r_[D.labels, H.labels].astype(np.int64),
             np.r_[np.ones(len(D), bool), np.zeros(len(H), bool)], np.r_[s.D, s.H].astype(np.int64),
             z_img, z_lab.astype(np.int64), z_idx.astype(np.int64))
    f = mia_dir(run, "pool.npz")
    fields = {"index": p.index, "labels": p.labels, "member": p.member, "population_index": p.population_index,
              "population_labels": p.population_labels}
    if not f.is_file():
        with io.atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **fields)
    else:
        try:
            with np.load(f, allow_pickle=False) as saved:
                differ = [k for k, v in fields.items() if k not in saved or not np.array_equal(saved[k], v)]
        except Exception as e:  # damaged: numpy and zipfile raise ValueError, OSError, EOFError or BadZipFile
            raise io.CorruptFileError(f"{f}: not a readable pool record ({type(e).__name__}: {e}); delete it to rewrite it") from None
        if differ:
            raise ValueError(f"{f} records another pool than this run's splits give ({', '.join(differ)} differ); "
                             "use a new run folder")
    return p


def queries(run) -> list[str]:
    """The query order of every logits array (``mia/queries.json``, written once)."""
    f = mia_dir(run, "queries.json")
    if f.is_file():
        saved = io.read_json(f)
        if saved != list(run.cfg.mia.queries):
            raise ValueError(f"{f} says the logits hold queries {saved}, the config asks {run.cfg.mia.queries}; use a new run folder")
        return saved
    io.write_json(f, list(run.cfg.mia.queries))
    return list(run.cfg.mia.queries)


def ensure_mask(run, n_shadows: int | None = None) -> np.ndarray:
    """The membership mask bool [shadows, |P|] (``mia/keep.npy``), written before any shadow trains.
    Asking for more shadows than recorded extends it (earlier rows never change). Every read checks the
    file against the mask this run's seed gives: an altered mask is an error naming the file."""
    m = int(n_shadows or run.cfg.mia.n_shadows)
    p = pool(run)
    queries(run)
    f = mia_dir(run, "keep.npy")
    seed = run.seed_for(run.cfg.mia.seed)
    if f.is_file():
        keep = io.load_array(f)
        if keep.ndim != 2 or keep.dtype != bool or keep.shape[1] != len(p.labels):
            raise ValueError(f"{f} is {keep.dtype} {keep.shape}, not bool [shadows, {len(p.labels)}] for this pool; "
                             "use a new run folder")
        new = membership_mask(max(m, len(keep)), p.labels, seed)
        rows = np.flatnonzero((new[: len(keep)] != keep).any(1))
        if rows.size:
            raise ValueError(f"{f} differs from the membership mask of this run's seed {seed} in row(s) "
                             f"{rows[:8].tolist()}: it was altered or made by another run; the shadows' membership "
                             "cannot be trusted, use a new run folder")
        if len(keep) >= m:
            return keep[:m]
    else:
        new = membership_mask(m, p.labels, seed)
    io.save_array(f, new)
    return new


def shadow_name(i: int) -> str:
    return f"shadow_{i:03d}"


def shadow_seed(run, i: int) -> int:
    return int(np.random.SeedSequence([run.seed_for(run.cfg.mia.seed), 7919, int(i)]).generate_state(1)[0])


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"k/n"`` (0 <= k < n) -> (k, n); None -> (0, 1)."""
    if shard in (None, ""):
        return 0, 1
    try:
        k, n = (int(v) for v in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like 'k/n' with 0 <= k < n, got {shard!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard must look like 'k/n' with 0 <= k < n, got {shard!r}")
    return k, n


def _logits_file(run, name: str, population: bool = False) -> Path:
    return mia_dir(run, "logits", f"{name}{'_population' if population else ''}.npy")


def _done(run, name: str) -> bool:
    return _logits_file(run, name).is_file() and _logits_file(run, name, True).is_file()


def query_logits(model, images: np.ndarray, cfg, query_list: Iterable[str]) -> np.ndarray:
    """float32 [n, q, c]: the model's logits on every image under every query augmentation."""
    from . import train

    return np.stack([train.predict_logits(model, images, cfg, augment=a) for a in query_list], axis=1)


def _write_logits(run, name: str, model, p: Pool) -> None:
    qs = queries(run)
    io.save_array(_logits_file(run, name, True), query_logits(model, p.population_images, run.cfg, qs))
    io.save_array(_logits_file(run, name), query_logits(model, p.images, run.cfg, qs))


def _remove_partial(run, name: str) -> None:
    for folder in (mia_dir(run, "shadows"), mia_dir(run, "logits")):
        if folder.is_dir():
            for f in folder.glob(f".{name}*"):
                f.unlink(missing_ok=True)
    weights = mia_dir(run, "shadows", f"{name}.safetensors")
    if not weights.is_file():
        for f in (weights.with_suffix(".json"), mia_dir(run, "shadows", f"{name}_history.csv")):
            f.unlink(missing_ok=True)


def train_shadows(run, n_shadows: int | None = None, shard: str | None = None, *, progress: bool = True) -> list[int]:
    """Train (or finish) the shadows of one shard on their halves of P and write their query logits.
    Finished shadows are skipped; half-written files of unfinished ones are removed. Returns the
    indices trained or queried now."""
    from tqdm.auto import tqdm

    from . import classifiers, train

    cfg = run.cfg
    keep = ensure_mask(run, n_shadows)
    k, n = parse_shard(shard)
    todo = [i for i in range(len(keep)) if i % n == k and not _done(run, shadow_name(i))]
    if not todo:
        return []
    p = pool(run)
    val = run.real("val")
    arch = cfg.classifier.teacher_arch
    epochs = cfg.mia.shadow_epochs or None
    for i in tqdm(todo, desc=f"shadows (shard {k}/{n})", disable=not progress):
        name = shadow_name(i)
        _remove_partial(run, name)
        weights = mia_dir(run, "shadows", f"{name}.safetensors")
        if weights.is_file():
            model = classifiers.load(weights, arch=arch, num_classes=len(run.class_names))
        else:
            model, _ = train.fit(cfg, arch, p.images[keep[i]], p.labels[keep[i]], val.images, val.labels,
                                 seed=shadow_seed(run, i), epochs=epochs, history_path=mia_dir(run, "shadows", f"{name}_history.csv"),
                                 progress=progress, desc=name, num_classes=len(run.class_names))
            classifiers.save(model, weights, arch=arch, class_names=run.class_names, normalisation=train.normalisation(cfg),
                             config_hash=cfg.hash(), extra={"role": "shadow", "name": name, "index": i, **model.tckr_fit})
        _write_logits(run, name, model, p)
    return todo


# ---------------------------------------------------------------- targets
def available_targets(run) -> dict[str, dict[str, Any]]:
    """Teacher and students saved in ``run/classifiers/`` -> their sidecar info (role, multiple, label_mode)."""
    from . import classifiers

    out = {}
    for f in sorted((run.dir / "classifiers").glob("*.safetensors")):
        extra = classifiers.read_meta(f).get("extra", {})
        if extra.get("role") in ("teacher", "student") and extra.get("name"):
            out[extra["name"]] = {**extra, "path": f}
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["role"] != "teacher", kv[1].get("multiple") or 0, kv[0])))


def select_targets(run, targets: str | Iterable[str] = "all") -> dict[str, dict[str, Any]]:
    """``"all"``, ``"teacher"``, ``"students"``, or names (a list or a comma-separated string)."""
    avail = available_targets(run)
    if targets in ("all", None):
        return avail
    if targets in ("teacher", "students"):
        role = targets.rstrip("s")
        return {k: v for k, v in avail.items() if v["role"] == role}
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    missing = [t for t in names if t not in avail]
    if missing:
        raise ValueError(f"no target(s) {missing} in {run.dir / 'classifiers'}; available: {', '.join(avail) or 'none (run 04_run_evaluate)'}")
    return {t: avail[t] for t in names}


def query_targets(run, targets: str | Iterable[str] = "all", *, train_teacher: bool = True, progress: bool = True) -> list[str]:
    """Write the query logits of the selected targets (the teacher is trained first when missing)."""
    from . import classifiers, train

    if train_teacher:
        train.teacher(run, progress=progress)
    chosen = select_targets(run, targets)
    todo = [t for t in chosen if not _done(run, t)]
    if todo:
        p = pool(run)
        for t in todo:
            _write_logits(run, t, classifiers.load(chosen[t]["path"]), p)
    return list(chosen)


# ---------------------------------------------------------------- attacks and results
def _stable(run, name: str, labels: np.ndarray, population: bool = False) -> np.ndarray:
    return stable_logit(io.load_array(_logits_file(run, name, population)), labels)


def attack(run, targets: str | Iterable[str] = "all", attacks: Iterable[str] | None = None, n_shadows: int | None = None) -> pd.DataFrame:
    """Score every selected target with every attack from the saved logits; write raw scores, ROC arrays
    and ``results/mia.csv`` (rows of other targets are kept). Returns this call's rows."""
    cfg = run.cfg
    attacks = list(attacks or cfg.mia.attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"unknown attack(s) {bad}; accepted: {', '.join(ATTACKS)}")
    keep = ensure_mask(run, n_shadows)
    m = len(keep)
    missing = [i for i in range(m) if not _done(run, shadow_name(i))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {m} shadows are not trained yet (e.g. {shadow_name(missing[0])}): "
                                "run tckr.mia.train_shadows(run) or `python -m tckr.mia --shard k/n` first")
    saved = np.load(mia_dir(run, "pool.npz"))
    labels, member, z_labels = saved["labels"], saved["member"], saved["population_labels"]
    qs = queries(run)
    shadow_phi = np.stack([_stable(run, shadow_name(i), labels) for i in range(m)])
    shadow_z = np.stack([_stable(run, shadow_name(i), z_labels, True) for i in range(m)])
    chosen = select_targets(run, targets)
    io.save_array(mia_dir(run, "scores", "membership.npy"), member)
    rows = []
    for t, info in chosen.items():
        if not _done(run, t):
            raise FileNotFoundError(f"no query logits for target {t}: run tckr.mia.query_targets(run) first")
        t_phi, t_z = _stable(run, t, labels), _stable(run, t, z_labels, True)
        table = pd.DataFrame({"index": saved["index"], "label": labels, "member": member})
        for a in attacks:
            s = score(a, t_phi, shadow_phi, keep, target_z_phi=t_z, shadow_z_phi=shadow_z, queries=qs,
                      rmia_a=cfg.mia.rmia_a, rmia_gamma=cfg.mia.rmia_gamma)
            table[a] = s
            io.save_array(mia_dir(run, "scores", f"{t}_{a}.npy"), s)
            fpr, tpr = metrics.roc(s, member)
            io.save_csv(mia_dir(run, "roc", f"{t}_{a}.csv"), pd.DataFrame({"fpr": fpr, "tpr": tpr}))
            row = {"target": t, "role": info["role"], "cardinality": info.get("multiple"), "label_mode": info.get("label_mode"),
                   "attack": a, **metrics.summarise(s, member, cfg.mia.n_bootstrap, run.seed_for(cfg.mia.seed)),
                   "n_shadows": m, "n_members": int(member.sum()), "n_nonmembers": int((~member).sum())}
            rows.append(row)
        io.save_csv(mia_dir(run, "scores", f"{t}.csv"), table)
    new = pd.DataFrame(rows)
    cols = ["target", "role", "cardinality", "label_mode", "attack"]
    cols += [c for k in metrics.METRICS for c in (k, f"{k}_lo", f"{k}_hi")] + ["n_shadows", "n_members", "n_nonmembers"]
    new = new[cols]
    f = run.path("results", "mia.csv")
    if f.is_file():
        old = pd.read_csv(f)
        old = old[~old.set_index(["target", "attack"]).index.isin(new.set_index(["target", "attack"]).index)]
        new_all = pd.concat([old, new], ignore_index=True)
    else:
        new_all = new
    io.save_csv(f, new_all)
    return new


def write_aop(run, attack_name: str = "lira_online") -> pd.DataFrame:
    """``results/aop.csv``: test accuracy (``results/classifiers.csv``) and the attack's AUC per target, with AOP (%)."""
    clf_file, mia_file = run.dir / "results" / "classifiers.csv", run.dir / "results" / "mia.csv"
    if not mia_file.is_file():
        raise FileNotFoundError(f"{mia_file} is missing: run tckr.mia.attack(run) first")
    if not clf_file.is_file():
        print(f"{clf_file} is missing (run 04_run_evaluate for the test accuracies): no AOP table")
        return pd.DataFrame()
    clf = pd.read_csv(clf_file)
    res = pd.read_csv(mia_file)
    res = res[res["attack"] == attack_name][["target", "role", "cardinality", "label_mode", "auc", "auc_lo", "auc_hi"]]
    table = res.merge(clf[["model", "test_accuracy"]].rename(columns={"model": "target"}), on="target", how="inner")
    table["aop"] = [100 * metrics.aop(acc / 100, auc) for acc, auc in zip(table["test_accuracy"], table["auc"])]
    table["attack"] = attack_name
    table = table[["target", "role", "cardinality", "label_mode", "attack", "test_accuracy", "auc", "auc_lo", "auc_hi", "aop"]]
    io.save_csv(run.path("results", "aop.csv"), table)
    return table


# ---------------------------------------------------------------- figures (from the saved files)
def plot_roc(run) -> list[Path]:
    """``figures/mia_roc_<target>`` (every attack) and ``figures/mia_roc_lira_online`` (every target),
    linear and log-log, from ``mia/roc/*.csv`` and ``results/mia.csv``."""
    res = pd.read_csv(run.dir / "results" / "mia.csv")
    n_ex = int(res["n_members"].iloc[0] + res["n_nonmembers"].iloc[0])
    lo = 1.0 / max(n_ex, 1)
    out = []

    def draw(ax_pair, r, label, lw=1.3):
        roc = pd.read_csv(mia_dir(run, "roc", f"{r['target']}_{r['attack']}.csv"))
        for ax in ax_pair:
            ax.plot(roc["fpr"], roc["tpr"], lw=lw, label=f"{label} (AUC {r['auc']:.3f}, TPR@1% {100 * r['tpr_at_1pct']:.1f}%)")

    for t, rows in res.groupby("target", sort=False):
        fig, lin, log = roc_axes(f"MIA ROC: {t} ({int(rows['n_shadows'].iloc[0])} shadows)")
        for _, r in rows.iterrows():
            draw((lin, log), r, r["attack"])
        log.set_xlim(lo, 1)
        log.set_ylim(lo, 1)
        lin.legend(fontsize=7)
        fig.tight_layout()
        out += save_figure(fig, run.path("figures", f"mia_roc_{t}"))
    online = res[res["attack"] == "lira_online"]
    if len(online):
        fig, lin, log = roc_axes("LiRA online: teacher vs students")
        for _, r in online.iterrows():
            draw((lin, log), r, r["target"], lw=2.0 if r["role"] == "teacher" else 1.2)
        log.set_xlim(lo, 1)
        log.set_ylim(lo, 1)
        lin.legend(fontsize=7)
        fig.tight_layout()
        out += save_figure(fig, run.path("figures", "mia_roc_lira_online"))
    return out


# ---------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tckr.mia", description="Train one shard of the LiRA shadow models (resumable).")
    ap.add_argument("--config", default=None, help="study config (omit to reuse the run folder's)")
    ap.add_argument("--run-dir", required=True, help="run folder")
    ap.add_argument("--shard", default=None, help="k/n: train shadows i with i %% n == k")
    ap.add_argument("--n-shadows", type=int, default=None, help="default: mia.n_shadows of the config")
    ap.add_argument("--attack", action="store_true", help="then query the targets and run the attacks")
    args = ap.parse_args(argv)
    from . import runs

    run = runs.open_run(args.config, args.run_dir)
    done = train_shadows(run, args.n_shadows, args.shard)
    print(f"shadows trained or queried now: {done}")
    if args.attack:
        query_targets(run)
        print(attack(run, n_shadows=args.n_shadows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
