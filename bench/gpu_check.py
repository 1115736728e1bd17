"""What one GPU does at the paper's settings, with randomly initialised models of the paper's real shapes.

    python bench/gpu_check.py [--out bench/results/gpu_check.json]     # one CUDA GPU, under ~8 minutes
    python bench/gpu_check.py --cpu-smoke --out /tmp/gpu_check.json    # tiny shapes on the CPU: plumbing only

Measures, each after a warm-up and with the step counts capped (``--lora-steps`` etc.):

- LoRA training of the SD2 UNet (shapes from ``src/tckr/assets/generators/sd2``): seconds per optimiser step
  and peak GPU memory at 224 px, fp16 weights with float32 LoRA parameters and autocast, batch 1 x
  gradient accumulation 4, rank 4 on to_q/to_k/to_v/to_out.0 (``tckr.lora``'s recipe);
- synthesis: images/s at 224 px, 20 steps, guidance 2, batch sizes 1, 4 and 16 (fp16);
- captioning: images/s of a BLIP-2-shaped model (ViT-g vision tower, 32-query Q-Former, OPT-2.7b language model
  as in ``Salesforce/blip2-opt-2.7b``), fp16, batch 16, 20 new tokens (greedy; random weights never stop early
  at an end token, so every caption has its full 20 tokens);
- MobileNetV3-large (timm ``mobilenetv3_large_100``) training images/s at 224, batch 96, AMP, AdamW.

Nothing is downloaded: every model is built from configs in the repository with random weights; the speed and
memory of a network do not depend on its weights (the captioner's text length is fixed at 20 tokens above).
Writes one JSON file. Without a CUDA GPU (and without ``--cpu-smoke``) it exits with code 3 and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NO_GPU_EXIT = 3

# blip2-opt-2.7b's shapes (its config.json): EVA ViT-g/14 vision tower, BERT-base-sized Q-Former, OPT-2.7b.
BLIP2_OPT_27B = {
    "vision": dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16, patch_size=14),
    "qformer": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, encoder_hidden_size=1408),
    "text": dict(hidden_size=2560, num_hidden_layers=32, ffn_dim=10240, num_attention_heads=32, word_embed_proj_dim=2560,
                 vocab_size=50272, max_position_embeddings=2048),
    "num_query_tokens": 32,
}
BLIP2_TINY = {
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=8),
    "qformer": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=32),
    "text": dict(hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2, word_embed_proj_dim=32,
                 vocab_size=512, max_position_embeddings=64),
    "num_query_tokens": 4,
}


def settings(cpu_smoke: bool) -> dict:
    """The paper's settings (configs/paper/_base.yaml), or tiny ones for the CPU smoke test."""
    if cpu_smoke:
        return {"arch": "tiny", "resolution": 32, "dtype": "float32", "lora_rank": 4, "grad_accum": 2, "lora_batch": 1,
                "lora_steps": 1, "synthesis_steps": 2, "guidance": 2.0, "synthesis_batches": [1, 2],
                "caption_batch": 4, "caption_tokens": 3, "caption_calls": 1, "blip2": BLIP2_TINY, "caption_size": 32,
                "classifier": "mobilenetv3_small_050", "classifier_size": 32, "classifier_batch": 8, "classifier_steps": 1}
    return {"arch": "sd2", "resolution": 224, "dtype": "float16", "lora_rank": 4, "grad_accum": 4, "lora_batch": 1,
            "lora_steps": 20, "synthesis_steps": 20, "guidance": 2.0, "synthesis_batches": [1, 4, 16],
            "caption_batch": 16, "caption_tokens": 20, "caption_calls": 3, "blip2": BLIP2_OPT_27B, "caption_size": 224,
            "classifier": "mobilenetv3_large_100", "classifier_size": 224, "classifier_batch": 96, "classifier_steps": 30}


def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gb(dev) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(dev) / 2**30, 3) if dev.type == "cuda" else None


def lora_training(s: dict, dev) -> dict:
    """Seconds per optimiser step (``grad_accum`` micro-batches of ``lora_batch``) of the SD2 UNet's LoRA."""
    import torch

    from tckr.generation import generator, lora

    half = s["dtype"] == "float16"
    with torch.device(dev):  # built on the GPU directly: initialising ~1.3 B parameters on a CPU takes minutes
        pipe = generator.build_random(s["arch"], seed=0, dtype=torch.float16 if half else torch.float32)
    pipe.to(dev)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
    generator.add_lora(pipe, s["lora_rank"], float(s["lora_rank"]), generator.LORA_TARGETS)
    params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type, enabled=half and dev.type == "cuda")
    tok = pipe.tokenizer
    ids = torch.tensor(tok(["a photo of a cat: a cat sitting on a sofa"] * s["lora_batch"], padding="max_length",
                           max_length=tok.model_max_length, truncation=True).input_ids, device=dev)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(s["lora_batch"], 3, s["resolution"], s["resolution"], generator=gen).mul(2).sub(1).to(dev)
    vae_dtype = next(pipe.vae.parameters()).dtype

    def step():
        opt.zero_grad(set_to_none=True)
        for _ in range(s["grad_accum"]):
            with torch.no_grad():
                latents = pipe.vae.encode(pixels.to(vae_dtype)).latent_dist.sample() * pipe.vae.config.scaling_factor
                emb = pipe.text_encoder(ids)[0]
            with torch.autocast(dev.type, dtype=torch.float16, enabled=half and dev.type == "cuda"):
                loss = lora.denoising_loss(pipe.unet, pipe.scheduler, latents, emb, generator=gen) / s["grad_accum"]
            scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return float(loss.detach())

    step()  # warm-up (allocations, kernel choice)
    _sync(dev)
    _reset_peak(dev)
    t = time.perf_counter()
    losses = [step() for _ in range(s["lora_steps"])]
    _sync(dev)
    sec = (time.perf_counter() - t) / s["lora_steps"]
    out = {"s_per_step": round(sec, 4), "peak_gpu_gb": _peak_gb(dev), "steps_timed": s["lora_steps"],
           "micro_batches_per_step": s["grad_accum"], "batch": s["lora_batch"], "finite_loss": bool(np.isfinite(losses).all()),
           "trainable_params": int(sum(p.numel() for p in params))}
    return out, pipe


def synthesis(s: dict, dev, pipe) -> dict:
    """Images/s of the (LoRA-wrapped) pipeline at ``resolution``, ``synthesis_steps`` steps, per batch size."""
    import torch

    pipe.unet.eval()
    if s["dtype"] == "float16":
        pipe.unet.half()  # the LoRA parameters were float32 for training
    out = {}
    with torch.inference_mode():
        pipe(prompt=["warm up"], num_inference_steps=2, guidance_scale=s["guidance"], height=s["resolution"],
             width=s["resolution"], output_type="np")
        for bs in s["synthesis_batches"]:
            _sync(dev)
            _reset_peak(dev)
            gens = [torch.Generator().manual_seed(i) for i in range(bs)]
            t = time.perf_counter()
            images = pipe(prompt=[f"a photo of class {i % 10}: a caption" for i in range(bs)],
                          num_inference_steps=s["synthesis_steps"], guidance_scale=s["guidance"], height=s["resolution"],
                          width=s["resolution"], generator=gens, output_type="np").images
            _sync(dev)
            sec = time.perf_counter() - t
            out[f"batch_{bs}"] = {"images_per_s": round(bs / sec, 4), "seconds": round(sec, 3), "peak_gpu_gb": _peak_gb(dev),
                                  "image_shape": list(np.asarray(images).shape[1:])}
    return out


def captioning(s: dict, dev) -> dict:
    """Images/s of a BLIP-2-shaped model generating ``caption_tokens`` new tokens per image."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    from tckr.generation import captions

    b = s["blip2"]
    # The tiny offline processor (word-level tokenizer) gives the special-token layout; the model's shapes are b's.
    _, processor = captions.build_random_blip2(seed=0, image_size=s["caption_size"], num_query_tokens=b["num_query_tokens"])
    tok = processor.tokenizer
    image_token = tok.convert_tokens_to_ids("<image>")
    vocab = max(b["text"]["vocab_size"], len(tok))
    config = Blip2Config(
        vision_config=Blip2VisionConfig(image_size=s["caption_size"], **b["vision"]).to_dict(),
        qformer_config=Blip2QFormerConfig(vocab_size=30522, **b["qformer"]).to_dict(),
        text_config=OPTConfig(**{**b["text"], "vocab_size": vocab}, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, tie_word_embeddings=False).to_dict(),
        num_query_tokens=b["num_query_tokens"], image_token_index=image_token, tie_word_embeddings=False)
    dtype = torch.float16 if s["dtype"] == "float16" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        model = Blip2ForConditionalGeneration(config).to(dtype).eval()
    rng = np.random.default_rng(0)
    images = list(rng.integers(0, 256, (s["caption_batch"], s["caption_size"], s["caption_size"], 3), dtype=np.uint8))
    inputs = processor(images=images, return_tensors="pt").to(dev)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)

    def call():
        with torch.inference_mode():
            # min_new_tokens: random weights could emit the end token early; a real caption has up to 20 tokens
            return model.generate(**inputs, max_new_tokens=s["caption_tokens"], min_new_tokens=s["caption_tokens"], do_sample=False)

    call()
    _sync(dev)
    _reset_peak(dev)
    t = time.perf_counter()
    for _ in range(s["caption_calls"]):
        ids = call()
    _sync(dev)
    sec = time.perf_counter() - t
    n = s["caption_batch"] * s["caption_calls"]
    return {"images_per_s": round(n / sec, 4), "images_timed": n, "batch": s["caption_batch"], "new_tokens": s["caption_tokens"],
            "peak_gpu_gb": _peak_gb(dev), "params": int(sum(p.numel() for p in model.parameters())),
            "output_length": int(ids.shape[1])}


def classifier_training(s: dict, dev) -> dict:
    """Training images/s of MobileNetV3 at ``classifier_size`` (AdamW, AMP on CUDA, label smoothing 0.1)."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(s["classifier"], pretrained=False, num_classes=10).to(dev).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-5)
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler(dev.type, enabled=amp)
    x = torch.randn(s["classifier_batch"], 3, s["classifier_size"], s["classifier_size"], device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (s["classifier_batch"],), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):
        step()
    _sync(dev)
    _reset_peak(dev)
    t = time.perf_counter()
    for _ in range(s["classifier_steps"]):
        step()
    _sync(dev)
    sec = time.perf_counter() - t
    n = s["classifier_batch"] * s["classifier_steps"]
    return {"images_per_s": round(n / sec, 2), "images_timed": n, "batch": s["classifier_batch"], "peak_gpu_gb": _peak_gb(dev),
            "note": "model step only: the uint8 augmentation pipeline (tckr.train) is not included"}


def run(cpu_smoke: bool = False) -> dict:
    import torch

    if cpu_smoke:
        dev = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit(NO_GPU_EXIT)
    else:
        dev = torch.device("cuda")
    s = settings(cpu_smoke)
    t0 = time.perf_counter()
    result = {"mode": "cpu-smoke" if cpu_smoke else "gpu", "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "settings": {k: v for k, v in s.items() if k != "blip2"}, "blip2_shapes": s["blip2"]}
    timings = {}
    t = time.perf_counter()
    result["lora"], pipe = lora_training(s, dev)
    timings["lora"] = time.perf_counter() - t
    t = time.perf_counter()
    result["synthesis"] = synthesis(s, dev, pipe)
    timings["synthesis"] = time.perf_counter() - t
    del pipe
    _reset_peak(dev)
    t = time.perf_counter()
    result["captioning"] = captioning(s, dev)
    timings["captioning"] = time.perf_counter() - t
    _reset_peak(dev)
    t = time.perf_counter()
    result["classifier"] = classifier_training(s, dev)
    timings["classifier"] = time.perf_counter() - t
    result["seconds"] = {k: round(v, 1) for k, v in {**timings, "total": time.perf_counter() - t0}.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"), help="JSON file written")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on the CPU: checks the script, measures nothing useful")
    a = ap.parse_args(argv)
    try:
        result = run(cpu_smoke=a.cpu_smoke)
    except SystemExit as e:
        if e.code == NO_GPU_EXIT:
            print("gpu_check: no CUDA GPU found (torch.cuda.is_available() is False); run it on a machine with one "
                  "GPU, or pass --cpu-smoke to check the script's plumbing on tiny shapes. Exit code 3.", file=sys.stderr)
            return NO_GPU_EXIT
        raise
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(json.dumps({k: result[k] for k in ("lora", "synthesis", "captioning", "classifier", "seconds")}, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
