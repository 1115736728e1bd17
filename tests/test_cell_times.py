"""The measured times the notebooks' heavy cells state are written from the committed mini study, never by hand."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tckr.core import paths
from tckr.reporting import cell_times

ROOT = paths.ROOT
MINI = ROOT / "results" / "mini"


def _marked(text: str) -> dict[str, str]:
    nb = json.loads(text)
    return {m["key"]: m["text"] for c in nb["cells"] if c["cell_type"] == "markdown"
            for m in cell_times.MARK.finditer("".join(c["source"]))}


def test_committed_notebooks_state_the_committed_mini_studys_times():
    marked = {f.name: _marked(f.read_text()) for f in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    keys = {k for m in marked.values() for k in m}
    assert {"lora", "teacher", "students", "baselines", "pipelines", "phase:05_mia_lira"} <= keys
    assert cell_times.update_notebooks(ROOT / "notebooks", MINI, check=True) == []
    sentences = cell_times.texts(MINI)
    assert all(text == sentences[k] for m in marked.values() for k, text in m.items())


def test_sentences_are_read_off_the_result_files():
    s = cell_times.texts(MINI)
    clf = pd.read_csv(MINI / "results" / "classifiers.csv").set_index("model")
    assert f"{clf.loc['teacher', 'train_seconds']:.1f} s of training" in s["teacher"]
    assert f"{clf.loc['student_synth0.2x', 'train_seconds']:.1f} s (0.2× |D|)" in s["students"]
    stages = pd.read_csv(MINI / "results" / "pipeline_stages.csv")
    assert f"{stages.groupby('pipeline')['seconds'].sum().mean():.0f} s per pipeline" in s["pipelines"]
    assert f"over {stages['pipeline'].nunique()} pipelines" in s["pipelines"]
    phases = pd.read_csv(MINI / "results" / "phases.csv").set_index("phase")
    assert f"{phases.loc['01_captions', 'seconds']:.1f} s" in s["phase:01_captions"]


def test_a_stale_time_is_found_rewritten_and_an_unknown_key_named(tmp_path):
    nbs = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", nbs)
    f = nbs / "04_run_evaluate.ipynb"
    good = f.read_text()
    stale = good.replace(cell_times.texts(MINI)["teacher"], "Mini tier: 49.5 s of training.")
    assert stale != good
    f.write_text(stale)
    assert cell_times.update_notebooks(nbs, MINI, check=True) == [f]
    assert f.read_text() == stale  # check writes nothing
    assert cell_times.update_notebooks(nbs, MINI) == [f]
    assert f.read_text() == good
    f.write_text(good.replace("tckr.time:teacher", "tckr.time:nonesuch", 1))
    with pytest.raises(ValueError, match=r"04_run_evaluate.ipynb: no measured time for nonesuch .*keys it has: .*teacher"):
        cell_times.update_notebooks(nbs, MINI)


def test_a_folder_without_notebooks_or_markers_is_left_alone(tmp_path):
    assert cell_times.update_notebooks(tmp_path / "none", MINI) == []
    (tmp_path / "a.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["no marks"]}]}))
    assert cell_times.update_notebooks(tmp_path, tmp_path / "no-results") == []
