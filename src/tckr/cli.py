"""``tckr``: one command line for the whole study and each resumable phase.

    tckr study CONFIG [--run-dir DIR] [--phases ...] [--seeds ...] [--set section.key=value ...]
    tckr lora --run-dir DIR            tckr synthesis --run-dir DIR --shard 2/4
    tckr shadows --run-dir DIR --shard 1/8 [--attack]      tckr figures --run-dir latest
    tckr report collect --run-dir DIR results/mini         tckr report check results/mini
    tckr release --run-dir DIR [--out .]                    tckr release --check

Every subcommand takes the same options: ``--config`` (a study YAML), ``--run-dir`` (a run folder, or ``latest``
for the newest run of the config), ``--shard k/n`` (1-based; subcommands that do not split their work refuse
n > 1), ``--set section.key=value`` (repeatable; checked exactly like the YAML keys, the value read as a YAML
scalar) and ``--debug``. Exit codes: 0 done; 1 a phase failed while running (the message names its executed
notebook); 2 a usage error: a bad option, config key or value, an unknown dataset, a missing run folder or file,
a phase refused because an upstream phase has not run, a data leak, a damaged file. Errors are one line
``tckr: error: ...``; ``--debug`` shows the traceback. ``python -m tckr.<module>`` runs the same code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from tckr.core import paths
from tckr.core.config import ConfigError, load_config
from tckr.core.shards import parse_shard

EXIT_FAILED, EXIT_USAGE = 1, 2


class ExitCode(int):
    """A subcommand's exit status other than 0 that is not an error (a check that found differences: 1)."""


class UsageError(ValueError):
    """A mistake on the command line (a malformed ``--set``, an option the subcommand does not take)."""


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=3", "train.lr=5e-3"]`` -> ``{"train.epochs": 3, "train.lr": "5e-3"}``: each value read as
    a YAML scalar (the config's validation turns number-like strings into floats where a float is expected)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key:
            raise UsageError(f"--set {item!r}: expected section.key=value, e.g. --set train.epochs=3")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise UsageError(f"--set {item!r}: the value is not a YAML scalar ({' '.join(str(e).split())})") from None
    return out


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--config", dest="config_opt", metavar="CONFIG", help="study config YAML (default: the run folder's own)")
    g.add_argument("--run-dir", dest="run_dir_opt", metavar="DIR", help="run folder, or 'latest' (the newest run of the config)")
    g.add_argument("--shard", metavar="k/n", help="do share k of n of the work (1-based, tckr.shards)")
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="section.key=value",
                   help="override one config key (repeatable), validated like the YAML")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _config(a) -> str | None:
    pos = getattr(a, "config", None)
    if pos and a.config_opt and pos != a.config_opt:
        raise UsageError(f"two configs given ({pos} and --config {a.config_opt}); give one")
    return a.config_opt or pos


def _run_dir(a) -> str | None:
    pos = getattr(a, "run_dir", None)
    if pos and a.run_dir_opt and pos != a.run_dir_opt:
        raise UsageError(f"two run folders given ({pos} and --run-dir {a.run_dir_opt}); give one")
    return a.run_dir_opt or pos


def _unsharded(a) -> None:
    if parse_shard(a.shard)[1] > 1:
        raise UsageError(f"tckr {a.command} does not split its work; --shard applies to synthesis, shadows and pipelines")


def _open(a, *, new: bool = True):
    """The run the options name: ``--run-dir`` (existing, or new when ``--config`` is given) or a new run."""
    from tckr.runfolder import runs  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    config, run_dir = _config(a), _run_dir(a)
    if run_dir is None and not new:
        raise UsageError(f"tckr {a.command} needs --run-dir (a finished run folder, or 'latest')")
    if config is None and run_dir is None:
        raise UsageError(f"tckr {a.command} needs --run-dir (a run folder, or 'latest') or --config (a new run)")
    return runs.open_run(config, run_dir, overrides=parse_set(a.sets) or None)


# --------------------------------------------------------------------------- subcommands


def _study(a) -> None:
    from tckr.orchestration import study
    from tckr.runfolder import runs  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    config, run_dir = _config(a), _run_dir(a)
    if run_dir is not None and str(run_dir) == runs.LATEST:
        run_dir = runs.latest_run(_load(config).study.name if config else None)
    if config is None:
        if run_dir is None:
            raise UsageError("tckr study needs a config (tckr study configs/mini.yaml) or --run-dir of a run to resume")
        config = _saved_config(run_dir)
    phases = study.PHASES
    if a.phases:
        phases = tuple(p.strip() for p in a.phases.split(","))
        bad = [p for p in phases if p not in study.PHASES]
        if bad:
            raise UsageError(f"unknown phase(s) {', '.join(bad)}; accepted: {', '.join(study.PHASES)}")
        phases = tuple(sorted(set(phases), key=study.PHASES.index))
    study.run_study(config, run_dir, phases=phases, force=a.force, seeds=a.seeds, overrides=parse_set(a.sets) or None,
                    log=lambda m: print(m, flush=True))


def _load(config: str):
    return load_config(config)


def _saved_config(run_dir: str | Path) -> str:
    from tckr.core import paths  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    from tckr.runfolder import runs

    f = paths.resolve(run_dir) / runs.CONFIG_FILE
    if not f.is_file():
        raise runs.RunNotFoundError(f"no run folder at {f.parent} (no {runs.CONFIG_FILE}); give a config to start one")
    return str(f)


def _figures(a) -> None:
    from tckr.reporting import plots  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    _no_set(a)
    run = _open(a, new=False)
    which = tuple(a.only.split(",")) if a.only else plots.FIGURES
    bad = [w for w in which if w not in plots.FIGURES]
    if bad:
        raise UsageError(f"unknown figure(s) {', '.join(bad)}; accepted: {', '.join(plots.FIGURES)}")
    plots.make_figures(run.dir, which, images_dir=paths.IMAGES if a.images else None)


def _no_set(a) -> None:
    if a.sets:
        raise UsageError(f"tckr {a.command} reads a finished run; --set does not apply (its settings are the run's)")


def _lora(a) -> None:
    from tckr.generation import lora  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    run = _open(a)
    print(lora.finetune(run, progress=not a.no_progress))
    if a.export:
        print(lora.export_adapter(run))


def _synthesis(a) -> dict:
    from tckr.generation import synthesis  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    run = _open(a)
    pipe = synthesis.load_generator(run, random_weights=True) if a.random_weights else None
    summary = synthesis.generate(run, pipe, shard=a.shard, progress=not a.no_progress, batch_size=a.batch_size)
    print(summary)
    return summary


def _shadows(a) -> None:
    from tckr.privacy import mia  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    run = _open(a)
    done = mia.train_shadows(run, a.n_shadows, a.shard, progress=not a.no_progress)
    print(f"shadows trained or queried now: {done}")
    if a.attack:
        mia.query_targets(run, progress=not a.no_progress)
        print(mia.attack(run, n_shadows=a.n_shadows).to_string(index=False))


def _pipelines(a) -> None:
    from tckr.privacy import pipeline_attacks, pipelines  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    run = _open(a)
    pipelines.train_pipelines(run, a.n_pipelines, a.shard, progress=not a.no_progress)
    if a.attack:
        print(pipeline_attacks.attack_students(run, a.n_pipelines, progress=not a.no_progress).to_string(index=False))
        pipeline_attacks.pipeline_spread(run, a.n_pipelines)


def _generator_attack(a) -> None:
    from tckr.privacy import generator_mia  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    run = _open(a, new=False)
    for name, table in generator_mia.run_all(run, progress=not a.no_progress).items():
        print(f"{name}:\n{table.to_string(index=False)}")


def _ledger(a) -> None:
    from tckr.privacy import ledger  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    _no_set(a)
    run = _open(a, new=False)
    table = ledger.build(run.dir)
    print(ledger.markdown(table, headline_only=a.headline_only))


def _pretrain(a) -> None:
    from tckr.generation import pretrain  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    _unsharded(a)
    if a.sets:
        raise UsageError("tckr pretrain takes its settings as options (tckr pretrain --help); --set does not apply")
    argv = list(a.rest)
    if _config(a):
        argv += ["--config", _config(a)]
    if _run_dir(a):
        argv += ["--work", _run_dir(a)]
    pretrain.main(argv)


def _report(a) -> ExitCode | None:
    from tckr.reporting import report  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    from tckr.runfolder import runs

    _unsharded(a)
    _no_set(a)
    folders = list(a.folders)
    if a.action == "collect":
        if _config(a) and not a.run_dir_opt:
            raise UsageError("tckr report collect copies a run folder: give --run-dir (a run folder or 'latest')")
        if a.run_dir_opt is None and folders:
            a.run_dir_opt = folders.pop(0)  # python -m tckr.report collect RUN DEST
        if a.run_dir_opt is None or len(folders) != 1:
            raise UsageError("tckr report collect needs --run-dir DIR (or 'latest') and one destination folder, "
                             "e.g. tckr report collect --run-dir latest results/mini")
        source = runs.find_run(a.run_dir_opt, _config(a))
        files = report.collect(source, folders[0])
        print(f"{len(files)} files -> {folders[0]}")
        return None
    if a.action in ("bench", "bench-check"):
        if a.run_dir_opt or _config(a) or len(folders) > 1:
            raise UsageError(f"tckr report {a.action} reads one folder of benchmark results (default bench/measured)")
        folder = folders[0] if folders else "bench/measured"
        check, what, cmd = a.action == "bench-check", "benchmark table", f"bench {folder}"
        changed = report.update_bench(a.readme, folder, check=check)
        return _block_outcome(a.readme, what, cmd, changed, check)
    if a.run_dir_opt or _config(a):
        raise UsageError(f"tckr report {a.action} reads result folders (results/<study>), given as arguments; "
                         "--run-dir and --config do not apply (copy a run with tckr report collect first)")
    if not folders:
        raise UsageError(f"tckr report {a.action} needs one or more result folders, e.g. tckr report {a.action} results/mini")
    if a.action == "figures":
        from tckr.reporting import plots  # lazy: a subcommand's module is imported when it runs (matplotlib)

        plots.result_figures(folders, a.images)
        return None
    changed = report.update_readme(a.readme, folders, check=a.action == "check")
    return _block_outcome(a.readme, "results block", "write " + " ".join(folders), changed, a.action == "check")


def _block_outcome(readme: str, what: str, cmd: str, changed: bool, check: bool) -> ExitCode | None:
    """Say what ``tckr report write|check|bench|bench-check`` did to a README block; check fails when it differs."""
    if check:
        if changed:
            print(f"{readme}: the {what} differs from `tckr report {cmd}`", file=sys.stderr)
            return ExitCode(EXIT_FAILED)
        print(f"{readme}: {what} current")
        return None
    print(f"{readme}: {what} {'rewritten' if changed else 'already current'}")
    return None


def _release(a) -> ExitCode | None:
    from tckr.reporting import release  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    from tckr.runfolder import runs

    _unsharded(a)
    _no_set(a)
    run_dir = _run_dir(a)
    if run_dir is None and _config(a):
        raise UsageError("tckr release writes the release of a finished run: give --run-dir (a run folder or 'latest')")
    if run_dir is None and not a.check:
        raise UsageError("tckr release needs --run-dir (a finished run folder, or 'latest') to release, or --check to verify")
    if run_dir is not None:
        source = runs.find_run(run_dir, _config(a))
        if not source.is_dir():
            raise runs.RunNotFoundError(f"no run folder at {source}")
        release.release(source, a.out)
    if a.check:
        problems = release.check(a.out)
        for line in problems:
            print(line, file=sys.stderr)
        print(f"release under {release._root(a.out)}: "
              + (f"{len(problems)} problem(s)" if problems else "every file matches its manifest"))
        return ExitCode(EXIT_FAILED) if problems else None
    return None


def _add(sub, name: str, func: Callable, help_: str, *, config_pos: bool = False, run_pos: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    if config_pos:
        p.add_argument("config", nargs="?", help="study config (same as --config)")
    if run_pos:
        p.add_argument("run_dir", nargs="?", help="run folder (same as --run-dir)")
    _common(p)
    p.set_defaults(func=func)
    return p


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tckr", description="TCKR: the whole study, or one resumable phase, on a run folder.",
                                 epilog="exit codes: 0 done, 1 a phase failed, 2 a usage error. "
                                        "Options common to every subcommand: --config, --run-dir, --shard, --set, --debug.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "study", _study, "run every phase notebook of a study headless (resumable)", config_pos=True)
    p.add_argument("--force", action="store_true", help="run the selected phases even when they are current")
    p.add_argument("--phases", help="comma-separated subset of the phases (00_data,...,06_figures)")
    p.add_argument("--seeds", type=int, nargs="+", help="override study.seeds")

    p = _add(sub, "figures", _figures, "regenerate every figure of a finished run from its result files", run_pos=True)
    p.add_argument("--only", help="comma-separated subset of the figures")
    p.add_argument("--images", action="store_true", help="also copy the PNGs to the repository's images/ folder")

    p = _add(sub, "lora", _lora, "LoRA fine-tuning of the generator on the run's D (resumable)", config_pos=True, run_pos=True)
    p.add_argument("--export", action="store_true", help="also copy the adapter to the repository's lora_sd2/")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "synthesis", _synthesis, "generate (a share of) the run's synthetic set (resumable)")
    p.add_argument("--batch-size", type=int, default=None, help="images per pipeline call (default synthesis.batch_size)")
    p.add_argument("--random-weights", action="store_true", help="mechanics only: generator.arch with random weights")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "shadows", _shadows, "train (a share of) the LiRA shadow classifiers, then optionally attack (tckr.mia)")
    p.add_argument("--n-shadows", type=int, default=None, help="default: mia.n_shadows of the config")
    p.add_argument("--attack", action="store_true", help="then query the targets and run the attacks")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "pipelines", _pipelines, "train (a share of) the shadow pipelines, then optionally attack the students")
    p.add_argument("--n-pipelines", type=int, default=None, help="default: mia.n_pipelines of the config")
    p.add_argument("--attack", action="store_true", help="then attack the students and write the leave-one-out spread")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "generator-attack", _generator_attack, "attack the adapted generator and the synthetic set (tckr.generator_mia)")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "ledger", _ledger, "rebuild the privacy ledger (results/ledger.csv) of a run and print it")
    p.add_argument("--headline-only", action="store_true", help="print only the pre-registered headline rows")

    p = _add(sub, "report", _report, "the README's results block from committed result folders (tckr.report): "
             "collect a run's result files, write the block, check it (exit 1 when it differs), redraw the figures, or "
             "write (bench) / check (bench-check) the benchmark table from bench/measured")
    p.add_argument("action", choices=("collect", "write", "check", "figures", "bench", "bench-check"))
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="collect: the destination (results/<study>); "
                   "write/check: the result folders, in order")
    p.add_argument("--readme", default="README.md", help="the file holding the results block (default README.md)")
    p.add_argument("--images", default="images", help="figures: where each folder's PNGs go (<images>/<study>/)")

    p = _add(sub, "release", _release, "write the release folders (trained_mbnv3/, lora_sd2/, prompts/) from a finished "
             "run, and/or --check every released file against its manifest (exit 1 on a difference)", run_pos=True)
    p.add_argument("--out", default=None, help="folder that receives the release (default: the repository root)")
    p.add_argument("--check", action="store_true", help="verify every released file against its folder's release.json")

    _add(sub, "pretrain", _pretrain, "pretrain the mini tier's base generator on the public partition; "
         "--run-dir is its working folder, any other option goes to python -m tckr.pretrain (--out, --steps, ...)")
    return ap


def _user_errors() -> tuple[type[BaseException], ...]:
    from tckr.core import io, shards  # noqa: F401  (shards: its ValueError is a malformed --shard)
    from tckr.datasets import provenance
    from tckr.datasets.real import DatasetUnavailableError
    from tckr.orchestration.study import (
        PhaseBlocked,  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    )
    from tckr.reporting.release import (
        ReleaseError,  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    )
    from tckr.reporting.report import (
        ReportError,  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    )

    return (UsageError, ConfigError, FileNotFoundError, PhaseBlocked, provenance.DataLeakError, io.CorruptFileError,
            DatasetUnavailableError, ReportError, ReleaseError)


def main(argv: list[str] | None = None) -> int:
    """Run ``tckr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return invoke(argv)[0]


def invoke(argv: list[str] | None = None) -> tuple[int, Any]:
    """:func:`main`, also returning what the subcommand returned (the synthesis summary; None otherwise)."""
    ap = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    a, rest = ap.parse_known_args(argv)
    if a.command == "report" and rest and not any(r.startswith("-") for r in rest):
        a.folders, rest = [*a.folders, *rest], []  # folders after an option (argparse ends nargs="*" at the first one)
    if rest and a.command != "pretrain":
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    a.rest = rest
    from tckr.orchestration.study import (
        PhaseFailed,  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)
    )

    try:
        if a.shard is not None:
            try:
                parse_shard(a.shard)
            except ValueError as e:
                raise UsageError(f"--shard: {e}") from None
        result = a.func(a)
    except _user_errors() as e:
        if a.debug:
            raise
        print(f"tckr: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE, None
    except PhaseFailed as e:
        if a.debug:
            raise
        print(f"tckr: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED, None
    if isinstance(result, ExitCode):
        return int(result), None
    return 0, result


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text += f": {e.filename}"
    return text


def alias(command: str, argv: list[str] | None = None) -> int:
    """``python -m tckr.<module>``: the ``tckr <command>`` subcommand (the module's own argument forms included)."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
