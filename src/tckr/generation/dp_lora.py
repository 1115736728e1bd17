"""A differentially private LoRA: the run's LoRA fine-tune (:mod:`tckr.generation.lora`) with DP-SGD on the adapter's
parameters only (:mod:`tckr.generation.dp_sgd`: Poisson batches of expected size ``lora.batch_size``, each image's
gradient clipped to ``dp.max_grad_norm``, Gaussian noise, Opacus's accountant), and class-prompted sampling from it.

The unit of privacy is one image of D with its prompt. Everything an example's gradient sees is drawn for that example
alone: its VAE latent, noise and timestep (seeded per step), and its prompt. Two things of the non-private pipeline
would leak D around the mechanism and are left out on purpose: D's captions as synthesis prompts (the synthetic set
is prompted with the class name only, :func:`sample`) and D's class counts (the set is class-balanced).
The prompts the LoRA trains on are the run's captions, each a function of its own image only (the attribute
captioner); with a captioner fitted on D (BLIP-2 fine-tuned) that would no longer hold.

Files: ``<path>`` the adapter (:func:`tckr.generation.generator.save_lora`, with the budget in its metadata) and
``<path>.json`` beside it: the :class:`tckr.generation.dp_sgd.Budget` record, the losses and the adapter's sha256
(written last: the adapter is finished when it exists).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from tckr.core import io
from tckr.core.progress import tqdm
from tckr.generation import dp_sgd, generator, lora
from tckr.runfolder import environment


def lora_budget(cfg, n: int, epsilon: float, delta: float) -> dp_sgd.Budget:
    """The DP LoRA's budget: q = ``lora.batch_size`` / n, ``lora.max_steps`` steps (else ``lora.epochs`` / q)."""
    q = min(1.0, cfg.lora.batch_size / n)
    steps = cfg.lora.max_steps or max(1, int(round(cfg.lora.epochs / q)))
    return dp_sgd.calibrate(epsilon, delta, q, steps, cfg.dp.max_grad_norm, cfg.dp.accountant)


def denoising_loss_one(unet, scheduler):
    """The denoising loss of one example (latent, text embedding, noise, timestep) as a function of the LoRA
    parameters (a dict by the UNet's parameter names), for per-example gradients (the loss of
    :func:`tckr.generation.lora.denoising_loss`, without min-SNR weighting)."""

    def loss_one(params: dict[str, torch.Tensor], z: torch.Tensor, emb: torch.Tensor, noise: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        noisy, velocity = lora.forward_diffusion(scheduler, z[None], noise[None], t[None])
        pred = functional_call(unet, params, (noisy, t[None]), {"encoder_hidden_states": emb[None]}, strict=False).sample
        return F.mse_loss(pred.float(), lora.prediction_target(scheduler, noise[None], velocity).float())

    return loss_one


def example_inputs(pipe, images: np.ndarray, ids: torch.Tensor, cfg, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(latents, text embeddings, noise, timesteps) of a batch of D's images and prompt token ids, each drawn per example."""
    dev = pipe.unet.device
    x = lora.preprocess(images, cfg.generator.resolution, center_crop=cfg.lora.center_crop).to(dev)
    with torch.no_grad():
        post = pipe.vae.encode(x).latent_dist
        z = (post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(dev)) * pipe.vae.config.scaling_factor
        emb = pipe.text_encoder(ids.to(dev))[0]
    noise = torch.randn(z.shape, generator=gen).to(dev)
    t = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (len(z),), generator=gen).to(dev)
    return z, emb, noise, t


def finetune_private(cfg, images: np.ndarray, prompts: list[str], budget: dp_sgd.Budget, out: Path, *, seed: int,
                     pipe=None, progress: bool = True, chunk: int = 16) -> Path:
    """Train a DP LoRA adapter on ``images`` (D, uint8 N×H×W×3) and their ``prompts`` for ``budget.steps`` Poisson
    steps and save it to ``out`` (kept when finished before: its JSON exists). No flips: each example is one record."""
    out = Path(out)
    record = out.with_suffix(".json")
    if record.is_file() and out.is_file():
        return out
    environment.set_threads(cfg)
    environment.seed_everything(seed)
    if pipe is None:
        pipe = generator.load(cfg.generator.base)
    pipe.to(environment.device(cfg), dtype=torch.float32)
    lora.trainable_lora(pipe, cfg.lora)
    params = {n: p for n, p in pipe.unet.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lora.learning_rate)
    tok = pipe.tokenizer
    ids = torch.tensor(tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids)
    loss_one = denoising_loss_one(pipe.unet, pipe.scheduler)
    gen = torch.Generator().manual_seed(int(seed))
    n = len(images)
    pipe.unet.train()
    losses, t0 = [], time.time()
    for _ in tqdm(range(budget.steps), desc=f"DP LoRA eps={budget.epsilon:g}", unit="steps", disable=not progress, leave=False):
        idx = dp_sgd.poisson_batch(n, budget.sample_rate, gen).numpy()
        batch = example_inputs(pipe, images[idx], ids[idx], cfg, gen) if len(idx) else ()
        if len(idx):
            with torch.no_grad():
                losses.append(float(torch.vmap(loss_one, in_dims=(None, 0, 0, 0, 0), randomness="different")(params, *batch).mean()))
        dp_sgd.private_step(opt, params, loss_one, batch, budget, budget.sample_rate * n, gen, chunk)
    meta = {"steps": budget.steps, "seed": int(seed), "train_images": n, "dp": budget.record()}
    generator.save_lora(pipe, out, rank=cfg.lora.rank, alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules,
                        base=cfg.generator.base, extra=meta)
    io.write_json(record, {**budget.record(), "seed": int(seed), "train_images": n, "seconds": time.time() - t0,
                           "loss": losses, "adapter_sha256": io.sha256_file(out)})
    return out


def sample(cfg, adapter: Path, class_names: list[str], n: int, *, seed: int, batch_size: int | None = None,
           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` class-balanced images (uint8) and their labels from the base generator with ``adapter``, prompted with the
    class name only; image ``i`` is class ``i mod C`` with noise seed ``seed * 2**20 + i``."""
    pipe = generator.load(cfg.generator.base, lora=adapter, dtype=torch.float32, device=environment.device(cfg))
    pipe.set_progress_bar_config(disable=True)
    labels = np.arange(n) % len(class_names)
    bs = int(batch_size or cfg.synthesis.batch_size)
    out = []
    for first in tqdm(range(0, n, bs), desc="DP synthetic set", unit="batches", disable=not progress, leave=False):
        rows = range(first, min(first + bs, n))
        gens = [torch.Generator().manual_seed(int(seed) * 2**20 + i) for i in rows]
        with torch.no_grad():
            img = pipe([class_names[labels[i]] for i in rows], num_inference_steps=cfg.synthesis.steps,
                       guidance_scale=cfg.synthesis.guidance_scale, height=cfg.generator.resolution,
                       width=cfg.generator.resolution, output_type="np", generator=gens).images
        out.append(generator.to_uint8(img))
    return np.concatenate(out) if out else np.zeros((0, 3, 3, 3), np.uint8), labels.astype(np.int64)


def adapter_record(adapter: Path) -> dict[str, Any]:
    """The JSON written beside a DP adapter by :func:`finetune_private`, checked against the adapter's sha256."""
    adapter = Path(adapter)
    record = io.read_json(adapter.with_suffix(".json"))
    if io.sha256_file(adapter) != record.get("adapter_sha256"):
        raise io.CorruptFileError(f"{adapter}: sha256 differs from its record; delete both to train it again")
    return record

