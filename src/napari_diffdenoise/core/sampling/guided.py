"""Samplers for an *unconditional* model guided by the noisy observation (Baikal, Chaudhary et
al.; docs/method.md). Same signature as :mod:`.samplers`, plus ``observation``: the normalised noisy
image, broadcastable to y. Step indices t are the model's own (0 … T−1); Baikal's defaults, given
for T = 1000, are scaled to the model's T.
"""
from __future__ import annotations

import math
from collections.abc import Generator

import torch

from ..model.schedules import NoiseSchedule
from .samplers import EpsFn, NoiseFn, SamplerStep, ddim_update


def q_sample(x0: torch.Tensor, gamma: float, noise: torch.Tensor) -> torch.Tensor:
    """y = √γ·x0 + √(1−γ)·ε: the forward process in one jump (Ho et al. 2020, Eq. 4)."""
    return math.sqrt(gamma) * x0 + math.sqrt(1 - gamma) * noise


def _mix_in_observation(y, obs, gamma: float, weight: float, noise_fn) -> torch.Tensor:
    """(1−w)·y + w·q(obs, γ), topped up with fresh noise: a convex mix of two independently noised
    images shrinks their noise std by s = √((1−w)² + w²), so √(1 − s²)·√(1−γ) of noise is added
    back and the model sees the level it expects (Baikal's code accepts the bias)."""
    mixed = (1 - weight) * y + weight * q_sample(obs, gamma, noise_fn(tuple(y.shape)).to(y))
    shrink = (1 - weight) ** 2 + weight**2
    return mixed + math.sqrt((1 - shrink) * (1 - gamma)) * noise_fn(tuple(y.shape)).to(y)


def _reverse_step(eps_fn, y, t, alphas, noise_fn, clip):
    """One ancestral step t → t−1 (posterior variance β̃_t)."""
    gamma = float(alphas[t])
    gamma_prev = float(alphas[t - 1]) if t > 0 else 1.0
    noise = noise_fn(tuple(y.shape)).to(y) if t > 0 else None
    return ddim_update(y, eps_fn(y, gamma), gamma, gamma_prev, 1.0, noise, clip)


def forward_backward(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, observation: torch.Tensor,
    start: int = 20, clip=(-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """Forward-Backward: diffuse the observation to step N (``start``), then run the reverse chain
    from N to 0. The index is consistent: q_sample at ᾱ_{N−1}, the first reverse step at N−1
    (Baikal's code is off by one here). N = 0 returns the observation unchanged."""
    alphas = schedule.alphas_cumprod
    y = observation.expand_as(y_T).clone()
    if start <= 0:
        return y
    y = q_sample(y, float(alphas[start - 1]), noise_fn(tuple(y.shape)).to(y))
    for i, t in enumerate(range(start - 1, -1, -1)):
        y, x0 = _reverse_step(eps_fn, y, t, alphas, noise_fn, clip)
        yield SamplerStep(i, start, x0)
    return y


def mixing(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, observation: torch.Tensor,
    start: int = 20, stop: int = 4, weight_start: float = 0.3, weight_stop: float = 0.01, clip=(-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """Mixing: Forward-Backward where, before each step from N down to n (``stop``), the state is
    mixed with the observation diffused to the same level, x_t ← (1−w_t)·x_t + w_t·q(y0, t), w
    linear from ``weight_start`` (t = N) to ``weight_stop`` (t = n), with the noise top-up of
    :func:`_mix_in_observation`."""
    alphas = schedule.alphas_cumprod
    obs = observation.expand_as(y_T)
    if start <= 0:
        return obs.clone()
    y = q_sample(obs, float(alphas[start - 1]), noise_fn(tuple(obs.shape)).to(obs))
    span = max(start - 1 - stop, 1)
    for i, t in enumerate(range(start - 1, -1, -1)):
        if t >= stop:
            w = weight_start + (weight_stop - weight_start) * (start - 1 - t) / span
            y = _mix_in_observation(y, obs, float(alphas[t]), w, noise_fn)
        y, x0 = _reverse_step(eps_fn, y, t, alphas, noise_fn, clip)
        yield SamplerStep(i, start, x0)
    return y


def repaint(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, observation: torch.Tensor,
    start: int = 12, block: int = 2, repeats: int = 3, mix_weight: float = 0.5, mix_stop: int = 10,
    renoise: bool = True, clip=(-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """Repaint: the reverse chain from N in blocks of U (``block``) steps, each block run R
    (``repeats``) times; while t ≥ ``mix_stop`` the state is mixed with the diffused observation
    (weight ``mix_weight``) before each step.

    ``renoise=True`` is true RePaint (Lugmayr et al. 2022): between repeats the state is diffused
    back up by U steps, x_{t+U} = √(ᾱ_{t+U}/ᾱ_t)·x_t + √(1 − ᾱ_{t+U}/ᾱ_t)·z. ``renoise=False`` is
    Baikal's code: the block restarts from the already denoised state without new noise."""
    alphas = schedule.alphas_cumprod
    obs = observation.expand_as(y_T)
    if start <= 0:
        return obs.clone()
    y = q_sample(obs, float(alphas[start - 1]), noise_fn(tuple(obs.shape)).to(obs))
    total = sum(min(block, top + 1) * repeats for top in range(start - 1, -1, -block))
    i = 0
    for top in range(start - 1, -1, -block):
        bottom = max(top - block + 1, 0)
        for r in range(repeats):
            for t in range(top, bottom - 1, -1):
                if t >= mix_stop and mix_weight > 0:
                    y = _mix_in_observation(y, obs, float(alphas[t]), mix_weight, noise_fn)
                y, x0 = _reverse_step(eps_fn, y, t, alphas, noise_fn, clip)
                yield SamplerStep(i, total, x0)
                i += 1
            if r + 1 < repeats and renoise:
                # back from level ᾱ_{bottom−1} (after the block) to ᾱ_top (before it)
                g_low = float(alphas[bottom - 1]) if bottom > 0 else 1.0
                ratio = float(alphas[top]) / g_low
                y = math.sqrt(ratio) * y + math.sqrt(1 - ratio) * noise_fn(tuple(y.shape)).to(y)
    return y
