"""What each ``tckr`` subcommand does with its parsed options (:data:`COMMANDS`; the options are in
:mod:`tckr.cli.parser`). Each imports its phase's module when it runs, so ``tckr --help`` imports no torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from tckr.cli import options
from tckr.core import paths
from tckr.core.config import load_config
from tckr.runfolder import phases


def _study(a) -> None:
    config, run_dir = options.config(a), options.run_dir(a)
    overrides = options.parse_set(a.sets) or None
    selected = _phases(a.phases, phases.PHASES) if a.phases else phases.PHASES
    if run_dir is not None:
        from tckr.runfolder import runs  # lazy: pandas; only a named run folder needs it

        if str(run_dir) == runs.LATEST:
            run_dir = runs.latest_run(_load(config).study.name if config else None)
    if config is None:
        if run_dir is None:
            raise options.UsageError("tckr study needs a config (tckr study configs/mini.yaml) or --run-dir of a run to resume")
        config = _saved_config(run_dir)
    else:
        if run_dir is None:
            _check_dataset(config, overrides)
        load_config(config, overrides)  # a mistake in the config is told before the runner (pandas, papermill) is imported
    from tckr.orchestration import study  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    study.run_study(config, run_dir, phases=selected, force=a.force, seeds=a.seeds, overrides=overrides,
                    log=lambda m: print(m, flush=True))


def _check_dataset(config: str, overrides: dict[str, Any] | None) -> None:
    """A new run's dataset that cannot be read offline is told at once: before the config's architecture check
    (which imports timm, and with it torch) and the runner. Anything else wrong with the file is left to load_config."""
    from tckr.core import registry
    from tckr.core.config import ConfigError, read_sections
    from tckr.datasets import real  # lazy: light (no torch, no pandas)

    p = Path(config) if Path(config).is_file() else paths.resolve(config)
    try:
        tree, _ = read_sections(p)
    except (ConfigError, OSError):
        return
    name = (overrides or {}).get("study.dataset") or (tree.get("study") or {}).get("dataset")
    if isinstance(name, str) and name in registry.available_datasets():
        real.check_available(name)


def _load(config: str):
    return load_config(config)


def _saved_config(run_dir: str | Path) -> str:
    from tckr.runfolder import runs  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    f = paths.resolve(run_dir) / runs.CONFIG_FILE
    if not f.is_file():
        raise runs.RunNotFoundError(f"no run folder at {f.parent} (no {runs.CONFIG_FILE}); give a config to start one")
    return str(f)


def _figures(a) -> None:
    run = options.open_run(a, new=False)
    from tckr.reporting import plots  # lazy: after the options are checked (matplotlib)
    from tckr.runfolder import figure_inputs

    which = _figure_names(a.only, plots.FIGURES) or plots.FIGURES
    figure_inputs.check(run.dir, which)
    plots.make_figures(run.dir, which, images_dir=paths.IMAGES if a.images else None)


def _figure_names(only: str | None, accepted: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--only table,roc`` -> ``("table", "roc")``; None without ``--only``."""
    if not only:
        return None
    which = tuple(w.strip() for w in only.split(","))
    bad = [w for w in which if w not in accepted]
    if bad:
        raise options.UsageError(f"unknown figure(s) {', '.join(bad)}; accepted: {', '.join(accepted)}")
    return which


def _lora(a) -> None:
    run = options.open_run(a)
    from tckr.generation import lora  # lazy: after the options are checked (torch, diffusers)

    print(lora.finetune(run, progress=not a.no_progress))
    if a.export:
        print(lora.export_adapter(run))


def _synthesis(a) -> dict:
    run = options.open_run(a)
    from tckr.generation import synthesis  # lazy: after the options are checked (torch, diffusers)

    pipe = synthesis.load_generator(run, random_weights=True) if a.random_weights else None
    summary = synthesis.generate(run, pipe, shard=a.shard, progress=not a.no_progress, batch_size=a.batch_size)
    print(summary)
    return summary


def _shadows(a) -> None:
    run = options.open_run(a)
    from tckr.privacy import mia  # lazy: after the options are checked (torch)

    done = mia.train_shadows(run, a.n_shadows, a.shard, progress=not a.no_progress)
    print(f"shadows trained or queried now: {done}")
    if a.attack:
        mia.query_targets(run, progress=not a.no_progress)
        print(mia.attack(run, n_shadows=a.n_shadows).to_string(index=False))


def _pipelines(a) -> None:
    run = options.open_run(a)
    from tckr.privacy import pipeline_attacks, pipelines  # lazy: after the options are checked (torch)

    pipelines.train_pipelines(run, a.n_pipelines, a.shard, progress=not a.no_progress)
    if a.attack:
        print(pipeline_attacks.attack_students(run, a.n_pipelines, progress=not a.no_progress).to_string(index=False))
        pipeline_attacks.pipeline_spread(run, a.n_pipelines)


def _power(a) -> None:
    run = options.open_run(a, new=False)
    from tckr.privacy import dose_response, power_analysis  # lazy: after the options are checked (torch)
    from tckr.reporting import power_figure

    if not a.propose:
        out = dose_response.run_all(run, progress=not a.no_progress)
        print(out["mde"][["attack", "test", "mde_rho", "statement"]].to_string(index=False))
        power_figure.plot_power(run.dir)
    from tckr.runfolder import artifacts  # lazy: pandas

    table, power = artifacts.read_result(run.dir, "mde.csv"), artifacts.read_result(run.dir, "power.csv")
    null = artifacts.read_optional_result(run.dir, "power_null.csv")
    proposal = power_analysis.propose(table, power, null, run.cfg.power.alpha)
    print(power_analysis.proposal_yaml(proposal, str(run.dir)), end="")


def _dp(a) -> None:
    run = options.open_run(a, new=False)
    from tckr.privacy import dp_study  # lazy: after the options are checked (torch, opacus)

    print(dp_study.run_dp_study(run, progress=not a.no_progress).to_string(index=False))


def _generator_attack(a) -> None:
    run = options.open_run(a, new=False)
    from tckr.privacy import generator_mia  # lazy: after the options are checked (torch)

    for name, table in generator_mia.run_all(run, progress=not a.no_progress).items():
        print(f"{name}:\n{table.to_string(index=False)}")


def _ledger(a) -> None:
    run = options.open_run(a, new=False)
    from tckr.privacy import ledger  # lazy: after the options are checked

    table = ledger.build(run.dir)
    print(ledger.markdown(table, headline_only=a.headline_only))


PRETRAIN_CONFIG, PRETRAIN_WORK = "configs/mini.yaml", "runs/pretrain-tiny-sd-fashion-blur8"  # tckr pretrain's defaults


def _pretrain(a) -> None:
    from tckr.generation import pretrain  # lazy, and after the checks: a usage error imports no torch
    pretrain.pretrain(config=options.config(a) or PRETRAIN_CONFIG, work=options.run_dir(a) or PRETRAIN_WORK,
                      **{k: getattr(a, k) for k in a.settings})


def _launch(a) -> options.ExitCode | None:
    from tckr.orchestration import launch  # lazy, and after the checks: a usage error imports no torch
    phases = _phases(a.phases, launch.SHARDED, "unknown or unsharded phase(s)")
    config, folder = options.config(a), options.run_dir(a)
    if folder is None:
        raise options.UsageError("tckr launch needs --run-dir (a run folder on a file system every job sees, or 'latest')")
    slurm = {"slurm_partition": a.slurm_partition, "slurm_account": a.slurm_account, "slurm_qos": a.slurm_qos,
             "gpus_per_node": a.gpus_per_task, "cpus_per_task": a.cpus_per_task, "mem_gb": a.mem_gb,
             "timeout_min": a.timeout_min, "slurm_array_parallelism": a.array_parallelism, **_slurm_extra(a.slurm_extra)}
    if a.sets:  # the settings are checked and saved in the run folder before any job starts; the jobs read them there
        config, folder = None, options.open_run(a).dir
    for phase in phases:
        try:
            launch.launch(config, folder, phase, a.shards, local=a.local, log_dir=a.log_dir, slurm=slurm,
                          do_merge=not a.no_merge, record=a.record)
        except RuntimeError as e:  # a shard or the merge failed, or no SLURM cluster: the message names the shards and logs
            if a.debug:
                raise
            print(f"tckr: error: {' '.join(str(e).split())}", file=sys.stderr)
            return options.ExitCode(options.EXIT_FAILED)
    return None


def _slurm_extra(items: list[str]) -> dict[str, Any]:
    """``["constraint=a100", "exclusive=true"]`` -> ``{"slurm_constraint": "a100", "slurm_exclusive": True}``: parameters
    of submitit's SLURM executor (sbatch's options, ``_`` for ``-``), each value read as a YAML scalar."""
    if not items:
        return {}
    import submitit  # lazy: optional dependency (submitit), imported only for cluster launches

    valid = submitit.SlurmExecutor._valid_parameters()
    out = {}
    for item in items:
        key, value = options.key_value(item, "--slurm-extra", "KEY=VALUE, e.g. --slurm-extra constraint=a100")
        key = key.removeprefix("slurm_").replace("-", "_")
        if key not in valid:
            raise options.UsageError(f"--slurm-extra {item!r}: submitit's SLURM executor has no parameter {key!r}; "
                                     f"accepted: {', '.join(sorted(valid))}")
        out[f"slurm_{key}"] = value
    return out


def _phases(text: str, accepted: tuple[str, ...], what: str = "unknown phase(s)") -> tuple[str, ...]:
    """``--phases 03_generate,00_data`` -> the named phases in study order; each must be one of ``accepted``."""
    phases = tuple(p.strip() for p in text.split(","))
    bad = [p for p in phases if p not in accepted]
    if bad:
        raise options.UsageError(f"{what} {', '.join(bad)}; accepted: {', '.join(accepted)}")
    return tuple(sorted(set(phases), key=accepted.index))


def _report(a) -> options.ExitCode | None:
    from tckr.reporting import report  # lazy, and after the checks: a usage error imports no torch
    from tckr.runfolder import runs
    folders = list(a.folders)
    if a.action == "compare":
        return _compare(a, folders)
    if a.action == "collect":
        if options.config(a) and not a.run_dir_opt:
            raise options.UsageError("tckr report collect copies a run folder: give --run-dir (a run folder or 'latest')")
        if a.run_dir_opt is None and folders:
            a.run_dir_opt = folders.pop(0)  # tckr report collect RUN DEST: the run folder first
        if a.run_dir_opt is None or len(folders) != 1:
            raise options.UsageError("tckr report collect needs --run-dir DIR (or 'latest') and one destination folder, "
                                     "e.g. tckr report collect --run-dir latest results/mini")
        source = runs.find_run(a.run_dir_opt, options.config(a))
        files = report.collect(source, folders[0])
        print(f"{len(files)} files -> {folders[0]}")
        return None
    if a.action in ("bench", "bench-check"):
        if a.run_dir_opt or options.config(a) or len(folders) > 1:
            raise options.UsageError(f"tckr report {a.action} reads one folder of benchmark results (default bench/measured)")
        folder = folders[0] if folders else "bench/measured"
        check, what, cmd = a.action == "bench-check", "benchmark table", f"bench {folder}"
        changed = report.update_bench(a.readme, folder, check=check)
        return _block_outcome(str(Path(a.readme).parent / report.BENCH_PAGE), what, cmd, changed, check)
    if a.run_dir_opt or options.config(a):
        raise options.UsageError(f"tckr report {a.action} reads result folders (results/<study>), given as arguments; "
                                 "--run-dir and --config do not apply (copy a run with tckr report collect first)")
    if not folders:
        raise options.UsageError(f"tckr report {a.action} needs one or more result folders, "
                                 f"e.g. tckr report {a.action} results/mini")
    if a.action == "figures":
        from tckr.reporting import plots  # lazy: a subcommand's module is imported when it runs (matplotlib)

        plots.result_figures(folders, a.images, _figure_names(a.only, plots.FIGURES))
        return None
    from tckr.reporting import cell_times  # lazy: pandas

    check, cmd = a.action == "check", "write " + " ".join(folders)
    changed = report.update_readme(a.readme, folders, check=check)
    notebooks = cell_times.update_notebooks(Path(a.readme).parent / "notebooks", folders[0], check=check)
    for nb in notebooks:
        print(f"{nb}: the measured cell times {'differ from' if check else 'rewritten by'} `tckr report {cmd}`",
              file=sys.stderr if check else sys.stdout)
    return _block_outcome(a.readme, "results block", cmd, changed, check) or (
        options.ExitCode(options.EXIT_FAILED) if check and notebooks else None)


def _compare(a, folders: list[str]) -> options.ExitCode | None:
    """``tckr report compare RUN REFERENCE`` (or ``--run-dir RUN REFERENCE``): the table, exit 1 when a number is
    outside the spread or missing."""
    from tckr.reporting import compare  # lazy: a subcommand's module is imported when it runs
    from tckr.runfolder import runs

    if a.run_dir_opt is not None:
        folders = [str(runs.find_run(a.run_dir_opt, options.config(a))), *folders]
    if len(folders) != 2:
        raise options.UsageError("tckr report compare needs a run (a run folder, a result folder or --run-dir) and "
                                 "the committed result folder, e.g. tckr report compare runs/<id> results/mini")
    c = compare.compare(*folders)
    print(compare.markdown(c, *folders), end="")
    return options.ExitCode(options.EXIT_FAILED) if c.failed else None


def _block_outcome(readme: str, what: str, cmd: str, changed: bool, check: bool) -> options.ExitCode | None:
    """Say what ``tckr report write|check|bench|bench-check`` did to a README block; check fails when it differs."""
    if check:
        if changed:
            print(f"{readme}: the {what} differs from `tckr report {cmd}`", file=sys.stderr)
            return options.ExitCode(options.EXIT_FAILED)
        print(f"{readme}: {what} current")
        return None
    print(f"{readme}: {what} {'rewritten' if changed else 'already current'}")
    return None


def _release(a) -> options.ExitCode | None:
    from tckr.reporting import release  # lazy, and after the checks: a usage error imports no torch
    from tckr.runfolder import runs
    run_dir = options.run_dir(a)
    if run_dir is None and options.config(a):
        raise options.UsageError("tckr release writes the release of a finished run: give --run-dir (a run folder or 'latest')")
    if run_dir is None and not a.check:
        raise options.UsageError("tckr release needs --run-dir (a finished run folder, or 'latest') to release, "
                                 "or --check to verify")
    if run_dir is not None:
        source = runs.find_run(run_dir, options.config(a))
        if not source.is_dir():
            raise runs.RunNotFoundError(f"no run folder at {source}")
        release.release(source, a.out)
    if a.check:
        problems = release.check(a.out)
        for line in problems:
            print(line, file=sys.stderr)
        print(f"release under {release._root(a.out)}: "
              + (f"{len(problems)} problem(s)" if problems else "every file matches its manifest"))
        return options.ExitCode(options.EXIT_FAILED) if problems else None
    return None


COMMANDS: dict[str, Callable[[Any], Any]] = {
    "study": _study, "figures": _figures, "lora": _lora, "synthesis": _synthesis, "shadows": _shadows,
    "pipelines": _pipelines, "power": _power, "generator-attack": _generator_attack, "dp": _dp, "ledger": _ledger,
    "report": _report,
    "release": _release, "pretrain": _pretrain, "launch": _launch,
}
