"""The memorisation audit's permutation test, with the D/H split as the unit of randomness.

Membership is random through the split of P = D ∪ H into members and non-members, not through the synthetic
images: a test that treats each synthetic image as an independent draw (a Wilcoxon or binomial test on the
per-image differences ``d_D - d_H``) reads the structure of one fixed split as evidence. Here the statistics
are computed for the true split and for ``B`` seeded re-splits of P that swap D/H labels within each class,
keeping every class's D and H counts; under no memorisation the true split is one more draw of the same
re-splitting, so ``p = (1 + #{re-split statistic >= observed}) / (1 + B)`` is a valid one-sided p-value towards
D (large statistics mean closer to D), never below ``1 / (1 + B)``.

Statistics (both larger when the synthetic images sit closer to the members):

- ``frac_closer_to_member``: the share of images whose nearest member is strictly closer than their nearest
  non-member; it depends on the nearest neighbour over P alone (closer to D exactly when that neighbour is in D);
- ``median_diff_H_minus_D``: the median of ``d_H - d_D``.

Efficiency: the ``k`` nearest rows of P of every query are computed once (:func:`k_nearest`); under any labelling
a query's nearest member is the first of them labelled D and its nearest non-member the first labelled H. The
distances are exact at any ``k``: a query whose ``k`` nearest all fall on one side gets the other side's nearest
distance from a search over all of P (:func:`side_nearest`). ``k`` only sets how rarely that search runs: under a
balanced re-split all ``K_NEAREST = 32`` neighbours fall on one side with probability about ``2 ** -31`` per image.

Pure numpy: no run folder, no torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

K_NEAREST = 32
STATISTICS = ("frac_closer_to_member", "median_diff_H_minus_D")
SHORT = {"frac_closer_to_member": "frac_closer", "median_diff_H_minus_D": "median_diff"}  # column names of p and the null's range


def _rows(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def k_nearest(queries: np.ndarray, refs: Sequence[np.ndarray], k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances and positions of the ``k`` nearest rows (fewer when there are fewer) of every query
    among the stacked ``refs`` blocks (positions in their concatenation, which is never built), nearest first,
    ties by position."""
    q = _rows(queries)
    blocks = [_rows(r) for r in refs]
    n_ref = sum(len(b) for b in blocks)
    if n_ref == 0 or any(b.shape[1] != q.shape[1] for b in blocks):
        raise ValueError(f"queries {q.shape} and refs {[b.shape for b in blocks]} need the same width and at least one ref")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), n_ref)
    sq = [(b ** 2).sum(1) for b in blocks]
    dist, idx = np.empty((len(q), k)), np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qb = q[s:s + chunk]
        q2 = (qb ** 2).sum(1)[:, None]
        d2 = np.concatenate([q2 + r2[None, :] - 2.0 * qb @ b.T for b, r2 in zip(blocks, sq)], axis=1)
        cand = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < n_ref else np.broadcast_to(np.arange(n_ref), d2.shape)
        cd2 = np.take_along_axis(d2, cand, axis=1)
        order = np.lexsort((cand, cd2), axis=-1)
        idx[s:s + chunk] = np.take_along_axis(cand, order, axis=1)
        dist[s:s + chunk] = np.sqrt(np.maximum(np.take_along_axis(cd2, order, axis=1), 0.0))
    return dist, idx


def _nearest_among(queries: np.ndarray, refs: Sequence[np.ndarray], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest row of the stacked ``refs`` among those with ``keep`` True: (distance, position)."""
    blocks, where, start = [], [], 0
    for r in refs:
        sel = np.flatnonzero(keep[start:start + len(r)])
        blocks.append(np.asarray(r)[sel])
        where.append(start + sel)
        start += len(r)
    d, j = k_nearest(queries, blocks, 1)
    return d[:, 0], np.concatenate(where)[j[:, 0]]


def side_nearest(dist: np.ndarray, idx: np.ndarray, member: np.ndarray, queries: np.ndarray | None = None,
                 refs: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest member and nearest non-member of every query when the rows of P with ``member`` True are D:
    ``d_D, d_H, nn_D, nn_H`` (positions in P), from the ``k`` nearest (``dist``, ``idx`` of :func:`k_nearest`).
    A query whose ``k`` nearest all fall on one side is searched over the whole other side, which needs
    ``queries`` and ``refs``; a side with no row gets distance inf and position -1."""
    member = np.asarray(member, bool)
    lab = member[idx]
    out = []
    for towards_D in (True, False):
        side, want = (lab, member) if towards_D else (~lab, ~member)
        j = side.argmax(1)
        d, nn = dist[np.arange(len(dist)), j], idx[np.arange(len(idx)), j]
        miss = np.flatnonzero(~side.any(1))
        if len(miss) and not want.any():
            d[miss], nn[miss] = np.inf, -1
        elif len(miss):
            if queries is None or refs is None:
                raise ValueError(f"{len(miss)} queries have no {'member' if towards_D else 'non-member'} among their "
                                 f"{idx.shape[1]} nearest: give queries and refs for the exact search")
            d[miss], nn[miss] = _nearest_among(np.asarray(queries)[miss], refs, want)
        out.append((d, nn))
    (d_D, nn_D), (d_H, nn_H) = out
    return d_D, d_H, nn_D, nn_H


def statistics(dist_D: np.ndarray, dist_H: np.ndarray) -> dict[str, float]:
    """The share of images strictly closer to their nearest member, and the median of ``d_H - d_D``."""
    dist_D, dist_H = np.asarray(dist_D, float), np.asarray(dist_H, float)
    if dist_D.shape != dist_H.shape or dist_D.ndim != 1 or len(dist_D) == 0:
        raise ValueError(f"dist_D and dist_H must be paired non-empty 1-D arrays, got {dist_D.shape} and {dist_H.shape}")
    return {"frac_closer_to_member": float((dist_D < dist_H).mean()), "median_diff_H_minus_D": float(np.median(dist_H - dist_D))}


def stratified_resplits(classes: np.ndarray, member: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` seeded re-splits of P (an ``n`` × |P| boolean array, True = member): within each class the member
    labels are shuffled, so every class keeps its numbers of members and non-members."""
    classes, member = np.asarray(classes), np.asarray(member, bool)
    if classes.shape != member.shape or classes.ndim != 1:
        raise ValueError(f"classes and member must be 1-D arrays of one length, got {classes.shape} and {member.shape}")
    if n < 1:
        raise ValueError(f"the permutation test needs at least one re-split (audit.n_permutations >= 1), got {n}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    out = np.empty((int(n), len(member)), dtype=bool)
    for b in range(int(n)):
        for g in groups:
            out[b, g] = rng.permutation(member[g])
    return out


def permutation_test(dist: np.ndarray, idx: np.ndarray, member: np.ndarray, resplits: np.ndarray,
                     queries: np.ndarray | None = None, refs: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """The :data:`STATISTICS` for the true split ``member`` and for each row of ``resplits``: per statistic the
    observed value, ``p_perm_<short>`` = (1 + #{re-split >= observed}) / (1 + B) (one-sided towards D) and the
    re-splits' 2.5% and 97.5% quantiles ``null_lo_<short>``, ``null_hi_<short>``; with ``n``, ``median_dist_D``,
    ``median_dist_H`` of the true split, ``n_permutations`` = B and ``k_nearest`` = the neighbours searched first."""
    d_D, d_H, _, _ = side_nearest(dist, idx, member, queries, refs)
    obs = statistics(d_D, d_H)
    null = np.array([list(statistics(*side_nearest(dist, idx, m, queries, refs)[:2]).values()) for m in resplits])
    out: dict[str, float] = {"n": int(len(d_D)), "median_dist_D": float(np.median(d_D)), "median_dist_H": float(np.median(d_H))}
    for j, name in enumerate(STATISTICS):
        short = SHORT[name]
        lo, hi = np.quantile(null[:, j], [0.025, 0.975])
        out |= {name: obs[name], f"p_perm_{short}": float((1 + (null[:, j] >= obs[name]).sum()) / (1 + len(null))),
                f"null_lo_{short}": float(lo), f"null_hi_{short}": float(hi)}
    return out | {"n_permutations": int(len(null)), "k_nearest": int(idx.shape[1])}
