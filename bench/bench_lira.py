"""Benchmark: LiRA scoring of 256 shadows × 50,000 examples × 2 queries × 10 classes (synthetic
float32 logits, 1 GB) on two CPU cores — wall time and peak memory of ``tckr.mia.lira`` (online and
offline) against the goal of 30 s, beside a naive float64 whole-array reference on a 1/10 slice.

    .venv/bin/python bench/bench_lira.py [--shadows 256] [--examples 50000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def make_logits(m: int, n: int, q: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shadow logits with a planted membership signal (IN shadows get a larger true-class logit)."""
    from tckr.privacy.attacks import membership_mask

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    keep = membership_mask(m, labels, seed)
    shadow = np.empty((m, n, q, c), dtype=np.float32)
    for i in range(m):
        x = rng.standard_normal((n, q, c), dtype=np.float32)
        x[np.arange(n), :, labels] += 2.0 + 1.0 * keep[i][:, None]
        shadow[i] = x
    target = rng.standard_normal((n, q, c), dtype=np.float32)
    member = rng.random(n) < 0.5
    target[np.arange(n), :, labels] += 2.0 + 1.0 * member[:, None]
    return target, shadow, labels, keep, member


def naive_lira(target, shadow, labels, keep):
    """Whole-array float64 reference (scipy logsumexp, no chunking), online, per-example variance."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    def phi(x):
        x = x.astype(np.float64)
        onehot = np.zeros(x.shape, bool)
        np.put_along_axis(onehot, np.broadcast_to(labels.reshape((1,) * (x.ndim - 3) + (-1, 1, 1)), x.shape[:-1] + (1,)), True, -1)
        zy = np.where(onehot, x, 0).sum(-1)
        return zy - logsumexp(np.where(onehot, -np.inf, x), axis=-1)

    ps, pt = phi(shadow), phi(target)
    w = keep[:, :, None]
    inn = np.where(w, ps, np.nan)
    out = np.where(~w, ps, np.nan)
    mi, mo = np.nanmean(inn, 0), np.nanmean(out, 0)
    si, so = np.nanstd(inn, 0, ddof=1), np.nanstd(out, 0, ddof=1)
    return (norm.logpdf(pt, mi, si) - norm.logpdf(pt, mo, so)).mean(1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shadows", type=int, default=256)
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from tckr.privacy import attacks, metrics

    m, n, q, c = args.shadows, args.examples, args.queries, args.classes
    t0 = time.perf_counter()
    target, shadow, labels, keep, member = make_logits(m, n, q, c)
    base_mb = peak_rss_mb()
    print(f"inputs: shadows {shadow.shape} float32 = {shadow.nbytes / 2**30:.2f} GiB, made in {time.perf_counter() - t0:.1f} s; "
          f"peak RSS after making them {base_mb:.0f} MiB")
    print(f"cores available: {len(os.sched_getaffinity(0))}, workers: {args.workers}")
    for online in (True, False):
        t0 = time.perf_counter()
        s = attacks.lira(target, shadow, labels, keep, online=online, workers=args.workers)
        wall = time.perf_counter() - t0
        print(f"lira {'online ' if online else 'offline'}: {wall:6.1f} s wall (goal <= 30 s), AUC {metrics.attack_metrics(s, member)['auc']:.3f}, "
              f"peak RSS {peak_rss_mb():.0f} MiB (+{peak_rss_mb() - base_mb:.0f} MiB over the inputs)")
    k = max(2, n // 10)
    t0 = time.perf_counter()
    ref = naive_lira(target[:k], shadow[:, :k], labels[:k], keep[:, :k])
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = attacks.lira(target[:k], shadow[:, :k], labels[:k], keep[:, :k], workers=args.workers)
    t_ours = time.perf_counter() - t0
    print(f"1/10 slice ({k} examples): naive whole-array float64 {t_naive:.1f} s vs tckr.mia.lira {t_ours:.1f} s "
          f"-> {t_naive / t_ours:.1f}x; max |difference| {np.abs(ref - ours).max():.2e}")
    print(f"peak RSS of the whole benchmark: {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
