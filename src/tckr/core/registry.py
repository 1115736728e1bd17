"""The dataset registry: the paper's datasets and their class names, from ``assets/datasets/<name>.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from tckr.core import paths


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    hf_id: str
    hf_config: str | None
    train_split: str
    test_split: str | None
    image_column: str
    label_column: str
    class_names: tuple[str, ...]
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@lru_cache(maxsize=None)
def _registry() -> dict[str, DatasetSpec]:
    specs = {}
    for f in sorted((paths.ASSETS / "datasets").glob("*.json")):
        d = json.loads(f.read_text())
        specs[d["name"]] = DatasetSpec(
            name=d["name"], hf_id=d["hf_id"], hf_config=d.get("hf_config"),
            train_split=d.get("train_split") or "train", test_split=d.get("test_split"),
            image_column=d["image_column"], label_column=d["label_column"],
            class_names=tuple(d["class_names"]), notes=d.get("notes", ""),
        )
    return specs


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_real`."""
    return sorted(_registry())


def spec(name: str) -> DatasetSpec:
    """The registry entry of a dataset; ``ValueError`` naming the accepted names otherwise."""
    reg = _registry()
    if name not in reg:
        raise ValueError(f"unknown dataset {name!r}; accepted: {', '.join(sorted(reg))}")
    return reg[name]


def class_names(name: str) -> list[str]:
    return list(spec(name).class_names)
