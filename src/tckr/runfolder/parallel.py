"""Independent models trained by several processes at once (``study.workers``).

Classifier shadows (phase 05) and shadow pipelines (phase 06) are independent of each other and each one is
small: on a CPU, two one-thread processes train two of them in less time than one two-thread process trains them
one after the other (``bench/bench_workers.py`` measures it). :func:`run_shards` runs a sharded, resumable
function — one whose ``shard="k/w"`` argument makes it do models ``i`` with ``i mod w == k - 1`` and skip finished
ones, as ``tckr launch`` shards do — in ``w`` spawned processes with ``num_threads // w`` torch threads each. Each
model's seed depends on its index only, so which process trains it does not matter; the thread count does (a
different reduction order), and it is fixed by the config. A failed worker is an error naming its shard; what the
others finished is kept, and the next call resumes.
"""

from __future__ import annotations

import importlib
import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Callable

from tqdm.auto import tqdm

from tckr.runfolder import environment, runs


def worker_threads(cfg) -> int:
    """torch threads per worker: ``study.num_threads // study.workers`` (torch's default count when 0), at least 1."""
    total = cfg.study.num_threads
    if not total:
        import torch  # lazy: the runfolder layer stays torch-free until a worker is started

        total = torch.get_num_threads()
    return max(1, total // cfg.study.workers)


def _work(target: str, run_dir: str, shard: str, threads: int, kwargs: dict[str, Any]) -> Any:
    """One worker: pin its threads, open the run folder and call ``module:function`` on its shard."""
    environment.pin_threads(threads)
    module, name = target.split(":")
    fn = getattr(importlib.import_module(module), name)
    return fn(runs.open_run(None, run_dir), shard=shard, progress=False, **kwargs)


def run_shards(run, target: str, *, kwargs: dict[str, Any] | None = None, done: Callable[[], int] | None = None,
               total: int | None = None, desc: str = "models", progress: bool = True) -> list[Any]:
    """Call ``target`` (``"package.module:function"``, taking ``(run, shard=..., progress=..., **kwargs)``) on shards
    ``1/w … w/w`` in ``w = study.workers`` processes at once and return their results in shard order. ``done()``
    (counting finished models) and ``total`` drive a progress bar, polled every 2 s."""
    w = run.cfg.study.workers
    threads = worker_threads(run.cfg)
    ctx = multiprocessing.get_context("spawn")  # no fork: torch's thread pools and open files stay in the parent
    bar = tqdm(total=total, desc=f"{desc} ({w} processes × {threads} thread{'s' if threads > 1 else ''})",
               unit=desc.split()[-1], disable=not progress or total is None)
    with ProcessPoolExecutor(max_workers=w, mp_context=ctx) as ex:
        futures = [ex.submit(_work, target, str(run.dir), f"{k}/{w}", threads, dict(kwargs or {})) for k in range(1, w + 1)]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=2.0, return_when=FIRST_EXCEPTION)
            if done is not None and not bar.disable:
                bar.n = done()
                bar.refresh()
            if any(f.exception() is not None for f in finished):
                break
        failed = [(k, f.exception()) for k, f in enumerate(futures, 1) if f.done() and f.exception() is not None]
        if failed:  # stop the other workers now rather than after their whole shard (their finished models stay)
            for proc in list(getattr(ex, "_processes", {}).values()):
                proc.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
            bar.close()
            lines = "\n".join(f"shard {k}/{w}: {type(e).__name__}: {e}" for k, e in failed)
            raise RuntimeError(f"{len(failed)} of {w} worker process(es) of {target} failed; finished models are kept "
                               f"and the next call resumes:\n{lines}")
    bar.close()
    return [f.result() for f in futures]
