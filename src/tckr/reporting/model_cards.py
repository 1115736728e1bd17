"""Model cards of the release folders (``trained_mbnv3/README.md``, ``lora_sd2/README.md``): Hugging Face YAML front
matter, then how to load the files. Every value in the front matter is measured: read from the run's result files when
it is released (:func:`classifier_metrics`, :func:`adapter_metrics`; ``tckr.reporting.release`` records them in each
folder's manifest) and written from the manifest, so a folder holding several datasets lists them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from tckr.core import io, registry
from tckr.privacy import ledger
from tckr.runfolder import artifacts, runs

LORA_README = """\
# lora_sd2/

LoRA adapters of the generator's UNet attention projections, one per dataset, written by
`tckr release --run-dir runs/<id>` from a finished run (`release.json` lists every file with its sha256;
each adapter's `.json` sidecar gives its rank, alpha, target modules and base model).

Load one with `tckr.generator`:

```python
from tckr import generator

pipe = generator.load("{mini_base}", lora="lora_sd2/lora_tiny_fashion_mnist.safetensors")  # mini tier
pipe = generator.load("stabilityai/stable-diffusion-2")                                                # paper tier
generator.load_lora(pipe, "lora_sd2/lora_sd2_cifar10.safetensors")
```

`generator.load_lora(pipe, path)` reads this project's adapters (`unet.<module>.lora_A.weight` / `lora_B`, alpha in
the metadata) and the original TCKR release's SD2 adapters as they are: diffusers' linear keys
(`unet.<module>.lora.down.weight` / `.lora.up.weight`) or attention-processor keys
(`<attn>.processor.to_k_lora.down.weight`, as `unet.save_attn_procs` writes them). The rank comes from the weights;
alpha from the file's metadata, else alpha = rank (scale 1, as diffusers' attention processors used). Keys that match
no UNet linear layer, UNet attention projections the file leaves out, and shapes that do not fit the base are errors
naming them: an SD2 adapter needs the SD2 base (`stabilityai/stable-diffusion-2`), the mini tier's `lora_tiny_*`
adapters the base they were trained on (`{mini_base}`, their sidecar's `base_model`). On the mini tier the folder
keeps the original's name although the adapter is for the tiny generator.
"""


TRAINED_README = """\
# trained_mbnv3/

Classifiers of each released dataset, written by `tckr release --run-dir runs/<id>` from a finished run: the teacher
(trained on the real images D) in `teachers/`, the students (trained on synthetic images only, with the teacher's soft
labels or the prompts' hard labels) in `students/`. Each `.safetensors` file has a `.json` sidecar (architecture,
input size, class names, normalisation, training record, test accuracy, the run it came from); `release.json` lists
every file with its sha256. The values above are measured on the run's real test split and by its pre-registered
membership-inference attack (AUC in %, with its 95% interval; 50% is chance).

```python
from tckr import release

model = release.load_released("fashion_mnist_teacher")      # a torch module in eval mode
clf = release.load_released_trained("fashion_mnist_teacher")  # the same with its metadata
```
"""
MINI_BASE = "models/tiny-sd-fashion-blur8"  # the mini tier's base (configs/mini.yaml), named where no released adapter names its own
CARDS = {  # folder -> (front matter besides license, datasets, base_model and model-index; the card's text)
    "trained_mbnv3": ({"library_name": "pytorch", "pipeline_tag": "image-classification",
                       "tags": ["image-classification", "knowledge-distillation", "synthetic-data", "membership-inference",
                                "tckr"]}, TRAINED_README),
    "lora_sd2": ({"library_name": "diffusers", "pipeline_tag": "text-to-image",
                  "tags": ["lora", "text-to-image", "stable-diffusion", "synthetic-data", "membership-inference", "tckr"]},
                 LORA_README),
}


def _auc(r: Any, attack: str) -> dict[str, Any]:
    return {"attack": attack, "auc": round(100 * float(r["auc"]), 2),
            "auc_ci": [round(100 * float(r["auc_lo"]), 2), round(100 * float(r["auc_hi"]), 2)]}


def classifier_metrics(run: runs.Run, folder: Path, files: list[str]) -> dict[str, Any]:
    """Per released classifier (file stem): the test accuracy its sidecar recorded from ``results/classifiers.csv``
    and, when the run was attacked, its pre-registered membership-inference AUC (``tckr.ledger.classifier_headlines``)."""
    heads = {}
    if (run.dir / "results" / "mia.csv").is_file():
        variant = ledger.headline(run.dir)
        heads = {r["target"]: _auc(r, variant) for _, r in ledger.classifier_headlines(run.dir, variant).iterrows()}
    sides = {Path(rel).stem: io.read_json(folder / rel) for rel in files if rel.endswith(".json")}
    return {stem: {"test_accuracy": s["test_accuracy"], **({"membership": heads[s["model"]]} if s["model"] in heads else {})}
            for stem, s in sides.items()}


def adapter_metrics(run: runs.Run) -> dict[str, Any]:
    """The generator attack's pre-registered AUC (the ledger's headline row of the generator), when the run has one."""
    f = run.dir / "results" / "ledger.csv"
    rows = ledger.headlines(ledger.main_rows(pd.read_csv(f))) if f.is_file() else pd.DataFrame({"release": []})
    rows = rows[rows["release"] == "generator"]
    return {artifacts.adapter_path(run).stem: {"membership": _auc(rows.iloc[0], rows.iloc[0]["attack"])}} if len(rows) else {}


def card(kind: str, datasets: dict[str, Any], bases: list[str]) -> str:
    """The README.md of release folder ``kind`` (``trained_mbnv3`` or ``lora_sd2``) from its manifest's ``datasets``
    (each with the ``metrics`` recorded at release) and the adapters' base models."""
    meta, body = CARDS[kind]
    meta = {**meta, "license": "mit", "datasets": [registry.spec(d).hf_id for d in sorted(datasets)]}
    meta.update({"base_model": bases[0] if len(bases) == 1 else bases} if bases else {})
    index = []
    for d, entry in sorted(datasets.items()):
        for name, m in entry.get("metrics", {}).items():
            results = []
            if "test_accuracy" in m:
                results.append(_result(meta, d, "test", "the real test split",
                                       {"type": "accuracy", "value": m["test_accuracy"], "name": "test accuracy (%)"}))
            if "membership" in m:
                mi = m["membership"]
                results.append(_result(meta, d, "train", "members (D) against held-out non-members (H) of the train split",
                                       {"type": "roc_auc", "value": mi["auc"], "name": f"membership-inference AUC (%), "
                                        f"{mi['attack']}, 95% interval [{mi['auc_ci'][0]}, {mi['auc_ci'][1]}]"}))
            index += [{"name": name, "results": results}] if results else []
    if index:
        meta.update({"metrics": sorted({v["type"] for e in index for r in e["results"] for v in r["metrics"]}),
                     "model-index": index})
    local = [b for b in bases if b.startswith("models/")]
    body = body.replace("{mini_base}", local[0] if local else MINI_BASE)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n\n" + body


def _result(meta: dict[str, Any], dataset: str, split: str, what: str, metric: dict[str, Any]) -> dict[str, Any]:
    return {"task": {"type": meta["pipeline_tag"]}, "metrics": [metric],
            "dataset": {"name": f"{dataset}: {what}", "type": registry.spec(dataset).hf_id, "split": split}}
