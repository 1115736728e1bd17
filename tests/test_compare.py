"""``tckr report compare``: a run's headline numbers beside a committed result folder, judged against the seed
spread (results/mini-seeds) or the reference row's own interval."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tckr import cli
from tckr.core import paths
from tckr.reporting import compare

MINI = paths.ROOT / "results" / "mini"


def _run_copy(tmp_path, name: str = "run"):
    """A reader's run: a copy of results/mini's result files (no seeds folder beside it)."""
    run = tmp_path / name
    shutil.copytree(MINI / "results", run / "results")
    shutil.copyfile(MINI / "environment.json", run / "environment.json")
    return run


def _set_accuracy(run, model: str, delta: float) -> float:
    f = run / "results" / "classifiers.csv"
    t = pd.read_csv(f)
    t.loc[t["model"] == model, "test_accuracy"] += delta
    t.to_csv(f, index=False)
    return float(t.loc[t["model"] == model, "test_accuracy"].iloc[0])


def _verdicts(c: compare.Comparison) -> dict[str, str]:
    return dict(zip(c.rows["number"], c.rows["verdict"]))


def test_committed_folder_beside_itself_is_identical(capsys):
    assert cli.main(["report", "compare", str(MINI), str(MINI)]) == 0
    out = capsys.readouterr().out
    c = compare.compare(MINI, MINI)
    assert c.seeds == paths.ROOT / "results" / "mini-seeds"
    n_models = len(pd.read_csv(MINI / "results" / "classifiers.csv"))
    assert len(c.rows) > n_models  # accuracies and the ledger's headline AUC / TPR rows
    assert set(c.rows["verdict"]) == {"identical"} and (c.rows["difference"] == 0).all()
    assert "teacher: test accuracy" in out and "teacher: AUC (rmia)" in out
    assert f"{len(c.rows)} identical (of {len(c.rows)} numbers)" in out
    assert "generator: TPR@1% FPR" not in out  # left out for too few non-members: not a number to compare
    assert "CPU model: same" in out
    old = paths.ROOT / "results" / "mini-earlier-base"
    assert cli.main(["report", "compare", str(old), str(old)]) == 0
    assert "CPU model: not recorded" in capsys.readouterr().out  # its environment.json predates the CPU record


def test_accuracy_far_outside_the_seed_spread_fails(tmp_path, capsys):
    run = _run_copy(tmp_path)
    moved = _set_accuracy(run, "teacher", 10.0)  # the teacher's sd over results/mini-seeds is about 1.3
    assert cli.main(["report", "compare", str(run), str(MINI)]) == 1
    out = capsys.readouterr().out
    v = _verdicts(compare.compare(run, MINI))
    assert v.pop("teacher: test accuracy") == "outside"
    assert set(v.values()) == {"identical"}
    assert f"| teacher: test accuracy | {moved:.2f} | 83.11 | +10.00 | sd " in out


def test_accuracy_moved_a_little_is_within_the_seed_spread(tmp_path):
    run = _run_copy(tmp_path)
    _set_accuracy(run, "teacher", 0.3)
    c = compare.compare(run, MINI)
    row = c.rows.set_index("number").loc["teacher: test accuracy"]
    assert row["verdict"] == "within the seed spread" and row["difference"] == pytest.approx(0.3)
    assert row["spread"].endswith("over 3 seeds") and not c.failed
    assert cli.main(["report", "compare", str(run), str(MINI)]) == 0


def test_attack_numbers_are_judged_by_the_reference_interval(tmp_path):
    run = _run_copy(tmp_path)
    f = run / "results" / "ledger.csv"
    t = pd.read_csv(f)
    head = t["headline"] & (t["target"] == "teacher")
    lo, hi = float(t.loc[head, "auc_lo"].iloc[0]), float(t.loc[head, "auc_hi"].iloc[0])
    t.loc[head, "auc"] = (lo + hi) / 2 + 1e-4
    t.loc[t["headline"] & (t["target"] == "synthetic_x0.1"), "tpr_at_1pct"] = 0.05  # its interval ends at 1.5%
    t.to_csv(f, index=False)
    v = _verdicts(compare.compare(run, MINI))
    assert v["teacher: AUC (rmia)"] == "within the interval"
    assert v["synthetic_x0.1: TPR@1% FPR (syn_lira_online_fixed)"] == "outside"
    assert v["teacher: test accuracy"] == "identical"


def test_without_seeds_or_interval_only_identical_passes(tmp_path):
    ref = _run_copy(tmp_path, "mini")  # no mini-seeds beside it, and accuracies carry no interval
    run = _run_copy(tmp_path, "reader")
    _set_accuracy(run, "teacher", 0.01)
    c = compare.compare(run, ref)
    assert c.seeds is None
    row = c.rows.set_index("number").loc["teacher: test accuracy"]
    assert (row["spread"], row["verdict"]) == ("none recorded", "outside") and c.failed


def test_missing_ledger_rows_fail_and_environment_is_compared(tmp_path, capsys):
    run = _run_copy(tmp_path)
    (run / "results" / "ledger.csv").unlink()
    env = json.loads((MINI / "environment.json").read_text())
    env["cpu"] = {"model": "Some CPU", "flags": ["sse2", "avx2"]}
    env["packages"]["torch"] = "9.9.9"
    (run / "environment.json").write_text(json.dumps(env))
    ref = _run_copy(tmp_path, "ref")
    env["cpu"] = {"model": "Other CPU", "flags": ["sse2", "avx512f"]}
    env["packages"]["torch"] = "2.14.1"
    (ref / "environment.json").write_text(json.dumps(env))
    c = compare.compare(run, ref)
    assert set(c.rows.loc[~c.rows["number"].str.endswith("test accuracy"), "verdict"]) == {"missing"}
    assert any("ledger.csv is missing (08_audit_ledger" in n for n in c.notes)
    assert c.environment == ["CPU model: different (run: Some CPU; reference: Other CPU)",
                             "CPU flags: different (only the run's: avx2; only the reference's: avx512f)",
                             "packages: different (torch 9.9.9 vs 2.14.1)"]
    assert cli.main(["report", "compare", str(run), str(ref)]) == 1


def test_run_dir_latest_is_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    run = _run_copy(tmp_path / "runs", "mini-20261206-100000")
    (run / "config.yaml").write_text("study: {name: mini}\n")
    _set_accuracy(run, "teacher", 10.0)
    assert cli.main(["report", "compare", "--run-dir", "latest", str(MINI)]) == 1
    assert f"`{run.as_posix()}` beside" in capsys.readouterr().out


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
    assert cli.main(["report", "compare", str(tmp_path / "nowhere"), str(MINI)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty" / "results").mkdir(parents=True)
    assert cli.main(["report", "compare", str(tmp_path / "empty"), str(MINI)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tckr: error: ") and "classifiers.csv is missing" in err and err.count("\n") == 1
    assert cli.main(["report", "compare", str(MINI)]) == 2
    assert "needs a run" in capsys.readouterr().err
    assert cli.main(["report", "compare", str(paths.ROOT / "results" / "mini-seeds"), str(MINI)]) == 2
    assert "compare one seed's folder" in capsys.readouterr().err
