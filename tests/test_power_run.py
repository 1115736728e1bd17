"""The dose-response control end to end on a tiny run with six shadow pipelines (real training, LoRA and synthesis,
at toy sizes): rho 0 gives the original students bit for bit, the near-copies replace exactly the planned rows with
images of each set's own members, and two doses run through ``tckr power`` to power.csv, mde.csv, the null, the figure
and the proposed headline. Measured: 28 s on two idle cores (the run with its 6 pipelines 13 s, `tckr power` 6 s,
the rho-0 retraining check the rest): slow."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml

from tckr import cli
from tckr.classification import train
from tckr.core import io
from tckr.generation import captions, lora, synthesis
from tckr.privacy import dose_response, mia, pipelines
from tckr.runfolder import artifacts, runs, synthetic

pytestmark = pytest.mark.slow

OVERRIDES = {"data.train_size": 10, "data.val_size": 10, "mia.population_size": 10, "mia.n_bootstrap": 10,
             "classifier.input_size": 16, "study.num_threads": 1, "train.epochs": 1,
             "mia.n_shadows": 6, "mia.n_pipelines": 6, "mia.shadow_epochs": 0,
             "synthesis.cardinalities": [1.0, 2.0], "mia.pipeline_cardinalities": [2.0],
             "synthesis.steps": 2, "lora.max_steps": 2, "lora.checkpoint_every": 1,
             "power.rhos": [0.0, 0.25], "power.strength": 0.5, "power.strengths": [0.5], "power.strength_rho": 0.25,
             "power.attacks": ["lira_online_fixed", "lira_offline_fixed", "loss", "rmia"]}
M = 2.0  # 20 synthetic images per set; rho 0.25 replaces 5 of them


@pytest.fixture(scope="module")
def powered(tmp_path_factory):
    t0 = time.perf_counter()
    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("power") / "run", overrides=OVERRIDES)
    captions.caption_run(run, progress=False)
    lora.finetune(run, progress=False)
    synthesis.generate(run, progress=False)
    train.student(run, M, train.teacher(run, progress=False), progress=False)
    pipelines.train_pipelines(run, progress=False)
    built = time.perf_counter() - t0
    made = cli.main(["power", "--run-dir", str(run.dir), "--no-progress"])
    return run, {"built": built, "power": time.perf_counter() - t0 - built, "exit": made}


def test_rho_zero_reproduces_the_original_students_bit_for_bit(powered):
    run, _ = powered
    for name in ("target", "pipeline_001"):
        sub = dose_response._sub(run, name)
        s = dose_response.dosed_set(sub, M, np.array([], dtype=np.int64), np.zeros((0, 32, 32, 3), np.uint8))
        path = run.path("check", f"{name}.safetensors")
        dose_response.train_student(sub, M, s.images, s.labels, path, {"rho": 0.0}, progress=False)
        mine, _ = io.load_weights(path)
        original, _ = io.load_weights(artifacts.weights_file(sub, "student", M, run.cfg.gkd.label_mode))
        assert mine.keys() == original.keys()
        assert all(np.array_equal(mine[k].numpy(), original[k].numpy()) for k in mine), name


def test_near_copies_replace_the_planned_rows_with_each_sets_own_members(powered):
    run, _ = powered
    plan = io.read_json(run.dir / "power" / "plan.json")
    rows = np.asarray(plan["rows"])[:5]
    assert plan["set_size"] == 20 and len(np.asarray(plan["rows"])) == 5  # round(0.25 * 20), the largest rho's
    keep = mia.ensure_mask(run, 4)
    p = mia.pool_index(run)
    for name in dose_response.set_names(4):
        sub = dose_response._sub(run, name)
        copies = io.load_array(run.dir / "power" / "nearcopies" / f"{name}_s0.5.npy")
        assert copies.shape == (5, 32, 32, 3)
        before = synthetic.load_synthetic(sub, M).images
        after = dose_response.dosed_set(sub, M, rows, copies).images
        changed = np.flatnonzero((after != before).reshape(len(after), -1).any(1))
        assert set(changed) <= set(rows) and len(changed) >= 4  # the planned rows, the same in every set
        members = sub.splits().D[dose_response.replaced_members(sub, M, rows)]
        own = p[keep[int(name[-3:])]] if name != "target" else run.splits().D
        assert np.isin(members, own).all()  # members of that set's own training half, never of the other half
        D = sub.real("D").images[dose_response.replaced_members(sub, M, rows)].astype(float)
        to_own = np.abs(copies.astype(float) - D).mean()
        to_other = np.abs(copies.astype(float) - np.roll(D, 1, axis=0)).mean()
        assert to_own < to_other  # a near-copy is nearer its own member than another set row's member


def test_two_doses_run_end_to_end_through_the_command(powered, capsys):
    run, info = powered
    assert info["exit"] == 0
    reps = pd.read_csv(run.dir / "results" / "power_replicates.csv")
    assert set(zip(reps["rho"], reps["strength"])) == {(0.0, 0.0), (0.25, 0.5)}
    assert set(reps["set"]) == {"target", *(f"pipeline_00{i}" for i in range(6))}
    assert set(reps.loc[reps["rho"] == 0.25, "n_replaced"]) == {5} and reps["auc"].notna().sum() > 0
    power = pd.read_csv(run.dir / "results" / "power.csv")
    assert set(power["n_replicates"]) == {6} and set(power["test"]) == {"auc_ci", "mann_whitney"}
    assert power["detect_rate"].between(0, 1).all() and (power["detect_lo"] <= power["detect_rate"]).all()
    mde = pd.read_csv(run.dir / "results" / "mde.csv")
    assert len(mde) == len(power[["attack", "test"]].drop_duplicates()) and mde["statement"].str.len().gt(20).all()
    assert (run.dir / "images" / "power.png").is_file()
    null = pd.read_csv(run.dir / "results" / "power_null_replicates.csv")
    pairs = {(int(a[-1]), int(b[-1])) for a, b in zip(null["set"], null["label"])}
    assert pairs == set(dose_response.null_pairs(6)) and len(pairs) == 6 * 2  # never the target's own pair
    assert set(null["n_references"]) == {2} and len(null) == len(pairs) * len(OVERRIDES["power.attacks"])
    summary = pd.read_csv(run.dir / "results" / "power_null.csv")
    assert set(summary["n_replicates"]) == {12} and summary["rejection_rate"].between(0, 1).all()
    students = sorted((run.dir / "power" / "students").rglob("*.safetensors"))
    assert len(students) == 7  # one dose with near-copies x (target + 6 pipelines); rho 0 reuses the study's
    stamp = [f.stat().st_mtime_ns for f in students]
    assert dose_response.train_doses(run, progress=False) == []  # resumed: nothing made again
    assert [f.stat().st_mtime_ns for f in students] == stamp
    capsys.readouterr()
    assert cli.main(["power", "--run-dir", str(run.dir), "--propose"]) == 0
    out = capsys.readouterr().out
    proposed = yaml.safe_load(out)
    assert "no headline is proposed" in out if proposed is None else set(proposed["mia"]) == {
        "headline_attack", "headline_test", "headline_reason"}
    print(out, power.to_string(), mde[["attack", "test", "mde_rho", "statement"]].to_string(), sep="\n")
    print(f"tiny power run: study {info['built']:.0f} s, power {info['power']:.0f} s")
