"""One environment per clone (the Makefile's ``venv``): two clones of this repository, each with its own small
``.venv`` over the shared cache of heavy packages; ``import tckr``, the console scripts, a papermill kernel and the
runs/ folder of each clone are that clone's own. The clones reuse the cache the running interpreter's packages come
from, so only the per-clone step runs (a few seconds each)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tckr.core import paths


def _cache() -> Path | None:
    """The shared venv (the Makefile's VENV_CACHE) torch comes from in this interpreter, when it is complete."""
    for entry in sys.path:
        p = Path(entry)
        if p.name == "site-packages" and (p / "torch").is_dir():
            root = p.parents[2].resolve()
            if (root / ".complete").is_file():
                return root
    return None


CACHE = _cache()
pytestmark = pytest.mark.skipif(
    CACHE is None or shutil.which("make") is None or shutil.which("git") is None or not (paths.ROOT / ".git").exists(),
    reason="needs make, git, a git checkout and a venv cache made by `make venv` (~/.cache/tckr/venv-*/.complete)")
SCRIPTS = ("tckr", "papermill", "jupyter", "pytest", "lint-imports")


def _env() -> dict[str, str]:
    """This environment without what would point a clone at another tree (the test run's PYTHONPATH, a runs
    folder, an outer make's flags)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TCKR_RUNS", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} in {cwd}: exit {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


@pytest.fixture(scope="module")
def clones(tmp_path_factory) -> list[Path]:
    """Clones a and b of HEAD, each after `make venv`; a starts with the older scheme's .venv symlink into the cache."""
    base = tmp_path_factory.mktemp("clones")
    out = []
    for name in ("a", "b"):
        d = base / name
        _run(["git", "clone", "-q", str(paths.ROOT), str(d)], base)
        if name == "a":
            (d / ".venv").symlink_to(CACHE, target_is_directory=True)
        _run(["make", "-s", "venv", f"VENV_CACHE={CACHE}"], d)
        out.append(d)
    return out


def test_each_clone_has_its_own_small_venv_over_the_cache(clones):
    for d in clones:
        venv = d / ".venv"
        assert venv.is_dir() and not venv.is_symlink()  # a's older symlink replaced, the cache behind it kept
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        assert size < 5_000_000, f"{venv} holds {size} bytes: the heavy packages must stay in the cache"
        _run(["make", "-s", "-q", "venv", f"VENV_CACHE={CACHE}"], d)  # -q: exit 0 only when nothing is left to do
        res = _run([str(venv / "bin" / "python"), "-c", "import tckr, torch; from tckr.core import paths; "
                    "print(tckr.__file__, paths.RUNS, torch.__file__, sep='\\n')"], d)
        tckr_file, runs, torch_file = res.stdout.split()
        assert Path(tckr_file) == d / "src" / "tckr" / "__init__.py"
        assert Path(runs) == d / "runs"
        assert Path(torch_file).resolve().is_relative_to(CACHE)
        for name in SCRIPTS:  # the cache's console scripts too, run by this clone's python
            assert (venv / "bin" / name).read_text().splitlines()[0] == f"#!{venv}/bin/python", name
    assert (CACHE / ".complete").is_file()
    site = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.resolve().is_relative_to(CACHE))
    installed = [*site.glob("__editable__*tckr*.pth"), *site.glob("tckr-*.dist-info/direct_url.json")]
    assert not any(str(clones[0].parent) in f.read_text() for f in installed)  # nothing of the clones in the cache


def test_a_papermill_kernel_of_each_clone_imports_that_clone(clones):
    import nbformat

    for d in clones:
        out = d / "kernel_tckr.txt"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            f"import pathlib, sys, tckr\npathlib.Path({str(out)!r}).write_text(tckr.__file__ + '\\n' + sys.executable)")])
        nbformat.write(nb, d / "probe.ipynb")
        _run([str(d / ".venv" / "bin" / "papermill"), "probe.ipynb", "probe.out.ipynb", "-k", "python3", "--log-level",
              "WARNING"], d)
        tckr_file, python = out.read_text().splitlines()
        assert Path(tckr_file) == d / "src" / "tckr" / "__init__.py"
        assert Path(python) == d / ".venv" / "bin" / "python"


@pytest.mark.slow
def test_a_run_started_through_each_clones_tckr_lands_in_its_runs(clones):
    ours = sorted((paths.RUNS).glob("*")) if paths.RUNS.is_dir() else []
    for d in clones:
        _run([str(d / ".venv" / "bin" / "tckr"), "study", "configs/tiny.yaml", "--phases", "00_data"], d, timeout=600)
        made = [r for r in (d / "runs").iterdir() if r.is_dir()]
        assert len(made) == 1 and (made[0] / "results" / "splits.csv").is_file()
    assert (sorted(paths.RUNS.glob("*")) if paths.RUNS.is_dir() else []) == ours
