"""DDIM steered by data consistency with a known PSF (PI-DDPM's sampling; docs/method.md).

After every DDIM step the state moves by the consistency step (core.sampling.consistency.ConsistencyPull)
taken at the step's clean estimate; the last state is clipped again, as the pull can leave the
range. ``guidance`` is the pull's weight: 0 is plain DDIM. ``guidance="dc"`` (core.sampling.guidance) takes
the same step but moves the clean estimate inside the network call instead, which composes with any
sampler; the two are not the same sampler (docs/method.md).
"""
from __future__ import annotations

from collections.abc import Generator

import torch

from ..model.schedules import NoiseSchedule
from .consistency import ConsistencyPull, DataConsistency
from .samplers import EpsFn, NoiseFn, SamplerStep, ddim


def ddim_dc(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    y_T: torch.Tensor,
    noise_fn: NoiseFn,
    *,
    consistency: DataConsistency,
    steps: int = 10,
    eta: float = 0.0,
    guidance: float = 1.0,
    regulariser: str = "none",
    reg_weight: float = 0.015,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    pull = ConsistencyPull(consistency, guidance, regulariser, reg_weight)

    def guide(y: torch.Tensor, x0: torch.Tensor, gamma: float, last: bool) -> torch.Tensor:
        y = pull.apply(y, x0, gamma)
        return y.clamp(*clip) if last and clip is not None else y

    return (yield from ddim(eps_fn, schedule, y_T, noise_fn, steps=steps, eta=eta, clip=clip, guide=guide))
