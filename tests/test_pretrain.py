"""tckr pretrain: a few steps of both stages on configs/tiny.yaml's public partition, a loadable result with its
training indices, resume, cache checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tckr import cli
from tckr.core import io
from tckr.datasets import provenance
from tckr.generation import generator, pretrain
from tckr.runfolder import runs


def _args(tmp_path, steps: int) -> list[str]:
    return ["pretrain", "--config", "configs/tiny.yaml", "--run-dir", str(tmp_path / "work"), "--out", str(tmp_path / "model"),
            "--limit", "48", "--vae-steps", "2", "--vae-batch", "8", "--steps", str(steps), "--batch", "8",
            "--warmup", "2", "--checkpoint-every", "2", "--threads", "1"]


def test_pretrain_saves_a_loadable_pipeline_and_resumes(tmp_path):
    assert cli.main(_args(tmp_path, 3)) == 0
    work = tmp_path / "work"
    assert io.read_json(work / "checkpoint" / "state.json")["step"] == 3
    settings = io.read_json(work / "args.json")  # every setting, the defaults of tckr pretrain included
    assert list(settings)[:4] == ["config", "out", "work", "limit"] and len(settings) == 21
    assert (settings["steps"], settings["limit"], settings["kl_weight"], settings["work"]) == (3, 48, 1e-4, str(work))
    prompts = pd.read_csv(work / "public_prompts.csv")
    assert list(prompts.columns) == ["index", "label", "prompt"] and len(prompts) == 48
    assert prompts["prompt"].str.contains(": ").all()
    scale = io.load_weights(work / "public_latents.safetensors")[1]["scaling_factor"]
    rec, index = provenance.read_training_data(tmp_path / "model")
    public = runs.open_run(None, work / "run").splits().public
    assert rec["n"] == 48 and np.array_equal(index, np.sort(prompts["index"].to_numpy()))
    assert np.isin(index, public).all()

    pipe = generator.load(tmp_path / "model")
    assert pipe.vae.config.scaling_factor == pytest.approx(float(scale))
    img = pipe(["Sneaker: a small bright object"], num_inference_steps=2, guidance_scale=2.0, output_type="np").images
    assert img.shape == (1, 32, 32, 3) and np.isfinite(img).all()

    assert cli.main(_args(tmp_path, 5)) == 0
    assert "resumed from step 3" in (work / "log.txt").read_text()
    loss = pd.read_csv(work / "loss.csv")
    assert loss["step"].tolist() == [1, 2, 3, 4, 5] and np.isfinite(loss["loss"]).all()
    assert io.read_json(work / "checkpoint" / "state.json")["step"] == 5


def test_prompt_cache_from_another_subset_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    pretrain.public_data("configs/tiny.yaml", work, limit=10, seed=0)
    with pytest.raises(ValueError, match="another --limit, --seed or config"):
        pretrain.public_data("configs/tiny.yaml", work, limit=10, seed=1)
