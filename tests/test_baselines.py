"""gkd.baselines: the student rows that separate where a student's accuracy comes from (tckr.classification.baselines)
— the config key, the names, and a real run on configs/tiny.yaml: the base generator's set (class prompts, no adapter)
made once in baselines/base/, its soft- and hard-label students trained, tested and tabulated, then loaded again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tckr.classification import baselines, classifiers
from tckr.core import io
from tckr.core.config import STUDENT_VARIANTS, ConfigError, load_config
from tckr.runfolder import phases, runs, synthetic


def test_config_defaults_to_no_baselines_and_names_what_is_accepted():
    cfg = load_config("configs/tiny.yaml")  # the default: no baseline rows; the mini tier lists all three
    assert cfg.gkd.baselines == [] and baselines.variants(cfg) == ["lora_soft"]
    assert baselines.variants(load_config("configs/mini.yaml")) == ["lora_soft", "lora_hard", "base_soft", "public_only"]
    cfg = load_config("configs/tiny.yaml", {"gkd.baselines": ["public_only", "base_soft", "lora_hard"]})
    assert baselines.variants(cfg) == ["lora_soft", "public_only", "base_soft", "lora_hard"]
    for bad in (["lora_soft"], ["base"], ["public_only", "public_only"]):  # the run's own student, unknown, repeated
        with pytest.raises(ConfigError, match=r"gkd.baselines: .* accepted: distinct names among lora_soft, lora_hard, "
                                              r"base_soft, public_only, other than the run's own student \(lora_soft"):
            load_config("configs/tiny.yaml", {"gkd.baselines": bad})
    assert baselines.variants(load_config("configs/tiny.yaml", {"gkd.label_mode": "hard", "gkd.baselines": ["lora_soft"]})) \
        == ["lora_hard", "lora_soft"]


def test_every_variant_has_one_generator_label_pair_and_a_distinct_row_name():
    assert tuple(baselines.VARIANTS) == STUDENT_VARIANTS
    names = {v: baselines.variant_name(v, 0.5) for v in STUDENT_VARIANTS}
    assert names == {"lora_soft": "student_synth0.5x", "lora_hard": "student_synth0.5x_hard",
                     "base_soft": "student_base0.5x", "public_only": "student_base0.5x_hard"}
    assert phases.owner("baselines/base/synthetic/manifest.json") == "04_run_evaluate"


def test_base_students_are_trained_on_the_base_generators_class_prompt_set_and_tabulated(tmp_path, monkeypatch):
    over = {"study.num_threads": 1, "synthesis.cardinalities": [0.2], "mia.pipeline_cardinalities": [0.2],
            "gkd.baselines": ["base_soft", "public_only"],
            "train.epochs": 1}
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides=over)
    rows = baselines.run_baselines(run, progress=False)
    assert list(rows) == ["student_base0.2x", "student_base0.2x_hard"]

    base = baselines.open_base(run)
    assert base.dir == run.dir / "baselines" / "base" and base.seed == run.seed
    assert np.array_equal(base.splits().D, run.splits().D) and not (run.dir / "synthetic").exists()
    manifest = io.read_json(synthetic.synthetic_dir(base) / "manifest.json")
    assert manifest["adapter"] is None and manifest["prompt_mode"] == "class" and manifest["base"] == run.cfg.generator.base
    plan = pd.read_csv(synthetic.synthetic_dir(base) / "plan.csv")
    assert set(plan["prompt"]) == set(run.class_names)  # class names only: nothing of D in a prompt
    images = synthetic.load_synthetic(base, 0.2).images
    assert len(images) == 20 and images.std() > 0

    table = pd.read_csv(run.dir / "results" / "classifiers.csv").set_index("model")
    assert table.loc["student_base0.2x", "label_mode"] == "soft" and table.loc["student_base0.2x_hard", "label_mode"] == "hard"
    assert (table["train_size"] == 20).all() and table["test_accuracy"].between(0, 100).all()
    saved = sorted(f.name for f in (base.dir / "classifiers").glob("*.safetensors"))
    assert saved == ["fashion_mnist_mbnv3_synth0.2x.safetensors", "fashion_mnist_mbnv3_synth0.2x_hard.safetensors"]
    assert (run.dir / "classifiers" / "fashion_mnist_mbnv3_real.safetensors").is_file()  # base_soft's teacher: the run's
    soft = classifiers.load_trained(base.dir / "classifiers" / saved[0], arch=run.cfg.classifier.student_arch, num_classes=10)
    assert soft.info["label_mode"] == "soft"

    def no_more(*a, **k):
        raise AssertionError("a finished baseline was made again")

    monkeypatch.setattr(baselines.synthesis, "generate", no_more)
    monkeypatch.setattr(baselines.train, "fit", no_more)
    again = baselines.run_baselines(run, progress=False)
    assert {k: v["test_accuracy"] for k, v in again.items()} == {k: v["test_accuracy"] for k, v in rows.items()}
