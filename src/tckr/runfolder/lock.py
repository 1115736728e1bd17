"""One study process per run folder: an advisory lock on ``<run>/.lock`` that holds the holder's PID.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it when the holder dies, even by SIGKILL: a lock
file left by a killed process is simply taken over. Nested holds in one process (``run_study`` around
``run_phases`` on the same folder) share one lock. The file descriptor is not inherited by the notebook kernels
the runner starts, so a stray kernel never keeps a run locked.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".lock"

_held: dict[Path, list[int]] = {}  # lock file -> [descriptor, nesting depth] of this process's holds


class RunLocked(RuntimeError):
    """Another process holds the run folder; the message names its PID."""


@contextmanager
def hold(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<run_dir>/.lock`` for the block (the folder is made if missing); :class:`RunLocked` when another
    process holds it. Yields the lock file."""
    f = Path(run_dir).resolve() / LOCK_FILE
    if f in _held:
        _held[f][1] += 1
        try:
            yield f
        finally:
            _held[f][1] -= 1
        return
    f.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"run folder {f.parent} is in use by process {holder} (lock file {f}); wait for it to finish "
                        "or stop that process") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[f] = [fd, 1]
    try:
        yield f
    finally:
        del _held[f]
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def held_elsewhere(runs_root: str | os.PathLike) -> list[tuple[Path, int]]:
    """The run folders directly under ``runs_root`` that another live process holds: (folder, PID). Read from the lock
    files' recorded PIDs (a released lock is truncated; a killed holder's PID is checked for life), never by taking a
    lock, so asking cannot make another process's :func:`hold` fail."""
    out = []
    for f in sorted(Path(runs_root).glob(f"*/{LOCK_FILE}")):
        try:
            pid = int(f.read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if not pid or pid == os.getpid():  # this process's own holds carry its PID
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue  # the holder died; its lock went with it
        except PermissionError:
            pass  # alive, another user's
        out.append((f.parent, pid))
    return out
