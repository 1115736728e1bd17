"""The committed notebooks: no outputs, and parameter defaults that open the newest run instead of making one each."""

import ast
import json

import pytest

from tckr.core import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))


def _parameters(nb: dict) -> dict:
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'parameters'"
    tree = ast.parse("".join(cells[0]["source"]))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_the_notebook(path):
    """papermill's parameter inspection skips a line with two '=' (a warning at every run, the parameter missing from
    `papermill --help-notebook`): every assignment of the parameters cell must be one it reads."""
    from papermill.translators import PythonTranslator

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    seen = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    assert set(_parameters(nb)) <= seen, f"{path.name}: papermill cannot read {sorted(set(_parameters(nb)) - seen)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_opens_a_run_well(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    with_output = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not with_output, f"{path.name}: code cells {with_output} hold outputs or execution counts; clear them before committing"
    params = _parameters(nb)
    if path.stem == "00_data":
        assert params["run_dir"] is None and params["config"]  # the one notebook that starts a run
    else:
        assert params["run_dir"] == "latest" and params["config"] is None, params


def test_there_is_one_notebook_per_phase():
    from tckr.runfolder import phases

    assert [p.stem for p in NOTEBOOKS] == list(phases.PHASES)
