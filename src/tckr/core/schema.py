"""Typed settings from nested mappings: the machinery under :mod:`tckr.core.config`, which knows nothing of the study.

- :func:`rng` declares a numeric dataclass field together with its bounds (:class:`Range`), so each bound lives
  on the field it limits and :func:`ranges` reads them back;
- :func:`build` makes a dataclass from a nested mapping, checking every key (with a close-match hint) and every
  value against its field's annotation (:func:`coerce`);
- :func:`merge` lays one mapping over another, the way a config file's ``extends:`` parent is inherited.

Errors are :class:`SchemaError`; tckr.core.config raises them again as its ConfigError, naming the file.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class SchemaError(ValueError):
    """A key or value that does not fit the annotated dataclasses."""


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric setting, ``None`` = unbounded; inclusive unless ``lo_open`` / ``hi_open``.
    ``note`` tells what the edge values mean, in the error message."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""

    def contains(self, v: float) -> bool:
        above = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        below = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return above and below

    def accepted(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return "accepted: " + " and ".join(parts) + (f" ({self.note})" if self.note else "")


def rng(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None, note: str = "") -> Any:
    """A numeric dataclass field and its bounds: ``ge`` / ``gt`` the lower one (inclusive / exclusive), ``le`` /
    ``lt`` the upper one. A list default (copied for each instance) bounds every element."""
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise TypeError("rng: give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    bounds = Range(ge if gt is None else gt, le if lt is None else lt, gt is not None, lt is not None, note)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"range": bounds})
    return field(default=default, metadata={"range": bounds})


def ranges(cls: type) -> dict[str, Range]:
    """The bounds declared with :func:`rng` on the fields of dataclass ``cls``, by field name, in field order."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}


def describe(tp: Any) -> str:
    """An annotation in words, for error messages ("'soft' | 'hard'", "list of float")."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {describe(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against annotation ``tp`` (an int given for a float becomes a float); ``where`` names the key."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise SchemaError(f"{where}: {value!r} is not accepted; use one of {describe(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return coerce(value, arg, where)
            except SchemaError:
                continue
        raise SchemaError(f"{where}: {value!r} is not a {describe(tp)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SchemaError(f"{where}: expected a {describe(tp)}, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 5e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise SchemaError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SchemaError(f"{where}: expected a string, got {value!r}")
        return value
    raise SchemaError(f"{where}: unsupported type {tp}")


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Dataclass ``cls`` from a nested mapping: unknown keys are named (with the closest accepted one), values
    checked against their annotations, missing keys keep their defaults, a section given as None is empty."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        hints_txt = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), names, n=1)
            hints_txt.append(f"{where + '.' if where else ''}{k}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise SchemaError(f"unknown key(s) {', '.join(hints_txt)}; accepted keys in {where or 'the top level'}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, data[name] or {}, key)
        else:
            kwargs[name] = coerce(data[name], tp, key)
    return cls(**kwargs)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``dotted`` "a.b" (an override such as ``--set train.epochs=3``)."""
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SchemaError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` laid over ``parent`` key by key, neither changed: a mapping merges into the parent's mapping (a
    section left empty, None, keeps the parent's), a list or a scalar replaces the parent's value whole."""
    out = copy.deepcopy(parent)
    for k, v in child.items():
        if isinstance(out.get(k), dict) and (isinstance(v, dict) or v is None):
            out[k] = merge(out[k], v or {})
        else:
            out[k] = copy.deepcopy(v)
    return out
