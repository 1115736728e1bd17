"""tckr launch / tckr.launch: the options reach submitit's SLURM parameters; shards as separate processes through
submitit's LocalExecutor, then the merge step; the merged synthetic set equals a single-process run's."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from tckr import cli
from tckr.core import io
from tckr.generation import captions, lora, synthesis
from tckr.orchestration import launch
from tckr.runfolder import runs, synthetic


def test_unknown_phase_and_missing_cluster_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not sharded; accepted: 03_generate, 05_mia_lira"):
        launch.launch("configs/tiny.yaml", tmp_path / "run", "04_run_evaluate", 2, local=True)
    if shutil.which("sbatch") is None:
        with pytest.raises(RuntimeError, match="no SLURM cluster found.*--local"):
            launch.executor(tmp_path / "logs", local=False, slurm={})


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("tckr: error: ") and err.count("\n") == 1, err  # one line, no traceback
    return err


def test_tckr_launch_passes_its_options_to_launch(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(launch, "launch", lambda *a, **k: calls.append((a, k)) or {})
    assert cli.main(["launch", "configs/tiny.yaml", "--run-dir", "runs/r", "--phases", "05_mia_lira,03_generate",
                     "--shards", "4", "--local", "--log-dir", "L", "--no-merge", "--record", "--cpus-per-task", "2"]) == 0
    assert [a for a, _ in calls] == [("configs/tiny.yaml", "runs/r", phase, 4) for phase in ("03_generate", "05_mia_lira")]
    k = calls[0][1]
    assert (k["local"], k["log_dir"], k["do_merge"], k["record"]) == (True, "L", False, True)
    assert {n: v for n, v in k["slurm"].items() if v is not None} == {"cpus_per_task": 2}
    n = len(calls)
    for argv, said in ((["--phases", "04_run_evaluate"], "unknown or unsharded phase(s) 04_run_evaluate; accepted: "
                                                         "03_generate, 05_mia_lira"),
                       (["--phases", "03_generate", "--shard", "1/2"], "give their number with --shards N"),
                       (["--phases", "03_generate", "--run-dir", "r", "--slurm-extra", "constrain=a100"],
                        "has no parameter 'constrain'; accepted: account, additional_parameters,"),
                       (["--phases", "03_generate", "--run-dir", "r", "--slurm-extra", "constraint"], "expected KEY=VALUE")):
        argv = ["launch", *argv, "--shards", "2"] if "--run-dir" in argv else ["launch", "--run-dir", "r", *argv, "--shards", "2"]
        assert cli.main(argv) == 2, argv
        assert said in _err(capsys), argv
    assert cli.main(["launch", "configs/tiny.yaml", "--phases", "03_generate", "--shards", "2"]) == 2
    assert "tckr launch needs --run-dir" in _err(capsys) and len(calls) == n  # nothing launched
    with pytest.raises(SystemExit) as e:
        cli.main(["launch", "--run-dir", "r", "--phases", "03_generate", "--shards", "0"])
    assert e.value.code == 2 and "--shards: expected a whole number >= 1, got 0" in capsys.readouterr().err

    def failing(*a, **k):
        raise RuntimeError("1 of 2 shard(s) of 03_generate failed; finished work is kept, launch again to redo only the "
                           "rest:\nshard 2/2 (job 7_1, logs x.err): ValueError: boom")

    monkeypatch.setattr(launch, "launch", failing)
    assert cli.main(["launch", "--run-dir", "r", "--phases", "03_generate", "--shards", "2"]) == 1
    assert "redo only the rest: shard 2/2 (job 7_1, logs x.err): ValueError: boom" in _err(capsys)


class _Job:
    def __init__(self, job_id, submission):
        self.job_id, self.submission = job_id, submission
        self.paths = SimpleNamespace(stderr=f"{job_id}.err")

    def result(self):
        return {"function": self.submission.function.__name__, "args": self.submission.args}


def test_slurm_account_qos_and_extra_reach_submitits_sbatch_file(tmp_path, monkeypatch, capsys):
    """A real submitit AutoExecutor on a fake SLURM (an ``srun`` on PATH): only the submission itself is faked, so the
    options go through submitit's own parameter checks into the sbatch file it would submit."""
    import submitit

    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{__import__('os').environ['PATH']}")
    sbatch, submitted = [], []

    def submit(self, submissions):
        sbatch.append(self._make_submission_file_text("python -m submitit.core._submit", "uid"))
        submitted.extend(submissions)
        return [_Job(f"7_{i}", s) for i, s in enumerate(submissions)]

    monkeypatch.setattr(submitit.SlurmExecutor, "_internal_process_submissions", submit)
    run = SimpleNamespace(dir=tmp_path / "run", splits=lambda: None)
    monkeypatch.setattr(runs, "open_run", lambda config, run_dir: run)
    assert cli.main(["launch", "--run-dir", str(run.dir), "--phases", "03_generate", "--shards", "3",
                     "--slurm-partition", "gpu", "--slurm-account", "proj42", "--slurm-qos", "high", "--gpus-per-task", "1",
                     "--mem-gb", "64", "--timeout-min", "90", "--array-parallelism", "2", "--slurm-extra", "constraint=a100",
                     "--slurm-extra", "exclusive=true", "--slurm-extra", "additional_parameters={mail-type: END}"]) == 0
    assert [s.function.__name__ for s in submitted] == ["work"] * 3 + ["merge"]
    assert [s.args for s in submitted[:3]] == [("03_generate", str(run.dir), f"{k}/3") for k in (1, 2, 3)]
    lines = set(sbatch[0].splitlines())
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=proj42", "#SBATCH --qos=high", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --mem=64GB", "#SBATCH --time=90", "#SBATCH --constraint=a100", "#SBATCH --exclusive",
                 "#SBATCH --mail-type=END"):
        assert line in lines, (line, sbatch[0])
    assert "submitted 3 shard job(s) of 03_generate (SLURM array 7)" in capsys.readouterr().out


@pytest.mark.slow
def test_two_local_shards_then_merge_equal_one_process(tmp_path, tiny_sd_base):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "sharded", overrides={"generator.base": str(tiny_sd_base)})
    captions.caption_run(run, progress=False)
    lora.finetune(run, progress=False)
    shutil.copytree(run.dir, tmp_path / "single")

    out = launch.launch(None, run.dir, "03_generate", 2, local=True, log=lambda *_: None)
    assert [r["shard"] for r in out["shards"]] == ["1/2", "2/2"]
    n_shards = out["shards"][0]["shards_total"]
    assert sorted(r["shards_mine"] for r in out["shards"]) == [n_shards // 2, n_shards - n_shards // 2]
    assert sum(r["shards_made"] for r in out["shards"]) == n_shards  # each process made only its own shards
    assert out["merge"]["multiples"] == run.cfg.synthesis.cardinalities
    assert synthetic.is_complete(run) and synthetic.problems(run) == []

    single = runs.open_run(None, tmp_path / "single")
    synthesis.generate(single, progress=False)
    for j in range(n_shards):
        a, b = synthetic.shard_paths(run, j)[0], synthetic.shard_paths(single, j)[0]
        assert np.array_equal(io.load_array(a), io.load_array(b)), f"shard {j} differs"
    for m in run.cfg.synthesis.cardinalities:
        x, y = synthetic.load_synthetic(run, m), synthetic.load_synthetic(single, m)
        assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)
