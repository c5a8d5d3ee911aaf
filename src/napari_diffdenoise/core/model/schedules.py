"""Noise schedules and timestep selection, all arithmetic in float64.

Conventions follow guided-diffusion: index t = 0 .. T-1, ``alphas_cumprod[t]`` is ᾱ
after t+1 noising steps, and ᾱ before the first step is 1. The network is conditioned on
γ = ᾱ itself (a number in (0, 1)), so any subsequence of the training steps can be sampled.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MAX_BETA = 0.999  # as in Nichol & Dhariwal: keeps the last steps from being pure noise with β = 1


def cosine_alphas_cumprod(n_steps: int, offset: float = 8e-3) -> np.ndarray:
    """ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2) (Nichol & Dhariwal 2021, Eq. 17),
    with β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped at 0.999 and ᾱ recomputed from the clipped β."""
    t = np.arange(n_steps + 1, dtype=np.float64) / n_steps
    f = np.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0.0, MAX_BETA)
    return np.cumprod(1 - betas)


def linear_alphas_cumprod(n_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """β linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020)."""
    betas = np.linspace(beta_start, beta_end, n_steps, dtype=np.float64)
    return np.cumprod(1 - betas)


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete schedule of T steps; serialisable to JSON through :meth:`to_dict`."""

    kind: str = "cosine"  # "cosine" or "linear"
    n_steps: int = 200  # T
    offset: float = 8e-3  # s of the cosine schedule
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only

    def __post_init__(self):
        if self.kind not in ("cosine", "linear"):
            raise ValueError(f"unknown schedule kind {self.kind!r}; use 'cosine' or 'linear'")
        if self.n_steps < 1:
            raise ValueError("a schedule needs at least one step")

    @property
    def alphas_cumprod(self) -> np.ndarray:
        if self.kind == "cosine":
            return cosine_alphas_cumprod(self.n_steps, self.offset)
        return linear_alphas_cumprod(self.n_steps, self.beta_start, self.beta_end)

    @property
    def alphas_cumprod_prev(self) -> np.ndarray:
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @property
    def betas(self) -> np.ndarray:
        return 1 - self.alphas_cumprod / self.alphas_cumprod_prev

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NoiseSchedule:
        return cls(**data)


def sample_gammas(schedule: NoiseSchedule, n: int, rng: np.random.Generator) -> np.ndarray:
    """Continuous noise levels for training (SR3, Saharia et al. 2021): t ~ U{0..T−1}, then
    γ ~ U(ᾱ_t, ᾱ_{t−1}), so the network sees every γ a respaced sampler may ask for."""
    t = rng.integers(0, schedule.n_steps, size=n)
    low, high = schedule.alphas_cumprod[t], schedule.alphas_cumprod_prev[t]
    # γ = 1 exactly (possible once cast to float32) would be an infinite SNR: stop just short of it
    return np.minimum(low + (high - low) * rng.random(n), 1 - 1e-6)


def respaced_timesteps(n_train_steps: int, n_steps: int) -> np.ndarray:
    """Descending subsequence of ``n_steps`` training indices with "trailing" spacing, so the first
    step is always t = T−1 (pure noise) and the last is near t = 0 (Lin et al. 2024, Table 2)."""
    if not 1 <= n_steps <= n_train_steps:
        raise ValueError(f"steps must be between 1 and {n_train_steps}, got {n_steps}")
    # integer arithmetic: a float stride in np.arange can yield one entry too many
    return (n_train_steps - (np.arange(n_steps) * n_train_steps) // n_steps - 1).astype(np.int64)
