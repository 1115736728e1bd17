"""LoRA fine-tuning of the generator's UNet on the private real set D (the paper's generator adaptation).

:func:`finetune` wraps the UNet's attention projections (``lora.target_modules``: ``to_q``, ``to_k``,
``to_v``, ``to_out.0``) in a peft LoRA adapter of rank ``lora.rank`` and scale ``lora.alpha / rank`` and
trains it on the images of D with their prompts (``"<class>: <caption>"``, the run's
``captions/captions.csv`` from :mod:`tckr.captions`): resize to ``generator.resolution`` with centre
crop, random horizontal flip, batch ``lora.batch_size`` × gradient accumulation ``lora.grad_accum``,
AdamW at ``lora.learning_rate``, for ``lora.epochs`` epochs or ``lora.max_steps`` optimiser steps. The frozen VAE
and text encoder run once over D before the steps (:func:`encoded_d`, when their outputs fit :data:`ENCODED_BYTES`),
not once per step and epoch: the same adapter, bit for bit.
Devices, mixed precision and multi-GPU data parallelism come from ``accelerate``
(``accelerate launch -m tckr.cli lora configs/paper/cifar10.yaml runs/<id>`` runs it on every GPU).

Files under ``<run>/lora/``:

- ``lora_<generator arch>_<dataset>.safetensors``: the adapter (``unet.<module>.lora_A.weight`` /
  ``lora_B`` tensors) with metadata ``rank``, ``alpha``, ``target_modules``, ``base_model``,
  ``dataset``, ``steps``, ``seed``, ``config_hash``. :func:`tckr.generator.load` /
  :func:`tckr.generator.load_lora` read it; :func:`export_adapter` copies it to the repo's ``lora_sd2/``.
- ``loss.csv``: one row per optimiser step; columns ``step``, ``epoch``, ``loss`` (mean denoising loss
  over the accumulated batches), ``lr``, ``seconds`` (since this session's start).
- ``checkpoints/checkpoint-<step>/``: ``adapter.safetensors``, ``optimizer.pt``, ``state.json``;
  written every ``lora.checkpoint_every`` steps, at most ``lora.checkpoints_total_limit`` kept; a rerun
  resumes from the newest one. ``training.json``: the settings and timing of the finished run.
- ``samples/{real,base,lora}.npy`` (:func:`write_samples`): real images of D and the base and adapted model's
  images for the same prompts and seeds; :func:`tckr.reporting.phase_figures.plot_lora_samples` draws them and
  :func:`tckr.reporting.phase_figures.plot_lora_loss` draws ``loss.csv``.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from tckr.core import io, paths
from tckr.core.progress import tqdm
from tckr.generation import captions, generator
from tckr.runfolder import artifacts, environment


def forward_diffusion(scheduler, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(noisy, velocity)`` at training timesteps ``t``, from the scheduler's ``alphas_cumprod``.

    Not ``scheduler.add_noise``: a freshly built ``DPMSolverMultistepScheduler`` indexes its noise levels
    against its descending timestep list, so its ``add_noise(x, n, t)`` noises timestep 999 the least and
    timestep 0 the most — training through it teaches the UNet a reversed schedule (diffusers' own training
    scripts avoid this by noising with a ``DDPMScheduler``). This formula is the same for every scheduler."""
    ac = scheduler.alphas_cumprod.to(device=latents.device, dtype=torch.float32)[t]
    a = ac.sqrt().view(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    s = (1 - ac).sqrt().view(-1, *([1] * (latents.dim() - 1))).to(latents.dtype)
    return a * latents + s * noise, a * noise - s * latents


def prediction_target(scheduler, noise: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """What the UNet is trained to output: ``noise`` or ``velocity`` per ``scheduler.config.prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return velocity
    raise ValueError(f"unsupported prediction_type {kind!r}; accepted: 'epsilon', 'v_prediction'")


def denoising_loss(unet, scheduler, latents: torch.Tensor, text_embeddings: torch.Tensor, *,
                   generator: torch.Generator | None = None, snr_gamma: float = 0.0) -> torch.Tensor:
    """The diffusion training loss of ``unet`` on scaled ``latents`` at uniformly drawn timesteps.

    The target follows ``scheduler.config.prediction_type`` (``epsilon`` or ``v_prediction``);
    ``snr_gamma > 0`` applies min-SNR weighting (Hang et al., 2023). Noise is added by
    :func:`forward_diffusion`."""
    n = latents.shape[0]
    dev = latents.device
    noise = torch.randn(latents.shape, generator=generator, device="cpu").to(dev, latents.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator, device="cpu").to(dev)
    noisy, velocity = forward_diffusion(scheduler, latents, noise, t)
    pred = unet(noisy, t, encoder_hidden_states=text_embeddings).sample
    kind = scheduler.config.prediction_type
    target = prediction_target(scheduler, noise, velocity)
    per = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        ac = scheduler.alphas_cumprod.to(dev)[t].float()
        snr = ac / (1 - ac)
        w = torch.clamp(snr, max=snr_gamma) / (snr if kind == "epsilon" else snr + 1)
        per = per * w
    return per.mean()


def adapter_problem(run) -> str | None:
    """Why the run's adapter file cannot be used (None when it can): safetensors cannot read it, or its sha256
    differs from the one ``training.json`` recorded when it was saved, or there is no such record (then nothing
    says the file is the adapter that was trained)."""
    out = artifacts.adapter_path(run)
    if not out.is_file():
        return f"no adapter at {out}"
    record = out.parent / "training.json"
    if not record.is_file():
        return (f"{out}: no {record.name} beside it recording its sha256, so its content cannot be checked; delete it and "
                "rerun notebooks/02_lora_finetune.ipynb (tckr.lora.finetune)")
    try:
        want = io.read_json(record).get("adapter_sha256")
    except io.CorruptFileError as e:
        return str(e)
    if not want:
        return (f"{out}: {record} records no adapter_sha256, so its content cannot be checked; delete both and rerun "
                "notebooks/02_lora_finetune.ipynb (tckr.lora.finetune)")
    if io.sha256_file(out) != want:
        return f"{out}: sha256 differs from the one recorded in {record.name} when it was saved: the file is truncated or damaged"
    try:
        generator.read_lora(out)
    except io.CorruptFileError as e:
        return str(e)
    return None


def export_adapter(run, dest: str | Path | None = None) -> Path:
    """Copy the run's adapter to the repository's ``lora_sd2/`` folder (or ``dest``)."""
    src = artifacts.adapter_path(run)
    if not src.is_file():
        raise FileNotFoundError(f"no adapter at {src}; run notebooks/02_lora_finetune.ipynb (tckr.lora.finetune) first")
    out = Path(dest or paths.LORA) / src.name
    with io.atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    return out


def preprocess(images: np.ndarray, resolution: int, *, center_crop: bool, flip: np.ndarray | None = None) -> torch.Tensor:
    """uint8 ``N×H×W×3`` -> float ``N×3×R×R`` in [-1, 1]: resize the short side to R, centre (or top-left) crop, flip."""
    x = generator.to_pixels(images)
    h, w = x.shape[-2:]
    if min(h, w) != resolution:
        s = resolution / min(h, w)
        x = F.interpolate(x, size=(max(resolution, round(h * s)), max(resolution, round(w * s))), mode="bilinear",
                          antialias=True, align_corners=False)
    h, w = x.shape[-2:]
    top, left = ((h - resolution) // 2, (w - resolution) // 2) if center_crop else (0, 0)
    x = x[..., top:top + resolution, left:left + resolution]
    if flip is not None and flip.any():
        x[torch.from_numpy(flip)] = x[torch.from_numpy(flip)].flip(-1)
    return x.clamp(-1, 1)


def training_prompts(run) -> list[str]:
    """The prompts of D's images in D's order, from the run's captions file."""
    table = captions.load_captions(run)
    order = pd.Series(np.arange(len(table)), index=table["index"].to_numpy())
    d_index = run.splits().D
    missing = np.setdiff1d(d_index, table["index"].to_numpy())
    if len(missing):
        raise ValueError(f"{artifacts.captions_path(run)} has no caption for {len(missing)} image(s) of D "
                         f"(e.g. index {missing[0]}); rerun notebooks/01_captions.ipynb")
    return table["prompt"].to_numpy()[order.loc[d_index].to_numpy()].tolist()


#: The most bytes :func:`encoded_d` may hold; above it every step encodes its own batch (the paper's tier: D's
#: 512-pixel latents and 77-token embeddings would take tens of GB).
ENCODED_BYTES = 2 << 30


class EncodedD:
    """The frozen encoders' outputs on every image of D, computed once before :func:`finetune`'s steps: the VAE
    posterior's mean and standard deviation of each image (and of its mirror, with ``lora.random_flip``) and the
    text encoder's embedding of its prompt. A step then only draws the posterior noise and runs the UNet. The
    encoders are frozen and their per-image outputs do not depend on the batch they are computed in, so the
    adapter is the same, bit for bit, as when each step encodes its batch (``tests/test_lora.py``)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, emb: torch.Tensor):
        self.mean, self.std, self.emb = mean, std, emb  # V×N×latent, V×N×latent, N×tokens×width

    def posterior(self, idx: np.ndarray, flip: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the images ``idx``, mirrored where ``flip`` says."""
        view = torch.zeros(len(idx), dtype=torch.long) if flip is None else torch.from_numpy(flip[idx]).long()
        rows = torch.from_numpy(np.asarray(idx))
        return self.mean[view, rows], self.std[view, rows]


def encoded_d(pipe, images: np.ndarray, ids: torch.Tensor, resolution: int, lc, device, dtype,
              chunk: int = 256) -> EncodedD | None:
    """:class:`EncodedD` of D's ``images`` and prompt token ``ids``; None when it would exceed :data:`ENCODED_BYTES`."""
    n, views = len(images), 2 if lc.random_flip else 1
    f = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    latent = pipe.vae.config.latent_channels * (resolution // f) ** 2
    width = pipe.text_encoder.config.hidden_size
    item = torch.tensor([], dtype=dtype).element_size()
    if item * n * (2 * views * latent + ids.shape[1] * width) > ENCODED_BYTES:
        return None
    means, stds, embs = [], [], []
    with torch.no_grad():
        for v in range(views):
            for first in range(0, n, chunk):
                part = images[first:first + chunk]
                flip = np.ones(len(part), dtype=bool) if v else None
                post = pipe.vae.encode(preprocess(part, resolution, center_crop=lc.center_crop, flip=flip).to(device, dtype)).latent_dist
                means.append(post.mean)
                stds.append(post.std)
        for first in range(0, n, chunk):
            embs.append(pipe.text_encoder(ids[first:first + chunk].to(device))[0])
    shape = (views, n, *means[0].shape[1:])
    return EncodedD(torch.cat(means).reshape(shape), torch.cat(stds).reshape(shape), torch.cat(embs))


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def trainable_lora(pipe, lc) -> list[torch.nn.Parameter]:
    """Freeze the pipeline, add the UNet adapter of ``lc`` (a :class:`tckr.config.LoraConfig`) and return its
    parameters, in float32 and trainable: what :func:`finetune` optimises (and what the benchmarks time)."""
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
    generator.add_lora(pipe, lc.rank, lc.alpha, lc.target_modules)
    params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def finetune(run, *, progress: bool = True, overwrite: bool = False, pipe=None) -> Path:
    """Train the run's LoRA adapter (see the module docstring); returns its path. A finished adapter is
    kept unless ``overwrite``; an interrupted run resumes from its newest checkpoint."""
    from accelerate import Accelerator  # lazy: optional heavy dependency (accelerate), imported only for LoRA training
    cfg, lc = run.cfg, run.cfg.lora
    out = artifacts.adapter_path(run)
    folder = out.parent
    ckdir = folder / "checkpoints"
    if out.is_file() and not overwrite:
        damaged = adapter_problem(run)
        if damaged is None:
            return out
        print(f"{damaged}\n-> making it again from the newest checkpoint")
        out.unlink(missing_ok=True)
    if overwrite:
        shutil.rmtree(ckdir, ignore_errors=True)
    environment.set_threads(cfg)

    dev = environment.device(cfg)
    on_cpu = torch.device(dev).type == "cpu"
    mp = "no" if on_cpu else lc.mixed_precision
    acc = Accelerator(mixed_precision=mp, cpu=on_cpu)
    seed = run.seed_for(lc.seed)
    environment.seed_everything(seed)
    wdtype = _weight_dtype(mp)
    if pipe is None:
        pipe = generator.load(cfg.generator.base)
    pipe.to(acc.device, dtype=wdtype)
    lora_params = trainable_lora(pipe, lc)
    opt = torch.optim.AdamW(lora_params, lr=lc.learning_rate)

    D = run.real("D")
    prompts = training_prompts(run)
    tok = pipe.tokenizer
    long = generator.truncated_prompts(tok, prompts)
    if long and acc.is_main_process:
        print(f"LoRA fine-tuning: {len(long)} of {len(set(prompts))} distinct prompts are longer than the text encoder's "
              f"{tok.model_max_length} tokens and are trained on their beginning only, e.g. {long[0]!r}", file=sys.stderr)
    ids = torch.tensor(tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids)
    batches_per_epoch = math.ceil(len(D) / lc.batch_size)
    per_process = math.ceil(batches_per_epoch / acc.num_processes)
    steps_per_epoch = math.ceil(per_process / lc.grad_accum)
    total = lc.max_steps if lc.max_steps > 0 else lc.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch)

    step = 0
    ckpts = _checkpoints(ckdir)
    history: list[dict] = []
    if ckpts:
        last = ckpts[-1]
        tensors, _ = io.load_weights(last / "adapter.safetensors")
        mods = dict(pipe.unet.named_modules())
        with torch.no_grad():
            for key, t in tensors.items():
                mod, ab = key[len("unet."):].rsplit(".lora_", 1)
                getattr(mods[mod], f"lora_{ab[0]}")["default"].weight.copy_(t)
        opt.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True))
        step = io.read_json(last / "state.json")["step"]
        loss_csv = folder / "loss.csv"
        if loss_csv.is_file():
            old = pd.read_csv(loss_csv)
            history = old[old["step"] <= step].to_dict("records")
    encoded = None if step >= total else encoded_d(pipe, D.images, ids, cfg.generator.resolution, lc, acc.device, wdtype)
    unet, opt = acc.prepare(pipe.unet, opt)
    unet.train()
    scheduler = pipe.scheduler
    t0 = time.time()
    bar = tqdm(total=total, initial=step, desc="LoRA fine-tuning", unit="steps", disable=not progress or not acc.is_main_process,
               file=sys.stdout)
    for epoch in range(epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(len(D))
        flips = np.random.default_rng([seed, epoch, 1]).random(len(D)) < 0.5 if lc.random_flip else None
        mine = [(acc.process_index + acc.num_processes * i) % batches_per_epoch for i in range(per_process)]
        groups = [mine[i:i + lc.grad_accum] for i in range(0, len(mine), lc.grad_accum)]
        for gi, group in enumerate(groups):
            if step >= total:  # resumed from the final checkpoint (killed before the adapter was saved): nothing to train
                break
            if epoch * steps_per_epoch + gi < step:
                continue
            losses = []
            for micro, b in enumerate(group):
                idx = perm[b * lc.batch_size:(b + 1) * lc.batch_size]
                g = torch.Generator().manual_seed(int(seed) * 1_000_003 + step * 1009 + micro * 31 + acc.process_index)
                with torch.no_grad():
                    if encoded is not None:
                        mean, std = encoded.posterior(idx, flips)
                        emb = encoded.emb[torch.from_numpy(idx)]
                    else:
                        x = preprocess(D.images[idx], cfg.generator.resolution, center_crop=lc.center_crop,
                                       flip=None if flips is None else flips[idx]).to(acc.device, wdtype)
                        post = pipe.vae.encode(x).latent_dist
                        mean, std = post.mean, post.std
                        emb = pipe.text_encoder(ids[idx].to(acc.device))[0]
                    noise = torch.randn(mean.shape, generator=g).to(mean)
                    z = (mean + std * noise) * pipe.vae.config.scaling_factor
                with acc.autocast():
                    loss = denoising_loss(unet, scheduler, z, emb, generator=g)
                acc.backward(loss / len(group))
                losses.append(loss.item())
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            history.append({"step": step, "epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lc.learning_rate,
                            "seconds": time.time() - t0})
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if acc.is_main_process and (step % lc.checkpoint_every == 0 or step == total):
                _checkpoint(pipe, opt, ckdir, step, lc.checkpoints_total_limit, history, folder)
            if step >= total:
                break
        if step >= total:
            break
    bar.close()
    acc.wait_for_everyone()
    if acc.is_main_process:
        meta = {"dataset": run.dataset, "steps": step, "seed": seed, "config_hash": cfg.hash(),
                "resolution": cfg.generator.resolution, "train_images": len(D)}
        generator.save_lora(pipe, out, rank=lc.rank, alpha=lc.alpha, target_modules=lc.target_modules,
                            base=cfg.generator.base, extra=meta)
        io.write_json(folder / "training.json", {**meta, "lora": cfg.to_dict()["lora"], "seconds_last_session": time.time() - t0,
                                                 "processes": acc.num_processes, "mixed_precision": mp,
                                                 "adapter_sha256": io.sha256_file(out)})
    return out


def _checkpoint(pipe, opt, ckdir: Path, step: int, limit: int, history: list[dict], folder: Path) -> None:
    dest = ckdir / f"checkpoint-{step}"
    tmp = ckdir / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    io.save_weights(tmp / "adapter.safetensors", generator.lora_state(pipe))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    io.write_json(tmp / "state.json", {"step": step})
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    io.save_csv(folder / "loss.csv", pd.DataFrame(history))
    for old in _checkpoints(ckdir)[:-max(1, limit)]:
        shutil.rmtree(old, ignore_errors=True)


def sample_pair(run, n_per_class: int = 4, seed: int | None = None) -> dict[str, np.ndarray]:
    """Images of the base model and of the adapted model with the same prompts and seeds (``n_per_class`` per class)."""
    prompts = training_prompts(run)
    D = run.real("D")
    chosen = [i for c in range(D.num_classes) for i in np.flatnonzero(D.labels == c)[:n_per_class]]
    batch = [prompts[i] for i in chosen]
    seed = run.seed_for(run.cfg.synthesis.seed) if seed is None else seed
    out = {"real": D.images[chosen]}
    for name, lora in (("base", None), ("lora", artifacts.adapter_path(run))):
        pipe = generator.load(run.cfg.generator.base, lora)
        with torch.no_grad():
            img = pipe(batch, num_inference_steps=run.cfg.synthesis.steps, guidance_scale=run.cfg.synthesis.guidance_scale,
                       height=run.cfg.generator.resolution, width=run.cfg.generator.resolution, output_type="np",
                       generator=torch.Generator().manual_seed(seed)).images
        out[name] = generator.to_uint8(img)
    return out


def load_history(run) -> pd.DataFrame:
    """The run's per-step LoRA loss table (``lora/loss.csv``, :func:`tckr.artifacts.read_lora_history`)."""
    return artifacts.read_lora_history(run)


def write_samples(run, n_per_class: int = 4, seed: int | None = None) -> list[Path]:
    """:func:`sample_pair` saved as ``lora/samples/{real,base,lora}.npy`` (drawn by :func:`tckr.reporting.phase_figures.plot_lora_samples`)."""
    return artifacts.write_lora_samples(run, sample_pair(run, n_per_class, seed))
