"""The committed notebooks: no outputs, parameter defaults that open the newest run instead of making one each, and
parameters checked when a notebook starts (typed for papermill --help-notebook; a typo or a bad value is a clear error)."""

import ast
import json
import time

import pytest
import yaml

from tckr.core import notebook, paths
from tckr.core.config import ConfigError

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))


def _parameters(nb: dict) -> dict:
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'parameters'"
    tree = ast.parse("".join(cells[0]["source"]))
    assert all(isinstance(n, ast.AnnAssign) for n in tree.body), "every parameter declared as `name: type = value  # help`"
    return {n.target.id: ast.literal_eval(n.value) for n in tree.body}


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_typed_for_papermill_and_checked_when_the_notebook_starts(path):
    import papermill as pm

    nb = json.loads(path.read_text())
    params = _parameters(nb)
    unknown = sorted(set(params) - set(notebook.PARAMETERS))
    assert not unknown, f"{path.name}: parameters {unknown} have no entry in tckr.core.notebook.PARAMETERS"
    inferred = pm.inspect_notebook(str(path))  # what `papermill --help-notebook` prints
    for name, default in params.items():
        assert inferred[name]["inferred_type_name"] == notebook.PARAMETERS[name].papermill_type, (path.name, name)
        assert inferred[name]["help"], f"{path.name}: {name} has no help comment"
        assert notebook.check_value(name, default) == default  # the committed defaults are accepted
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    first = "".join(code[[i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", [])][0] + 1]["source"])
    call = f'notebook.check_parameters("{path.stem}", globals())'
    assert call in first and first.index(call) < first.index("runs."), f"{path.name}: its first cell must start with {call}"


@pytest.mark.parametrize("name, given, says", [
    ("cardinalities", "abc", "cardinalities: 'abc' is not accepted; a list of positive numbers, e.g. [1.0]"),
    ("cardinalities", "[1.0, 1.0]", "cardinalities: '[1.0, 1.0]' is not accepted; a list of positive numbers"),
    ("cardinalities", [-2.0], "cardinalities: [-2.0] is not accepted"),
    ("source", "train", "source: 'train' is not accepted; 'trained' or 'released'"),
    ("target_source", "trained", "target_source: 'trained' is not accepted; 'run' or 'released'"),
    ("label_mode", "medium", "label_mode: 'medium' is not accepted; 'soft', 'hard', or None"),
    ("n_shadows", 3, "n_shadows: 3 is not accepted; an even number of shadow models, at least 2"),
    ("n_shadows", "many", "n_shadows: 'many' is not accepted"),
    ("attacks", "lira_online,nope", "attacks: 'lira_online,nope' is not accepted; a list of distinct attack names among lira_online"),
    ("shard", "3/2", "shard: '3/2' is not accepted; None (every shard) or 'k/n' with 1 <= k <= n"),
    ("export_weights", "maybe", "export_weights: 'maybe' is not accepted; True or False"),
    ("config", 5, "config: 5 is not accepted; None (the run folder's own config) or a study config"),
    ("targets", "", "targets: '' is not accepted; 'all', 'teacher', 'students', or model names"),
])
def test_a_bad_parameter_value_is_one_line_saying_what_is_accepted(name, given, says):
    with pytest.raises(ConfigError) as e:
        notebook.check_value(name, given)
    assert str(e.value).startswith(says) and "\n" not in str(e.value)


@pytest.mark.parametrize("name, given, read", [
    ("cardinalities", "[1.0]", [1.0]), ("cardinalities", "0.5,2", [0.5, 2.0]), ("cardinalities", 1, [1.0]),
    ("cardinalities", None, None), ("n_shadows", "16", 16), ("attacks", "lira_online, loss", ["lira_online", "loss"]),
    ("attacks", ["rmia"], ["rmia"]), ("label_mode", "hard", "hard"), ("shard", "2/4", "2/4"), ("export_weights", "true", True),
    ("source", "released", "released"), ("run_dir", "latest", "latest"), ("targets", "teacher,student_synth1x", "teacher,student_synth1x"),
])
def test_papermill_strings_are_read_as_the_values_they_spell(name, given, read):
    assert notebook.check_value(name, given) == read


def test_check_parameters_flags_what_papermill_injected_but_the_cell_does_not_declare():
    cell = 'run_dir: str = "latest"  # a run\ncardinalities: list[float] = None  # sizes'
    ns = {"__annotations__": {"run_dir": str, "cardinalities": list}, "run_dir": "R", "cardinalities": "2,4",
          "rundir": "R", "In": ["", cell, '# Parameters\nrundir = "R"\ncardinalities = "2,4"\n']}
    with pytest.raises(ConfigError, match=r"^04_run_evaluate: unknown parameter\(s\) 'rundir' \(did you mean 'run_dir'\?\); "
                                          r"accepted: run_dir, cardinalities$"):
        notebook.check_parameters("04_run_evaluate", ns)
    ns["In"][-1] = '# Parameters\nrun_dir = "R"\ncardinalities = "2,4"\n'
    assert notebook.check_parameters("04_run_evaluate", ns) == {"run_dir": "R", "cardinalities": [2.0, 4.0]}
    assert ns["cardinalities"] == [2.0, 4.0]  # the notebook's cells below see the value as read
    del ns["In"]  # run by hand in Jupyter: nothing was injected, the values are still checked
    ns["cardinalities"] = "abc"
    with pytest.raises(ConfigError, match="cardinalities: 'abc' is not accepted"):
        notebook.check_parameters("04_run_evaluate", ns)


def _execute(name, tmp_path, parameters):
    import papermill as pm

    out = tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.ipynb"
    try:
        pm.execute_notebook(str(paths.NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters,
                            kernel_name=notebook.KERNEL, language="python", cwd=str(paths.NOTEBOOKS),
                            progress_bar=False, log_output=False)
        error = None
    except pm.PapermillExecutionError as e:
        error = e
    outputs = [o for c in json.loads(out.read_text())["cells"] for o in c.get("outputs", [])]
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    return error, text


def test_a_mistyped_papermill_parameter_stops_the_notebook_naming_the_right_one(tmp_path):
    error, _ = _execute("09_figures", tmp_path, {"rundir": str(tmp_path), "copy_to_images": False})
    assert error is not None and error.ename == "ConfigError"
    assert error.evalue == ("09_figures: unknown parameter(s) 'rundir' (did you mean 'run_dir'?); "
                            "accepted: run_dir, config, copy_to_images")
    error, _ = _execute("09_figures", tmp_path, {"run_dir": str(tmp_path), "copy_to_images": "maybe"})
    assert error is not None and error.evalue == "copy_to_images: 'maybe' is not accepted; True or False"


def test_run_dir_latest_says_which_run_it_opened_and_how_old_it_is(tmp_path, monkeypatch):
    runs_root = tmp_path / "runs"
    for name, minutes_ago in (("mini-old", 300), ("mini-new", 125)):
        (runs_root / name).mkdir(parents=True)
        (runs_root / name / "config.yaml").write_text(yaml.safe_dump({"study": {"name": "mini"}}))
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60 * minutes_ago))
        (runs_root / name / "environment.json").write_text(json.dumps({"created": when}))
    monkeypatch.setenv("TCKR_RUNS", str(runs_root))  # the kernel inherits it
    _, text = _execute("09_figures", tmp_path, {})  # the figures of an empty run fail; the run it opened is said
    assert f"run_dir='latest': {runs_root / 'mini-new'} (made 2 h 5 min ago; the newest of 2 run(s) under {runs_root})" in text
