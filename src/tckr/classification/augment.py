"""The paper's training augmentations, as tensor ops on whole batches (no per-image PIL work).

On a uint8 batch ``B×3×H×W`` (:func:`augment_batch`): horizontal flip (``train.flip``) and random crop with
zero padding (``train.crop_padding``, a fraction of the image side), both vectorised and drawn from the
training's own generator; AugMix (``train.augmix``) through ``torchvision.transforms.v2`` on chunks of
:data:`AUGMIX_CHUNK` images that share one sampled op chain, each image with its own mixing weights (it draws
from torch's global RNG). On the normalised float batch: :func:`mixup` (``train.mixup_alpha``). :func:`shift` is
the deterministic translation of the ``shift`` membership query. ``bench/bench_dataloader.py`` compares this
pipeline with the original per-sample PIL ``DataLoader``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from tckr.core.config import Config

AUGMIX_CHUNK = 8


def flip_draw(n: int, gen: torch.Generator) -> torch.Tensor:
    """Which of ``n`` images :func:`random_flip` mirrors: one draw of ``gen``, a bool mask."""
    return torch.rand(n, generator=gen, device=gen.device) < 0.5


def flipped(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """``x`` with the images of the mask ``flip`` mirrored horizontally."""
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return flipped(x, flip_draw(len(x), gen))


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to size at a random offset per image."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    out = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate down-right by ``pixels`` with zero fill (the deterministic "shift" query)."""
    if pixels <= 0:
        return x
    return F.pad(x, (pixels, 0, pixels, 0))[..., : x.shape[-2], : x.shape[-1]]


def augmix(x: torch.Tensor) -> torch.Tensor:
    op = v2.AugMix()
    return torch.cat([op(chunk) for chunk in x.split(AUGMIX_CHUNK)])


def crop_pixels(cfg: Config) -> int:
    return int(round(cfg.train.crop_padding * cfg.data.image_size))


def flip_only(cfg: Config) -> bool:
    """True when ``cfg.train``'s augmentation of an image is at most a horizontal flip (no crop, AugMix or
    MixUp): then an image has at most two views, and a frozen teacher's outputs on them can be computed once
    (:func:`tckr.classification.loop.teacher_views`)."""
    return crop_pixels(cfg) <= 0 and not cfg.train.augmix and cfg.train.mixup_alpha <= 0


def augment_batch(x: torch.Tensor, cfg: Config, gen: torch.Generator) -> torch.Tensor:
    """The paper's image augmentations on a uint8 batch ``B×3×H×W`` (MixUp comes later, on floats)."""
    if cfg.train.flip:
        x = random_flip(x, gen)
    x = random_crop(x, crop_pixels(cfg), gen)
    if cfg.train.augmix:
        x = augmix(x)
    return x


def mixup(x: torch.Tensor, t: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of a float batch and its target distributions with a Beta(alpha, alpha) weight."""
    if alpha <= 0:
        return x, t
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), generator=gen, device=gen.device).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]
