"""The tckr command line: one parser for every subcommand, --set validated like YAML, one-line errors (exit 2)."""

import tomllib
from pathlib import Path

import pytest
import yaml

from tckr import cli
from tckr.cli.options import UsageError
from tckr.core import paths
from tckr.core.config import ConfigError, load_config
from tckr.runfolder import runs


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("tckr: error: ") and err.count("\n") == 1, err  # one line, no traceback
    return err


def test_set_values_are_yaml_scalars_and_5e_3_is_a_float(tmp_path):
    assert cli.parse_set(["train.epochs=3", "train.lr=5e-3", "train.augmix=false", "study.seeds=[0, 1]"]) == \
        {"train.epochs": 3, "train.lr": "5e-3", "train.augmix": False, "study.seeds": [0, 1]}
    cfg = load_config("configs/tiny.yaml", cli.parse_set(["train.lr=5e-3", "lora.learning_rate=1E-4"]))
    assert cfg.train.lr == 0.005 and cfg.lora.learning_rate == 0.0001
    f = tmp_path / "c.yaml"  # YAML 1.1 reads 5e-3 (no dot) as a string: accepted wherever a float is expected
    f.write_text(Path("configs/tiny.yaml").read_text().replace("train:\n", "train:\n  lr: 5e-3\n", 1))
    assert load_config(f).train.lr == 0.005
    for bad in ("train.epochs", "epochs=3", "=3", "train.epochs=[1"):
        with pytest.raises(UsageError, match="--set"):
            cli.parse_set([bad])


def test_unknown_key_and_bad_value_are_one_line_exit_2(capsys):
    assert cli.main(["study", "configs/tiny.yaml", "--set", "train.epoch=3"]) == 2
    err = _err(capsys)
    assert "unknown key(s) train.epoch (did you mean 'epochs'?)" in err and "accepted keys in train: epochs, batch_size" in err
    assert "--set 'train.epoch=3'" in err and "configs/tiny.yaml" not in err  # the mistake is on the command line
    assert cli.main(["lora", "--run-dir", "runs/r", "--set", "train.epochs=0"]) == 2
    assert "--set 'train.epochs=0': train.epochs: 0 is not accepted; accepted: >= 1" in _err(capsys)
    assert cli.main(["study", "--config", "configs/tiny.yaml", "--set", "study.device=gpu"]) == 2
    assert "study.device: 'gpu' is not accepted; accepted: 'auto', 'cpu', 'cuda', 'cuda:N'" in _err(capsys)
    assert cli.main(["study", "configs/tiny.yaml", "--set", "train.epochs=many"]) == 2
    assert "train.epochs: expected an integer, got 'many'" in _err(capsys)
    assert cli.main(["study", "configs/tiny.yaml", "--set", "study.dataset=mnist"]) == 2
    assert "unknown dataset 'mnist'" in _err(capsys)
    assert cli.main(["study", "configs/nope.yaml"]) == 2
    assert "no config file at configs/nope.yaml" in _err(capsys)
    for device in ("cuda:1", "mps", "cpu"):
        assert load_config("configs/tiny.yaml", {"study.device": device}).study.device == device
    with pytest.raises(UsageError):  # --debug: the traceback
        cli.main(["study", "configs/tiny.yaml", "--set", "train.epoch=3", "--debug"])
    with pytest.raises(ConfigError):
        cli.main(["study", "configs/tiny.yaml", "--set", "study.device=gpu", "--debug"])


def test_missing_run_latest_and_shards_are_usage_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    assert cli.main(["lora", "--run-dir", str(tmp_path / "nope")]) == 2
    assert f"no run folder at {tmp_path / 'nope'}" in _err(capsys)
    assert cli.main(["figures", "--run-dir", "latest"]) == 2
    assert "run_dir='latest': no run folder under" in _err(capsys)
    assert cli.main(["figures"]) == 2
    assert "tckr figures needs --run-dir" in _err(capsys)
    assert cli.main(["ledger", "--run-dir", "x", "--shard", "1/2"]) == 2
    assert "does not split its work" in _err(capsys)
    assert cli.main(["shadows", "--run-dir", "x", "--shard", "3/2"]) == 2
    assert "--shard: shard must look like 'k/n'" in _err(capsys)
    with pytest.raises(SystemExit) as e:
        cli.main(["shadows", "--no-such-option"])
    assert e.value.code == 2


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, name, result=None):
        def f(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return result
        return f


def test_subcommands_pass_the_common_options_on(monkeypatch, capsys):
    from tckr.generation import pretrain, synthesis
    from tckr.orchestration import study
    from tckr.privacy import mia, pipelines

    rec = _Recorder()
    monkeypatch.setattr(runs, "open_run", rec("open_run", "RUN"))
    monkeypatch.setattr(mia, "train_shadows", rec("train_shadows", []))
    monkeypatch.setattr(pipelines, "train_pipelines", rec("train_pipelines", []))
    monkeypatch.setattr(synthesis, "generate", rec("generate", {"shards_made": 1}))
    monkeypatch.setattr(study, "run_study", rec("run_study"))
    monkeypatch.setattr(pretrain, "pretrain", rec("pretrain"))
    assert cli.main(["shadows", "--run-dir", "runs/r", "--shard", "2/4", "--set", "mia.n_shadows=8"]) == 0
    assert rec.calls[-2] == ("open_run", (None, "runs/r"), {"overrides": {"mia.n_shadows": 8}})
    assert rec.calls[-1] == ("train_shadows", ("RUN", None, "2/4"), {"progress": True})
    assert cli.main(["shadows", "--run-dir", "runs/r", "--shard", "1/2", "--n-shadows", "4"]) == 0
    assert rec.calls[-1] == ("train_shadows", ("RUN", 4, "1/2"), {"progress": True})
    assert cli.main(["pipelines", "--config", "configs/tiny.yaml", "--run-dir", "runs/r", "--shard", "1/2", "--no-progress"]) == 0
    assert rec.calls[-2][1] == ("configs/tiny.yaml", "runs/r") and rec.calls[-1] == ("train_pipelines", ("RUN", None, "1/2"), {"progress": False})
    assert cli.invoke(["synthesis", "--run-dir", "runs/r", "--shard", "1/3"]) == (0, {"shards_made": 1})
    assert rec.calls[-1][2]["shard"] == "1/3"
    assert cli.main(["study", "configs/tiny.yaml", "--seeds", "1", "2", "--set", "train.epochs=2", "--phases", "03_generate,00_data"]) == 0
    name, args, kwargs = rec.calls[-1]
    assert args == ("configs/tiny.yaml", None) and kwargs["seeds"] == [1, 2] and kwargs["overrides"] == {"train.epochs": 2}
    assert kwargs["phases"] == ("00_data", "03_generate")
    assert cli.main(["pretrain", "--config", "configs/tiny.yaml", "--run-dir", "runs/w", "--steps", "3", "--lr", "5e-4"]) == 0
    name, args, kwargs = rec.calls[-1]
    assert name == "pretrain" and args == () and (kwargs["config"], kwargs["work"]) == ("configs/tiny.yaml", "runs/w")
    assert (kwargs["steps"], kwargs["lr"], kwargs["out"], kwargs["vae_steps"]) == (3, 5e-4, "models/tiny-sd-fashion-blur8", 300)
    assert cli.main(["pretrain"]) == 0  # the defaults: the mini config's public partition, the committed model's folder
    assert (rec.calls[-1][2]["config"], rec.calls[-1][2]["work"]) == ("configs/mini.yaml", "runs/pretrain-tiny-sd-fashion-blur8")
    assert cli.main(["pretrain", "--set", "train.epochs=2"]) == 2
    assert "--set does not apply" in _err(capsys)
    assert cli.main(["lora", "configs/tiny.yaml", "runs/r", "--config", "configs/mini.yaml"]) == 2
    assert "two configs given" in _err(capsys)


def test_phase_errors_exit_1_and_blocked_exit_2(monkeypatch, capsys):
    from tckr.orchestration import study

    def failing(*a, **k):
        raise study.PhaseFailed("phase 03_generate failed after 1.0 s: ValueError: x\nexecuted notebook: runs/r/notebooks/03.ipynb")

    monkeypatch.setattr(study, "run_study", failing)
    assert cli.main(["study", "configs/tiny.yaml"]) == 1
    assert "ValueError: x executed notebook: runs/r/notebooks/03.ipynb" in _err(capsys)

    def blocked(*a, **k):
        raise study.PhaseBlocked("phase 06_figures cannot start: phase 00_data has not finished")

    monkeypatch.setattr(study, "run_study", blocked)
    assert cli.main(["study", "configs/tiny.yaml"]) == 2
    assert "cannot start" in _err(capsys)


def test_latest_is_the_newest_run_of_the_config_name(tmp_path, monkeypatch):
    def fake_run(folder, name, created):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.yaml").write_text(yaml.safe_dump({"study": {"name": name}}))
        (tmp_path / folder / "environment.json").write_text(f'{{"created": "{created}"}}')

    fake_run("mini-1", "mini", "2026-01-01T10:00:00")
    fake_run("mini-2", "mini", "2026-01-02T10:00:00")
    fake_run("leaky-1", "mini-leaky", "2026-01-03T10:00:00")
    (tmp_path / "not-a-run").mkdir()
    assert runs.latest_run("mini", tmp_path) == tmp_path / "mini-2"
    assert runs.latest_run(None, tmp_path) == tmp_path / "leaky-1"
    with pytest.raises(runs.RunNotFoundError, match="no run folder of study.name 'tiny' under"):
        runs.latest_run("tiny", tmp_path)
    monkeypatch.setattr(paths, "RUNS", tmp_path)
    assert runs.find_run("latest", "configs/mini-leaky.yaml") == tmp_path / "leaky-1"  # study.name of that config
    assert runs.find_run("latest") == tmp_path / "leaky-1" and runs.find_run("runs/x") == paths.ROOT / "runs" / "x"


def test_a_run_opened_with_overrides_keeps_its_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "RUNS", tmp_path)
    folder = tmp_path / "tiny-a"  # a run folder as open_run leaves it (without its data checks, which load the dataset)
    folder.mkdir()
    (folder / "config.yaml").write_text(load_config("configs/tiny.yaml").to_yaml())
    (folder / "environment.json").write_text('{"created": "2026-01-01T10:00:00"}')
    made = runs.open_run("configs/tiny.yaml", folder)
    assert runs.open_run(None, "latest").dir == made.dir  # config=None: the run's own config
    assert runs.open_run("configs/tiny.yaml", "latest", overrides={"train.epochs": made.cfg.train.epochs}).dir == made.dir
    assert cli.main(["lora", "--run-dir", "latest", "--set", "train.epochs=9"]) == 2
    assert f"train.epochs: {made.cfg.train.epochs} -> 9" in _err(capsys)


def test_console_script_and_dependencies_are_declared():
    meta = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"] == {"tckr": "tckr.cli:main"}
    declared = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in meta["dependencies"]}
    pinned = {line.split("==")[0].strip().lower() for line in (paths.ROOT / "requirements.txt").read_text().splitlines()
              if "==" in line and not line.startswith("#")}
    assert "scipy" in pinned
    dev = {d.split(">")[0].split("=")[0].strip().lower() for d in tomllib.loads((paths.ROOT / "pyproject.toml").read_text())
           ["project"]["optional-dependencies"]["dev"]}
    assert declared == pinned - dev and dev <= pinned  # every pin declared once: a runtime dependency or a test tool


def test_report_subcommand_collects_writes_and_checks(tmp_path, monkeypatch, capsys):
    from tckr.reporting import report

    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    run = tmp_path / "runs" / "mini-a"
    (run / "results").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"study": {"name": "mini"}}))
    (run / "environment.json").write_text('{"created": "2026-01-01T10:00:00"}')
    (run / "results" / "classifiers.csv").write_text("model,test_accuracy\nteacher,87.25\n")
    dest = tmp_path / "results" / "mini"
    assert cli.main(["report", "collect", "--run-dir", "latest", str(dest)]) == 0  # latest: the newest run
    assert (dest / "results" / "classifiers.csv").read_text() == "model,test_accuracy\nteacher,87.25\n"
    assert (dest / "config.yaml").is_file() and "files ->" in capsys.readouterr().out
    monkeypatch.setattr(report, "block", lambda folders, images: f"{report.BEGIN}\nBLOCK of {len(folders)}\n{report.END}")
    monkeypatch.setattr(report, "front_block", lambda folders: f"{report.FRONT_BEGIN}\nFRONT of {len(folders)}\n{report.FRONT_END}")
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    readme.write_text(f"# T\n{report.FRONT_BEGIN}\nOLD\n{report.FRONT_END}\nafter\n")
    page.write_text(f"# R\n{report.BEGIN}\nOLD\n{report.END}\nafter\n")
    assert cli.main(["report", "check", str(dest), "--readme", str(readme)]) == 1  # differs, nothing written
    assert "OLD" in readme.read_text() and "OLD" in page.read_text() and "differs" in capsys.readouterr().err
    assert cli.main(["report", "write", str(dest), str(dest), "--readme", str(readme)]) == 0
    assert readme.read_text() == f"# T\n{report.FRONT_BEGIN}\nFRONT of 2\n{report.FRONT_END}\nafter\n"
    assert page.read_text() == f"# R\n{report.BEGIN}\nBLOCK of 2\n{report.END}\nafter\n"
    assert cli.main(["report", "check", str(dest), str(dest), "--readme", str(readme)]) == 0
    drawn = []
    from tckr.reporting import plots

    monkeypatch.setattr(plots, "result_figures", lambda folders, images, which: drawn.append((folders, images, which)))
    assert cli.main(["report", "figures", str(dest), "--images", str(tmp_path / "img")]) == 0
    assert cli.main(["report", "figures", str(dest), str(dest), "--only", "roc,table"]) == 0
    assert drawn == [([str(dest)], str(tmp_path / "img"), None), ([str(dest), str(dest)], "images", ("roc", "table"))]
    capsys.readouterr()
    for argv, said in ((["report", "write"], "needs one or more result folders"),
                       (["report", "collect", str(dest)], "needs --run-dir DIR"),
                       (["report", "check", str(dest), "--run-dir", str(run)], "--run-dir and --config do not apply"),
                       (["report", "check", str(dest), "--set", "train.epochs=2"], "--set does not apply"),
                       (["report", "collect", "--run-dir", str(tmp_path / "nope"), str(dest)], "is not a run folder"),
                       (["report", "figures", str(dest), "--only", "roc,nope"], "unknown figure(s) nope; accepted: table,")):
        assert cli.main(argv) == 2, argv
        assert said in _err(capsys), argv
    readme.write_text("# no markers\n")
    assert cli.main(["report", "write", str(dest), "--readme", str(readme)]) == 2
    assert "README.md has no front-page results block" in _err(capsys)


def test_release_subcommand_releases_a_run_and_checks(tmp_path, monkeypatch, capsys):
    from tckr.reporting import release

    rec = _Recorder()
    monkeypatch.setattr(paths, "RUNS", tmp_path / "runs")
    run = tmp_path / "runs" / "mini-a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"study": {"name": "mini"}}))
    (run / "environment.json").write_text('{"created": "2026-01-01T10:00:00"}')
    monkeypatch.setattr(release, "release", rec("release", {}))
    problems: list[str] = []
    monkeypatch.setattr(release, "check", lambda out=None: rec.calls.append(("check", (out,), {})) or problems)
    assert cli.main(["release", "--run-dir", "latest", "--out", str(tmp_path / "o")]) == 0
    assert rec.calls == [("release", (run, str(tmp_path / "o")), {})]
    assert cli.main(["release", "--check", "--out", "o"]) == 0 and rec.calls[-1] == ("check", ("o",), {})
    problems.append("trained_mbnv3/x.safetensors: sha256 differs")
    assert cli.main(["release", "--check"]) == 1
    assert "sha256 differs" in capsys.readouterr().err
    assert cli.main(["release", str(run), "--out", "o2", "--check"]) == 1  # the positional run folder
    assert rec.calls[-2:] == [("release", (run, "o2"), {}), ("check", ("o2",), {})]
    capsys.readouterr()
    for argv, said in ((["release"], "needs --run-dir"), (["release", "--run-dir", str(tmp_path / "nope")], "no run folder at"),
                       (["release", "--config", "configs/mini.yaml"], "give --run-dir"),
                       (["release", "--run-dir", str(run), "--shard", "1/2"], "does not split its work")):
        n = len(rec.calls)
        assert cli.main(argv) == 2, argv
        assert said in _err(capsys) and len(rec.calls) == n, argv  # nothing released or checked


def test_pretrain_help_lists_every_setting_of_pretrain(capsys):
    import inspect

    from tckr.generation import pretrain

    with pytest.raises(SystemExit) as e:
        cli.main(["pretrain", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    settings = [k for k in inspect.signature(pretrain.pretrain).parameters if k not in ("config", "work")]
    assert len(settings) == 19 and not [k for k in settings if f"--{k.replace('_', '-')} " not in out]
    assert "--steps STEPS UNet + text encoder training steps (default 12000)" in out
    assert "--run-dir: the working folder of checkpoints, logs and caches (default runs/pretrain-tiny-sd-fashion-blur8)" in out


def test_python_m_tckr_cli_is_the_command_and_its_help_imports_no_torch():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "tckr.cli", "launch", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("usage: tckr launch") and "--slurm-account" in res.stdout
    code = ("import sys\nfrom tckr.cli import main\ntry:\n    main(['pretrain', '--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_tckr_is_the_one_entry_point():
    """No module keeps its own parser or __main__ block, and no document names the old per-module form (``python -m``
    on a tckr module other than tckr.cli)."""
    src = paths.ROOT / "src" / "tckr"
    for f in src.rglob("*.py"):
        text = f.read_text()
        assert f.parent.name == "cli" or ("__name__ == \"__main__\"" not in text and "import argparse" not in text), f
    old_form = "python -m " + "tckr."  # split so that this file does not name it
    docs = [paths.ROOT / "README.md", paths.ROOT / "Makefile"]
    for pattern in ("docs/*.md", "*/README.md", "models/*/README.md", "src/**/*.py", "bench/*.py", "tests/*.py", "notebooks/*.ipynb",
                    "configs/**/*.yaml"):
        docs += paths.ROOT.glob(pattern)
    named = [f"{f.relative_to(paths.ROOT)}: {line.strip()[:80]}" for f in docs for line in f.read_text().splitlines()
             if old_form in line.replace(old_form + "cli", "")]
    assert not named, named


def test_a_mistyped_subcommand_gets_the_closest_and_version_is_the_package_s(capsys):
    import importlib.metadata as md

    assert cli.main(["stduy", "configs/tiny.yaml"]) == 2
    assert _err(capsys) == ("tckr: error: unknown command 'stduy' (did you mean 'study'?); commands: study, figures, lora, "
                            "synthesis, shadows, pipelines, power, generator-attack, dp, ledger, report, release, pretrain, launch "
                            "(tckr --help)\n")
    assert cli.main(["--debug", "xyzzy"]) == 2
    assert "unknown command 'xyzzy'; commands: study," in _err(capsys)
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"tckr {md.version('tckr')}\n"


def test_user_errors_are_told_without_importing_torch_or_the_phase_modules():
    """The error path looks the error classes up only in modules already imported: a mistyped option imports none
    of the phases (importing them took 5-7 s per mistake). Timings are not asserted; what is imported is."""
    import subprocess
    import sys

    code = ("import sys\nfrom tckr.cli import main\n"
            "argv = [['shadows', '--shard', '0/4'], ['study', 'configs/nope.yaml'], ['study', 'configs/tiny.yaml', '--set', "
            "'train.epoch=3'], ['study', 'configs/tiny.yaml', '--phases', '99_x'], ['stduy']]\n"
            "assert [main(a) for a in argv] == [2] * len(argv)\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'tckr.reporting.release', 'tckr.orchestration.study') if m in sys.modules)\n"
            "assert not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("tckr: error: ") == 5 and "--shard: shard must look like 'k/n'" in res.stderr


def test_every_error_class_the_cli_tells_in_one_line_exists():
    import importlib

    from tckr.cli import parser

    for module, name in parser.USER_ERRORS + parser.FAILURES:
        assert issubclass(getattr(importlib.import_module(module), name), Exception), (module, name)
    from tckr.orchestration.study import PhaseBlocked, PhaseFailed
    from tckr.reporting.release import ReleaseError

    assert parser._exit_status(ReleaseError("x")) == 2 and parser._exit_status(PhaseBlocked("x")) == 2
    assert parser._exit_status(PhaseFailed("x")) == 1 and parser._exit_status(KeyError("x")) is None


def test_an_offline_unreachable_dataset_is_told_before_torch_and_leaves_no_run_folder(tmp_path):
    """HF offline mode on and cifar10 nowhere local: `tckr study configs/paper/cifar10.yaml` is one line, exit 2,
    before the config's architecture check (timm, torch) or the runner is imported, and no run folder is made."""
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom tckr.cli import main\n"
            "assert main(['study', 'configs/paper/cifar10.yaml']) == 2\n"
            "heavy = sorted(m for m in ('torch', 'timm', 'tckr.orchestration.study') if m in sys.modules)\n"
            "assert not heavy, heavy")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TCKR_DATA_DIR": str(tmp_path / "data"),
           "HF_HOME": str(tmp_path / "hf"), "TCKR_RUNS": str(tmp_path / "runs")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("tckr: error: ") == 1 and "'cifar10' (train) is not reachable" in res.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_each_subcommand_lists_only_the_shared_options_it_accepts_and_refuses_the_others(capsys):
    """--shard and --set show in a subcommand's help only where it takes them; where hidden, giving one is refused
    in a sentence saying why (exit 2), before anything heavy is imported."""
    from tckr.cli import commands, options, parser

    subs = next(a for a in parser.parser()._actions if a.dest == "command").choices
    assert set(subs) == set(commands.COMMANDS)
    for name, sub in subs.items():
        text = sub.format_help()
        assert ("--shard k/n" in text) == (name in options.SHARDED), name
        assert ("--set section.key=value" in text) == (name not in options.READ_ONLY), name
        assert "--config" in text and "--run-dir" in text and "--debug" in text, name
        if name not in options.SHARDED:
            extra = {"launch": ["--phases", "05_mia_lira", "--shards", "2"], "report": ["check"]}.get(name, [])
            assert cli.main([name, *extra, "--run-dir", "runs/none", "--shard", "1/2"]) == 2, name
            assert "--shard" in _err(capsys), name
        if name in options.READ_ONLY:
            extra = {"report": ["check"]}.get(name, [])
            assert cli.main([name, *extra, "--run-dir", "runs/none", "--set", "train.epochs=2"]) == 2, name
            assert "--set does not apply" in _err(capsys), name
