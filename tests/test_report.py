"""tckr.report: the README's short results table and the results page's block are written from result folders, and
the committed files are checked against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_ledger import _write

from tckr import cli
from tckr.privacy import ledger
from tckr.reporting import plots, report

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, auc_hi_teacher=0.56):
    run = tmp_path / "runs" / "x"
    _write(run)
    res = run / "results"
    (run / "config.yaml").write_text("study:\n  name: mini\n  seeds: [0]\n")
    (run / "environment.json").write_text(json.dumps({"git": {"commit": "abcdef1234567890", "dirty": False},
                                                      "cpu_count": 2, "torch_threads": 2, "gpu": None}))
    pd.DataFrame([{"started": "t", "phase": "00_data", "status": "done", "seconds": 60.0, "reason": ""},
                  {"started": "t", "phase": "04_run_evaluate", "status": "failed", "seconds": 5.0, "reason": "x"},
                  {"started": "t", "phase": "04_run_evaluate", "status": "done", "seconds": 120.0, "reason": ""}]
                 ).to_csv(res / "phases.csv", index=False)
    pd.DataFrame([{"model": "teacher", "role": "teacher", "cardinality": np.nan, "label_mode": "real", "test_accuracy": 87.25},
                  {"model": "student_synth0.1x", "role": "student", "cardinality": 0.1, "label_mode": "soft",
                   "test_accuracy": 70.5}]).to_csv(res / "classifiers.csv", index=False)
    (res / "headline.json").write_text(json.dumps({"attack": "lira_online_fixed"}))
    ledger.build(run, "lira_online_fixed")
    (run / "mia" / "pipelines").mkdir(parents=True)
    (run / "mia" / "pipelines" / "stages.csv").write_text("pipeline,stage,seconds\n0,lora,3.0\n")
    (run / "mia" / "big.npy").write_bytes(b"x" * 100)
    return run


def test_collect_copies_only_the_small_result_files(tmp_path):
    run = _run(tmp_path)
    dest = tmp_path / "results" / "mini"
    files = report.collect(run, dest)
    names = {f.relative_to(dest).as_posix() for f in files}
    assert {"config.yaml", "environment.json", "results/ledger.csv", "results/phases.csv",
            "results/pipeline_stages.csv"} <= names
    assert not any("npy" in n for n in names)
    assert (dest / "results" / "classifiers.csv").read_bytes() == (run / "results" / "classifiers.csv").read_bytes()
    with pytest.raises(report.ReportError, match="not a run folder"):
        report.collect(tmp_path / "nothing", dest)


def test_block_states_what_the_files_hold(tmp_path):
    run = _run(tmp_path)
    wt = report.wall_time(run)
    assert wt["total"] == 180.0 and wt["04_run_evaluate"] == 120.0  # the last finished attempt, failures not counted
    text = report.study_block(run)
    assert "Wall time **3.0 min**" in text and "`abcdef1234`" in text
    assert "04_run_evaluate, 05_mia_lira" not in text
    assert ("not finished: 01_captions, 02_lora_finetune, 03_generate, 05_mia_lira, 06_shadow_pipelines, "
            "07_generator_attacks, 08_audit_ledger, 09_figures") in text
    assert "| teacher | teacher | – | real | 87.25 | 57.0 [56.0, 58.0] | 2.0 | classifier |" in text
    # the student's headline is the pipeline-shadow row (0.61), not the classifier-shadow one
    assert "| student_synth0.1x | student | 0.1× \\|D\\| | soft | 70.50 | 61.0 [60.0, 62.0] | 2.0 | pipeline |" in text
    # every sentence about leakage is read off the numbers: the generator's AUC interval lies above 50%, so it leaks
    # measurably, its size beside the teacher's; 100 non-members leave its TPR@1% out, and the file has no upper bound
    assert ("- generator leaks measurably (AUC interval above 50%): AUC 70.0% [69.0, 71.0], ≤ –, "
            "TPR@1% – (needs ≥ 2,000 non-members; have 100) (teacher: AUC 57.0% [56.0, 58.0], ≤ –).") in text
    assert "detected" not in text and "no leakage" not in text


def test_leakage_sentences_for_a_leaking_and_a_null_row():
    base = {"cardinality": np.nan, "label_mode": "", "n_nonmembers": 4000, "tpr_at_1pct": 0.012, "tpr_at_1pct_lo": 0.008,
            "tpr_at_1pct_hi": 0.016, "tpr_at_1pct_ub": 0.015, "eps_delta": 1e-5}
    rows = pd.DataFrame([
        {**base, "release": "teacher", "auc": 0.599, "auc_lo": 0.587, "auc_hi": 0.611, "auc_ub": 0.609, "eps_lb": 0.41},
        {**base, "release": "student", "cardinality": 0.1, "auc": 0.512, "auc_lo": 0.504, "auc_hi": 0.526, "auc_ub": 0.524,
         "eps_lb": 0.0, "lopo_auc": 0.506, "lopo_auc_lo": 0.5, "lopo_auc_hi": 0.513, "lopo_n_pipelines": 8,
         "lopo_share_above_50": 0.75},
        {**base, "release": "generator", "auc": 0.495, "auc_lo": 0.48, "auc_hi": 0.51, "auc_ub": 0.507, "eps_lb": 0.0}])
    pooled = {**rows.iloc[1].to_dict(), "cardinality": 0.2, "auc_lo": 0.49, "lopo_auc_lo": 0.503, "lopo_share_above_50": 1.0}
    rows = pd.concat([rows, pd.DataFrame([pooled])], ignore_index=True)
    rows = rows.assign(leaks=ledger.leaks_measurably(rows), rule=ledger.leak_rule(rows))
    assert list(rows["leaks"]) == [True, False, False, True]  # a student by its pooled interval, not its own
    teacher, student, generator, student2 = report.leakage_sentences(rows)
    assert teacher == ("teacher leaks measurably (AUC interval above 50%): AUC 59.9% [58.7, 61.1], ≤ 60.9%, "
                       "TPR@1% 1.2% [0.8, 1.6], ≤ 1.5%, ε ≥ 0.41 (δ = 1e-05).")
    # its own interval lies above 50%, the pooled one (the pre-registered reading for a student) does not
    assert student == ("student 0.1×: pooled AUC interval includes 50%; AUC 51.2% [50.4, 52.6], ≤ 52.4%, "
                       "TPR@1% 1.2% [0.8, 1.6], ≤ 1.5%, ε ≥ 0.00 (δ = 1e-05), leave-one-pipeline-out AUC 50.6% "
                       "[50.0, 51.3] (6 of 8 pipelines above 50%).")
    assert student2.startswith("student 0.2× leaks measurably (pooled AUC interval above 50%): AUC 51.2% [49.0, 52.6]")
    assert "leave-one-pipeline-out AUC 50.6% [50.3, 51.3] (8 of 8 pipelines above 50%) (teacher: AUC 59.9%" in student2
    # a null reads as its bound: "AUC ≤ 50.7%", never "not detected"
    assert generator == ("generator: AUC interval includes 50%; AUC 49.5% [48.0, 51.0], ≤ 50.7%, "
                         "TPR@1% 1.2% [0.8, 1.6], ≤ 1.5%, ε ≥ 0.00 (δ = 1e-05).")


def test_old_result_files_without_the_bound_columns_still_give_a_block():
    folder = ROOT / "results" / "mini-earlier-base"  # read only: written before the bounds, epsilon and pooled columns existed
    assert "auc_ub" not in pd.read_csv(folder / "results" / "ledger.csv")
    text = report.study_block(folder)
    assert "| teacher | – | LiRA, classifier shadows | **lira_online_fixed** | 59.9 [58.7, 61.1], ≤ – |" in text
    # the leave-one-pipeline-out AUCs come from the folder's mia_pipeline_lopo.csv
    lopo = pd.read_csv(folder / "results" / "mia_pipeline_lopo.csv")
    mean = lopo[(lopo["cardinality"] == 0.1) & (lopo["attack"] == "lira_online_fixed")]["auc"].mean()
    assert f"leave-one-pipeline-out AUC {100 * mean:.1f}% [" in text
    assert "teacher leaks measurably" in text and "detected" not in text


def test_block_shows_the_canaries_of_the_headline_attacks_apart(tmp_path):
    run = _run(tmp_path)
    before = report.study_block(run)
    assert "Mislabeled canaries" not in before and report.canary_rows(run).empty
    t = pd.read_csv(run / "results" / "ledger.csv")
    can = t[t["release"].isin(["teacher", "student"])].assign(subset="canaries", headline=False, auc=0.91, auc_lo=0.9,
                                                               auc_hi=0.92, n_members=100, n_nonmembers=100)
    pd.concat([t, can]).to_csv(run / "results" / "ledger.csv", index=False)
    rows = report.canary_rows(run)
    # one canary row per headline attack (the teacher's lira_online_fixed, the student's pipeline row), no other variant
    assert sorted(zip(rows["release"], rows["family"], rows["attack"])) == [
        ("student", "LiRA, shadow pipelines", "lira_online_fixed"), ("teacher", "LiRA, classifier shadows", "lira_online_fixed")]
    text = report.study_block(run)
    assert "Mislabeled canaries (`mia.canaries`: 200 examples of P" in text
    assert "| teacher | – | LiRA, classifier shadows | lira_online_fixed | 91.0 [90.0, 92.0], ≤ – |" in text
    assert text.count("| release | cardinality |") == 2  # the ledger's table and the canaries', no empty one
    # the canaries never change the headline or the sentences about it
    assert text.split("Mislabeled canaries")[0].rstrip() == before.rstrip()


def test_report_reads_a_log_of_the_former_phase_list():
    """Runs made before 05's later attacks became phases 06-08 logged 00_data ... 05_mia_lira, 06_figures: finished."""
    from tckr.runfolder import phases

    assert phases.phase_list(set(phases.FORMER_PHASES)) == phases.FORMER_PHASES
    assert phases.phase_list({"00_data", "04_run_evaluate"}) == phases.PHASES


def _pages(tmp_path):
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    page.parent.mkdir(exist_ok=True)
    readme.write_text(f"# T\n\nbefore\n\n{report.FRONT_BEGIN}\nOLD-FRONT\n{report.FRONT_END}\n\nafter\n")
    page.write_text(f"# Results\n\n{report.BEGIN}\nOLD-BLOCK\n{report.END}\n\nend\n")
    return readme, page


def test_readme_and_results_page_blocks_are_replaced_and_checked(tmp_path):
    run = _run(tmp_path)
    readme, page = _pages(tmp_path)
    assert report.update_readme(readme, [run], check=True)
    assert "OLD-BLOCK" in page.read_text() and "OLD-FRONT" in readme.read_text()  # check writes nothing
    assert report.update_readme(readme, [run])
    text, full = readme.read_text(), page.read_text()
    assert "OLD-FRONT" not in text and text.startswith("# T\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "OLD-BLOCK" not in full and full.endswith(f"{report.END}\n\nend\n") and "### mini (`" in full
    # the front page: the teacher's accuracy and headline attack, read as the sentences read them, linked to the page
    assert "| `x` | teacher | 87.25 (1 run) | lira_online_fixed AUC 57.0% [56.0, 58.0], ≤ – | **leaks measurably** |" in text
    assert "(docs/results.md)" in text and "### mini" not in text
    assert not report.update_readme(readme, [run], check=True)
    assert cli.main(["report", "check", str(run), "--readme", str(readme)]) == 0
    readme.write_text(text.replace("87.25", "88.00"))
    assert cli.main(["report", "check", str(run), "--readme", str(readme)]) == 1
    readme.write_text(text)
    page.write_text(full.replace("87.25", "88.00"))
    assert cli.main(["report", "check", str(run), "--readme", str(readme)]) == 1
    readme.write_text("# no markers\n")
    assert cli.main(["report", "write", str(run), "--readme", str(readme)]) == 2
    assert "88.00" in page.read_text()  # nothing written while a file lacks its markers


def test_front_table_takes_accuracy_over_the_seeds_of_the_same_config(tmp_path):
    run = _run(tmp_path)
    seeds = tmp_path / "runs" / "seeds"
    for seed, (t, s) in enumerate([(80.0, 60.0), (82.0, 61.0), (84.0, 65.0)]):
        _seed_run(seeds, seed, t, s)
    table = report.front_table([run, seeds])  # both are config `mini`
    assert "| `x` | teacher | 82.00 ± 4.97 (3 seeds) |" in table
    assert "| `x` | student_synth0.1x | 62.00 ± 6.57 (3 seeds) | lira_online_fixed AUC 61.0% [60.0, 62.0], ≤ – |" in table
    # a later folder of the same config is an earlier version of the study: on the results page, not the front page
    older = tmp_path / "older"
    import shutil

    shutil.copytree(run, older)
    assert report.front_table([run, older]) == report.front_table([run])


def test_front_table_leaves_seeds_named_for_another_folder_to_that_folder(tmp_path):
    """``earlier-seeds`` (config `mini`, as the run) are the seeds of the folder ``earlier``, an earlier version of the
    study: the current run's accuracy is its own, not theirs."""
    import shutil

    run = _run(tmp_path)
    shutil.copytree(run, tmp_path / "earlier")
    for seed, (t, s) in enumerate([(80.0, 60.0), (82.0, 61.0), (84.0, 65.0)]):
        _seed_run(tmp_path / "earlier-seeds", seed, t, s)
    table = report.front_table([run, tmp_path / "earlier", tmp_path / "earlier-seeds"])
    assert "| `x` | teacher | 87.25 (1 run) |" in table and "seeds)" not in table


def test_committed_readme_matches_the_committed_result_files(monkeypatch):
    """The README's short table and the results page's block are what `tckr report write` makes of the committed
    result folders (the command the README's block names)."""
    text = (ROOT / "README.md").read_text()
    assert report.FRONT_BEGIN in text and report.BEGIN in (ROOT / report.RESULTS_PAGE).read_text()
    cmd = text.split(report.FRONT_BEGIN, 1)[1].split("`tckr report write ", 1)[1].split("`", 1)[0]
    assert f"`tckr report write {cmd}`" in (ROOT / report.RESULTS_PAGE).read_text()  # one command writes both
    monkeypatch.chdir(ROOT)  # the block names the folders as the command was given them, relative to the repository
    folders = [Path(f) for f in cmd.split()]
    assert not report.update_readme(ROOT / "README.md", folders, check=True), (
        "README.md's table or docs/results.md's block differs from the committed result files: run tckr report write " + cmd)


def _seed_run(root: Path, seed: int, teacher: float, student: float) -> None:
    d = root / f"seed{seed}"
    (d / "results").mkdir(parents=True)
    (d / "config.yaml").write_text("study:\n  name: mini\n  seeds: [0, 1, 2]\n")
    (d / "environment.json").write_text(json.dumps({"git": {"commit": "0123456789abcdef"}}))
    pd.DataFrame([{"started": "t", "phase": p, "status": "done", "seconds": 60.0, "reason": ""}
                  for p in ("00_data", "04_run_evaluate")]).to_csv(d / "results" / "phases.csv", index=False)
    pd.DataFrame([{"model": "teacher", "role": "teacher", "cardinality": np.nan, "label_mode": "real", "test_accuracy": teacher},
                  {"model": "student_synth0.1x", "role": "student", "cardinality": 0.1, "label_mode": "soft",
                   "test_accuracy": student}]).to_csv(d / "results" / "classifiers.csv", index=False)


def test_several_seeds_are_collected_and_aggregated(tmp_path):
    run = tmp_path / "runs" / "seeds"
    for seed, (t, s) in enumerate([(80.0, 60.0), (82.0, 61.0), (84.0, 65.0)]):
        _seed_run(run, seed, t, s)
    (run / "seed1" / "mia").mkdir()
    (run / "seed1" / "mia" / "big.npy").write_bytes(b"x")
    dest = tmp_path / "results" / "mini-seeds"
    files = {f.relative_to(dest).as_posix() for f in report.collect(run, dest)}
    assert "seed2/results/classifiers.csv" in files and not any("npy" in f for f in files)
    text = report.study_block(dest)
    # mean 82.00, half-width t(0.975, 2) * 2 / sqrt(3) = 4.97
    assert "| teacher | teacher | – | real | 82.00 ± 4.97 | 3 | 80.00 | 82.00 | 84.00 |" in text
    assert "| student_synth0.1x | student | 0.1× \\|D\\| | soft | 62.00 ± 6.57 | 3 | 60.00 | 61.00 | 65.00 |" in text
    assert "seed 0 2.0 min (00_data–04_run_evaluate)" in text
    with pytest.raises(report.ReportError, match="no seed<k>"):
        report.seeds_block(tmp_path)
    # the accuracy-against-cardinality figure over the seeds is drawn from the collected files and linked
    images = tmp_path / "images"
    assert "![mini-seeds" not in report.study_block(dest, images=images)
    out = plots.result_figures([dest], images, log=lambda *_: None)
    assert [p.name for p in out[dest.as_posix()]] == ["seeds_cardinality.png"]
    assert (images / "mini-seeds" / "seeds_cardinality.png").read_bytes()[:4] == b"\x89PNG"
    assert ("![mini-seeds: seeds_cardinality](images/mini-seeds/seeds_cardinality.png)"
            in report.study_block(dest, images=images))


def test_figures_are_redrawn_from_a_result_folder_and_linked(tmp_path):
    run = _run(tmp_path)
    (run / "figures").mkdir()
    (run / "figures" / "real_vs_synthetic.png").write_bytes(b"\x89PNG drawn from the run's shards")
    dest = tmp_path / "results" / "mini"
    report.collect(run, dest)
    assert (dest / "images" / "real_vs_synthetic.png").is_file()
    images = tmp_path / "images"
    out = plots.result_figures([dest], images, which=("ledger",), log=lambda *_: None)
    names = sorted(p.name for p in out[dest.as_posix()])
    assert names == ["ledger.png", "real_vs_synthetic.png"]
    assert (images / "mini" / "ledger.png").read_bytes()[:4] == b"\x89PNG"
    assert "![mini: ledger](images/mini/ledger.png)" in report.study_block(dest, images=images)
    assert "![mini" not in report.study_block(dest, images=tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="not a result folder"):
        plots.result_figures([tmp_path / "nothing"], images)


def test_control_table_sets_each_null_beside_the_control(tmp_path):
    study = _run(tmp_path / "a")
    control = tmp_path / "b" / "runs" / "leaky"
    control.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(study, control)
    t = pd.read_csv(study / "results" / "ledger.csv")
    t["auc_lo"] = 0.49  # every AUC interval of the study reaches 50%; the control's lie above it
    t.to_csv(study / "results" / "ledger.csv", index=False)
    table = report.control_table([study, control])
    teacher = next(line for line in table.splitlines() if line.startswith("| teacher |"))
    assert teacher == ("| teacher | LiRA, classifier shadows | lira_online_fixed AUC 57.0% [49.0, 58.0], ≤ –, TPR@1% – "
                       "(needs ≥ 2,000 non-members; have 100) | lira_online_fixed AUC 57.0% [56.0, 58.0], ≤ –, TPR@1% – "
                       "(needs ≥ 2,000 non-members; have 100) **leaks measurably** |")
    assert "detected" not in table
    assert "| student | LiRA, shadow pipelines |" in table and "| student | LiRA, classifier shadows |" in table
    text = report.block([study, control], images=tmp_path)
    assert "### Each attack beside its positive control" in text
    assert "beside its positive control" not in report.block([study], images=tmp_path)


def test_bench_record_names_the_command_and_the_table_is_written_and_checked(tmp_path):
    """A benchmark's record carries its command (script relative to the repository), commit and summary; the
    README's benchmark table is written from the records and `check` fails once a result changes."""
    rec = report.bench_record("3.0 images/s", argv=[str(ROOT / "bench" / "bench_streaming.py"), "--images", "10", "--out", "a b"])
    assert rec["command"] == "python bench/bench_streaming.py --images 10 --out 'a b'"
    assert rec["summary"] == "3.0 images/s" and rec["machine"].endswith("CPU cores") and len(rec["commit"]) >= 7
    folder = tmp_path / "measured"
    folder.mkdir()
    with pytest.raises(report.ReportError, match="no benchmark result"):
        report.bench_table(folder)
    (folder / "b.json").write_text(json.dumps({"x": 1, "record": {**rec, "summary": "ratio 0.9 | goal"}}))
    (folder / "a.json").write_text(json.dumps({"x": 2}))
    with pytest.raises(report.ReportError, match=r"a.json has no record"):
        report.bench_table(folder)
    (folder / "a.json").write_text(json.dumps({"x": 2, "record": {**rec, "summary": "first"}}))
    table = report.bench_table(folder)
    rows = table.splitlines()
    assert rows[2].startswith("| `a` | first |") and rows[3].startswith("| `b` | ratio 0.9 \\| goal |")
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(f"# x\n{report.BENCH_BEGIN}\nold\n{report.BENCH_END}\nafter\n")
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 1
    assert "old" in page.read_text()
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    text = page.read_text()
    assert table in text and text.endswith(f"{report.BENCH_END}\nafter\n")
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 0
    (folder / "a.json").write_text(json.dumps({"x": 3, "record": {**rec, "summary": "second"}}))
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 1


def test_committed_benchmark_table_matches_the_committed_results(monkeypatch):
    """The benchmarks page's table is what `tckr report bench` makes of the committed bench results."""
    text = (ROOT / report.BENCH_PAGE).read_text()
    assert report.BENCH_BEGIN in text
    folder = text.split(report.BENCH_BEGIN, 1)[1].split("`tckr report bench ", 1)[1].split("`", 1)[0]
    monkeypatch.chdir(ROOT)
    assert not report.update_bench(ROOT / "README.md", folder, check=True), (
        "docs/benchmarks.md's table differs from the committed results: run tckr report bench " + folder)


def test_tckr_report_bench_writes_and_checks_the_table(tmp_path):
    from tckr import cli

    folder = tmp_path / "measured"
    folder.mkdir()
    (folder / "x.json").write_text(json.dumps({"record": report.bench_record("one", argv=["bench/x.py"])}))
    readme, page = tmp_path / "R.md", tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(f"{report.BENCH_BEGIN}\n{report.BENCH_END}\n")
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 1
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    assert "| `x` | one | `python bench/x.py` |" in page.read_text()
    # a path outside the repository is not shown as an instruction: --out is the committed file
    (folder / "x.json").write_text(json.dumps({"record": {**report.bench_record("one", argv=["bench/x.py"]),
                                                          "command": "python bench/x.py --run /m/a/b/run --out /m/x.json"}}))
    assert "`python bench/x.py --run …/b/run --out " + (folder / "x.json").as_posix() + "`" in report.bench_table(folder)
    (folder / "x.json").write_text(json.dumps({"record": report.bench_record("one", argv=["bench/x.py"])}))
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 0
    assert cli.main(["report", "bench", str(folder), str(folder), "--readme", str(readme)]) == 2


def test_speed_row_is_written_from_the_before_and_after_rooflines(tmp_path):
    """With roofline_before.json and roofline.json in the benchmark folder, `tckr report bench` also writes the
    README's speed row: each stage both time, before and after, with its share of the peak and its speed-up; the
    pipeline's side-by-side sentence when pipeline_speedup.json is there. Rooflines of other settings are refused."""
    from tckr import cli
    from tckr.reporting import speed_report

    folder = tmp_path / "measured"
    folder.mkdir()
    rec = report.bench_record("r", argv=["bench/roofline.py"])

    def roofline(commit, lora_s, frac, threads=2):
        return {"config": "configs/mini.yaml", "threads": threads, "processes": 1, "dtype": "float32", "base": "b",
                "peak": {"matmul": {"gflops": 184.0}}, "record": {**rec, "commit": commit},
                "stages": [{"stage": "LoRA step", "median_s": lora_s, "fraction_of_peak": frac},
                           {"stage": "LiRA scoring", "median_s": 0.003, "fraction_of_peak": None}]}

    (folder / "roofline.json").write_text(json.dumps(roofline("bbbbbbb", 0.05, 0.6)))
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(f"{report.BENCH_BEGIN}\n{report.BENCH_END}\n")
    readme.write_text("# R\n")
    assert not speed_report.has_speed(folder)  # one roofline alone: the README is not touched
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0 and readme.read_text() == "# R\n"
    (folder / "roofline_before.json").write_text(json.dumps(roofline("aaaaaaa", 0.1, 0.3)))
    with pytest.raises(report.ReportError, match="no speed block"):
        report.update_bench(readme, folder)
    readme.write_text(f"# R\n{speed_report.SPEED_BEGIN}\n{speed_report.SPEED_END}\nend\n")
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "| LoRA step | 100 ms, 30% | 50 ms, 60% | 2.00× |" in text and "| LiRA scoring | 3 ms, – | 3 ms, – | 1.00× |" in text
    assert "(aaaaaaa)" in text and "(bbbbbbb)" in text and text.endswith(f"{speed_report.SPEED_END}\nend\n")
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 0
    (folder / "pipeline_speedup.json").write_text(json.dumps({
        "config": "configs/mini.yaml", "threads": 2, "before_commit": "aaaaaaa", "record": {**rec, "commit": "bbbbbbb"},
        "speedups": [{"stage": "total (one pipeline)", "before_s": 250.0, "after_s": 125.0, "speedup": 2.0}],
        "files": {"identical": ["x", "y"], "different": ["z"]}}))
    assert cli.main(["report", "bench-check", str(folder), "--readme", str(readme)]) == 1
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    assert "250 s → 125 s (2.00×); 2 of 3 of its files identical" in readme.read_text()
    p = json.loads((folder / "pipeline_speedup.json").read_text())
    (folder / "pipeline_speedup.json").write_text(json.dumps({**p, "rounds": 2, "total_ratio": {
        "per_round": [1.8, 2.2], "geometric_mean": 1.99, "ci_low": 0.5, "ci_high": 7.9}}))
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    assert ("bbbbbbb, 2 pairs run in alternating order: median 250 s → 125 s (2.00×), per round 1.80×, 2.20×, geometric mean 1.99× "
            "(95% interval 0.50–7.90); 2 of 3 of its files identical") in readme.read_text()
    lora = [{"contrast": "lora", "cardinality": c, "seeds": [0, 1], "reference": ref, "changed": new,
             "reference_mean": sum(ref) / 2, "changed_mean": sum(new) / 2, "mean_difference": d, "ci_low": d - 1, "ci_high": d + 1}
            for c, ref, new, d in (("0.1x", [20.0, 22.0], [12.0, 14.0], -8.0), ("mean", [20.0, 22.0], [12.0, 14.0], -8.0))]
    (folder / "recipe_stem2.json").write_text(json.dumps({"changes": {"classifier.stem_stride": 2}, "contrasts": lora,
                                                                "record": rec}))
    (folder / "classifier_step.json").write_text(json.dumps({"variants": [{"variant": "stem stride 2", "speedup": 2.0}],
                                                                   "record": rec}))
    assert cli.main(["report", "bench", str(folder), "--readme", str(readme)]) == 0
    assert ("With `classifier.stem_stride=2` a classifier's training step runs 2.00× faster (`classifier_step.json`), but "
            "what the LoRA adds (the LoRA student's lead") in readme.read_text()
    assert "over seeds 0, 1) narrows: 0.1× |D|" in readme.read_text()
    assert ": 0.1× |D| +21.0 → +13.0; averaged over the cardinalities -8.0 [-9.0, -7.0], per seed -8.0, -8.0 (`recipe_stem2.json`)." \
        in readme.read_text()
    wide = [{**c, "ci_high": 0.5} for c in lora]  # the same fall, its interval reaching no change
    (folder / "recipe_stem2.json").write_text(json.dumps({"changes": {"classifier.stem_stride": 2}, "contrasts": wide,
                                                                "record": rec}))
    assert "over seeds 0, 1) narrows on average, by an interval that reaches no change: 0.1× |D|" \
        in speed_report.recipe_sentence(folder)
    (folder / "roofline_before.json").write_text(json.dumps(roofline("aaaaaaa", 0.1, 0.3, threads=1)))
    with pytest.raises(speed_report.SpeedError, match="other settings"):
        speed_report.speed_rows(folder)
