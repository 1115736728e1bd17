"""The options every ``tckr`` subcommand shares (``--config``, ``--run-dir``, ``--shard``, ``--set``, ``--debug``),
how they are read, and the command line's error and exit-status types."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from tckr.core import config as config_mod
from tckr.core import schema
from tckr.core.shards import parse_shard

EXIT_FAILED, EXIT_USAGE = 1, 2


class ExitCode(int):
    """A subcommand's exit status other than 0 that is not an error (a check that found differences: 1)."""


class UsageError(ValueError):
    """A mistake on the command line (a malformed ``--set``, an option the subcommand does not take)."""


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=3", "train.lr=5e-3"]`` -> ``{"train.epochs": 3, "train.lr": "5e-3"}``: each value read as
    a YAML scalar (the config's validation turns number-like strings into floats where a float is expected). Each
    key, its value's type and its bounds are checked here, so that a mistake names ``--set`` rather than the config
    file; the rules that tie several keys together are checked when the config is read."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = key_value(item, "--set", "section.key=value, e.g. --set train.epochs=3")
        if "." not in key:
            raise UsageError(f"--set {item!r}: expected section.key=value, e.g. --set train.epochs=3")
        check_setting(item, key, value)
        out[key] = value
    return out


def check_setting(item: str, key: str, value: Any) -> None:
    """A :class:`UsageError` naming ``--set item`` when ``key`` is no setting, or ``value`` has the wrong type or is
    out of the setting's bounds (:data:`tckr.core.config.RANGES`)."""
    tree: dict[str, Any] = {}
    try:
        schema.set_dotted(tree, key, value)
        built = schema.build(config_mod.Config, tree, "")
    except schema.SchemaError as e:
        raise UsageError(f"--set {item!r}: {e}") from None
    try:
        config_mod.check_range(built, key)
    except config_mod.ConfigError as e:
        raise UsageError(f"--set {item!r}: {e}") from None


def key_value(item: str, option: str, expected: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``("key", value)``, the value read as a YAML scalar (``3``, ``5e-3``, ``true``, ``[0, 1]``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{option} {item!r}: expected {expected}")
    try:
        return key, (yaml.safe_load(raw) if raw.strip() else "")
    except yaml.YAMLError as e:
        raise UsageError(f"{option} {item!r}: the value is not a YAML scalar ({' '.join(str(e).split())})") from None


SHARDED = ("synthesis", "shadows", "pipelines")  # the subcommands that split their work (--shard k/n)
READ_ONLY = ("figures", "power", "ledger", "report", "release", "pretrain")  # they read a finished run: no --set


def add_common(p: argparse.ArgumentParser, name: str) -> None:
    """The shared options of subcommand ``name``. ``--shard`` and ``--set`` are listed in its help only where it
    accepts them; elsewhere they are still parsed (hidden), so that giving one gets a sentence saying why it does not
    apply and where it does, rather than argparse's bare "unrecognized arguments"."""
    g = p.add_argument_group("common options")
    g.add_argument("--config", dest="config_opt", metavar="CONFIG", help="study config YAML (default: the run folder's own)")
    g.add_argument("--run-dir", dest="run_dir_opt", metavar="DIR", help="run folder, or 'latest' (the newest run of the config)")
    g.add_argument("--shard", metavar="k/n", help="do share k of n of the work (1-based, tckr.shards)"
                   if name in SHARDED else argparse.SUPPRESS)
    g.add_argument("--set", dest="sets", action="append", default=[], metavar="section.key=value",
                   help="override one config key (repeatable), validated like the YAML"
                   if name not in READ_ONLY else argparse.SUPPRESS)
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def config(a) -> str | None:
    pos = getattr(a, "config", None)
    if pos and a.config_opt and pos != a.config_opt:
        raise UsageError(f"two configs given ({pos} and --config {a.config_opt}); give one")
    return a.config_opt or pos


def run_dir(a) -> str | None:
    pos = getattr(a, "run_dir", None)
    if pos and a.run_dir_opt and pos != a.run_dir_opt:
        raise UsageError(f"two run folders given ({pos} and --run-dir {a.run_dir_opt}); give one")
    return a.run_dir_opt or pos


def check_shard(a) -> None:
    if a.shard is not None:
        try:
            parse_shard(a.shard)
        except ValueError as e:
            raise UsageError(f"--shard: {e}") from None


def check_applies(a) -> None:
    """Refuse ``--shard`` and ``--set`` where subcommand ``a.command`` does not take them (:data:`SHARDED`,
    :data:`READ_ONLY`), in one sentence that says where they apply: the one check of every subcommand, made by
    :func:`tckr.cli.parser.invoke` before the subcommand imports or does anything."""
    if a.command == "launch" and a.shard is not None:
        raise UsageError("tckr launch submits every share of the work: give their number with --shards N, not --shard k/n")
    if a.command not in SHARDED and parse_shard(a.shard)[1] > 1:
        raise UsageError(f"tckr {a.command} does not split its work; --shard applies to {', '.join(SHARDED[:-1])} and "
                         f"{SHARDED[-1]}")
    if a.command in READ_ONLY and a.sets:
        raise UsageError("tckr pretrain takes its settings as options (tckr pretrain --help); --set does not apply"
                         if a.command == "pretrain" else
                         f"tckr {a.command} reads a finished run; --set does not apply (its settings are the run's)")


def open_run(a, *, new: bool = True):
    """The run the options name: ``--run-dir`` (existing, or new when ``--config`` is given) or a new run."""
    from tckr.runfolder import runs  # lazy: a subcommand's module is imported when it runs (tckr --help imports no torch)

    cfg, folder = config(a), run_dir(a)
    if folder is None and not new:
        raise UsageError(f"tckr {a.command} needs --run-dir (a finished run folder, or 'latest')")
    if cfg is None and folder is None:
        raise UsageError(f"tckr {a.command} needs --run-dir (a run folder, or 'latest') or --config (a new run)")
    return runs.open_run(cfg, folder, overrides=parse_set(a.sets) or None)

