"""DDIM steered by data consistency with a known PSF (PI-DDPM's sampling, REFERENCE §3).

After every step the state moves against ∇ = ∇_ŷ[‖K∗ŷ − x‖² + λ·R(ŷ)], evaluated at the current
clean estimate ŷ = x̂0 rather than at the noisy y_t (K∗y_t is mostly noise until t is small), by
ν_t·∇ with PI-DDPM's annealing ν_t = η·√γ_t/‖∇‖: steps grow as the noise falls. The gradient is
exact (adjoint convolution), which the paper allows when the PSF is known, instead of learned.
η = 0 is plain DDIM.
"""
from __future__ import annotations

import math
from typing import Generator

import torch

from .consistency import DataConsistency, gradient_norm
from .samplers import EpsFn, NoiseFn, SamplerStep, ddim_update
from .schedules import NoiseSchedule, respaced_timesteps


def ddim_dc(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    y_T: torch.Tensor,
    noise_fn: NoiseFn,
    *,
    consistency: DataConsistency,
    observation: torch.Tensor | None = None,  # noqa: ARG001 (the operator holds it; passed to every guided sampler)
    steps: int = 10,
    eta: float = 0.0,
    guidance: float = 1.0,
    regulariser: str = "none",
    reg_weight: float = 0.015,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    alphas = schedule.alphas_cumprod
    timesteps = respaced_timesteps(schedule.n_steps, steps)
    y = y_T
    for i, t in enumerate(timesteps):
        gamma = float(alphas[t])
        gamma_prev = float(alphas[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        eps = eps_fn(y, gamma)
        last = i + 1 == len(timesteps)
        noise = None if (eta == 0 or last) else noise_fn(tuple(y.shape)).to(y)
        y, x0 = ddim_update(y, eps, gamma, gamma_prev, eta, noise, clip)
        if guidance > 0:
            grad = consistency.gradient(x0, regulariser, reg_weight)
            step = guidance * math.sqrt(gamma) / gradient_norm(grad).clamp_min(1e-12)
            y = y - step.view(-1, *([1] * (y.dim() - 1))) * grad
            if last and clip is not None:
                y = y.clamp(*clip)
        yield SamplerStep(i, len(timesteps), x0)
    return y
