"""Run a sharded phase on a cluster (SLURM job arrays) or as local processes, through submitit, then merge.

    tckr launch CONFIG --run-dir runs/<id> --phases 03_generate --shards 32 \\
        [--slurm-partition gpu --gpus-per-task 1 --cpus-per-task 8 --mem-gb 32 --timeout-min 240] [--local]

Shard ``k/n`` (1-based, :mod:`tckr.shards`) of

- ``03_generate``: :func:`tckr.synthesis.generate` (synthetic shards ``j`` with ``j mod n == k - 1``);
- ``05_mia_lira``: :func:`tckr.mia.train_shadows` and then :func:`tckr.pipelines.train_pipelines` (shadow models and
  shadow pipelines ``i`` with ``i mod n == k - 1``).

Every shard's work is resumable and skips what is finished, so a failed or pre-empted array can be launched again.
Once all shards have finished, one more job runs the phase's merge step: for ``03_generate`` the synthetic
subsets and the checksums of the manifest (``synthesis.generate`` with nothing left to make) and
``synthetic.check``; for ``05_mia_lira`` the targets' queries and the attacks (``mia.query_targets``,
``mia.attack``, and ``pipeline_attacks.attack_students`` when there are shadow pipelines). ``--record`` then runs the
phase notebook (``tckr study ... --phases <phase>``), which finds the shards done and writes the
phase's done-record.

Without ``--local`` submitit's AutoExecutor submits a SLURM job array (``sbatch``); ``--local`` runs the
shards as separate processes on this machine (submitit's LocalExecutor), for laptops and tests. LoRA
fine-tuning on several GPUs is not sharded: it stays ``accelerate launch -m tckr.cli lora CONFIG RUN_DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tckr.core import shards
from tckr.generation import synthesis
from tckr.orchestration import study
from tckr.privacy import mia, pipeline_attacks, pipelines
from tckr.runfolder import runs, synthetic

SHARDED = ("03_generate", "05_mia_lira")


def work(phase: str, run_dir: str, shard: str) -> dict[str, Any]:
    """One shard's work (runs in the submitted job): the run folder's saved config decides everything."""
    run = runs.open_run(None, run_dir)
    if phase == "03_generate":
        return {"shard": shard, **synthesis.generate(run, shard=shard, progress=False)}
    if phase == "05_mia_lira":
        out: dict[str, Any] = {"shard": shard, "shadows": mia.train_shadows(run, shard=shard, progress=False)}
        if run.cfg.mia.n_pipelines:
            out["pipelines"] = pipelines.train_pipelines(run, shard=shard, progress=False)
        return out
    raise ValueError(f"phase {phase!r} is not sharded; accepted: {', '.join(SHARDED)}")


def merge(phase: str, run_dir: str) -> dict[str, Any]:
    """The phase's step after every shard: refuses while any shard's work is unfinished."""
    run = runs.open_run(None, run_dir)
    if phase == "03_generate":
        if not synthetic.is_complete(run):
            missing = synthesis.status(run).query("not done")["shard"].tolist()
            raise RuntimeError(f"{run.dir}: synthetic shard(s) {missing[:8]} unfinished after all jobs; "
                               "launch the array again (finished shards are skipped)")
        summary = synthesis.generate(run, progress=False)  # nothing left to make: writes the subsets and seals the manifest
        synthetic.check(run)
        return {"phase": phase, "shards": summary["shards_total"], "multiples": synthetic.available_multiples(run)}
    if phase == "05_mia_lira":
        left = [i for i in range(run.cfg.mia.n_shadows) if not mia._done(run, mia.shadow_name(i))]
        if left:
            raise RuntimeError(f"{run.dir}: shadow(s) {left[:8]} unfinished after all shards; launch the array again")
        mia.query_targets(run, progress=False)
        table = mia.attack(run)
        out = {"phase": phase, "attacks": len(table)}
        if run.cfg.mia.n_pipelines:
            out["pipeline_attacks"] = len(pipeline_attacks.attack_students(run))
        return out
    raise ValueError(f"phase {phase!r} is not sharded; accepted: {', '.join(SHARDED)}")


def executor(log_dir: Path, *, local: bool, slurm: dict[str, Any]):
    """submitit's AutoExecutor: SLURM when ``sbatch`` is there, else an error; ``local`` runs local processes."""
    import submitit  # lazy: optional dependency (submitit), imported only for cluster launches

    ex = submitit.AutoExecutor(folder=str(log_dir), cluster="local" if local else None)
    if not local and ex.cluster != "slurm":
        raise RuntimeError(f"no SLURM cluster found (submitit chose {ex.cluster!r}); pass --local to run the shards "
                           "as processes on this machine")
    params = {k: v for k, v in slurm.items() if v is not None}
    # submitit's default limit is 5 minutes, after which a job that is not checkpointable is killed
    params.setdefault("timeout_min", 24 * 60 if local else 240)
    if local:
        params = {k: v for k, v in params.items() if k in ("timeout_min", "gpus_per_node", "cpus_per_task")}
    ex.update_parameters(**params)
    return ex


def launch(config: str | None, run_dir: str | Path, phase: str, n_shards: int, *, local: bool = False,
           log_dir: str | Path | None = None, slurm: dict[str, Any] | None = None, do_merge: bool = True,
           record: bool = False, log=print) -> dict[str, Any]:
    """Submit shards ``1/n … n/n`` of ``phase`` as a job array, wait for all of them, then the merge job.
    Returns the shards' summaries and the merge's. A failed shard is an error naming it and its log files."""
    if phase not in SHARDED:
        raise ValueError(f"phase {phase!r} is not sharded; accepted: {', '.join(SHARDED)}")
    if n_shards < 1:
        raise ValueError(f"--shards must be >= 1, got {n_shards}")
    run = runs.open_run(config, run_dir)  # config, splits and seeds are written once, before any shard starts
    run.splits()
    if phase == "05_mia_lira":
        mia.ensure_mask(run)  # the membership mask before any shadow trains
    logs = Path(log_dir) if log_dir else run.dir / "logs" / "submitit"
    ex = executor(logs, local=local, slurm=dict(slurm or {}))
    names = [f"{k}/{n_shards}" for k in range(1, n_shards + 1)]
    for s in names:
        shards.parse_shard(s)
    jobs = ex.map_array(work, [phase] * n_shards, [str(run.dir)] * n_shards, names)
    log(f"submitted {len(jobs)} shard job(s) of {phase} ({'local processes' if local else 'SLURM array ' + str(jobs[0].job_id).split('_')[0]}); logs in {logs}")
    results, failed = [], []
    for name, job in zip(names, jobs):
        try:
            results.append(job.result())
            log(f"shard {name} finished")
        except Exception as e:  # submitit re-raises the job's error: collect them all, name each shard and its logs
            lines = [x.strip() for x in str(e).splitlines() if "Error" in x or "error" in x] or [type(e).__name__]
            failed.append(f"shard {name} (job {job.job_id}, logs {job.paths.stderr}): {lines[-1]}")
    if failed:
        raise RuntimeError(f"{len(failed)} of {n_shards} shard(s) of {phase} failed; finished work is kept, launch again "
                           "to redo only the rest:\n" + "\n".join(failed))
    out: dict[str, Any] = {"shards": results}
    if do_merge:
        out["merge"] = ex.submit(merge, phase, str(run.dir)).result()
        log(f"merged: {out['merge']}")
    if record:
        study.run_phases(run, (phase,), log=log)
    return out

