"""tckr.lora: a few LoRA steps on the tiny architecture, metadata, loss history, and resume after a crash."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tckr.core import io
from tckr.generation import captions, generator, lora
from tckr.runfolder import artifacts, runs


@pytest.fixture
def base_dir(tiny_sd_base):
    return tiny_sd_base


def _run(tmp_path, base_dir, name):
    run = runs.open_run("configs/tiny.yaml", tmp_path / name, overrides={"generator.base": str(base_dir)})
    captions.caption_run(run, progress=False)
    return run


def test_a_few_lora_steps(tmp_path, base_dir):
    run = _run(tmp_path, base_dir, "a")
    path = lora.finetune(run, progress=False)
    assert path == run.dir / "lora" / "lora_tiny_fashion_mnist.safetensors"
    tensors, meta = io.load_weights(path)
    assert meta["rank"] == 4 and meta["alpha"] == 4.0 and meta["base_model"] == str(base_dir)
    assert meta["target_modules"] == ["to_k", "to_q", "to_v", "to_out.0"] and meta["steps"] == 4
    assert all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in tensors)
    assert any(t.abs().max() > 0 for k, t in tensors.items() if ".lora_B." in k), "LoRA up weights never moved"
    hist = pd.read_csv(run.dir / "lora" / "loss.csv")
    assert list(hist["step"]) == [1, 2, 3, 4] and hist["loss"].notna().all()
    assert len(list((run.dir / "lora" / "checkpoints").glob("checkpoint-*"))) <= run.cfg.lora.checkpoints_total_limit
    pipe = generator.load(run.cfg.generator.base, lora=path)
    ranks = {m.lora_A["default"].weight.shape[0] for m in pipe.unet.modules() if hasattr(m, "lora_A")}
    assert ranks == {4}
    assert lora.finetune(run, progress=False) == path  # finished: kept
    assert lora.adapter_problem(run) is None
    original = {k: t.clone() for k, t in tensors.items()}  # load_weights may map the file: keep a copy
    raw = path.read_bytes()
    path.write_bytes(raw[:-1024] + bytes(1024))  # damaged in place: the run's record of its sha256 tells
    assert str(path) in lora.adapter_problem(run) and "differs" in lora.adapter_problem(run)
    assert lora.finetune(run, progress=False) == path  # made again from the last checkpoint
    again, _ = io.load_weights(path)
    assert again.keys() == original.keys() and all(torch.equal(again[k], original[k]) for k in original)
    assert lora.adapter_problem(run) is None


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, base_dir, monkeypatch):
    full = lora.finetune(_run(tmp_path, base_dir, "full"), progress=False)
    run = _run(tmp_path, base_dir, "crash")
    real_checkpoint = lora._checkpoint

    def crash_after_first(pipe, opt, ckdir, step, *args):
        real_checkpoint(pipe, opt, ckdir, step, *args)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(lora, "_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        lora.finetune(run, progress=False)
    assert not artifacts.adapter_path(run).is_file()
    monkeypatch.setattr(lora, "_checkpoint", real_checkpoint)
    resumed = lora.finetune(run, progress=False)
    a, _ = io.load_weights(full)
    b, _ = io.load_weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert list(pd.read_csv(run.dir / "lora" / "loss.csv")["step"]) == [1, 2, 3, 4]


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "no-flip"])
def test_encoding_d_once_trains_the_same_adapter_as_encoding_each_batch(tmp_path, base_dir, monkeypatch, flip):
    """lora.encoded_d (D's posteriors and prompt embeddings, computed before the steps) changes the cost, not the
    adapter: bit for bit the one trained with every step encoding its own batch (lora.ENCODED_BYTES 0)."""
    def adapter(name, budget):
        monkeypatch.setattr(lora, "ENCODED_BYTES", budget)
        run = runs.open_run("configs/tiny.yaml", tmp_path / name, overrides={
            "generator.base": str(base_dir), "lora.random_flip": flip, "lora.max_steps": 6})
        captions.caption_run(run, progress=False)
        return io.load_weights(lora.finetune(run, progress=False))[0]

    made = []
    encoded_d = lora.encoded_d
    monkeypatch.setattr(lora, "encoded_d", lambda *a, **k: made.append(r := encoded_d(*a, **k)) or r)
    once, each = adapter("once", 1 << 30), adapter("each", 0)
    assert made[0] is not None and made[0].mean.shape[0] == (2 if flip else 1) and made[1] is None
    assert once.keys() == each.keys() and all(torch.equal(once[k], each[k]) for k in once)


def test_missing_captions_say_which_notebook(tmp_path, base_dir):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "nocap", overrides={"generator.base": str(base_dir)})
    with pytest.raises(FileNotFoundError, match="01_captions"):
        lora.finetune(run, progress=False)


def test_preprocess_resizes_crops_and_flips():
    import numpy as np

    img = np.zeros((2, 32, 48, 3), np.uint8)
    img[:, :, :4] = 255
    x = lora.preprocess(img, 16, center_crop=False, flip=np.array([False, True]))
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert x[0, :, :, 0].mean() > 0.5 and x[1, :, :, -1].mean() > 0.5


@pytest.mark.e2e
def test_notebook_02_results_in_tiny_chain(tiny_chain):
    adapter = tiny_chain / "lora" / "lora_tiny_fashion_mnist.safetensors"
    tensors, meta = io.load_weights(adapter)
    assert meta["rank"] == 4 and meta["base_model"] == "models/tiny-sd-fashion" and meta["steps"] == 4
    assert len(tensors) == 2 * 32  # lora_A + lora_B for the 4 projections of the tiny UNet's 8 attention layers
    hist = pd.read_csv(tiny_chain / "lora" / "loss.csv")
    assert list(hist["step"]) == [1, 2, 3, 4] and hist["loss"].between(0, 10).all()
    for name in ("lora_loss", "lora_samples"):
        assert (tiny_chain / "figures" / f"{name}.png").is_file() and (tiny_chain / "figures" / f"{name}.pdf").is_file()
    assert (tiny_chain / "notebooks" / "02_lora_finetune.ipynb").is_file()


def test_training_noise_follows_the_schedule_for_every_scheduler():
    """Regression: a fresh DPMSolverMultistepScheduler's add_noise noised t=999 the least (reversed schedule)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cfg = {k: v for k, v in generator.component_configs("tiny")["scheduler"].items() if not k.startswith("_")}
    ref = DDPMScheduler.from_config(cfg)
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 300, 700, 999])
    for cls in (DPMSolverMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler, DDPMScheduler):
        noisy, velocity = lora.forward_diffusion(cls.from_config(cfg), x, n, t)
        torch.testing.assert_close(noisy, ref.add_noise(x, n, t))
        torch.testing.assert_close(velocity, ref.get_velocity(x, n, t))
    signal = [float(torch.nn.functional.cosine_similarity(noisy[i].flatten(), x[i].flatten(), dim=0)) for i in range(4)]
    assert signal[0] > 0.99 and signal[-1] < 0.2, signal
    assert signal == sorted(signal, reverse=True), signal


def test_prompts_past_the_text_encoders_window_are_said(tmp_path, base_dir, capsys):
    run = _run(tmp_path, base_dir, "long")
    pipe = generator.load(run.cfg.generator.base)
    pipe.tokenizer.model_max_length = 8                      # every attribute prompt is longer
    lora.finetune(run, pipe=pipe, progress=False)
    n = len(set(lora.training_prompts(run)))
    assert f"{n} of {n} distinct prompts are longer than the text encoder's 8 tokens" in capsys.readouterr().err
    other = _run(tmp_path, base_dir, "window")                 # the base's own window: only the longest attribute prompts
    prompts = lora.training_prompts(other)
    long = generator.truncated_prompts(generator.load(other.cfg.generator.base).tokenizer, prompts)
    lora.finetune(other, progress=False)
    err = capsys.readouterr().err
    assert (f"{len(long)} of {len(set(prompts))} distinct prompts" in err) == bool(long)
    assert bool(long) or "distinct prompts are longer" not in err
