"""Pretraining of the tiny generator (the mini tier's base model), from scratch, on the public partition.

The tiny architecture of :func:`tckr.generator.build_random` is trained in two stages on the real
images of the config's ``public`` split (:func:`tckr.data.public_split`: carved from the train split
before D, H, val and pool, with its own seed, so no study setting moves an image into or out of it), with prompts
``"<class name>: <caption>"`` from the offline attribute captioner (:mod:`tckr.captions`), both in the config's
``data.public_style`` (:func:`tckr.datasets.styles.apply_style`; ``none`` keeps the images as they are):

1. the VAE (reconstruction + a small KL term), or one reused from another base (``vae_from``); its latent scaling
   factor is then set to 1 / std of the public images' latents, as Stable Diffusion's 0.18215 was;
2. the UNet and the CLIP text encoder together, on the public images' latents, with the denoising loss of
   :func:`tckr.lora.denoising_loss` (the same code LoRA fine-tuning uses), 10% of prompts dropped
   to ``""`` for classifier-free guidance, min-SNR weighting and an EMA of the weights.

Checkpoints (safetensors + optimiser state) are written every ``--checkpoint-every`` steps under
the working folder (``--run-dir``); a rerun resumes from the last one. The result is a diffusers ``save_pretrained`` folder
(fp16 safetensors; :func:`tckr.generator.load` reads it back in float32), with the exact train-split
indices it saw in ``training_index.npy`` and their sha256 in ``training_data.json``
(:mod:`tckr.provenance` checks them against every study's D, H, val and test).

    tckr pretrain --out models/tiny-sd-fashion --run-dir runs/pretrain-tiny-sd-fashion
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tckr.core import io, paths
from tckr.datasets import provenance, styles
from tckr.generation import captions, generator, lora, prompt_files
from tckr.runfolder import environment, runs


def _log(work: Path, msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with open(work / "log.txt", "a") as f:
        f.write(line + "\n")


def public_data(config: str, work: Path, *, limit: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Public images in the run's ``data.public_style``, labels, prompts (``"<class>: <caption>"``, captioned from
    the styled images: the captions describe what the generator is shown) and their train-split indices, cached
    under ``work``.

    ``limit > 0`` keeps a seeded subset of that many public images (sorted order), chosen before
    captioning. The cache ``public_prompts.csv`` holds ``index`` (into the train split), ``label``, ``prompt``."""
    f = work / "public_prompts.csv"
    saved = (work / "run" / runs.CONFIG_FILE).is_file()
    run = runs.open_run(None if saved else config, work / "run")
    public = run.real("public")
    if not len(public):
        raise ValueError(f"{config} has no public partition (data.public_size is 0): a base model may only see public images")
    keep = np.arange(len(public))
    if limit and limit < len(public):
        keep = np.sort(np.random.default_rng(seed).choice(len(public), limit, replace=False))
    index = run.splits().public[keep]
    images = styles.apply_style(public.images[keep], run.cfg.data.public_style)
    if f.is_file():
        cached = pd.read_csv(f)
        by_index = dict(zip(cached["index"].tolist(), cached["prompt"]))
        missing = [i for i in index.tolist() if i not in by_index]
        if missing:
            raise ValueError(f"{f} has no prompt for train image {missing[0]} (and {len(missing) - 1} more): it was made "
                             "with another --limit, --seed or config; use a new working folder (tckr pretrain --run-dir)")
        prompts = [by_index[i] for i in index.tolist()]
    else:
        caps = captions.attribute_captions(images)
        prompts = [prompt_files.prompt_for(public.class_names[y], c) for y, c in zip(public.labels[keep], caps)]
        io.save_csv(f, pd.DataFrame({"index": index, "label": public.labels[keep], "prompt": prompts}))
    return images, public.labels[keep], prompts, index


def reuse_vae(pipe, base: str | Path, work: Path) -> None:
    """The VAE of the saved base ``base`` in place of training one (its weights to ``work/vae.safetensors``, so
    that a resumed run and :func:`snapshot` find it); the scaling factor is set afresh by :func:`encode_public`."""
    f = work / "vae.safetensors"
    if not f.is_file():
        io.save_weights(f, generator.load(base).vae.state_dict(), {"from": str(base)})
    pipe.vae.load_state_dict(io.load_weights(f)[0])
    pipe.vae.eval()
    _log(work, f"vae: reused from {base}")


def train_vae(pipe, images: np.ndarray, work: Path, *, steps: int, batch: int, lr: float, kl_weight: float, seed: int) -> None:
    vae = pipe.vae
    f = work / "vae.safetensors"
    if f.is_file():
        tensors, _ = io.load_weights(f)
        vae.load_state_dict(tensors)
        _log(work, f"vae: loaded {f}")
        return
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    t0 = time.time()
    rows = []
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g).numpy()
        x = generator.to_pixels(images[idx])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        rec_loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        kl = post.kl().mean() / z[0].numel()
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        rows.append({"step": step + 1, "rec_loss": rec_loss.item(), "kl": kl.item()})
        if (step + 1) % 50 == 0 or step == 0:
            _log(work, f"vae step {step + 1}/{steps} rec {rec_loss.item():.4f} kl {kl.item():.3f} ({time.time() - t0:.0f}s)")
    vae.eval()
    io.save_csv(work / "vae_loss.csv", pd.DataFrame(rows))
    io.save_weights(f, vae.state_dict(), {"steps": steps, "seconds": time.time() - t0})


def finetune_decoder(pipe, images: np.ndarray, work: Path, *, steps: int, batch: int, lr: float, seed: int) -> None:
    """More training of the VAE's decoder alone (encoder frozen, so the latent space the UNet learnt stays valid)."""
    f = work / "vae_decoder.safetensors"
    vae = pipe.vae
    dec = {k: v for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    if f.is_file():
        vae.load_state_dict(io.load_weights(f)[0], strict=False)
        _log(work, f"vae decoder: loaded {f}")
        return
    if steps <= 0:
        return
    params = [p for n, p in vae.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g).numpy()
        x = generator.to_pixels(images[idx])
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        loss = (rec - x).abs().mean() + ((rec - x) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        if (step + 1) % 50 == 0:
            _log(work, f"decoder step {step + 1}/{steps} rec {loss.item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()
    io.save_weights(f, {k: v for k, v in vae.state_dict().items() if k in dec}, {"steps": steps, "seconds": time.time() - t0})


@torch.no_grad()
def encode_public(pipe, images: np.ndarray, work: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every public image (unscaled), cached; sets the VAE's scaling factor."""
    f = work / "public_latents.safetensors"
    if f.is_file():
        t, meta = io.load_weights(f)
    else:
        means, stds = [], []
        for s in range(0, len(images), 512):
            post = pipe.vae.encode(generator.to_pixels(images[s:s + 512])).latent_dist
            means.append(post.mean)
            stds.append(post.std)
        mean, std = torch.cat(means), torch.cat(stds)
        scale = float(1.0 / torch.sqrt(mean.var() + (std ** 2).mean()))
        t, meta = {"mean": mean, "std": std}, {"scaling_factor": scale}
        io.save_weights(f, t, meta)
    pipe.vae.register_to_config(scaling_factor=float(meta["scaling_factor"]))
    return t["mean"], t["std"]


def _ema_update(ema: dict[str, torch.Tensor], params: dict[str, torch.Tensor], decay: float) -> None:
    with torch.no_grad():
        for k, p in params.items():
            ema[k].mul_(decay).add_(p.detach(), alpha=1 - decay)


def train_denoiser(pipe, latents: tuple[torch.Tensor, torch.Tensor], prompts: list[str], work: Path, *, steps: int,
                   batch: int, lr: float, warmup: int, drop_prompt: float, snr_gamma: float, ema_decay: float,
                   checkpoint_every: int, seed: int, max_minutes: float) -> None:
    unet, te, tok = pipe.unet, pipe.text_encoder, pipe.tokenizer
    mean, std = latents
    scale = pipe.vae.config.scaling_factor
    ids = torch.tensor(tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids)
    empty = torch.tensor(tok([""], padding="max_length", max_length=tok.model_max_length).input_ids[0])
    params = {f"unet.{k}": p for k, p in unet.named_parameters()} | {f"text_encoder.{k}": p for k, p in te.named_parameters()}
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=1e-2)
    ema = {k: p.detach().clone() for k, p in params.items()}
    ckpt = work / "checkpoint"
    start = 0
    if (ckpt / "state.json").is_file():
        state = io.read_json(ckpt / "state.json")
        w, _ = io.load_weights(ckpt / "weights.safetensors")
        e, _ = io.load_weights(ckpt / "ema.safetensors")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(w[k])
                ema[k].copy_(e[k])
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        start = state["step"]
        _log(work, f"resumed from step {start}")
    g = torch.Generator().manual_seed(seed + start)
    unet.train()
    te.train()
    t0 = time.time()
    losses = []
    step = start
    for step in range(start, steps):
        idx = torch.randint(len(prompts), (batch,), generator=g)
        z = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * scale
        b_ids = ids[idx].clone()
        drop = torch.rand(batch, generator=g) < drop_prompt
        b_ids[drop] = empty
        emb = te(b_ids)[0]
        loss = lora.denoising_loss(unet, pipe.scheduler, z, emb, generator=g, snr_gamma=snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        opt.step()
        _ema_update(ema, params, min(ema_decay, (1 + step) / (10 + step)))
        losses.append({"step": step + 1, "loss": loss.item(), "seconds": time.time() - t0})
        if (step + 1) % 50 == 0:
            recent = np.mean([r["loss"] for r in losses[-50:]])
            _log(work, f"step {step + 1}/{steps} loss {recent:.4f} ({time.time() - t0:.0f}s)")
        done = step + 1 == steps or (time.time() - t0) / 60 > max_minutes
        if (step + 1) % checkpoint_every == 0 or done:
            _save_checkpoint(ckpt, params, ema, opt, step + 1, losses, work)
        if done:
            break
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(ema[k])
    unet.eval()
    te.eval()


def _save_checkpoint(ckpt: Path, params, ema, opt, step: int, losses: list[dict], work: Path) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    io.save_weights(ckpt / "weights.safetensors", {k: p.detach() for k, p in params.items()})
    io.save_weights(ckpt / "ema.safetensors", ema)
    with io.atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save(opt.state_dict(), tmp)
    old = pd.read_csv(work / "loss.csv") if (work / "loss.csv").is_file() else pd.DataFrame(columns=["step", "loss", "seconds"])
    new = pd.DataFrame(losses)
    io.save_csv(work / "loss.csv", pd.concat([old[old["step"] < new["step"].min()], new]) if len(new) else old)
    losses.clear()
    io.write_json(ckpt / "state.json", {"step": step})
    _log(work, f"checkpoint at step {step}")


def snapshot(work: str | Path, *, ema: bool = True, seed: int = 0):
    """The pipeline as of the newest checkpoint in ``work`` (EMA weights by default), e.g. to measure a run in progress."""
    work = paths.resolve(work)
    pipe = generator.build_random("tiny", seed=seed)
    pipe.vae.load_state_dict(io.load_weights(work / "vae.safetensors")[0])
    pipe.vae.register_to_config(scaling_factor=float(io.load_weights(work / "public_latents.safetensors")[1]["scaling_factor"]))
    if (work / "vae_decoder.safetensors").is_file():
        pipe.vae.load_state_dict(io.load_weights(work / "vae_decoder.safetensors")[0], strict=False)
    weights, _ = io.load_weights(work / "checkpoint" / ("ema.safetensors" if ema else "weights.safetensors"))
    for prefix, module in (("unet.", pipe.unet), ("text_encoder.", pipe.text_encoder)):
        missing = module.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=False).missing_keys
        if missing:
            raise KeyError(f"{work}: checkpoint lacks {prefix}{missing[0]} (and {len(missing) - 1} more)")
    pipe.unet.eval()
    pipe.text_encoder.eval()
    pipe.vae.eval()
    return pipe


def save_model(pipe, out: Path, *, dataset: str, index: np.ndarray, config: str) -> None:
    """``save_pretrained`` in fp16 safetensors (the float32 model rounded; loads back as float32), with
    the train-split indices the model saw (:func:`tckr.provenance.write_training_data`)."""
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(str(out), safe_serialization=True)
    pipe.to(dtype=torch.float32)
    provenance.write_training_data(out, dataset=dataset, split="train", index=index, source=f"tckr.pretrain --config {config}")


def pretrain(*, config: str, out: str | Path, work: str | Path, limit: int, vae_steps: int, vae_batch: int,
             vae_lr: float, decoder_steps: int, kl_weight: float, steps: int, batch: int, lr: float, warmup: int,
             drop_prompt: float, snr_gamma: float, ema: float, checkpoint_every: int, max_minutes: float, threads: int,
             seed: int, vae_from: str = "") -> Path:
    """Both stages, then the ``save_pretrained`` folder ``out``; resumes from the last checkpoint under ``work``.
    Every setting is given (``tckr pretrain --help`` has the defaults and their meaning); they are written to
    ``work/args.json``. ``vae_from`` (a saved base) reuses that base's VAE: no VAE stage, no decoder stage.
    Returns ``out``."""
    settings = dict(locals())  # every setting, in the signature's order: work/args.json
    torch.set_num_threads(threads)
    work, out = paths.resolve(work), paths.resolve(out)
    work.mkdir(parents=True, exist_ok=True)
    io.write_json(work / "args.json", settings)
    t0 = time.time()
    environment.seed_everything(seed)
    pipe = generator.build_random("tiny", seed=seed)
    images, labels, prompts, index = public_data(config, work, limit=limit, seed=seed)
    _log(work, f"public partition: {len(images)} images, e.g. {prompts[0]!r}")
    if vae_from:
        reuse_vae(pipe, vae_from, work)
    else:
        train_vae(pipe, images, work, steps=vae_steps, batch=vae_batch, lr=vae_lr, kl_weight=kl_weight, seed=seed)
    latents = encode_public(pipe, images, work)
    _log(work, f"latents: scaling factor {pipe.vae.config.scaling_factor:.4f}")
    if not vae_from:
        finetune_decoder(pipe, images, work, steps=decoder_steps, batch=vae_batch, lr=vae_lr / 2, seed=seed)
    train_denoiser(pipe, latents, prompts, work, steps=steps, batch=batch, lr=lr, warmup=warmup,
                   drop_prompt=drop_prompt, snr_gamma=snr_gamma, ema_decay=ema, checkpoint_every=checkpoint_every,
                   seed=seed, max_minutes=max_minutes)
    run = runs.open_run(None, work / "run")
    save_model(pipe, out, dataset=run.dataset, index=index, config=f"{config} (data.public_style: {run.cfg.data.public_style})")
    step = io.read_json(work / "checkpoint" / "state.json")["step"]
    io.write_json(work / "summary.json", {"steps": step, "seconds_this_session": time.time() - t0, "out": str(out),
                                          "public_size": len(images)})
    _log(work, f"saved {out} after {step} steps")
    return out
