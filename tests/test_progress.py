"""Headless progress: a few lines with elapsed time and an estimate in progress.log, echoed by the study runner."""

import os
import re
import time

import pytest

from tckr.core import progress


@pytest.fixture
def headless_log(tmp_path, monkeypatch):
    f = tmp_path / "progress.log"
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    monkeypatch.setenv(progress.LOG_ENV, str(f))
    return f


def test_headless_epochs_give_a_line_each_with_elapsed_and_left(headless_log, capsys):
    bar = progress.tqdm(range(1, 5), desc="teacher", unit="epochs")
    assert isinstance(bar, progress.Lines)
    for epoch in bar:
        bar.set_postfix(loss=f"{1 / epoch:.2f}")
    lines = headless_log.read_text().splitlines()
    assert len(lines) == 5  # started + one per epoch
    assert re.match(r"^\d\d:\d\d:\d\d teacher: 2/4 epochs \(50%\), elapsed 0:00, about 0:00 left \| loss=0.50$", lines[2])
    assert lines[-1].endswith("teacher: 4/4 epochs (100%), elapsed 0:00 | loss=0.25")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # nothing for the executed notebook


def test_headless_large_totals_are_throttled_and_early_stop_is_counted(headless_log):
    bar = progress.tqdm(total=1000, desc="LoRA fine-tuning", unit="steps")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert len(headless_log.read_text().splitlines()) == 1 + 20  # started + every 5%
    headless_log.write_text("")
    bar = progress.tqdm(range(1, 11), desc="student", unit="epochs")
    for epoch in bar:
        if epoch == 3:
            break  # early stopping: the third epoch ran
    bar.close()
    assert headless_log.read_text().splitlines()[-1].endswith("student: 3/10 epochs (30%), elapsed 0:00 (stopped before the total)")


def test_interactive_is_tqdm_and_disable_is_silent(headless_log, monkeypatch):
    monkeypatch.delenv(progress.HEADLESS_ENV)
    assert not isinstance(progress.tqdm(range(3), disable=True), progress.Lines)
    monkeypatch.setenv(progress.HEADLESS_ENV, "1")
    list(progress.tqdm(range(3), disable=True))
    assert not headless_log.exists()
    # tqdm.auto without ipywidgets warns "IProgress not found" in notebooks: only the widget bar when it exists
    import importlib.util

    from tqdm import std

    assert (progress.bar_class() is std.tqdm) == (importlib.util.find_spec("ipywidgets") is None)


def test_estimate_of_what_is_left(headless_log, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    bar = progress.Lines(total=4, desc="shadows", unit="shadows")
    now[0] = 10.0
    bar.update(1)  # 10 s for one of four: 30 s left
    assert headless_log.read_text().splitlines()[-1].endswith("shadows: 1/4 shadows (25%), elapsed 0:10, about 0:30 left")
    assert progress.hms(3725) == "1:02:05" and progress.hms(75) == "1:15"


def test_follow_sets_the_environment_and_echoes_new_lines(tmp_path):
    f = tmp_path / "run" / "progress.log"
    f.parent.mkdir()
    f.write_text("10:00:00 an older line\n")
    seen = []
    before = os.environ.get(progress.HEADLESS_ENV)
    with progress.follow(f, seen.append, interval=0.05):
        assert os.environ[progress.HEADLESS_ENV] == "1" and os.environ[progress.LOG_ENV] == str(f)
        progress.note("pipeline_00 teacher: 1.0 s")
        time.sleep(0.2)
        progress.append(f, "last line")
    assert os.environ.get(progress.HEADLESS_ENV) == before
    assert [s.split(" ", 1)[1] if s.strip()[:2].isdigit() else s for s in (x.strip() for x in seen)] == \
        ["pipeline_00 teacher: 1.0 s", "last line"]


def test_headless_turns_off_the_library_loading_bars(headless_log, monkeypatch):
    from diffusers.utils import logging as dlog

    monkeypatch.setattr(dlog, "_tqdm_active", True)
    progress.quiet_libraries()
    assert not dlog.is_progress_bar_enabled()
    monkeypatch.delenv(progress.HEADLESS_ENV)
    monkeypatch.setattr(dlog, "_tqdm_active", True)
    progress.quiet_libraries()  # interactive sessions keep them
    assert dlog.is_progress_bar_enabled()
