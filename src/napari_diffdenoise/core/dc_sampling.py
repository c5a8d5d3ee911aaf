"""DDIM steered by data consistency with a known PSF (PI-DDPM's sampling; docs/method.md).

After every step the state moves against ∇ = ∇_ŷ[‖K∗ŷ − x‖² + λ·R(ŷ)], evaluated at the current
clean estimate ŷ = x̂0 rather than at the noisy y_t (K∗y_t is mostly noise until t is small), by
ν_t·∇ with PI-DDPM's annealing ν_t = η·√γ_t/‖∇‖: steps grow as the noise falls. The gradient is
exact (adjoint convolution), which the paper allows when the PSF is known, instead of learned.
η = 0 is plain DDIM.
"""
from __future__ import annotations

import math
from collections.abc import Generator

import torch

from .consistency import DataConsistency, gradient_norm
from .samplers import EpsFn, NoiseFn, SamplerStep, ddim
from .schedules import NoiseSchedule


def ddim_dc(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    y_T: torch.Tensor,
    noise_fn: NoiseFn,
    *,
    consistency: DataConsistency,
    observation: torch.Tensor | None = None,
    steps: int = 10,
    eta: float = 0.0,
    guidance: float = 1.0,
    regulariser: str = "none",
    reg_weight: float = 0.015,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    def guide(y: torch.Tensor, x0: torch.Tensor, gamma: float, last: bool) -> torch.Tensor:
        grad = consistency.gradient(x0, regulariser, reg_weight)
        step = guidance * math.sqrt(gamma) / gradient_norm(grad).clamp_min(1e-12)
        y = y - step.view(-1, *([1] * (y.dim() - 1))) * grad
        return y.clamp(*clip) if last and clip is not None else y

    return (yield from ddim(eps_fn, schedule, y_T, noise_fn, steps=steps, eta=eta, clip=clip,
                            guide=guide if guidance > 0 else None))
