"""Guidance that composes with any sampler: a guide corrects the clean estimate x̂₀ inside the
network call, so every sampler that calls ``eps_fn`` — DDIM, DDPM, DPM-Solver++, EDM's Heun or one a
user registers — is guided without knowing it, the way score_sde's controllable generation wraps any
predictor with an inpainting update.

``guided(eps_fn, guide)`` returns an ``eps_fn`` whose implied x̂₀ = (y − √(1−γ)·ε̂)/√γ is replaced by
``guide(x̂₀, γ)``; ε̂ is re-derived from it, ε̂' = (y − √γ·x̂₀')/√(1−γ), so the sampler's update sees a
self-consistent pair.

Guides (``GUIDES``):

- ``"dc"``: data consistency with a known PSF (PI-DDPM, Li, della Maggiora et al.): x̂₀ moves against
  ∇[‖K∗x̂₀ − x‖² + λ·R(x̂₀)] by ν = w·√γ/‖∇‖ (the annealing of ``ddim-dc``, whose own correction acts
  on the state after the step instead). The gradient is exact through the adjoint convolution
  (core.consistency).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .consistency import REGULARISERS, DataConsistency, gradient_norm
from .samplers import EpsFn

Guide = Callable[[torch.Tensor, float], torch.Tensor]  # (x̂₀, γ) → corrected x̂₀
GUIDES = ("dc",)


class Guided:
    """``eps_fn`` with its implied clean estimate corrected by ``guide``; counts what it wraps."""

    def __init__(self, eps_fn: EpsFn, guide: Guide):
        self.eps_fn, self.guide = eps_fn, guide

    @property
    def evaluations(self) -> int:
        return self.eps_fn.evaluations

    @evaluations.setter
    def evaluations(self, value: int) -> None:
        self.eps_fn.evaluations = value

    def __call__(self, y: torch.Tensor, gamma: float) -> torch.Tensor:
        eps = self.eps_fn(y, gamma)
        root_gamma, root_rest = math.sqrt(gamma), math.sqrt(1 - gamma)
        x0 = (y - root_rest * eps) / root_gamma
        return (y - root_gamma * self.guide(x0, gamma)) / root_rest


def data_consistency_guide(consistency: DataConsistency, weight: float = 1.0, regulariser: str = "none",
                           reg_weight: float = 0.015) -> Guide:
    if regulariser not in REGULARISERS:
        raise ValueError(f"guidance regulariser must be one of {REGULARISERS}; got {regulariser!r}")

    def guide(x0: torch.Tensor, gamma: float) -> torch.Tensor:
        if weight == 0:
            return x0
        grad = consistency.gradient(x0, regulariser, reg_weight)
        step = weight * math.sqrt(gamma) / gradient_norm(grad).clamp_min(1e-12)
        return x0 - step.view(-1, *([1] * (x0.dim() - 1))) * grad

    return guide


def make_guide(name: str, observation: torch.Tensor, psf, weight: float) -> Guide:
    if name == "dc":
        return data_consistency_guide(DataConsistency(observation, psf), weight)
    raise ValueError(f"guidance must be one of {GUIDES}; got {name!r}")
