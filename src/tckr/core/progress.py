"""Progress a person can follow, in a terminal, a notebook, or a headless study.

``tqdm(...)`` is a drop-in for the tqdm bars of the phases. Interactively it is tqdm itself (the notebook widget
only when ipywidgets is installed: without it ``tqdm.auto`` prints an ``IProgress not found`` warning in every
notebook). In a notebook executed by the study runner (``TCKR_HEADLESS=1``) it draws no bar: it writes a few
timestamped lines to the run's ``progress.log`` (``TCKR_PROGRESS_LOG``), each with the elapsed time and an
estimate of what is left (a line per update up to 50 updates, e.g. per training epoch; otherwise every 5% of
the total or every 30 s), which the runner echoes to the terminal. A bar per epoch left in the executed
notebook made 2,252 outputs (450 KB) in one notebook mid-LoRA. ``note(message)`` prints a line and appends it
to ``progress.log``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

HEADLESS_ENV = "TCKR_HEADLESS"
LOG_ENV = "TCKR_PROGRESS_LOG"
LOG_NAME = "progress.log"
EVERY_UPDATE_UP_TO = 50  # totals up to this get a line per update (epochs, shadows, pipelines)
STEP_FRACTION = 0.05  # larger totals: a line every 5% ...
MAX_SILENCE_S = 30.0  # ... or every 30 s, whichever comes first


def headless() -> bool:
    """True inside a notebook executed by the study runner (``TCKR_HEADLESS=1``)."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def log_file() -> Path | None:
    """The ``progress.log`` lines go to (``TCKR_PROGRESS_LOG``), or None."""
    f = os.environ.get(LOG_ENV, "")
    return Path(f) if f else None


def hms(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    s = int(round(max(seconds, 0.0)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def append(path: str | Path, message: str) -> None:
    """Append one timestamped line to ``path`` (one ``write`` of a whole line, so concurrent writers interleave
    lines, never characters)."""
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    line = f"{stamp} {' '.join(str(message).split())}\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def note(message: str) -> None:
    """Print ``message`` and append it to ``progress.log`` when a study runs."""
    print(message, flush=True)
    f = log_file()
    if f is not None:
        append(f, message)


def quiet_libraries() -> None:
    """In a headless study, turn off the loading bars of diffusers and transformers ("Loading pipeline
    components", "Loading weights": a dozen bar frames per pipeline load in every executed notebook)."""
    if not headless():
        return
    for name in ("diffusers", "transformers"):
        try:
            module = importlib.import_module(f"{name}.utils.logging")
        except ImportError:
            continue
        module.disable_progress_bar()


def _emit(message: str) -> None:
    f = log_file()
    if f is not None:
        append(f, message)
    else:
        print(message, file=sys.stderr, flush=True)


def bar_class():
    """tqdm's notebook bar when ipywidgets is importable, else the plain text bar."""
    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm as bar  # lazy: which bar (notebook or plain) is decided at call time
    else:
        from tqdm.std import tqdm as bar  # lazy: which bar (notebook or plain) is decided at call time
    return bar


class Lines:
    """The headless stand-in for a tqdm bar: the same calls (iteration, ``update``, ``set_postfix``, ``close``),
    a few log lines instead of a redrawn bar."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, initial: int = 0, desc: str = "",
                 unit: str = "it", **_: Any):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.initial = total, initial, initial
        self.desc, self.unit = desc or "progress", unit
        self.postfix = ""
        self.start = self.last_time = time.perf_counter()
        self.last_n = initial
        self.closed = False
        self._in_item = False  # a loop left with break: its last item finished (close() counts it)
        if total:
            _emit(f"{self.desc}: started, {initial}/{total} {unit}")

    def __iter__(self):
        for item in self.iterable:
            self._in_item = True
            yield item
            self._in_item = False
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return self.total or 0

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def refresh(self) -> None:
        pass

    def write(self, s: str, *args: Any, **kwargs: Any) -> None:
        _emit(s)

    def line(self, finished: bool = False) -> str:
        elapsed = time.perf_counter() - self.start
        done = self.n - self.initial
        text = f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f}%)"
        text += f", elapsed {hms(elapsed)}"
        if self.total and done > 0 and self.n < self.total and not finished:
            text += f", about {hms(elapsed / done * (self.total - self.n))} left"
        return text + (f" | {self.postfix}" if self.postfix else "")

    def _due(self) -> bool:
        if not self.total or self.total <= EVERY_UPDATE_UP_TO or self.n >= self.total:
            return True
        step = max(1, int(self.total * STEP_FRACTION))
        return self.n // step > self.last_n // step or time.perf_counter() - self.last_time >= MAX_SILENCE_S

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._due():
            self._flush()

    def _flush(self) -> None:
        _emit(self.line())
        self.last_n, self.last_time = self.n, time.perf_counter()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._in_item:
            self._in_item = False
            self.n += 1
        if self.total and self.n < self.total:  # early stopping, or an error
            _emit(self.line(finished=True) + " (stopped before the total)")
        elif self.n != self.last_n or not self.total:
            self._flush()


def tqdm(iterable: Iterable | None = None, *args: Any, disable: bool = False, **kwargs: Any):
    """A progress bar (see the module docstring); the arguments are tqdm's."""
    if not disable and headless():
        return Lines(iterable, *args, **kwargs)
    return bar_class()(iterable, *args, disable=disable, **kwargs)


class follow:
    """Context manager: set ``TCKR_HEADLESS`` and ``TCKR_PROGRESS_LOG`` (for a papermill kernel started inside it)
    and echo every line appended to ``path`` to ``log`` from a thread, until the block ends."""

    def __init__(self, path: str | Path, log=print, interval: float = 1.0):
        self.path, self.log, self.interval = Path(path), log, interval
        self._stop = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._offset = self.path.stat().st_size
        self._saved = {k: os.environ.get(k) for k in (HEADLESS_ENV, LOG_ENV, "HF_HUB_DISABLE_PROGRESS_BARS")}
        os.environ[HEADLESS_ENV], os.environ[LOG_ENV] = "1", str(self.path)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers and the hub read it at import
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tckr-progress", daemon=True)
        self._thread.start()
        return self

    def _drain(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines; a line being written waits for the next round
        self._offset += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            self.log(f"    {line}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._drain()
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
