"""End-to-end tier: the whole notebook chain on configs/tiny.yaml, and the study runner's behaviour."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tckr import cli
from tckr.core import io
from tckr.orchestration import study
from tckr.privacy import ledger
from tckr.reporting import canvas, plots
from tckr.runfolder import artifacts, lock, phases, runs

FIGURE_STEMS = ["table", "cardinality", "roc", "ledger", "real_vs_synthetic", "ablation", "audit_distances", "real_samples",
                "classifier_curves"]


@pytest.mark.e2e
def test_chain_writes_notebooks_results_and_figures(tiny_chain):
    for phase in study.PHASES:
        assert (tiny_chain / "notebooks" / f"{phase}.ipynb").is_file(), phase
    phases = pd.read_csv(tiny_chain / "results" / "phases.csv")
    assert list(phases["phase"]) == list(study.PHASES) and (phases["status"] == "done").all()
    table = pd.read_csv(tiny_chain / "results" / "table.csv")
    assert {"model", "role", "cardinality", "accuracy", "auc_mia", "tpr_at_1pct", "aop"} <= set(table.columns)
    assert (table["role"] == "teacher").sum() == 1
    cfg = runs.open_run(None, tiny_chain).cfg
    students = table[table["role"] == "student"]
    assert set(cfg.synthesis.cardinalities) <= set(students["cardinality"])
    assert table["accuracy"].between(0, 100).all() and table["auc_mia"].between(0, 100).all()
    np.testing.assert_allclose(table["aop"], table["accuracy"] / (2 * np.maximum(table["auc_mia"] / 100, 0.5)) ** 2, rtol=1e-9)
    for stem in FIGURE_STEMS:
        for ext in ("pdf", "png"):
            f = tiny_chain / "figures" / f"{stem}.{ext}"
            assert f.is_file() and f.stat().st_size > 1000, f
    assert "| teacher |" in (tiny_chain / "results" / "table.md").read_text()


@pytest.mark.e2e
def test_chain_attacks_every_release_point_with_one_headline_each(tiny_chain):
    res = tiny_chain / "results"
    for name in ("mia.csv", "mia_pipeline.csv", "mia_generator.csv", "mia_synthetic.csv", "ledger.csv"):  # lopo needs >= 4 pipelines
        assert (res / name).is_file(), name
    ledger = pd.read_csv(res / "ledger.csv")
    heads = ledger[ledger["headline"]]
    assert set(heads["release"]) == {"teacher", "student", "generator", "synthetic set"}
    assert heads.groupby(["release", "cardinality", "label_mode"], dropna=False).size().max() == 1
    student = heads[(heads["release"] == "student") & (heads["cardinality"] == 0.5) & (heads["label_mode"] == "soft")]
    assert student["family"].item() == "LiRA, shadow pipelines"
    assert ledger["auc"].between(0, 1).all()
    aop = pd.read_csv(res / "aop.csv").set_index("target")
    assert aop.loc["student_synth0.5x", "shadows"] == "pipeline" and aop.loc["teacher", "shadows"] == "classifier"
    assert aop.loc["student_synth0.5x", "auc"] == pytest.approx(100 * student["auc"].item())  # aop.csv: percent


@pytest.mark.e2e
def test_rerun_skips_finished_phases(tiny_chain):
    log = []
    records = study.run_phases(runs.open_run(None, tiny_chain), log=log.append)
    assert all(r["status"] == "skipped (done)" for r in records)
    assert all("skipped" in m for m in log)


RUN_FILES = {"config.yaml", "environment.json", "seeds.json", "progress.log", lock.LOCK_FILE, "results/phases.csv"}


@pytest.mark.e2e
def test_every_file_of_the_run_is_in_the_done_record_of_the_phase_that_wrote_it(tiny_chain):
    """Done-records are derived from what each phase declares and wrote: every result and cache file of the run has
    one owner, and the owner's record lists it."""
    recorded = {}
    for phase in study.PHASES:
        rec = io.read_json(tiny_chain / "notebooks" / f".{phase}.done.json")
        assert rec["outputs"] and sorted(rec["outputs"]) == phases.owned_files(tiny_chain, phase), phase
        recorded.update(dict.fromkeys(rec["outputs"], phase))
    files = {f.relative_to(tiny_chain).as_posix() for f in tiny_chain.rglob("*") if f.is_file()}
    assert sorted(f for f in files - set(recorded) if not f.startswith("notebooks/")) == sorted(RUN_FILES & files)
    assert recorded["mia/logits/shadow_000.npy"] == "05_mia_lira"  # 06 reads the classifier shadows; 05 owns them
    assert recorded["mia/logits/pipeline_000_student_synth0.5x.npy"] == "06_shadow_pipelines"
    assert recorded["mia/generator/errors_target.npy"] == recorded["mia/synthetic/x0.5/target.npy"] == "07_generator_attacks"


def _copy_run(run_dir: Path, dest: Path) -> runs.Run:
    shutil.copytree(run_dir, dest)  # modification times kept: the copy is current without rereading
    return runs.open_run(None, dest)


@pytest.mark.e2e
def test_each_deleted_output_reruns_its_phase_and_blocks_the_next(tiny_chain, tmp_path):
    run = _copy_run(tiny_chain, tmp_path / "run")
    for phase in study.PHASES:
        owned = phases.owned_files(run.dir, phase)
        for pat in phases.PHASE[phase].outputs:
            rel = next((r for r in owned if phases.matches(pat, r)), None)
            if rel is None:  # an output this configuration does not make (released.csv, the leave-one-out table)
                continue
            aside = tmp_path / "aside"
            shutil.move(run.dir / rel, aside)
            state = study.phase_state(run, phase)
            assert not state.current and f"{rel} missing" in state.why, (phase, rel)
            if phase != study.PHASES[-1]:
                after = study.PHASES[study.PHASES.index(phase) + 1]
                with pytest.raises(study.PhaseBlocked, match=f"phase {after} cannot start: phase {phase} outputs"):
                    study.run_phases(run, (after,), force=True, log=lambda m: None)
            shutil.move(aside, run.dir / rel)
            assert study.phase_state(run, phase).current, (phase, rel)
    before = (run.dir / "results" / "mia_pipeline.csv").read_bytes()
    (run.dir / "results" / "mia_pipeline.csv").unlink()
    records = study.run_phases(run, log=lambda m: None)
    assert [r["phase"] for r in records if r["status"] == "done"] == ["06_shadow_pipelines"]
    assert (run.dir / "results" / "mia_pipeline.csv").read_bytes() == before  # the same numbers again: 08, 09 stay current


@pytest.mark.e2e
def test_a_replaced_adapter_recomputes_the_generator_attack(tiny_chain, tmp_path):
    """Another valid adapter (shadow pipeline 0's), recorded as a retrain of 02 would record it: the generator
    attack's cached errors are recomputed, not read back (they once outlived a changed adapter)."""
    run = _copy_run(tiny_chain, tmp_path / "run")
    adapter = f"lora/{artifacts.adapter_name(run.cfg)}"
    gen = run.dir / "mia" / "generator"
    old = np.load(gen / "errors_target.npy")
    shutil.copyfile(run.dir / "mia" / "pipelines" / "pipeline_000" / adapter, run.dir / adapter)
    for phase in ("02_lora_finetune", "03_generate"):  # 02 retrained it; 03's synthetic set taken as unchanged
        marker = run.dir / "notebooks" / f".{phase}.done.json"
        rec = io.read_json(marker)
        for part in ("inputs", "outputs"):
            if adapter in rec[part]:
                rec[part][adapter] = study._identity(run, adapter)
        io.write_json(marker, rec)
    log = []
    study.run_phases(run, ("07_generator_attacks",), log=log.append)
    assert f"{adapter} changed" in log[0] and "removed mia/generator" in log[0]
    new = np.load(gen / "errors_target.npy")
    assert not np.allclose(new, old) and np.allclose(new, np.load(gen / "errors_pipeline_000.npy"), rtol=1e-5, atol=0)
    assert not pd.read_csv(run.dir / "results" / "mia_generator.csv").equals(pd.read_csv(tiny_chain / "results" / "mia_generator.csv"))


def _hold_in_child(run_dir: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom tckr.runfolder import lock\nwith lock.hold(sys.argv[1]):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_on_a_locked_run_exits_2_naming_the_holder(tmp_path, capsys):
    child = _hold_in_child(tmp_path / "run")
    try:
        assert cli.main(["study", "configs/tiny.yaml", "--run-dir", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is in use by process {child.pid} " in err
        assert not (tmp_path / "run" / "config.yaml").exists()  # refused before it wrote anything
        with pytest.raises(lock.RunLocked, match=f"process {child.pid} "):
            study.run_phases(runs.open_run("configs/tiny.yaml", tmp_path / "run"), ("00_data",), log=lambda m: None)
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    child = _hold_in_child(tmp_path / "run")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    f = tmp_path / "run" / lock.LOCK_FILE
    assert f.read_text().strip() == str(child.pid)  # the dead holder's PID is still written there
    with lock.hold(tmp_path / "run"):
        assert f.read_text().strip() == str(os.getpid())
        with lock.hold(tmp_path / "run"):  # nested in one process (run_study around run_phases): the same lock
            pass
        assert f.read_text().strip() == str(os.getpid())


def test_a_study_warns_of_another_study_on_the_same_cores(tmp_path):
    child = _hold_in_child(tmp_path / "other")
    dead = _hold_in_child(tmp_path / "dead")
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / lock.LOCK_FILE).write_text("")  # a lock released normally is truncated
    try:
        assert lock.held_elsewhere(tmp_path) == [(tmp_path / "other", child.pid)]
        with lock.hold(tmp_path / "mine"):  # this process's own hold is not "elsewhere"
            assert lock.held_elsewhere(tmp_path) == [(tmp_path / "other", child.pid)]
        lines = []
        with pytest.raises(FileNotFoundError):  # a missing config stops the study before its lock and any warning
            study.run_study(tmp_path / "missing.yaml", tmp_path / "mine", log=lines.append)
        assert lines == []
        study.run_study("configs/tiny.yaml", tmp_path / "mine", phases=(), log=lines.append)
        assert any(f"{tmp_path / 'other'} is in use by process {child.pid}" in m and "num_threads=1" in m for m in lines)
        assert not any("dead" in m for m in lines)
    finally:
        child.kill()
        child.wait()


@pytest.mark.e2e
def test_figures_regenerate_from_result_files_without_training_code(tiny_chain, tmp_path):
    import shutil

    run_copy = tmp_path / "run"
    shutil.copytree(tiny_chain, run_copy, ignore=shutil.ignore_patterns("figures"))
    code = (
        "import sys; from tckr import plots; plots.make_figures(sys.argv[1], log=lambda m: None);"
        "banned = [m for m in ('tckr.classification.train', 'tckr.generation.lora', 'tckr.generation.generator', 'tckr.privacy.mia', 'diffusers', 'peft', 'timm') if m in sys.modules];"
        "assert not banned, banned"
    )
    subprocess.run([sys.executable, "-c", code, str(run_copy)], check=True, timeout=300)
    for stem in ["table", "cardinality", "roc", "real_vs_synthetic", "ablation", "audit_distances", "classifier_curves"]:
        assert (run_copy / "figures" / f"{stem}.png").is_file(), stem


@pytest.mark.e2e
def test_figures_plot_the_numbers_of_the_result_files(tiny_chain, tmp_path, monkeypatch):
    """The table and cardinality figures, read back from the matplotlib objects, against results/table.csv."""
    import shutil

    run_copy = tmp_path / "run"
    shutil.copytree(tiny_chain, run_copy, ignore=shutil.ignore_patterns("figures"))
    drawn = {}
    save = canvas.save_figure

    def keep(fig, stem):
        drawn[stem.name] = [(list(ax.lines), ax.tables) for ax in fig.axes]
        return save(fig, stem)

    monkeypatch.setattr(canvas, "save_figure", keep)
    plots.make_figures(run_copy, ("table", "cardinality"), log=lambda m: None)
    table = pd.read_csv(tiny_chain / "results" / "table.csv")
    teacher = table[table["role"] == "teacher"].iloc[0]
    students = table[table["role"] == "student"]
    if "label_mode" in students and students["label_mode"].notna().any():
        students = students[students["label_mode"] == students["label_mode"].mode().iloc[0]]
    students = students.sort_values("cardinality")
    assert len(drawn["cardinality"]) == 3
    for (lines, _), col in zip(drawn["cardinality"], ["accuracy", "auc_mia", "aop"]):
        np.testing.assert_allclose(lines[0].get_xdata(), students["cardinality"])
        np.testing.assert_allclose(lines[0].get_ydata(), students[col])
        np.testing.assert_allclose(lines[1].get_ydata(), [teacher[col]] * 2)  # the teacher's dashed line
    (_, tables), = drawn["table"]
    cells = tables[0].get_celld()
    shown = {cells[r, 0].get_text().get_text(): [cells[r, c].get_text().get_text() for c in range(1, 5)]
             for r in range(1, len(table) + 1)}
    for _, row in table.iterrows():
        assert shown[row["model"]] == ["–" if pd.isna(row[c]) else f"{row[c]:.2f}"
                                       for c in ("accuracy", "auc_mia", "tpr_at_1pct", "aop")], row["model"]


def test_failed_phase_names_the_phase_and_notebook(tmp_path):
    from tckr.core import io

    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    D = run.splits().D
    io.save_array(run.dir / "splits" / "D.npy", D[::-1].copy())  # an altered split: notebook 00 refuses it
    with pytest.raises(study.PhaseFailed) as e:
        study.run_phases(run, ("00_data",), log=lambda m: None)
    msg = str(e.value)
    assert "00_data" in msg and "CorruptFileError" in msg and str(tmp_path / "r" / "notebooks" / "00_data.ipynb") in msg
    assert pd.read_csv(tmp_path / "r" / "results" / "phases.csv")["status"].tolist() == ["failed"]
    assert not (tmp_path / "r" / "notebooks" / ".00_data.done.json").exists()


def test_phase_without_its_upstream_is_refused(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    with pytest.raises(study.PhaseBlocked, match="phase 09_figures cannot start: phase 00_data has not finished"):
        study.run_phases(run, ("09_figures",), log=lambda m: None)
    assert pd.read_csv(tmp_path / "r" / "results" / "phases.csv")["status"].tolist() == ["refused"]


def test_cli_rejects_unknown_phase(capsys):
    assert cli.main(["study", "configs/tiny.yaml", "--phases", "07_nope"]) == 2
    assert capsys.readouterr().err.startswith("tckr: error: unknown phase(s) 07_nope; accepted: 00_data,")


def test_seed_aggregate_gives_mean_and_ci(tmp_path, monkeypatch):
    tables = {0: [90.0, 80.0], 1: [92.0, 82.0], 2: [94.0, 84.0]}

    def fake_table(d, attacks=True):
        acc = tables[int(d.name[-1])]
        return pd.DataFrame({"model": ["teacher", "student_1x"], "role": ["teacher", "student"], "cardinality": [np.nan, 1.0],
                             "accuracy": acc, "auc_mia": [60.0, 55.0], "tpr_at_1pct": [2.0, 1.0], "aop": [60.0, 60.0],
                             "attack": ["lira_online"] * 2})

    monkeypatch.setattr(ledger, "study_table", fake_table)
    per_seed, out = ledger.seed_summary([tmp_path / f"seed{i}" for i in range(3)])
    assert len(per_seed) == 6 and not (tmp_path / "results").exists()  # reading writes nothing
    artifacts.write_study_table(tmp_path, out, per_seed)
    t = out.set_index("model")
    assert t.loc["teacher", "accuracy"] == pytest.approx(92.0)
    assert t.loc["teacher", "accuracy_ci"] == pytest.approx(4.303 * 2 / np.sqrt(3), rel=1e-3)
    assert "92.00 ± 4.97" in (tmp_path / "results" / "table.md").read_text()


def test_seed_aggregate_of_a_study_stopped_before_the_attacks(tmp_path):
    """tckr study --seeds 0 1 2 --phases 00_data,...,04_run_evaluate: the seeds' table is of accuracies (it raised
    "mia.csv is missing" at the end of such a study, after every seed had finished)."""
    dirs = []
    for seed, (t, s) in enumerate([(82.0, 79.0), (84.0, 80.0), (83.0, 81.0)]):
        d = tmp_path / f"seed{seed}"
        (d / "results").mkdir(parents=True)
        pd.DataFrame({"model": ["teacher", "student_synth1x"], "role": ["teacher", "student"], "cardinality": [np.nan, 1.0],
                      "label_mode": ["real", "soft"], "test_accuracy": [t, s]}).to_csv(d / "results" / "classifiers.csv",
                                                                                      index=False)
        dirs.append(d)
    per_seed, out = ledger.seed_summary(dirs)
    t = out.set_index("model")
    assert t.loc["teacher", "accuracy"] == pytest.approx(83.0) and t.loc["student_synth1x", "accuracy"] == pytest.approx(80.0)
    assert t["auc_mia"].isna().all() and len(per_seed) == 6
    (dirs[1] / "results" / "mia.csv").write_text("target,attack\n")  # only some seeds attacked: still accuracy only
    assert ledger.seed_summary(dirs)[1]["auc_mia"].isna().all()


@pytest.mark.e2e
def test_notebook_04_evaluates_released_weights_without_training(tiny_chain, tmp_path):
    import torch

    from tckr.core import io
    from tckr.core.notebook import execute_notebook
    from tckr.reporting import release

    out = tmp_path / "release"
    release.release(tiny_chain, out, log=lambda m: None)
    assert release.check(out) == []
    fresh = tmp_path / "fresh"
    execute_notebook("04_run_evaluate", fresh, {"config": "configs/tiny.yaml", "source": "released", "release_dir": str(out)})
    table = pd.read_csv(fresh / "results" / "released.csv")
    chain_rows = pd.read_csv(tiny_chain / "results" / "classifiers.csv").set_index("model")
    assert set(table["model"]) == set(chain_rows.index) and table["equal"].all()
    got = table.set_index("model")["test_accuracy"]
    assert (got.loc[chain_rows.index] == chain_rows["test_accuracy"]).all()  # the same accuracy, whatever the row order
    for f in (fresh / "classifiers").glob("*.safetensors"):  # the released weights, not retrained ones
        got_w, _ = io.load_weights(f)  # the released file's header carries the release's metadata too: compare tensors
        want_w, _ = io.load_weights(tiny_chain / "classifiers" / f.name)
        assert got_w.keys() == want_w.keys() and all(torch.equal(got_w[k], want_w[k]) for k in want_w), f.name
    assert not (fresh / "synthetic").exists() and (fresh / "figures" / "classifier_curves.png").is_file()


def test_student_gap_bench_reproduces_the_runs_own_student(tiny_chain, tmp_path):
    """bench/student_gap.py's reference recipe is the run's student recipe: on the same synthetic set it gets the
    run's own student's test accuracy, and its result file carries a benchmark record."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("student_gap", Path(__file__).resolve().parents[1] / "bench" / "student_gap.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gap.json"
    result = bench.main(["--run", str(tiny_chain), "--multiple", "0.5", "--recipes", "run", "--threads", "2", "--out", str(out)])
    clf = pd.read_csv(tiny_chain / "results" / "classifiers.csv").set_index("model")
    assert result["recipes"][0]["test_accuracy"] == pytest.approx(clf.loc["student_synth0.5x", "test_accuracy"], abs=0.01)
    assert result["teacher_test_accuracy"] == pytest.approx(clf.loc["teacher", "test_accuracy"], abs=0.01)
    assert "student_gap.py" in json.loads(out.read_text())["record"]["command"]
