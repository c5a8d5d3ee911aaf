"""Guidance that composes with any sampler: a guide corrects the clean estimate x̂₀ inside the
network call, so every sampler that calls ``eps_fn`` — DDIM, DDPM, DPM-Solver++, EDM's Heun or one a
user registers — is guided without knowing it, the way score_sde's controllable generation wraps any
predictor with an inpainting update.

``Guided(eps_fn, guide)`` is an ``eps_fn`` whose implied x̂₀ = (y − √(1−γ)·ε̂)/√γ is replaced by
``guide(x̂₀, γ)``; ε̂ is re-derived from it, ε̂' = (y − √γ·x̂₀')/√(1−γ), so the sampler's update sees a
self-consistent pair.

Guides (``GUIDES``), each declaring what it needs (the run's rules are derived from that, core.run.restore):

- ``"dc"``: data consistency with a known PSF (PI-DDPM, Li, della Maggiora et al.): x̂₀ moves by the
  consistency step of core.sampling.consistency (ConsistencyPull), the step ``ddim-dc`` applies to the state
  after each DDIM step instead.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .consistency import ConsistencyPull, DataConsistency
from .samplers import EpsFn

Guide = Callable[[torch.Tensor, float], torch.Tensor]  # (x̂₀, γ) → corrected x̂₀


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
    pull = ConsistencyPull(consistency, weight, regulariser, reg_weight)
    return lambda x0, gamma: pull.apply(x0, x0, gamma)


@dataclass(frozen=True)
class GuideInfo:
    name: str
    make: Callable[[DataConsistency, float], Guide]  # (the plane's consistency, weight) → the guide
    needs_psf: bool = False  # steers by data consistency with a known PSF


GUIDES: dict[str, GuideInfo] = {"dc": GuideInfo("dc", data_consistency_guide, needs_psf=True)}


def make_guide(name: str, consistency: DataConsistency, weight: float) -> Guide:
    if name not in GUIDES:
        raise ValueError(f"guidance must be one of {tuple(GUIDES)}; got {name!r}")
    return GUIDES[name].make(consistency, weight)
