"""The figures the phase notebooks show as they go: real samples (00), the LoRA's loss and samples (02), synthetic
samples (03). Drawn from the run's files, like every figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tckr.reporting import canvas
from tckr.runfolder import artifacts, runs, synthetic


def plot_real_samples(run_dir: str | Path, per_class: int = 10) -> list[Path]:
    """A grid of real images of D per class (figures/real_samples)."""
    run_dir = Path(run_dir)
    real, y, names = artifacts.real_images(run_dir)
    rows = [real[y == c][:per_class] for c in range(len(names))]
    return canvas.save_figure(canvas.image_grid(rows, names, title="real training images (D) per class"), run_dir / "figures" / "real_samples")


def plot_lora_loss(run_dir) -> list[Path]:
    """Per-step LoRA loss with a moving average (``lora/loss.csv``): ``figures/lora_loss``."""
    run_dir = artifacts.run_folder(run_dir)
    h = artifacts.read_lora_history(run_dir)
    fig, ax = canvas.pyplot().subplots(figsize=(5, 3))
    ax.plot(h["step"], h["loss"], lw=0.6, alpha=0.5, label="per step")
    ax.plot(h["step"], h["loss"].rolling(max(1, len(h) // 20), min_periods=1).mean(), lw=1.5, label="moving average")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("denoising loss")
    ax.set_title(f"LoRA fine-tuning on D ({artifacts.settings(run_dir)['study']['dataset']})")
    ax.legend()
    fig.tight_layout()
    return canvas.save_figure(fig, run_dir / "figures" / "lora_loss")


def plot_lora_samples(run_dir) -> list[Path]:
    """Rows per class: real D images, base-model samples, adapted samples (same prompts and seeds), from
    ``lora/samples/`` (:func:`tckr.lora.write_samples`): ``figures/lora_samples``."""
    run_dir = artifacts.run_folder(run_dir)
    s = artifacts.read_lora_samples(run_dir)
    names = artifacts.run_class_names(run_dir)
    k = len(names)
    n_per_class = len(s["real"]) // k
    fig, axes = canvas.pyplot().subplots(k, 3 * n_per_class, figsize=(3 * n_per_class * 0.6, k * 0.65))
    for c in range(k):
        for j, key in enumerate(("real", "base", "lora")):
            for i in range(n_per_class):
                ax = axes[c, j * n_per_class + i]
                ax.imshow(s[key][c * n_per_class + i])
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0 and i == 0:
                    ax.set_title({"real": "real D", "base": "base", "lora": "LoRA"}[key], fontsize=7, loc="left")
        axes[c, 0].set_ylabel(names[c], fontsize=6, rotation=0, ha="right")
    fig.tight_layout(pad=0.1)
    return canvas.save_figure(fig, run_dir / "figures" / "lora_samples")


def plot_synthetic_samples(run, multiple: float | None = None, per_class: int = 8, name: str = "synthetic_samples") -> list[Path]:
    """A grid of synthetic samples, one row per class (``run``: a :class:`tckr.runs.Run` or its folder):
    ``figures/<name>``."""
    run = run if hasattr(run, "cfg") else runs.open_run(None, run)
    multiple = max(synthetic.available_multiples(run) or [0]) if multiple is None else multiple
    s = synthetic.load_synthetic(run, multiple)
    names = run.class_names
    fig = canvas.pyplot().figure(figsize=(1.6 + per_class * 0.8, 0.4 + len(names) * 0.8))
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for c, name_c in enumerate(names):
        rows = np.flatnonzero(s.labels == c)[:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(rows):
                ax.imshow(s.images[rows[j]])
        axes[c, 0].text(-0.1, 0.5, name_c, transform=axes[c, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(f"synthetic samples ({multiple:g}× |D|, prompt mode {run.cfg.synthesis.prompt_mode!r})", fontsize=9)
    fig.subplots_adjust(left=0.18, right=0.99, bottom=0.01, top=0.95, wspace=0.05, hspace=0.05)
    return canvas.save_figure(fig, run.dir / "figures" / name)
