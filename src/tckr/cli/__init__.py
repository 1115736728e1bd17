"""``tckr``: one command line for the whole study and each resumable phase.

    tckr study CONFIG [--run-dir DIR] [--phases ...] [--seeds ...] [--set section.key=value ...]
    tckr lora --run-dir DIR            tckr synthesis --run-dir DIR --shard 2/4
    tckr shadows --run-dir DIR --shard 1/8 [--attack]      tckr figures --run-dir latest
    tckr report collect --run-dir DIR results/mini         tckr report check results/mini
    tckr release --run-dir DIR [--out .]                    tckr release --check
    tckr pretrain --run-dir WORK --out models/tiny-sd-fashion-blur8 --vae-from models/tiny-sd-fashion --steps 3500
    tckr launch CONFIG --run-dir DIR --phases 03_generate --shards 32 [--local | --slurm-partition gpu ...]

Every subcommand takes the same options: ``--config`` (a study YAML), ``--run-dir`` (a run folder, or ``latest``
for the newest run of the config), ``--shard k/n`` (1-based; subcommands that do not split their work refuse
n > 1), ``--set section.key=value`` (repeatable; checked exactly like the YAML keys, the value read as a YAML
scalar) and ``--debug``. Exit codes: 0 done; 1 a phase failed while running (the message names its executed
notebook; for ``launch``, the failed shards and their logs); 2 a usage error: a bad option, config key or value, an
unknown dataset, a missing run folder or file, a phase refused because an upstream phase has not run, a data leak, a
damaged file, an unknown subcommand (with the closest one). Errors are one line ``tckr: error: ...``; ``--debug`` shows
the traceback. ``tckr --version`` prints the installed package's version. ``python -m tckr.cli`` is the same command
(for ``accelerate launch -m tckr.cli lora ...``).

This package's public facade, the documented API of the command line: :func:`main` (the ``tckr`` script),
:func:`invoke` (main, also returning the subcommand's result) and :func:`parse_set`. The parser and the
subcommands are in :mod:`tckr.cli.parser` and :mod:`tckr.cli.commands`, the shared options in :mod:`tckr.cli.options`.
"""

from tckr.cli.options import parse_set
from tckr.cli.parser import invoke, main

__all__ = ["invoke", "main", "parse_set"]
