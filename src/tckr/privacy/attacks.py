"""Membership-inference attack mathematics, pure numpy/scipy: no torch, no plotting, no run folders.

Every score is "higher = more likely a member". Classifier attacks start from the stable logit of the
true class ``phi = log p_y - log sum_{y' != y} p_y'`` computed from logits in float64
(:func:`stable_logit`, [..., n, q, c] -> [..., n, q]); other statistics (minus a denoising error, minus
a distance to the nearest synthetic image) go straight to :func:`lira_from_statistics`.

Attacks (:data:`ATTACKS`):

- ``lira_online`` / ``lira_offline``: LiRA (Carlini et al. 2022) with one Gaussian per example and
  query fitted to the IN and the OUT shadows (online: log-likelihood ratio; offline: one-sided
  ``log P(phi_OUT <= phi_target)``); scores are averaged over queries;
- ``lira_online_fixed`` / ``lira_offline_fixed``: the same with one global variance, the pooled
  within-example variance ``sum_cells sum_shadows (phi - mean_cell)^2 / sum_cells (count_cell - 1)``
  over every (example, query) cell (online: IN and OUT deviations pooled; offline: OUT only). The
  reference code (``tensorflow/privacy`` ``mi_lira_2021``) uses the total standard deviation instead,
  which adds the spread of the per-example means; the pooled one is the noise a per-example fit
  would see;
- ``loss``: minus the target's cross-entropy on the un-augmented query (global threshold);
- ``rmia`` / ``rmia_offline``: RMIA (Zarifzadeh et al. 2024) with all / the OUT reference models.

:func:`headline_attack` turns ``mia.headline`` into the one pre-registered attack of a study.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_ndtr

ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia", "rmia_offline")
FIXED_BELOW_SHADOWS = 64  # Carlini et al. 2022: fixed variance is the better choice with fewer shadows than this
_CHUNK_BYTES = 32 << 20


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

    def fill(self, sl: slice, target_phi: np.ndarray, shadow_phi: np.ndarray, shadow_in: np.ndarray,
             use: np.ndarray | None = None) -> None:
        """``use`` (bool [m, n], default all): which shadows count for each example."""
        w = shadow_in.astype(np.float64)[:, :, None]
        u = np.ones_like(w) if use is None else use.astype(np.float64)[:, :, None]
        w_out = (1.0 - w) * u
        w = w * u
        n_in = w[:, :, 0].sum(0)
        n_out = w_out[:, :, 0].sum(0)
        s_in = (shadow_phi * w).sum(0)
        s_out = (shadow_phi * w_out).sum(0)
        mean_in = s_in / np.maximum(n_in, 1)[:, None]
        mean_out = s_out / np.maximum(n_out, 1)[:, None]
        dev_in = (shadow_phi - mean_in) * w
        dev_out = (shadow_phi - mean_out) * w_out
        self.target[sl], self.mean_in[sl], self.mean_out[sl] = target_phi, mean_in, mean_out
        self.ss_in[sl], self.ss_out[sl] = (dev_in ** 2).sum(0), (dev_out ** 2).sum(0)
        self.n_in[sl], self.n_out[sl] = n_in, n_out


def _check_mask(shadow_in: np.ndarray, m: int, n: int) -> np.ndarray:
    shadow_in = np.asarray(shadow_in)
    if shadow_in.shape != (m, n) or shadow_in.dtype != bool:
        raise ValueError(f"shadow_in must be bool [{m}, {n}] (shadows × examples), got {shadow_in.dtype} {shadow_in.shape}")
    return shadow_in


def _pooled_variance(st: _Stats, online: bool) -> float:
    # Every (example, query) cell contributes its shadows' squared deviations and (count - 1) degrees
    # of freedom; the sums of squares run over n×q cells, so the degrees of freedom must too.
    q = st.ss_out.shape[1]
    ss, dof = st.ss_out.sum(), q * (st.n_out - 1).sum()
    if online:
        ss, dof = ss + st.ss_in.sum(), dof + q * (st.n_in - 1).sum()
    return float(max(ss / max(dof, 1), 1e-12))


def _lira_finish(st: _Stats, online: bool, fixed_variance: bool) -> np.ndarray:
    need = 1 if fixed_variance else 2
    if (st.n_out < need).any() or (online and (st.n_in < need).any()):
        groups = "IN and OUT" if online else "OUT"
        raise ValueError(f"every example needs at least {need} {groups} shadows for this LiRA variant "
                         f"(min IN {int(st.n_in.min())}, min OUT {int(st.n_out.min())}); add shadows or use fixed_variance=True")
    if fixed_variance:
        var_in = var_out = np.full_like(st.mean_in, _pooled_variance(st, online))
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
    one-sided ``log P(phi_OUT <= phi_target)``; ``fixed_variance``: one global variance, pooled over
    every (example, query) cell (see the module docstring), instead of one per cell. Scores are
    averaged over queries.
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
                     fixed_variance: bool = False, use: np.ndarray | None = None) -> np.ndarray:
    """:func:`lira` on precomputed stable logits: ``target_phi`` [n, q], ``shadow_phi`` [m, n, q]. ``use`` (bool
    [m, n], default every shadow for every example): the shadows that count for each example (see
    :func:`balanced_use`)."""
    shadow_phi, target_phi = np.asarray(shadow_phi, dtype=np.float64), np.asarray(target_phi, dtype=np.float64)
    if shadow_phi.ndim != 3:
        raise ValueError(f"shadow statistics must be [m, n, q] (shadows × examples × queries), got shape {shadow_phi.shape}")
    m, n, q = shadow_phi.shape
    if target_phi.shape != (n, q):
        raise ValueError(f"target_phi must be [{n}, {q}] to match shadow_phi {shadow_phi.shape}, got {target_phi.shape}")
    st = _Stats.empty(n, q)
    st.fill(slice(0, n), target_phi, shadow_phi, _check_mask(shadow_in, m, n), None if use is None else _check_mask(use, m, n))
    return _lira_finish(st, online, fixed_variance)


def balanced_use(shadow_in: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per example, as many IN as OUT shadows: bool [m, n] keeping ``min(n_in, n_out)`` of each group (the extra ones
    of the larger group dropped at random, seeded).

    Why: when the references of an example are unbalanced *because of its membership* (leave one model out of a
    balanced design: a member keeps k-1 IN and k OUT references, a non-member k IN and k-1 OUT), the better-estimated
    mean sits on the non-member side for members and on the member side for non-members, and LiRA ranks members
    *below* non-members where there is no signal at all (measured: online fixed-variance AUC 0.47 instead of 0.50
    over 8 mini pipelines, ``results/mini-earlier-base/results/mia_pipeline_lopo.csv`` before this fix)."""
    shadow_in = np.asarray(shadow_in, dtype=bool)
    m, n = shadow_in.shape
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((m, n)), axis=0)  # a random rank of the shadows, per example
    use = np.zeros_like(shadow_in)
    n_keep = np.minimum(shadow_in.sum(0), (~shadow_in).sum(0))
    for group in (shadow_in, ~shadow_in):
        ranked = np.take_along_axis(group, order, axis=0)  # the group's shadows in that random order
        keep_ranked = ranked & (np.cumsum(ranked, axis=0) <= n_keep[None, :])
        np.put_along_axis(use, order, np.take_along_axis(use, order, axis=0) | keep_ranked, axis=0)
    return use


def lira_from_statistics(target_stat: np.ndarray, shadow_stat: np.ndarray, shadow_in: np.ndarray, *, online: bool = True,
                         fixed_variance: bool = False) -> np.ndarray:
    """LiRA on any per-example statistic where higher means more member-like (a stable logit, minus a
    denoising error, minus a distance to the nearest synthetic image): ``target_stat`` [n] or [n, q],
    ``shadow_stat`` [m, n] or [m, n, q] (the same q), ``shadow_in`` bool [m, n]. Gaussians are fitted
    per (example, query) to the IN and OUT reference models exactly as in :func:`lira_from_stable`;
    one score per example, averaged over queries."""
    t, s = np.asarray(target_stat, dtype=np.float64), np.asarray(shadow_stat, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if s.ndim == 2:
        s = s[:, :, None]
    if t.ndim != 2 or s.ndim != 3:
        raise ValueError(f"target_stat must be [n] or [n, q] and shadow_stat [m, n] or [m, n, q], got {np.shape(target_stat)} "
                         f"and {np.shape(shadow_stat)}")
    bad = int((~np.isfinite(t)).sum() + (~np.isfinite(s)).sum())
    if bad:
        raise ValueError(f"lira_from_statistics: {bad} statistics are not finite (NaN or inf)")
    return lira_from_stable(t, s, shadow_in, online=online, fixed_variance=fixed_variance)


def pooled_variance(shadow_stat: np.ndarray, shadow_in: np.ndarray, *, online: bool = True) -> float:
    """The one variance of the fixed-variance LiRA variants: shadow statistics [m, n, q] (or [m, n])
    centred on their IN and OUT mean per (example, query) cell, squared, summed, and divided by the
    degrees of freedom of every cell (online: IN and OUT; offline: OUT only)."""
    s = np.asarray(shadow_stat, dtype=np.float64)
    s = s[:, :, None] if s.ndim == 2 else s
    m, n, q = s.shape
    st = _Stats.empty(n, q)
    st.fill(slice(0, n), np.zeros((n, q)), s, _check_mask(shadow_in, m, n))
    return _pooled_variance(st, online)


def _sigmoid(x: np.ndarray) -> np.ndarray:
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


def headline_attack(setting: str, n_shadows: int) -> str:
    """The pre-registered headline attack of a study (``mia.headline``): ``"auto"`` is
    ``lira_online_fixed`` below 64 shadows, else ``lira_online`` (Carlini et al. 2022: per-example
    variances need many shadows); any other value must be one of :data:`ATTACKS`. Decided from the
    settings alone, never from scores."""
    if setting == "auto":
        return "lira_online_fixed" if int(n_shadows) < FIXED_BELOW_SHADOWS else "lira_online"
    if setting not in ATTACKS:
        raise ValueError(f"mia.headline: unknown attack {setting!r}; accepted: 'auto' or one of {', '.join(ATTACKS)}")
    return setting


def headline_rule(setting: str) -> str:
    """The rule :func:`headline_attack` applied, in words (recorded in ``results/headline.json``)."""
    if setting == "auto":
        return f"auto: lira_online_fixed below {FIXED_BELOW_SHADOWS} shadows, else lira_online"
    return f"configured: mia.headline = {setting}"
