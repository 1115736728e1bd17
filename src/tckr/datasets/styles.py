"""Style transforms of the public partition: a look that differs from D's while the classes stay learnable.

The mini tier's base generator is pretrained on public images of the same dataset as D; untransformed, it already
knows D's look, and the LoRA has nothing left to adapt (Fréchet distance to D 2.265 before, 2.269 after). The
paper's base (SD2) knows the concepts but not the dataset's look. ``data.public_style`` restyles every public image
the base generator trains on, so that D's look is what the LoRA must add. Measured with mobilenetv3_small_050 (4,000
images, 5 epochs, 3,000 real test images), trained on the style and tested on the real look (on the style):
invert 9.7% (76.3%), edges 28.3% (73.5%), blur8 57.1% (70.9%), against 73.8% for the real look.

Only the base generator's pretraining (:mod:`tckr.generation.pretrain`) sees the style. The memorisation audit's
feature extractor (:mod:`tckr.privacy.audit`) keeps training on the public images as they are: it embeds D, H and
synthetic images, all in D's look, and a classifier trained on inverted images recognises 9.7% of real-look ones.

Every transform is deterministic, maps ``N×H×W×3`` uint8 to the same shape and dtype, and leaves ``none`` alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tckr.core.config import PUBLIC_STYLES as STYLES
BLUR_SIDE = 8  # blur8: the side images are averaged down to before being enlarged back


def apply_style(images: np.ndarray, style: str) -> np.ndarray:
    """``images`` (``N×H×W×3`` uint8) in ``style``, one of :data:`STYLES`: ``none`` returns them unchanged (the same
    array); ``invert`` is ``255 - x``; ``edges`` the Sobel gradient magnitude of the grey image, scaled so each
    image's strongest edge is 255; ``blur8`` a box average down to 8×8, enlarged back bilinearly."""
    if style not in STYLES:
        raise ValueError(f"unknown public style {style!r}; accepted: {', '.join(STYLES)}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"public styles take N×H×W×3 uint8 images, got {images.dtype} of shape {images.shape}")
    if style == "none":
        return images
    if style == "invert":
        return 255 - images
    if style == "edges":
        return _edges(images)
    return _blur(images, BLUR_SIDE)


def _edges(images: np.ndarray) -> np.ndarray:
    grey = images.astype(np.float32).mean(axis=-1)
    p = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    mag = np.sqrt(gx ** 2 + gy ** 2)
    peak = mag.reshape(len(mag), -1).max(axis=1).reshape(-1, 1, 1)
    out = np.rint(255 * mag / np.maximum(peak, 1e-6)).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=-1)


def _blur(images: np.ndarray, side: int) -> np.ndarray:
    h, w = images.shape[1:3]
    out = np.empty_like(images)
    for i, x in enumerate(images):
        small = Image.fromarray(x).resize((side, side), Image.Resampling.BOX)
        out[i] = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))
    return out
