"""The power figure of the dose-response control (``images/power.png``, ``.pdf``): detection probability against the
share rho of near-copies, one line per attack × test, with its 95% Wilson band, the power target as a dashed line and
rho on a symmetric-log axis (rho 0, each test's false-positive rate, stays on it). Drawn from ``results/power.csv``
alone (:mod:`tckr.privacy.dose_response` writes it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tckr.reporting import canvas
from tckr.runfolder import artifacts

FIGURE = ("images", "power")


def power_curves(power: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rho series of ``power`` (rows of series ``rho`` or ``both``), one table per ``attack / test``, by rho: what
    :func:`plot_power` draws."""
    curve = power[power["series"].isin(["rho", "both"])]
    return {f"{a} / {t}": g.sort_values("rho").reset_index(drop=True) for (a, t), g in curve.groupby(["attack", "test"], sort=True)}


def plot_power(run_dir: str | Path, target: float | None = None, stem: str | Path | None = None) -> list[Path]:
    """Draw ``<run>/images/power.{pdf,png}`` (or ``stem``.{pdf,png}) from ``<run>/results/power.csv``; ``target``: the
    power target line (default: the run's ``power.power_target``). Returns the files written."""
    run_dir = Path(run_dir)
    power = artifacts.read_result(run_dir, "power.csv")
    if target is None:
        target = float((artifacts.settings(run_dir).get("power") or {}).get("power_target", 0.8))
    plt = canvas.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20")  # 6 attacks x 2 tests: tab10 would repeat its colours
    curves = power_curves(power)
    for k, (label, g) in enumerate(curves.items()):
        x = 100 * g["rho"]
        line, = ax.plot(x, 100 * g["detect_rate"], marker="o", ms=3, lw=1.2, label=label, color=colours(k % 20),
                        ls="-" if label.endswith("mann_whitney") else "--")
        ax.fill_between(x, 100 * g["detect_lo"], 100 * g["detect_hi"], color=line.get_color(), alpha=0.08, lw=0)
    ax.axhline(100 * target, color="k", lw=0.8, ls=":", label=f"{100 * target:.0f}% power")
    ax.set_xscale("symlog", linthresh=0.25)
    rhos = sorted({100 * float(r) for g in curves.values() for r in g["rho"]})
    if rhos:  # ticks at the doses tested, nothing left of rho 0
        ax.set_xticks(rhos, [f"{r:g}" for r in rhos], fontsize=7)
        ax.set_xticks([], minor=True)
        ax.set_xlim(-0.05, 1.15 * rhos[-1])
    ax.set_xlabel("near-copies of members in each synthetic set, rho (%)")
    ax.set_ylabel("detection probability (%)")
    ax.set_ylim(-2, 102)
    n = int(power["n_replicates"].max()) if len(power) else 0
    ax.set_title(f"Dose-response control: {n} replicate targets per dose (95% Wilson bands)", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    return canvas.save_figure(fig, Path(stem) if stem is not None else run_dir.joinpath(*FIGURE))
