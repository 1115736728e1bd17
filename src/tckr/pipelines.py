"""Shadow *pipelines*: LiRA shadows that replicate how a student is trained, not only how a teacher is.

A student never sees a real image: membership reaches it through the captions of D, the LoRA adapter
trained on D and the teacher's soft labels. A shadow for it is therefore a whole TCKR run on a
shadow half of the MIA pool P = D ∪ H: shadow teacher → captions → shadow LoRA from the same base
→ shadow synthetic set → shadow GKD students. Pipeline ``i`` is a *sub-run* (an ordinary run folder,
``<run>/mia/pipelines/pipeline_<i>/``) whose D is the IN half of row ``i`` of the run's membership
mask (``mia/keep.npy``) and whose H is the other half; val, pool, public and test are the run's.
Every phase function (``captions.caption_run``, ``lora.finetune``, ``synthesis.generate``,
``train.teacher``, ``train.student``) then runs on it unchanged, so a shadow is trained exactly the
way the target was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import io, runs

PIPELINES_DIR = ("mia", "pipelines")


def pipeline_name(i: int) -> str:
    return f"pipeline_{i:03d}"


def pipeline_dir(run, i: int) -> Path:
    return run.dir.joinpath(*PIPELINES_DIR, pipeline_name(i))


def pipeline_seed(run, i: int) -> int:
    """The sub-run seed of pipeline ``i``: every phase seed of the pipeline (``run.seed_for``) differs
    from the target's and from every other pipeline's (up to 100 pipelines per run seed)."""
    if not 0 <= i < 100:
        raise ValueError(f"pipeline index must lie in [0, 100), got {i}")
    return 10_000 + 100 * int(run.seed) + int(i)


def open_pipeline(run, i: int) -> runs.Run:
    """The sub-run of shadow pipeline ``i`` (created on first use): D = P[keep[i]], H = P[~keep[i]]."""
    from . import mia

    keep = mia.ensure_mask(run, max(i + 1, 2 * ((i + 2) // 2)))
    p = mia.pool_index(run)
    folder = pipeline_dir(run, i)
    s = run.splits()
    want = {"D": np.sort(p[keep[i]]), "H": np.sort(p[~keep[i]]), "val": s.val, "pool": s.pool, "public": s.public,
            "test": run.test_index()}
    for name, index in want.items():
        f = folder / "splits" / f"{name}.npy"
        if not f.is_file():
            io.save_array(f, index.astype(np.int64))
        elif not np.array_equal(io.load_array(f), index):
            raise ValueError(f"{f} does not hold row {i} of {mia.mia_dir(run, 'keep.npy')}; delete {folder} to rebuild it")
    return runs.open_run(run.cfg, folder, seed=pipeline_seed(run, i))
