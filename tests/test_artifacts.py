"""tckr.runfolder.artifacts' readers of results and ROC files, the run-folder helpers, and the figure-input check,
on a small run folder written by hand (no phase runs)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tckr import cli
from tckr.runfolder import artifacts, figure_inputs


@pytest.fixture
def folder(tmp_path):
    """A run folder with a config, two result files, a headline and one ROC curve."""
    d = tmp_path / "run"
    (d / "results").mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"study": {"name": "tiny", "dataset": "fashion_mnist"},
                                                   "mia": {"n_shadows": 4}}))
    pd.DataFrame({"model": ["teacher", "student_x1"], "role": ["teacher", "student"], "cardinality": [np.nan, 1.0],
                  "test_accuracy": [81.5, 62.25]}).to_csv(d / "results" / "classifiers.csv", index=False)
    (d / "results" / "headline.json").write_text(json.dumps({"attack": "lira_offline_fixed"}))
    (d / "mia" / "roc").mkdir(parents=True)
    pd.DataFrame({"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.75, 1.0]}).to_csv(d / "mia" / "roc" / "teacher_lira.csv", index=False)
    return d


def test_result_readers_read_the_files_at_their_paths(folder):
    assert artifacts.result_path(folder, "classifiers.csv") == folder / "results" / "classifiers.csv"
    t = artifacts.read_result(folder, "classifiers.csv")
    assert t["model"].tolist() == ["teacher", "student_x1"] and t["test_accuracy"].tolist() == [81.5, 62.25]
    assert artifacts.read_optional_result(folder, "classifiers.csv").equals(t)
    assert artifacts.read_optional_result(folder, "mia.csv") is None
    with pytest.raises(FileNotFoundError, match=r"results/mia\.csv is missing: run the phase that writes it"):
        artifacts.read_result(folder, "mia.csv")
    assert artifacts.read_headline_record(folder)["attack"] == "lira_offline_fixed"
    (folder / "results" / "headline.json").unlink()
    assert artifacts.read_headline_record(folder) is None


def test_roc_path_and_reader(folder):
    assert artifacts.roc_path(folder, "teacher", "lira") == folder / "mia" / "roc" / "teacher_lira.csv"
    roc = artifacts.read_roc(folder, "teacher", "lira")
    assert roc["fpr"].tolist() == [0.0, 0.5, 1.0] and roc["tpr"].tolist() == [0.0, 0.75, 1.0]
    with pytest.raises(FileNotFoundError, match="student_x1_lira.csv is missing"):
        artifacts.read_roc(folder, "student_x1", "lira")


def test_run_folder_settings_and_seed_folders(folder, tmp_path):
    class Run:
        dir = folder

    assert artifacts.run_folder(Run()) == folder and artifacts.run_folder(str(folder)) == folder
    assert artifacts.settings(Run())["mia"] == {"n_shadows": 4}
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        artifacts.settings(tmp_path)
    for name in ("seed10", "seed2", "seed0", "seedling", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "seed3").write_text("a file, not a folder")
    assert [p.name for p in artifacts.seed_folders(tmp_path)] == ["seed0", "seed2", "seed10"]  # numeric order
    assert artifacts.seed_folders(folder) == []


def test_table_markdown_formats_percent_intervals_and_gaps():
    table = pd.DataFrame({"model": ["teacher", "student_x0.5"], "role": ["teacher", "student"],
                          "cardinality": [np.nan, 0.5], "accuracy": [81.456, 60.0], "accuracy_ci": [np.nan, 1.234],
                          "auc_mia": [55.0, np.nan], "tpr_at_1pct": [2.0, np.nan], "aop": [70.1, np.nan]})
    lines = artifacts.table_markdown(table).splitlines()
    assert lines[0].startswith("| model | cardinality | accuracy (%)") and len(lines) == 4
    assert lines[2] == "| teacher | real | 81.46 | 55.00 | 2.00 | 70.10 |"
    assert lines[3] == "| student_x0.5 | 0.5× | 60.00 ± 1.23 | – | – | – |"


def test_figure_inputs_cover_every_figure_and_name_the_phase_of_what_is_missing(folder):
    from tckr.reporting import plots

    assert set(figure_inputs.FIGURE_INPUTS) == set(plots.FIGURES)
    assert {f for fs in figure_inputs.FIGURE_INPUTS.values() for f in fs} <= set(figure_inputs.MADE_BY)
    missing = figure_inputs.missing_inputs(folder, plots.FIGURES)
    assert missing["table"] == ["results/mia.csv"] and missing["samples"] == ["synthetic/manifest.json"]
    assert missing["curves"] == ["classifiers/*_history.csv"]
    (folder / "classifiers").mkdir()
    (folder / "classifiers" / "teacher_history.csv").write_text("epoch,val_accuracy,train_loss\n")
    assert "curves" not in figure_inputs.missing_inputs(folder, plots.FIGURES)
    figure_inputs.check(folder, ("curves",))
    with pytest.raises(FileNotFoundError, match=r"synthetic/manifest\.json \(phase 03_generate; for samples\)"):
        figure_inputs.check(folder, ("curves", "samples"))


def test_tckr_figures_of_a_run_stopped_early_is_one_line_naming_the_phase(tmp_path, capsys):
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")  # a run stopped after 00_data: config, no results
    assert cli.main(["figures", "--run-dir", str(run.dir), "--only", "samples,table"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "max()" not in err
    assert "synthetic/manifest.json (phase 03_generate; for samples)" in err
    assert "results/classifiers.csv (phase 04_run_evaluate; for table)" in err
    assert not (run.dir / "figures").exists()


def test_seed_classifiers_joins_every_seeds_table_with_its_seed_and_names_a_missing_one(tmp_path):
    for k, acc in ((0, 80.0), (2, 82.0), (1, 81.0)):
        (tmp_path / f"seed{k}" / "results").mkdir(parents=True)
        pd.DataFrame({"model": ["teacher"], "test_accuracy": [acc]}).to_csv(
            tmp_path / f"seed{k}" / "results" / "classifiers.csv", index=False)
    t = artifacts.seed_classifiers(tmp_path)
    assert t["seed"].tolist() == [0, 1, 2] and t["test_accuracy"].tolist() == [80.0, 81.0, 82.0]
    (tmp_path / "seed1" / "results" / "classifiers.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"seed1/results/classifiers.csv is missing"):
        artifacts.seed_classifiers(tmp_path)
