"""The package's layers (pyproject.toml's import-linter contracts) hold: `lint-imports` exits 0."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert cfg["root_package"] == "tckr"
    return {c["type"] + ":" + ",".join(c.get("source_modules", c.get("ancestors", []))): c for c in cfg["contracts"]}


def test_the_layers_are_written_down():
    c = _contracts()
    assert c["acyclic_siblings:tckr"]["ancestors"] == ["tckr"]
    layers = next(v for k, v in c.items() if k.startswith("layers:"))["layers"]
    assert layers.index("tckr.plots | tckr.report") < layers.index("tckr.ledger") < layers.index("tckr.artifacts")
    drawing = c["forbidden:tckr.plots,tckr.report,tckr.ledger,tckr.artifacts"]["forbidden_modules"]
    assert {"tckr.train", "tckr.lora", "tckr.synthesis", "tckr.generator", "tckr.mia", "tckr.pipelines"} <= set(drawing)
    maths = c["forbidden:tckr.attacks,tckr.metrics"]["forbidden_modules"]
    assert {"tckr.plots", "tckr.artifacts", "tckr.runs", "torch", "matplotlib"} <= set(maths)


def test_lint_imports_keeps_every_contract():
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(cmd + ["--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and f"{len(_contracts())} kept" in res.stdout
