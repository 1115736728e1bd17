"""tckr.generator: the tiny and sd2 architectures, loading bases and LoRA adapters in every key format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tckr.generation import generator


def _images(pipe, prompts, seed=0, steps=2, size=32):
    with torch.no_grad():
        return pipe(prompts, num_inference_steps=steps, guidance_scale=2.0, height=size, width=size, output_type="np",
                    generator=torch.Generator().manual_seed(seed)).images


@pytest.fixture
def tiny_dir(tiny_sd_base):
    return tiny_sd_base


def _with_random_lora(pipe, seed=0):
    generator.add_lora(pipe, rank=4, alpha=4.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return pipe


def test_tiny_architecture_and_tokenizer():
    pipe = generator.build_random("tiny")
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.tokenizer.model_max_length == pipe.text_encoder.config.max_position_embeddings == 32
    ids = pipe.tokenizer(["Ankle boot: a large bright object"], padding="max_length", max_length=32).input_ids[0]
    assert len(ids) == 32 and ids[0] == pipe.tokenizer.bos_token_id
    assert "ankle</w>" in pipe.tokenizer.convert_ids_to_tokens(ids)
    img = _images(pipe, ["Trouser: a small dark object", "Bag: wide"])
    assert img.shape == (2, 32, 32, 3) and np.isfinite(img).all()
    assert pipe.vae.config.block_out_channels and 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 4


def test_unknown_arch_names_the_accepted_ones():
    with pytest.raises(ValueError, match="sd2, tiny"):
        generator.build_random("sd3")


def test_load_local_base_reproduces_outputs(tiny_dir):
    a = generator.load(tiny_dir)
    b = generator.load(tiny_dir)
    np.testing.assert_array_equal(_images(a, ["Coat: a large grey object"]), _images(b, ["Coat: a large grey object"]))
    with pytest.raises(FileNotFoundError, match="no generator folder"):
        generator.load("models/does-not-exist")


def test_adapter_save_load_gives_identical_outputs(tiny_dir, tmp_path):
    pipe = _with_random_lora(generator.load(tiny_dir))
    prompts = ["Sneaker: a small bright object", "Dress: a tall dark object"]
    want = _images(pipe, prompts, seed=3)
    path = generator.save_lora(pipe, tmp_path / "lora_tiny_x.safetensors", rank=4, alpha=4.0, base=str(tiny_dir))
    _, meta = generator.read_lora(path)
    assert meta["rank"] == 4 and meta["alpha"] == 4.0 and meta["base_model"] == str(tiny_dir)
    assert meta["target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]
    plain = generator.load(tiny_dir)
    got = _images(generator.load(tiny_dir, lora=path), prompts, seed=3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(_images(plain, prompts, seed=3) - want).max() > 1e-3


@pytest.mark.parametrize("style", ["linear", "processor"])
def test_original_release_key_formats(tiny_dir, tmp_path, style):
    pipe = _with_random_lora(generator.load(tiny_dir), seed=5)
    want = _images(pipe, ["Bag: a wide object"], seed=1)
    tensors = generator.to_original_format(generator.lora_state(pipe), style=style)
    key = next(iter(tensors))
    assert (".lora.down.weight" in key or ".lora.up.weight" in key) if style == "linear" else "_lora." in key
    f = tmp_path / "lora_sd2_fashion.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(f))
    got = _images(generator.load(tiny_dir, lora=f), ["Bag: a wide object"], seed=1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_mismatched_adapter_files_name_the_keys(tiny_dir, tmp_path):
    pipe = _with_random_lora(generator.load(tiny_dir))
    tensors = generator.to_original_format(generator.lora_state(pipe))
    bad = dict(tensors)
    down = next(k for k in bad if k.endswith("attn1.to_k.lora.down.weight"))
    bad[down.replace("down_blocks", "side_blocks")] = bad.pop(down)
    bad[down.replace("down_blocks", "side_blocks").replace("down.weight", "up.weight")] = bad.pop(down.replace("down.weight", "up.weight"))
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "unmatched.safetensors"))
    with pytest.raises(generator.LoraKeyError, match="side_blocks"):
        generator.load_lora(generator.load(tiny_dir), tmp_path / "unmatched.safetensors")

    missing = {k: v for k, v in tensors.items() if ".attn2.to_v." not in k}
    save_file({k: v.contiguous() for k, v in missing.items()}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(generator.LoraKeyError, match=r"attn2\.to_v"):
        generator.load_lora(generator.load(tiny_dir), tmp_path / "missing.safetensors")

    half = {k: v for k, v in tensors.items() if not k.endswith("attn1.to_q.lora.up.weight")}
    save_file({k: v.contiguous() for k, v in half.items()}, str(tmp_path / "half.safetensors"))
    with pytest.raises(generator.LoraKeyError, match=r"attn1\.to_q"):
        generator.load_lora(generator.load(tiny_dir), tmp_path / "half.safetensors")

    odd = dict(tensors, **{"text_encoder.something.weight": torch.zeros(2)})
    save_file({k: v.contiguous() for k, v in odd.items()}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(generator.LoraKeyError, match="text_encoder.something.weight"):
        generator.load_lora(generator.load(tiny_dir), tmp_path / "odd.safetensors")


@pytest.mark.slow
def test_sd2_architecture_one_step_and_original_adapter(tmp_path):
    torch.set_num_threads(2)
    pipe = generator.build_random("sd2")
    n_unet = sum(p.numel() for p in pipe.unet.parameters())
    assert 850e6 < n_unet < 880e6
    assert pipe.text_encoder.config.hidden_size == 1024 and pipe.text_encoder.config.num_hidden_layers == 23
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    names = generator._attention_modules(pipe.unet, generator.LORA_TARGETS)
    mods = dict(pipe.unet.named_modules())
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for n in names:
        lin = mods[n]
        tensors[f"unet.{n}.lora.down.weight"] = torch.randn(4, lin.in_features, generator=g) * 0.01
        tensors[f"unet.{n}.lora.up.weight"] = torch.randn(lin.out_features, 4, generator=g) * 0.01
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora.down.weight" in tensors
    f = tmp_path / "lora_sd2_cifar10.safetensors"
    save_file(tensors, str(f))
    before = _images(pipe, ["a photo of a cat"], steps=1, size=64)
    generator.load_lora(pipe, f)
    after = _images(pipe, ["a photo of a cat"], steps=1, size=64)
    assert before.shape == after.shape == (1, 64, 64, 3) and np.isfinite(after).all()
    loaded = [m for m in pipe.unet.modules() if hasattr(m, "lora_A")]
    assert len(loaded) == len(names) == 128 and all(m.lora_A["default"].weight.shape[0] == 4 for m in loaded)
    assert np.abs(after - before).max() > 0


def test_truncated_prompts_are_the_ones_past_the_text_encoders_window():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained("models/tiny-sd-fashion/tokenizer")
    assert tok.model_max_length == 32
    short = "Bag: a large bright smooth object, wider than tall, symmetric, on a dark background"
    long = "Bag: " + ", ".join(["a large very bright lightly textured object"] * 4)
    assert len(tok(short).input_ids) <= 32 < len(tok(long).input_ids)
    assert generator.truncated_prompts(tok, [short, long, short, long]) == [long]   # distinct, in order
    assert generator.truncated_prompts(tok, [short]) == [] and generator.truncated_prompts(tok, []) == []
