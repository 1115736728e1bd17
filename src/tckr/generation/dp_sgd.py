"""DP-SGD (Abadi et al. 2016), the one mechanism behind every differentially private model of the study: the DP
teachers and their shadows (:mod:`tckr.classification.dp`) and the DP LoRA (:mod:`tckr.generation.dp_lora`).

Each step draws a Poisson batch (every example of the private set independently, with probability the sampling
rate q), computes each example's gradient of the trainable parameters (:func:`per_sample_grads`: ``torch.func``'s
``vmap(grad(...))`` over a ``functional_call``), clips it to L2 norm ``C`` (:func:`clip_factors`), sums, adds
Gaussian noise N(0, σ²C²) to every coordinate and divides by the expected batch size qN (:func:`noisy_mean`).
σ is calibrated for the target (ε, δ) by Opacus's accountant (:func:`calibrate`: ``get_noise_multiplier``) and
the ε spent is Opacus's again (:func:`epsilon_spent`: the RDP or PRV accountant over the same steps), so the
accounting is Opacus's own; only the per-example gradients are computed here.

Why not Opacus's ``GradSampleModule``: one clipping and noise code for the classifiers and the LoRA, so the audit
(:func:`tckr.privacy.dp_study.check_dp_audit`, and the planted-bug test that removes the noise or the clipping
here) covers both. It lives in the generation layer, the lowest one that trains a model, so both can import it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch.func import grad, vmap

ACCOUNTANTS = ("rdp", "prv")


@dataclass(frozen=True)
class Budget:
    """A DP-SGD training's privacy parameters: the target ``epsilon`` and ``delta``, the ``noise_multiplier`` σ the
    accountant calibrated for them, the Poisson ``sample_rate`` q, the number of ``steps``, the clipping norm
    ``max_grad_norm`` C and the ``accountant`` ("rdp" or "prv")."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str

    def spent(self) -> float:
        """The ε the accountant gives for these σ, q and steps at this δ (at most ``epsilon``, up to Opacus's tolerance)."""
        return epsilon_spent(self.noise_multiplier, self.sample_rate, self.steps, self.delta, self.accountant)

    def record(self) -> dict[str, Any]:
        """What the JSON beside a DP model records: these fields and ``epsilon_accountant``, the ε spent."""
        return {**asdict(self), "epsilon_target": self.epsilon, "epsilon_accountant": self.spent()}


def _accountant(name: str):
    from opacus.accountants import PRVAccountant, RDPAccountant  # lazy: opacus only where DP models are trained

    if name not in ACCOUNTANTS:
        raise ValueError(f"accountant {name!r} is not accepted; accepted: {', '.join(ACCOUNTANTS)}")
    return RDPAccountant() if name == "rdp" else PRVAccountant()


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, max_grad_norm: float,
              accountant: str = "rdp") -> Budget:
    """The :class:`Budget` whose σ Opacus's ``get_noise_multiplier`` finds for (``epsilon``, ``delta``) after
    ``steps`` Poisson steps at ``sample_rate``."""
    from opacus.accountants.utils import get_noise_multiplier

    if not (epsilon > 0 and 0 < delta < 1 and 0 < sample_rate <= 1 and steps >= 1 and max_grad_norm > 0):
        raise ValueError(f"calibrate: accepted epsilon > 0, 0 < delta < 1, 0 < sample_rate <= 1, steps >= 1, "
                         f"max_grad_norm > 0; got {epsilon}, {delta}, {sample_rate}, {steps}, {max_grad_norm}")
    _accountant(accountant)
    with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is valid, only looser
        warnings.simplefilter("ignore")
        sigma = get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps,
                                     accountant=accountant)
    return Budget(float(epsilon), float(delta), float(sigma), float(sample_rate), int(steps), float(max_grad_norm), accountant)


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """ε after ``steps`` Poisson steps of noise ``noise_multiplier`` at ``sample_rate``: Opacus's accountant."""
    if noise_multiplier <= 0:
        return math.inf
    acc = _accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


def poisson_batch(n: int, sample_rate: float, gen: torch.Generator) -> torch.Tensor:
    """Indices of one Poisson batch: each of ``n`` examples independently with probability ``sample_rate``."""
    return torch.nonzero(torch.rand(n, generator=gen) < sample_rate).flatten()


def per_sample_grads(loss_one: Callable[..., torch.Tensor], params: dict[str, torch.Tensor],
                     batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """Each example's gradient of ``loss_one(params, *example)`` (the loss of one example, unbatched tensors), by
    name: tensors ``[B, *param.shape]``. Dropout and other random layers draw independently per example."""
    detached = {k: v.detach() for k, v in params.items()}
    return vmap(grad(loss_one), in_dims=(None, *([0] * len(batch))), randomness="different")(detached, *batch)


def clip_factors(grads: dict[str, torch.Tensor], max_grad_norm: float) -> torch.Tensor:
    """float [B]: min(1, C / ||g_i||), the factor that brings each example's whole gradient to norm at most C."""
    sq = sum(g.reshape(g.shape[0], -1).float().pow(2).sum(1) for g in grads.values())
    return (max_grad_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)


def clipped_sum(loss_one: Callable[..., torch.Tensor], params: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...],
                max_grad_norm: float, chunk: int = 64) -> dict[str, torch.Tensor]:
    """The sum over the batch of the clipped per-example gradients, computed ``chunk`` examples at a time."""
    total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
    n = len(batch[0]) if batch else 0
    for first in range(0, n, chunk):
        part = tuple(b[first:first + chunk] for b in batch)
        grads = per_sample_grads(loss_one, params, part)
        f = clip_factors(grads, max_grad_norm)
        for k, g in grads.items():
            total[k] += torch.einsum("b,b...->...", f.to(g.dtype), g).float()
    return total


def gaussian_noise(like: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """N(0, std²) noise of ``like``'s shape, drawn on the CPU from ``gen`` (reproducible on every device)."""
    return torch.randn(like.shape, generator=gen, dtype=torch.float32).to(like.device) * std


def noisy_mean(sums: dict[str, torch.Tensor], budget: Budget, expected_batch: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """(Σ clipped gradients + N(0, σ²C²)) / expected batch size: the private gradient of one step."""
    std = budget.noise_multiplier * budget.max_grad_norm
    return {k: (s + gaussian_noise(s, std, gen)) / expected_batch for k, s in sums.items()}


def private_step(opt: torch.optim.Optimizer, params: dict[str, torch.nn.Parameter], loss_one: Callable[..., torch.Tensor],
                 batch: tuple[torch.Tensor, ...], budget: Budget, expected_batch: float, gen: torch.Generator,
                 chunk: int = 64) -> None:
    """One DP-SGD step: the private gradient of ``batch`` (a Poisson batch, possibly empty) set as ``.grad`` of
    ``params`` and ``opt`` stepped."""
    sums = clipped_sum(loss_one, params, batch, budget.max_grad_norm, chunk)
    for k, g in noisy_mean(sums, budget, expected_batch, gen).items():
        params[k].grad = g.to(params[k].dtype)
    opt.step()
    opt.zero_grad(set_to_none=True)
