"""Samplers for ε-predicting diffusion models conditioned on γ = ᾱ.

Every sampler has one signature: ``sampler(eps_fn, schedule, y_T, noise_fn, **params)`` and is a
generator that yields a :class:`SamplerStep` after each network evaluation (so a GUI can show
progress and cancel between steps) and returns the final sample. ``eps_fn(y, gamma)`` predicts ε
for the whole batch at one scalar noise level; ``noise_fn(shape)`` draws the fresh Gaussian noise
(one global field per step, which keeps tiled sampling seam-free).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch

from ..model.schedules import NoiseSchedule, respaced_timesteps

EpsFn = Callable[[torch.Tensor, float], torch.Tensor]
NoiseFn = Callable[[tuple[int, ...]], torch.Tensor]
GuideFn = Callable[[torch.Tensor, torch.Tensor, float, bool], torch.Tensor]


@dataclass
class SamplerStep:
    index: int  # 0-based step just finished
    n_steps: int
    x0_hat: torch.Tensor  # the current estimate of the clean image (a live preview)


def ddim_update(
    y: torch.Tensor,
    eps: torch.Tensor,
    gamma: float,
    gamma_prev: float,
    eta: float,
    noise: torch.Tensor | None,
    clip: tuple[float, float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021, Eq. 12), returning (y_{t−1}, x̂0):
    y_{t−1} = √ᾱ_{t−1}·x̂0 + √(1 − ᾱ_{t−1} − σ_t²)·ε̂ + σ_t·z,
    σ_t = η·√((1 − ᾱ_{t−1})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{t−1}).
    With η = 1 over all T steps this is ancestral DDPM with the posterior variance β̃_t.
    When x̂0 is clipped, ε̂ is re-derived from it so that the step stays self-consistent."""
    x0 = (y - math.sqrt(1 - gamma) * eps) / math.sqrt(gamma)
    if clip is not None:
        x0 = x0.clamp(*clip)
        eps = (y - math.sqrt(gamma) * x0) / math.sqrt(1 - gamma)
    sigma = eta * math.sqrt((1 - gamma_prev) / (1 - gamma)) * math.sqrt(max(1 - gamma / gamma_prev, 0.0))
    y_prev = math.sqrt(gamma_prev) * x0 + math.sqrt(max(1 - gamma_prev - sigma**2, 0.0)) * eps
    if sigma > 0 and noise is not None:
        y_prev = y_prev + sigma * noise
    return y_prev, x0


def ddim(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    y_T: torch.Tensor,
    noise_fn: NoiseFn,
    *,
    steps: int = 10,
    eta: float = 0.0,
    clip: tuple[float, float] | None = (-1.0, 1.0),
    guide: GuideFn | None = None,
) -> Generator[SamplerStep, None, torch.Tensor]:
    """DDIM over a respaced ("trailing") subsequence of ``steps`` training steps, from t = T−1.
    η = 0 is deterministic given y_T (Song et al. 2021); η = 1 adds ancestral noise.
    ``guide(y_prev, x0, gamma, last)``, if given, corrects the state after every step (see
    :mod:`.dc_sampling`)."""
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
        if guide is not None:
            y = guide(y, x0, gamma, last)
        yield SamplerStep(i, len(timesteps), x0)
    return y


def ddpm(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    y_T: torch.Tensor,
    noise_fn: NoiseFn,
    *,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """The seed procedure: ancestral sampling over all T steps with variance β̃_t (Ho et al. 2020,
    Eq. 7; as in Osuna-Vargas et al.). Implemented as DDIM with η = 1 on the full schedule,
    which is the same update."""
    return (yield from ddim(eps_fn, schedule, y_T, noise_fn, steps=schedule.n_steps, eta=1.0, clip=clip))
