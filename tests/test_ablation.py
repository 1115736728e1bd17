"""tckr.classification.ablation: the class-prompt sub-run, and the four students (caption / class prompts × soft /
hard labels) trained, evaluated and tabulated. Synthesis and training are replaced by planted stand-ins (each
student always answers its own class), so the table's accuracies are known exactly and the file stays fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tckr.classification import ablation, classifiers, evaluate, train
from tckr.core import io
from tckr.generation import lora
from tckr.runfolder import artifacts, runs

ARCH = "mobilenetv3_small_050"
MOD = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
PLANTED = {("caption", "soft"): 1, ("caption", "hard"): 2, ("class", "soft"): 3, ("class", "hard"): 4}


def planted(cls: int, name: str, multiple: float | None, label_mode: str, role: str = "student"):
    net = classifiers.build(ARCH, 10, pretrained=False, input_size=32)
    with torch.no_grad():
        net.get_classifier().bias[cls] = 5.0  # zero head weights: every image gets class ``cls``
    info = {"role": role, "name": name, "label_mode": label_mode, "multiple": multiple, "train_size": 50,
            "val_accuracy": 10.0, "best_epoch": 1, "epochs_run": 1, "train_seconds": 0.1, "seed": 0}
    return classifiers.TrainedClassifier(net.eval(), ARCH, 10, input_size=32, stem_stride=1,
                                         normalisation={"mean": [0.3] * 3, "std": [0.3] * 3}, info=info)


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """A tiny run with an adapter and its record (what 02 leaves); synthesis and training replaced, calls recorded."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"study.num_threads": 1})
    adapter = artifacts.adapter_path(run)
    io.save_weights(adapter, {f"unet.{MOD}.lora_A.weight": torch.ones(4, 32), f"unet.{MOD}.lora_B.weight": torch.ones(32, 4)},
                    {"rank": 4})
    io.write_json(adapter.parent / "training.json", {"steps": 4, "adapter_sha256": io.sha256_file(adapter)})
    calls = {"generate": [], "student": []}
    teacher = planted(0, "teacher", None, "real", role="teacher")
    monkeypatch.setattr(ablation.synthetic, "is_complete", lambda r: r.dir in calls["generate"])
    monkeypatch.setattr(ablation.synthesis, "generate", lambda r, progress=True: calls["generate"].append(r.dir))
    monkeypatch.setattr(train, "teacher", lambda r, progress=True: teacher)

    def student(r, multiple, teacher_model=None, *, label_mode=None, progress=True):
        assert teacher_model is teacher
        prompt_mode = r.cfg.synthesis.prompt_mode
        calls["student"].append((prompt_mode, label_mode, multiple, r.dir))
        return planted(PLANTED[(prompt_mode, label_mode)], artifacts.model_name("student", multiple, label_mode), multiple, label_mode)

    monkeypatch.setattr(train, "student", student)
    return run, calls


def test_class_prompt_sub_run_shares_the_adapter_with_its_record(stand_ins):
    run, _ = stand_ins
    sub = ablation.class_prompt_run(run, 0.5)
    assert sub.dir == run.dir / "ablation" / "class_prompts" and sub.seed == run.seed
    assert (sub.cfg.synthesis.prompt_mode, sub.cfg.synthesis.cardinalities, sub.cfg.mia.pipeline_cardinalities) == ("class", [0.5], [])
    assert np.array_equal(sub.splits().D, run.splits().D)  # the same private set D
    assert artifacts.adapter_path(sub).read_bytes() == artifacts.adapter_path(run).read_bytes()
    assert lora.adapter_problem(sub) is None  # its sha256 came along: the copy is checked like the original


def test_class_prompt_sub_run_of_a_power_study_opens(tmp_path):
    """A power study's dosed cardinality need not be the ablation's: the sub-run doses nothing."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={
        "study.num_threads": 1, "synthesis.cardinalities": [0.25, 0.5], "mia.pipeline_cardinalities": [0.25, 0.5],
        "mia.n_pipelines": 4, "power.cardinality": 0.5})
    sub = ablation.class_prompt_run(run, 0.25)
    assert sub.cfg.synthesis.cardinalities == [0.25] and sub.cfg.power.cardinality == 0.0


def test_run_ablation_tabulates_the_four_students(stand_ins):
    run, calls = stand_ins
    table = ablation.run_ablation(run, progress=False)
    sub_dir = run.dir / "ablation" / "class_prompts"
    assert calls["generate"] == [sub_dir]
    assert [c[:3] for c in calls["student"]] == [("caption", "soft", 0.5), ("caption", "hard", 0.5), ("class", "soft", 0.5),
                                                 ("class", "hard", 0.5)]  # the smallest cardinality by default
    assert [c[3] for c in calls["student"]] == [run.dir, run.dir, sub_dir, sub_dir]
    labels = run.real("test").labels
    assert list(table.columns) == ["prompt_mode", "label_mode", "cardinality", "model", "test_accuracy"]
    for r in table.itertuples():
        assert r.test_accuracy == pytest.approx(100 * np.mean(labels == PLANTED[(r.prompt_mode, r.label_mode)]))
        assert r.model == artifacts.model_name("student", 0.5, r.label_mode) and r.cardinality == 0.5
    pd.testing.assert_frame_equal(pd.read_csv(run.dir / "results" / "ablation.csv"), table, check_dtype=False)
    # the caption-prompt students are rows of the run's own table, the class-prompt ones of the sub-run's
    own = evaluate.results_table(run).set_index("model")["test_accuracy"]
    sub = evaluate.results_table(runs.open_run(None, sub_dir)).set_index("model")["test_accuracy"]
    assert own["student_synth0.5x_hard"] == pytest.approx(100 * np.mean(labels == 2))
    assert sub["student_synth0.5x"] == pytest.approx(100 * np.mean(labels == 3))
    assert sub["student_synth0.5x_hard"] == pytest.approx(100 * np.mean(labels == 4))
    ablation.run_ablation(run, progress=False)
    assert calls["generate"] == [sub_dir]  # the class-prompt set is made once
