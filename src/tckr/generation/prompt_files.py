"""The prompt files of a run's captions, in the original release's formats: the prompt ``"<class name>: <caption>"``
(:func:`prompt_for`), the fine-tuning view ``<dataset>_original_order.txt`` (one ``<class>: <caption>`` line per
image in dataset order) and the generation view ``<dataset>_grouped_by_class.json`` (``{class name: [captions]}``),
each with its writer and reader. :mod:`tckr.generation.captions` writes them beside ``captions.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from tckr.core import io


def prompt_for(class_name: str, caption: str) -> str:
    """The paper's "n: c" prompt."""
    return f"{class_name}: {caption}"


def clean(text: str) -> str:
    return " ".join(str(text).split())


def original_order_name(dataset: str) -> str:
    return f"{dataset}_original_order.txt"


def grouped_by_class_name(dataset: str) -> str:
    return f"{dataset}_grouped_by_class.json"


def write_original_order(path: str | Path, class_names: Sequence[str], captions: Sequence[str]) -> Path:
    """One ``<class>: <caption>`` line per image, in dataset order (the original's fine-tuning file)."""
    if len(class_names) != len(captions):
        raise ValueError(f"{len(class_names)} class names for {len(captions)} captions")
    lines = [prompt_for(clean(n), clean(c)) for n, c in zip(class_names, captions)]
    return io.write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_original_order(path: str | Path, class_names: Iterable[str] | None = None) -> pd.DataFrame:
    """Read a ``<class>: <caption>`` file back: columns ``class_name``, ``caption``, ``prompt``.

    With ``class_names`` a line must start with one of them (the longest match wins, so names that contain
    ``": "`` are read right); without, the class is the text before the first ``":"``.
    """
    path = Path(path)
    known = sorted(class_names or [], key=len, reverse=True)
    rows = []
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise io.CorruptFileError(f"{path}: not UTF-8 text ({e})") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name = next((k for k in known if line.startswith(k + ":")), None)
        if name is None:
            if known or ":" not in line:
                raise ValueError(f"{path}:{i}: expected '<class>: <caption>'"
                                 + (f" with a class among {', '.join(sorted(known))}" if known else "") + f", got {line!r}")
            name = line.split(":", 1)[0]
        caption = line[len(name) + 1:].strip()
        rows.append((name.strip(), caption, prompt_for(name.strip(), caption)))
    return pd.DataFrame(rows, columns=["class_name", "caption", "prompt"])


def write_grouped_by_class(path: str | Path, class_names: Sequence[str], captions: Sequence[str],
                           order: Sequence[str] | None = None) -> Path:
    """``{class name: [captions]}`` JSON (the original's generation file); captions keep dataset order within a
    class, classes follow ``order`` (default: first appearance)."""
    if len(class_names) != len(captions):
        raise ValueError(f"{len(class_names)} class names for {len(captions)} captions")
    grouped: dict[str, list[str]] = {k: [] for k in (order or [])}
    for n, c in zip(class_names, captions):
        grouped.setdefault(clean(n), []).append(clean(c))
    return io.write_text(path, json.dumps(grouped, indent=1, ensure_ascii=False) + "\n")


def read_grouped_by_class(path: str | Path) -> dict[str, list[str]]:
    """Read a ``{class name: [captions]}`` JSON file back; anything else (not JSON, another shape, a caption
    that is not a string) is an error naming the file and the first offending entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise io.CorruptFileError(f"{path}: not valid JSON ({type(e).__name__}: {e}); expected {{class name: [captions]}}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{class name: [captions]}}, got a {type(data).__name__}: {str(data)[:80]}")
    for k, v in data.items():
        if not isinstance(v, list):
            raise ValueError(f"{path}: class {k!r}: expected a list of caption strings, got {type(v).__name__} {str(v)[:80]}")
        bad = [i for i, c in enumerate(v) if not isinstance(c, str)]
        if bad:
            raise ValueError(f"{path}: class {k!r}, caption {bad[0]}: expected a string, got {v[bad[0]]!r:.80}")
    return {str(k): list(v) for k, v in data.items()}


def captions_from_grouped(grouped: dict[str, list[str]], class_names: Sequence[str]) -> pd.DataFrame:
    """A grouped-by-class mapping as a table (``label``, ``class_name``, ``caption``, ``prompt``) in class order;
    class names outside ``class_names`` are an error that names them. Captions already written as
    ``"<class>: <caption>"`` lose that prefix."""
    unknown = [k for k in grouped if k not in class_names]
    if unknown:
        raise ValueError(f"classes {unknown} are not among this dataset's classes: {', '.join(class_names)}")
    class_names = list(class_names)
    rows = []
    for k in class_names:
        for c in grouped.get(k, []):
            c = clean(c)
            c = c[len(k) + 1:].strip() if c.startswith(k + ":") else c
            rows.append((class_names.index(k), k, c, prompt_for(k, c)))
    return pd.DataFrame(rows, columns=["label", "class_name", "caption", "prompt"])
