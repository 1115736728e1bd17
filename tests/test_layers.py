"""The package's structure holds: every module in a layer, the contracts kept, no cycle, the facade thin and unused inside.

These run the tools (lint-imports, grimp, the import system) rather than reading pyproject.toml's text.
"""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import tckr

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tckr"
LAYERS = ("cli", "orchestration", "reporting", "privacy", "classification", "generation", "runfolder", "datasets", "core")
MAX_LINES = 450


def _modules() -> list[str]:
    out = []
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _lint_imports() -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd + ["--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_lint_imports_keeps_every_contract_with_no_exception():
    res = _lint_imports()
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout
    assert "ignore_imports" not in (ROOT / "pyproject.toml").read_text()


def test_lint_imports_fails_on_a_planted_upward_import(tmp_path):
    """The contracts can fail: a core module importing the privacy layer breaks them."""
    planted = SRC / "core" / "_planted_upward.py"
    planted.write_text("from tckr.privacy import ledger  # noqa: F401\n")
    try:
        res = _lint_imports()
    finally:
        planted.unlink()
    assert res.returncode != 0 and "tckr.core._planted_upward" in res.stdout


def test_every_module_sits_in_a_layer_subpackage():
    top = sorted(p.name for p in SRC.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    assert top == sorted(["__init__.py", *(f"{n}.py" if n == "cli" and (SRC / "cli.py").exists() else n for n in LAYERS)]), top
    for m in _modules():
        assert m == "tckr" or m.split(".")[1] in LAYERS, m


def test_grimp_finds_no_cycle_between_modules_in_function_imports_included():
    graph = grimp.build_graph("tckr", include_external_packages=False)
    modules = sorted(m for m in graph.modules if m.startswith("tckr."))
    # the package __init__ files hold nothing but docstrings (the top one builds the facade lazily): leave them out
    modules = [m for m in modules if not (SRC.parent / m.replace(".", "/") / "__init__.py").exists()]
    for a in modules:
        for b in graph.find_modules_directly_imported_by(a):
            if b in modules and a != b:
                assert not graph.chain_exists(importer=b, imported=a), f"cycle: {a} -> {b} -> ... -> {a}"


def test_no_file_in_src_is_over_the_line_limit():
    long = {str(f.relative_to(SRC)): n for f in SRC.rglob("*.py") if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_the_facade_resolves_every_public_name_to_its_home():
    for name, homes in tckr.PUBLIC.items():
        module = importlib.import_module(f"tckr.{name}")
        assert sorted(module.__all__) == sorted(n for names in homes.values() for n in names)
        for home, names in homes.items():
            source = importlib.import_module(home)
            for n in names:
                assert getattr(module, n) is getattr(source, n), f"tckr.{name}.{n}"
    from tckr import data

    assert data.load_real is importlib.import_module("tckr.datasets.real").load_real
    with pytest.raises(AttributeError):
        tckr.not_a_public_module  # noqa: B018


def test_importing_tckr_and_a_facade_name_imports_no_torch():
    code = "import sys, tckr, tckr.attacks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_no_code_inside_the_package_imports_through_the_facade_or_reexports():
    public = set(tckr.PUBLIC)
    problems = []
    for f in sorted(SRC.rglob("*.py")):
        if f == SRC / "__init__.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tckr":
                problems += [f"{f.name}: from tckr import {a.name}" for a in node.names if a.name in public]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tckr.") \
                    and node.module.count(".") == 1 and node.module.split(".")[1] in public:
                problems.append(f"{f.name}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                problems += [f"{f.name}: import {a.name}" for a in node.names
                             if a.name.startswith("tckr.") and a.name.count(".") == 1 and a.name.split(".")[1] in public]
            elif isinstance(node, ast.ImportFrom) and node.level:
                problems.append(f"{f.name}: relative import from {'.' * node.level}{node.module or ''}")
    assert not problems, problems


def test_no_module_reexports_names_it_does_not_use():
    """A re-export is an import kept only for others to reach through (flake8's F401, silenced with noqa)."""
    silenced = [f"{f.relative_to(SRC)}:{i}" for f in sorted(SRC.rglob("*.py")) if f != SRC / "__init__.py"
                for i, line in enumerate(f.read_text().splitlines(), 1) if "noqa: F401" in line]
    assert not silenced, silenced
