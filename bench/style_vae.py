"""Can a style's base reuse the existing base's VAE? Its reconstruction error on D and on styled public images.

Encodes (posterior mean) and decodes real images with the VAE of ``--model`` and reports the mean squared error in
the VAE's pixel range [-1, 1], on ``--n`` images of the run's D and on ``--n`` public images in each style of
:data:`tckr.datasets.styles.STYLES`. A style whose error is close to D's can keep the VAE (``tckr pretrain --vae-from``).

    python bench/style_vae.py --config configs/mini.yaml --run runs/style-vae --out bench/measured/style_vae.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tckr.core import io, paths
from tckr.datasets import styles
from tckr.generation import generator
from tckr.runfolder import runs


@torch.no_grad()
def reconstruction_mse(vae, images: np.ndarray, batch: int = 250) -> list[float]:
    """Per-image mean squared error of decode(encode(x).mean) in [-1, 1]."""
    out = []
    for s in range(0, len(images), batch):
        x = generator.to_pixels(images[s:s + batch])
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        out += ((rec - x) ** 2).mean(dim=(1, 2, 3)).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/tiny-sd-fashion")
    ap.add_argument("--config", default="configs/mini.yaml")
    ap.add_argument("--run", default="runs/style-vae")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = runs.open_run(None if (paths.resolve(a.run) / "config.yaml").is_file() else a.config, a.run)
    vae = generator.load(a.model).vae.eval()
    pick = np.random.default_rng(0)
    d, public = run.real("D"), run.real("public")
    d_img = d.images[np.sort(pick.choice(len(d), min(a.n, len(d)), replace=False))]
    p_img = public.images[np.sort(pick.choice(len(public), min(a.n, len(public)), replace=False))]
    t0 = time.time()
    rows = {"D": reconstruction_mse(vae, d_img)}
    for style in styles.STYLES:
        rows[f"public_{style}"] = reconstruction_mse(vae, styles.apply_style(p_img, style))
    result = {"model": a.model, "n": a.n, "seconds": time.time() - t0,
              "mse": {k: {"mean": float(np.mean(v)), "ci95": [float(np.mean(v) - 1.96 * np.std(v) / np.sqrt(len(v))),
                                                                 float(np.mean(v) + 1.96 * np.std(v) / np.sqrt(len(v)))]}
                      for k, v in rows.items()}}
    print(json.dumps(result, indent=1))
    if a.out:
        from tckr.reporting import report

        mse = {k: v["mean"] for k, v in result["mse"].items()}
        result["record"] = report.bench_record(
            f"VAE of {a.model}, reconstruction MSE in [-1, 1] over {a.n:,} images each: D {mse['D']:.4f}; public "
            + ", ".join(f"{k.removeprefix('public_')} {v:.4f}" for k, v in mse.items() if k != "D"))
        io.write_json(paths.resolve(a.out), result)


if __name__ == "__main__":
    main()
