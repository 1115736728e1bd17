"""The ``tckr`` parser (every subcommand's options and help) and :func:`main` / :func:`invoke`, which run a
subcommand and turn the errors a user can fix into one line and exit status 2."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from tckr.cli import commands, options


def _add(sub, name: str, help_: str, *, config_pos: bool = False, run_pos: bool = False) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=help_)
    if config_pos:
        p.add_argument("config", nargs="?", help="study config (same as --config)")
    if run_pos:
        p.add_argument("run_dir", nargs="?", help="run folder (same as --run-dir)")
    options.add_common(p, name)
    p.set_defaults(func=commands.COMMANDS[name])
    return p


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return n


def _add_pretrain(sub) -> None:
    p = _add(sub, "pretrain", "pretrain the mini tier's base generator (tckr.pretrain) from scratch on the config's "
             "public partition: the VAE, then the UNet and text encoder; resumes from the last checkpoint in --run-dir")
    p.epilog = (f"--config: the study config whose public partition is trained on (default {commands.PRETRAIN_CONFIG}); "
                f"--run-dir: the working folder of checkpoints, logs and caches (default {commands.PRETRAIN_WORK})")
    g = p.add_argument_group("pretraining settings (written to <run-dir>/args.json)")
    opt = g.add_argument
    settings = [
        opt("--out", default="models/tiny-sd-fashion-blur8", help="the save_pretrained folder to write (default %(default)s)"),
        opt("--limit", type=int, default=0, help="seeded subset of the public partition used (default 0 = all)"),
        opt("--vae-steps", type=int, default=300, help="VAE training steps (default %(default)s)"),
        opt("--vae-batch", type=int, default=32, help="VAE batch size (default %(default)s)"),
        opt("--vae-lr", type=float, default=1e-3, help="VAE learning rate; the decoder stage uses half (default %(default)s)"),
        opt("--decoder-steps", type=int, default=0, help="then train the VAE decoder alone, encoder frozen "
            "(default %(default)s)"),
        opt("--kl-weight", type=float, default=1e-4, help="weight of the VAE's KL term (default %(default)s)"),
        opt("--steps", type=int, default=12000, help="UNet + text encoder training steps (default %(default)s)"),
        opt("--batch", type=int, default=64, help="UNet batch size (default %(default)s)"),
        opt("--lr", type=float, default=1e-3, help="UNet + text encoder learning rate (default %(default)s)"),
        opt("--warmup", type=int, default=200, help="linear warm-up steps of the learning rate (default %(default)s)"),
        opt("--drop-prompt", type=float, default=0.1, help="fraction of prompts dropped to '' for classifier-free "
            "guidance (default %(default)s)"),
        opt("--snr-gamma", type=float, default=5.0, help="min-SNR weighting's gamma (default %(default)s)"),
        opt("--ema", type=float, default=0.998, help="decay of the weights' EMA (default %(default)s)"),
        opt("--checkpoint-every", type=int, default=250, help="steps between checkpoints (default %(default)s)"),
        opt("--max-minutes", type=float, default=1e9, help="stop the UNet stage after this long, then save"),
        opt("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)"),
        opt("--seed", type=int, default=0, help="seed of the subset, the initial weights and the steps (default %(default)s)"),
        opt("--vae-from", default="", metavar="BASE", help="reuse the VAE of this saved base (e.g. models/tiny-sd-fashion) "
            "instead of training one: no VAE or decoder stage (default: train one)"),
    ]
    p.set_defaults(settings=tuple(s.dest for s in settings))


def _add_launch(sub) -> None:
    p = _add(sub, "launch", "run the sharded phases (03_generate, 05_mia_lira) as a SLURM job array through submitit, "
             "or as local processes (--local), then each phase's merge job (tckr.launch)", config_pos=True)
    p.epilog = ("--run-dir is required and shared by every job (put it on a file system every node sees); "
                "--shard does not apply: job k of --shards N does share k/N. Multi-GPU LoRA fine-tuning is not sharded "
                "here: use `accelerate launch -m tckr.cli lora CONFIG RUN_DIR`.")
    p.add_argument("--phases", required=True, help="the sharded phase(s) to launch, comma-separated, run in study "
                   "order: 03_generate, 05_mia_lira")
    p.add_argument("--shards", type=_positive, required=True, metavar="N", help="number of shares N; job k runs --shard k/N")
    p.add_argument("--local", action="store_true", help="run the shards as processes on this machine (submitit LocalExecutor)")
    p.add_argument("--log-dir", metavar="DIR", help="submitit's folder of job scripts and logs (default <run>/logs/submitit)")
    p.add_argument("--no-merge", action="store_true", help="only the shards, no merge job")
    p.add_argument("--record", action="store_true", help="then run the phase notebook (skips the finished shards) to "
                   "record the phase done")
    g = p.add_argument_group("SLURM options (submitit's parameters; without --local)")
    g.add_argument("--slurm-partition", metavar="NAME", help="the partition of every job")
    g.add_argument("--slurm-account", metavar="NAME", help="the account the jobs are charged to (sbatch --account)")
    g.add_argument("--slurm-qos", metavar="NAME", help="the quality of service of the jobs (sbatch --qos)")
    g.add_argument("--gpus-per-task", type=int, metavar="N", help="GPUs of each shard job (submitit's gpus_per_node)")
    g.add_argument("--cpus-per-task", type=int, metavar="N", help="CPU cores of each shard job")
    g.add_argument("--mem-gb", type=int, metavar="GB", help="memory of each shard job in GB")
    g.add_argument("--timeout-min", type=int, metavar="MIN", help="wall-clock limit of each job in minutes "
                   "(default 240 on SLURM, 1440 with --local)")
    g.add_argument("--array-parallelism", type=int, metavar="N", help="at most this many shard jobs at once")
    g.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE", help="any other parameter of "
                   "submitit's SLURM executor (repeatable; the value read as YAML), e.g. --slurm-extra constraint=a100 "
                   "--slurm-extra 'additional_parameters={mail-type: END}'")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tckr", description="TCKR: the whole study, or one resumable phase, on a run folder.",
                                 epilog="exit codes: 0 done, 1 a phase failed, 2 a usage error. "
                                        "Options of every subcommand: --config, --run-dir, --debug; --set (override a config key) "
                                        "where a subcommand makes or runs a study, not where it reads a finished "
                                        "run; --shard k/n on synthesis, shadows and pipelines.")
    ap.add_argument("--version", action=_Version, help="print the installed tckr package's version and exit")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "study", "run every phase notebook of a study headless (resumable)", config_pos=True)
    p.add_argument("--force", action="store_true", help="run the selected phases even when they are current")
    p.add_argument("--phases", help="comma-separated subset of the phases (00_data, ..., 09_figures)")
    p.add_argument("--seeds", type=int, nargs="+", help="override study.seeds")

    p = _add(sub, "figures", "regenerate every figure of a finished run from its result files", run_pos=True)
    p.add_argument("--only", help="comma-separated subset of the figures")
    p.add_argument("--images", action="store_true", help="also copy the PNGs to the repository's images/ folder")

    p = _add(sub, "lora", "LoRA fine-tuning of the generator on the run's D (resumable)", config_pos=True, run_pos=True)
    p.add_argument("--export", action="store_true", help="also copy the adapter to the repository's lora_sd2/")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "synthesis", "generate (a share of) the run's synthetic set (resumable)")
    p.add_argument("--batch-size", type=int, default=None, help="images per pipeline call (default synthesis.batch_size)")
    p.add_argument("--random-weights", action="store_true", help="mechanics only: generator.arch with random weights")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "shadows", "train (a share of) the LiRA shadow classifiers, then optionally attack (tckr.mia)")
    p.add_argument("--n-shadows", type=int, default=None, help="default: mia.n_shadows of the config")
    p.add_argument("--attack", action="store_true", help="then query the targets and run the attacks")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "pipelines", "train (a share of) the shadow pipelines, then optionally attack the students")
    p.add_argument("--n-pipelines", type=int, default=None, help="default: mia.n_pipelines of the config")
    p.add_argument("--attack", action="store_true", help="then attack the students and write the leave-one-out spread")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "power", "the dose-response control on a finished run with shadow pipelines: students retrained with "
             "a share rho of near-copies of members, every attack's detection probability and minimum detectable effect "
             "(results/power.csv, results/mde.csv, images/power.png; resumable)", run_pos=True)
    p.add_argument("--propose", action="store_true", help="only print the mia.headline_* lines that the run's "
                   "results pre-register (smallest minimum detectable effect; without one within the grid, largest mean detection "
                   "rate; only pairs the null calibrates)")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "generator-attack", "attack the adapted generator and the synthetic set (tckr.generator_mia)")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "dp", "the DP study on a run that finished phases 00-04 (config with dp.enabled; resumable): DP-SGD "
             "teachers, DP LoRA students and a matched-accuracy teacher, attacked and audited -> results/dp_models.csv")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "ledger", "rebuild the privacy ledger (results/ledger.csv) of a run and print it")
    p.add_argument("--headline-only", action="store_true", help="print only the pre-registered headline rows")

    p = _add(sub, "report", "the README's front table and docs/results.md from committed result folders (tckr.report): "
             "collect a run's result files, write the block, check it (exit 1 when it differs), redraw the figures, "
             "write (bench) / check (bench-check) the benchmark table from bench/measured, or compare a run's headline "
             "numbers with a committed result folder (exit 1 when one lies outside the seed spread)")
    p.add_argument("action", choices=("collect", "write", "check", "figures", "bench", "bench-check", "compare"))
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="collect: the destination (results/<study>), after "
                   "the run folder when --run-dir is not given; write/check/figures: the result folders, in order; "
                   "bench/bench-check: the folder of benchmark results (default bench/measured); compare: the run "
                   "(when --run-dir is not given), then the committed result folder (e.g. results/mini)")
    p.add_argument("--readme", default="README.md", help="the file holding the front table (default README.md)")
    p.add_argument("--images", default="images", help="figures: where each folder's PNGs go (<images>/<study>/)")
    p.add_argument("--only", help="figures: comma-separated subset of the figures")

    p = _add(sub, "release", "write the release folders (trained_mbnv3/, lora_sd2/, prompts/) from a finished "
             "run, and/or --check every released file against its manifest (exit 1 on a difference)", run_pos=True)
    p.add_argument("--out", default=None, help="folder that receives the release (default: the repository root)")
    p.add_argument("--check", action="store_true", help="verify every released file against its folder's release.json")

    _add_pretrain(sub)
    _add_launch(sub)
    return ap


class _Version(argparse.Action):
    """``tckr --version``: the installed package's version, read only when asked."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, ap, namespace, values, option_string=None):
        import importlib.metadata as md  # lazy: only tckr --version reads the installed metadata

        try:
            version = md.version("tckr")
        except md.PackageNotFoundError:
            version = "unknown (the tckr package is not installed; pip install -e . from the repository)"
        print(f"tckr {version}")
        ap.exit()


# The errors a user can fix (exit 2) and a phase failing while it runs (exit 1), by home module and class name. They
# are looked up only once an exception has happened, and only in modules already imported (an exception's class is
# defined in one), so that checking the arguments imports none of them: importing them all took over 5 s (torch, through
# tckr.reporting.release) on every mistyped option (bench/bench_cli_latency.py).
USER_ERRORS = (("tckr.cli.options", "UsageError"), ("tckr.core.config", "ConfigError"), ("builtins", "FileNotFoundError"),
               ("tckr.orchestration.study", "PhaseBlocked"), ("tckr.datasets.provenance", "DataLeakError"),
               ("tckr.core.io", "CorruptFileError"), ("tckr.datasets.real", "DatasetUnavailableError"),
               ("tckr.reporting.report", "ReportError"), ("tckr.reporting.speed_report", "SpeedError"),
               ("tckr.reporting.release", "ReleaseError"),
               ("tckr.runfolder.lock", "RunLocked"))
FAILURES = (("tckr.orchestration.study", "PhaseFailed"),)


def _is_one_of(e: BaseException, classes: tuple[tuple[str, str], ...]) -> bool:
    for module, name in classes:
        home = sys.modules.get(module)
        if home is not None and isinstance(e, getattr(home, name)):
            return True
    return False


def _exit_status(e: BaseException) -> int | None:
    """2 for an error the user can fix, 1 for a phase that failed, None for anything else (a bug: its traceback)."""
    if _is_one_of(e, USER_ERRORS):
        return options.EXIT_USAGE
    if _is_one_of(e, FAILURES):
        return options.EXIT_FAILED
    return None


def _unknown_command(argv: list[str]) -> str | None:
    """``unknown command 'stduy' (did you mean 'study'?)`` when the first word is no subcommand; None otherwise."""
    word = next((w for w in argv if not w.startswith("-")), None)  # tckr's own options (-h, --version) take no value
    if word is None or word in commands.COMMANDS:
        return None
    close = difflib.get_close_matches(word, list(commands.COMMANDS), n=1)
    return (f"unknown command {word!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; commands: {', '.join(commands.COMMANDS)} (tckr --help)")


def main(argv: list[str] | None = None) -> int:
    """Run ``tckr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    return invoke(argv)[0]


def invoke(argv: list[str] | None = None) -> tuple[int, Any]:
    """:func:`main`, also returning what the subcommand returned (the synthesis summary; None otherwise)."""
    ap = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    unknown = _unknown_command(argv)
    if unknown:
        print(f"tckr: error: {unknown}", file=sys.stderr)
        return options.EXIT_USAGE, None
    a, rest = ap.parse_known_args(argv)
    if a.command == "report" and rest and not any(r.startswith("-") for r in rest):
        a.folders, rest = [*a.folders, *rest], []  # folders after an option (argparse ends nargs="*" at the first one)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        options.check_shard(a)
        options.check_applies(a)
        result = a.func(a)
    except Exception as e:
        status = _exit_status(e)
        if status is None or a.debug:
            raise
        print(f"tckr: error: {_one_line(e)}", file=sys.stderr)
        return status, None
    if isinstance(result, options.ExitCode):
        return int(result), None
    return 0, result


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in text:
        text += f": {e.filename}"
    return text
