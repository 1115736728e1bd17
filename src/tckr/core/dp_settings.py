"""The ``dp:`` section of a study config (the differentially private defences, :mod:`tckr.privacy.dp_study`) and its
rules. A module of its own beside :mod:`tckr.core.config`, which holds the other sections and calls :func:`check` when
it validates a config (as :mod:`tckr.core.power_settings` for the ``power:`` section)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from tckr.core.schema import rng


@dataclass
class DpConfig:
    """The differentially private defences (docs/dp.md): DP-SGD teachers, a DP LoRA, a teacher at matched accuracy."""

    enabled: bool = False  # `tckr dp` refuses a config without it
    epsilons: list[float] = rng([1.0, 4.0, 8.0], gt=0, note="each target epsilon must be positive")
    delta: float | str = "auto"  # 'auto' = 1 / (10 |D|); a number must be below 1 / |D|
    max_grad_norm: float = rng(1.0, gt=0)  # C: every example's gradient is clipped to this L2 norm
    epochs: int = rng(0, ge=0, note="0 = train.epochs")  # DP-SGD epochs of the teachers and their shadows
    batch_size: int = rng(0, ge=0, note="0 = train.batch_size")  # expected Poisson batch size (sampling rate = batch / |D|)
    accountant: Literal["rdp", "prv"] = "rdp"  # Opacus accountant that calibrates the noise and reports epsilon
    n_shadows: int = rng(0, ge=0, note="0 = mia.n_shadows; else an even number")  # DP shadows per epsilon (LiRA)
    lora: bool = True  # also fine-tune a DP LoRA per epsilon and train its students
    matched_accuracy: bool = False  # also a non-private teacher stopped where it first reaches the student's accuracy
    seed: int = rng(0, ge=0)


def check(cfg: Any, fail: Callable[[str, Any, str], None]) -> None:
    """The ``dp:`` rules that span settings (δ against |D|, distinct ε values, an even shadow count); ``fail`` is
    :mod:`tckr.core.config`'s one-line error."""
    dp = cfg.dp
    if isinstance(dp.delta, str) and dp.delta != "auto":
        fail("dp.delta", dp.delta, "accepted: 'auto' (1 / (10 |D|)) or a number in (0, 1 / |D|)")
    if not isinstance(dp.delta, str):
        top = 1.0 / cfg.data.train_size if cfg.data.train_size else 1.0
        if not 0 < dp.delta < top:
            fail("dp.delta", dp.delta, f"accepted: 'auto' or a number in (0, {top:g}), below 1 / |D|"
                 + (f" with data.train_size {cfg.data.train_size}" if cfg.data.train_size else ""))
    if not dp.epsilons or len(set(dp.epsilons)) != len(dp.epsilons):
        fail("dp.epsilons", dp.epsilons, "accepted: one or more distinct positive numbers")
    if dp.n_shadows % 2 or dp.n_shadows == 1:
        fail("dp.n_shadows", dp.n_shadows, "accepted: 0 (mia.n_shadows) or an even number >= 2")
