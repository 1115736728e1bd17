"""Drawing helpers shared by every figure: pyplot on first use, saving as PDF and PNG, image grids, inline display."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tckr.core import io, progress


def pyplot():
    """``matplotlib.pyplot``, imported on first drawing (it is slow to import). Its backend is Agg (files only)
    where nothing interactive can show a figure: the study runner's kernels (``TCKR_HEADLESS=1``), and a script or
    the ``tckr`` command that has chosen no backend. A notebook kernel, an IPython shell, ``MPLBACKEND`` or a pyplot
    the user imported first keep theirs: switching to Agg there closes the user's figures and silences their
    ``plt.show()``."""
    import matplotlib  # lazy: the backend is chosen at first use, before pyplot is imported

    if _files_only():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: the backend is chosen at first use, before pyplot is imported

    return plt


def _files_only() -> bool:
    """True where figures only go to files (:func:`pyplot`'s rule)."""
    if progress.headless():
        return True
    if "matplotlib.pyplot" in sys.modules or os.environ.get("MPLBACKEND"):
        return False  # a backend is already chosen: ipykernel sets MPLBACKEND to the inline one
    ipython = sys.modules.get("IPython")  # imported only by an IPython shell or kernel, never here
    return ipython is None or ipython.get_ipython() is None


def save_figure(fig, path_stem: Path) -> list[Path]:
    """Save a matplotlib figure as PDF and PNG (atomically) and close it."""
    out = []
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        target = path_stem.parent / f"{path_stem.name}.{ext}"
        with io.atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        out.append(target)
    pyplot().close(fig)
    return out


def image_grid(rows: list[np.ndarray], row_labels: list[str], title: str = "", col_header: str | None = None):
    """A figure with one row of uint8 images per label."""
    plt = pyplot()
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(0.9 * ncols + 1.5, 0.9 * len(rows) + 0.5), squeeze=False)
    for i, (imgs, label) in enumerate(zip(rows, row_labels)):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(imgs):
                ax.imshow(imgs[j])
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def show(figures: dict[str, list[Path]] | list[Path]) -> None:
    """Display the PNGs of saved figures inline in a notebook."""
    from IPython.display import Image, display  # only inside notebooks; the package does not need IPython

    items = [p for ps in figures.values() for p in ps] if isinstance(figures, dict) else list(figures)
    for p in items:
        if Path(p).suffix == ".png":
            display(Image(filename=str(p)))
