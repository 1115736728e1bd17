"""Phase notebooks: executing them with papermill into a run folder (used by the study runner and the tests), and
checking their parameters when they start (:func:`check_parameters`).

A notebook's ``parameters`` cell declares each parameter with a type, a default and a help comment, the form papermill
reads for ``papermill --help-notebook``::

    cardinalities: list[float] = None  # student training-set sizes as multiples of |D|; None: synthesis.cardinalities

The first code cell after it calls ``notebook.check_parameters("<notebook>", globals())``, which checks every declared
parameter against :data:`PARAMETERS` with the config's typed validation (:mod:`tckr.core.config`), so ``-p
cardinalities abc`` is ``cardinalities: 'abc' is not accepted; ...`` saying what is, and a parameter papermill
injected that the cell does not declare (``-p rundir R``, a typo papermill only warns about) is an error naming
the declared ones.
"""

from __future__ import annotations

import ast
import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from tckr.core import config as config_mod
from tckr.core import paths, schema, shards
from tckr.core.config import ConfigError

KERNEL = "python3"
INJECTED = "# Parameters"  # first line of the cell papermill injects after the parameters cell (its translators' comment)


def execute_notebook(name: str, run_dir: str | Path, parameters: dict[str, Any] | None = None,
                     output: str | Path | None = None, progress: bool = False) -> Path:
    """Run ``notebooks/<name>.ipynb`` headless with ``parameters`` injected after its ``parameters``
    cell; the executed copy goes to ``<run_dir>/notebooks/<name>.ipynb`` (or ``output``)."""
    import papermill as pm  # lazy: optional heavy dependency (papermill), imported only when a notebook is executed

    src = paths.NOTEBOOKS / f"{name}.ipynb"
    if not src.is_file():
        known = sorted(p.stem for p in paths.NOTEBOOKS.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {src}; notebooks: {', '.join(known)}")
    run_dir = paths.resolve(run_dir)
    out = Path(output) if output else run_dir / "notebooks" / f"{name}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {"run_dir": str(run_dir), **(parameters or {})}
    pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=KERNEL, language="python",
                        cwd=str(paths.NOTEBOOKS), progress_bar=progress, log_output=False)
    return out


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """What a notebook parameter accepts: its ``type`` (checked by the config's ``_coerce``), or the config
    ``setting`` it overrides (its type and rules apply; None keeps the config's value), allowed ``choices``, an
    extra ``check`` that raises ValueError, and ``accepted``: the words the error uses."""

    accepted: str
    type: Any = None
    setting: str | None = None
    choices: tuple = ()
    check: Callable[[Any], Any] | None = None
    papermill_type: str = ""  # the annotation in the parameters cell (papermill's --help-notebook shows it)


def _setting_type(key: str) -> Any:
    section, name = key.split(".")
    return typing.get_type_hints(type(getattr(config_mod.Config(), section)))[name]


def _nonempty(value: Any) -> None:
    if not value or (isinstance(value, list) and not all(value)):
        raise ValueError("empty")


_RUN_DIR = "'latest' (the newest run, of `config` when given), a run folder such as 'runs/mini-20261129-190000'"
PARAMETERS: dict[str, Parameter] = {
    "config": Parameter("None (the run folder's own config) or a study config such as 'configs/mini.yaml'",
                        str | None, papermill_type="str"),
    "run_dir": Parameter(f"{_RUN_DIR}, or None (a new run folder; notebook 00)", str | None, papermill_type="str"),
    "export_prompts": Parameter("True or False", bool, papermill_type="bool"),
    "shard": Parameter("None (every shard) or 'k/n' with 1 <= k <= n, e.g. '2/4'", str | None,
                       check=shards.parse_shard, papermill_type="str"),
    "use_lora": Parameter("True or False", bool, papermill_type="bool"),
    "random_weights": Parameter("True or False", bool, papermill_type="bool"),
    "cardinalities": Parameter("a list of positive numbers, e.g. [1.0], or None (synthesis.cardinalities of the config)",
                               setting="synthesis.cardinalities", papermill_type="list[float]"),
    "label_mode": Parameter("'soft', 'hard', or None (gkd.label_mode of the config)", setting="gkd.label_mode",
                            papermill_type="str"),
    "export_weights": Parameter("True or False", bool, papermill_type="bool"),
    "run_ablation": Parameter("True or False", bool, papermill_type="bool"),
    "source": Parameter("'trained' or 'released'", str, choices=("trained", "released"), papermill_type="str"),
    "release_dir": Parameter("None (the repository root) or a folder holding trained_mbnv3/", str | None,
                             papermill_type="str"),
    "targets": Parameter("'all', 'teacher', 'students', or model names, comma-separated, e.g. 'teacher,student_synth1x'",
                         str | list[str], check=_nonempty, papermill_type="str"),
    "n_shadows": Parameter("an even number of shadow models, at least 2, e.g. 16, or None (mia.n_shadows of the config)",
                           setting="mia.n_shadows", papermill_type="int"),
    "attacks": Parameter("a list of distinct attack names among " + ", ".join(config_mod.ATTACKS)
                         + ", e.g. ['lira_online', 'loss'], or None (mia.attacks of the config)",
                         setting="mia.attacks", papermill_type="list[str]"),
    "target_source": Parameter("'run' or 'released'", str, choices=("run", "released"), papermill_type="str"),
    "copy_to_images": Parameter("True or False", bool, papermill_type="bool"),
}


def _read(value: Any, tp: Any) -> Any:
    """A ``papermill -p`` string as the value it spells for a non-string type: YAML (``[1.0]``, ``true``, ``16``),
    or comma-separated items for a list (``1,2``); a single item of a list type becomes a one-item list."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    listy = any(typing.get_origin(a) is list for a in args)
    if isinstance(value, str) and str not in args:
        text = value.strip()
        if listy and "," in text and not text.startswith("["):
            value = [_yaml(v.strip()) for v in text.split(",")]
        else:
            value = _yaml(text)
    if listy and value is not None and not isinstance(value, (list, tuple)) and not (str in args and isinstance(value, str)):
        value = [value]
    return value


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def check_value(name: str, value: Any) -> Any:
    """``value`` of parameter ``name`` as the notebook uses it (``papermill -p`` strings read, see :func:`_read`), or a
    :class:`ConfigError` ``"<name>: <value> is not accepted; <what is>"``."""
    spec = PARAMETERS[name]
    tp = (_setting_type(spec.setting) | None) if spec.setting else spec.type
    try:
        out = schema.coerce(_read(value, tp), tp, name)
        if spec.choices and out not in spec.choices:
            raise ValueError(out)
        if spec.check is not None and out is not None:
            spec.check(out)
        if spec.setting and out is not None:  # the setting's own rules (ranges, even shadow counts, attack names)
            config_mod.config_from_dict(config_mod.Config().to_dict(), {spec.setting: out}, registry=False)
    except (ConfigError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not accepted; {spec.accepted}") from None
    return out


def injected_names(history: list[str]) -> list[str]:
    """The names papermill assigned in the last cell it injected (``# Parameters`` first; the kernel's input history
    ``In`` holds it), in order; empty when the notebook was not run by papermill."""
    cells = [c for c in history if isinstance(c, str) and c.lstrip().startswith(INJECTED)]
    if not cells:
        return []
    try:
        tree = ast.parse(cells[-1])
    except SyntaxError:
        return []
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]


def check_parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Check the parameters of ``notebook`` in its ``namespace`` (``globals()``): a parameter papermill injected that
    the parameters cell does not declare (its annotated assignments, ``__annotations__``) is an error naming the
    declared ones with a did-you-mean; each declared parameter must hold what :data:`PARAMETERS` accepts
    (:func:`check_value`). The values as read (``"[1.0]"`` -> ``[1.0]``) replace the given ones in ``namespace``;
    returns them."""
    declared = list(namespace.get("__annotations__") or {})
    if not declared:
        raise ConfigError(f"{notebook}: its parameters cell declares no parameter as `name: type = value  # help`")
    unknown = [n for n in injected_names(namespace.get("In") or []) if n not in declared]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, declared, n=1)
            hints.append(repr(n) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{notebook}: unknown parameter(s) {', '.join(hints)}; accepted: {', '.join(declared)}")
    out = {}
    for name in declared:
        if name in PARAMETERS and name in namespace:
            out[name] = namespace[name] = check_value(name, namespace[name])
    return out
