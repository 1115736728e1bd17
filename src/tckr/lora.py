"""LoRA fine-tuning of the generator's UNet (see :func:`finetune`), and the denoising loss shared with pretraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def denoising_loss(unet, scheduler, latents: torch.Tensor, text_embeddings: torch.Tensor, *,
                   generator: torch.Generator | None = None, snr_gamma: float = 0.0) -> torch.Tensor:
    """The diffusion training loss of ``unet`` on scaled ``latents`` at uniformly drawn timesteps.

    The target follows ``scheduler.config.prediction_type`` (``epsilon`` or ``v_prediction``);
    ``snr_gamma > 0`` applies min-SNR weighting (Hang et al., 2023)."""
    n = latents.shape[0]
    dev = latents.device
    noise = torch.randn(latents.shape, generator=generator, device="cpu").to(dev, latents.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator, device="cpu").to(dev)
    noisy = scheduler.add_noise(latents, noise, t)
    pred = unet(noisy, t, encoder_hidden_states=text_embeddings).sample
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        raise ValueError(f"unsupported prediction_type {kind!r}; accepted: 'epsilon', 'v_prediction'")
    per = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        ac = scheduler.alphas_cumprod.to(dev)[t].float()
        snr = ac / (1 - ac)
        w = torch.clamp(snr, max=snr_gamma) / (snr if kind == "epsilon" else snr + 1)
        per = per * w
    return per.mean()
