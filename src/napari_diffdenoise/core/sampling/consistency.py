"""Data consistency with a known PSF: the physics term of PI-DDPM (Li, della Maggiora et al.; docs/method.md).

For an observation x (normalised, one plane) and a PSF K, :class:`DataConsistency` gives the error
‖K∗ŷ − x‖² of an estimate ŷ and its exact gradient 2·Kᵀ(K∗ŷ − x): the adjoint of a convolution
is the correlation with the same kernel, so no autograd is needed. The operator acts on the whole
plane (not per tile), so guidance has no seams.

:class:`ConsistencyPull` is the one step towards consistency that both ways of steering by the PSF
take: the ``ddim-dc`` sampler (core.sampling.dc_sampling) and ``guidance="dc"`` around any sampler
(core.sampling.guidance). They differ only in what the step moves.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..imaging.kernels import check_psf

REGULARISERS = ("none", "l1", "l2")
REFERENCE_PIXELS = 128 * 128  # guidance norms are taken per this many pixels (see gradient_norm)


def check_regulariser(regulariser: str) -> None:
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}; got {regulariser!r}")


class DataConsistency:
    """K∗· and its adjoint on (B, 1, H, W) tensors; ``psf`` None is the identity (denoising only)."""

    def __init__(self, observation: torch.Tensor, psf: np.ndarray | None):
        self.observation = observation
        if psf is None:
            self.kernel = None
        else:
            kernel = torch.from_numpy(check_psf(psf).astype(np.float32)).to(observation.device)
            self.kernel = kernel[None, None]
        # the background level of the observation, for the sparsity (L1) and smoothness (L2)
        # regularisers: a low percentile of the blurred observation, which the noise barely moves
        blurred = self.blur(observation).flatten()
        self.background = float(torch.quantile(blurred[:: max(1, blurred.numel() // 65536)].float(), 0.01))

    def _correlate(self, image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        kh, kw = kernel.shape[-2:]
        pad = (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2)
        mode = "reflect" if max(pad) < min(image.shape[-2:]) else "replicate"
        return F.conv2d(F.pad(image, pad, mode=mode), kernel.to(image.dtype))

    def blur(self, image: torch.Tensor) -> torch.Tensor:
        """K∗image (a true convolution: conv2d correlates, so the kernel is flipped)."""
        if self.kernel is None:
            return image
        return self._correlate(image, torch.flip(self.kernel, (-2, -1)))

    def adjoint(self, image: torch.Tensor) -> torch.Tensor:
        """Kᵀ·image, the correlation with K (up to the border handling)."""
        if self.kernel is None:
            return image
        return self._correlate(image, self.kernel)

    def residual(self, estimate: torch.Tensor) -> torch.Tensor:
        return self.blur(estimate) - self.observation

    def error(self, estimate: torch.Tensor) -> torch.Tensor:
        """Root-mean-square of K∗ŷ − x per batch item."""
        return self.residual(estimate).flatten(1).pow(2).mean(dim=1).sqrt()

    def gradient(self, estimate: torch.Tensor, regulariser: str = "none", weight: float = 0.0) -> torch.Tensor:
        """∇ of ‖K∗ŷ − x‖² + λ·R(ŷ) with R = ‖ŷ − b‖₁ (sparsity) or ‖ŷ − b‖² (smallness), b the
        observation's background (fluorescence is sparse above its background, not above zero)."""
        check_regulariser(regulariser)
        grad = 2 * self.adjoint(self.residual(estimate))
        if regulariser == "l1" and weight > 0:
            grad = grad + weight * torch.sign(estimate - self.background)
        elif regulariser == "l2" and weight > 0:
            grad = grad + 2 * weight * (estimate - self.background)
        return grad


def gradient_norm(grad: torch.Tensor) -> torch.Tensor:
    """‖∇‖₂ per batch item, measured per 128×128 pixels: PI-DDPM's ν_t = η·√γ_t/‖∇‖ moves the
    whole image by a step of norm η·√γ_t, so on a bigger plane every pixel would move less. Taking
    the norm per fixed area makes η mean the same on a 64² crop and on a 2048² plane."""
    pixels = grad[0].numel()
    return grad.flatten(1).norm(dim=1) * (REFERENCE_PIXELS / pixels) ** 0.5


class ConsistencyPull:
    """PI-DDPM's annealed step against ∇ = ∇_ŷ[‖K∗ŷ − x‖² + λ·R(ŷ)], taken at the clean estimate ŷ
    (K∗y_t is mostly noise until t is small): ν_t·∇ with ν_t = w·√γ_t/‖∇‖, so the steps grow as the
    noise falls. ``ddim-dc`` moves the sampler's state by it after each DDIM step; guidance moves
    the clean estimate itself inside each network call."""

    def __init__(self, consistency: DataConsistency, weight: float, regulariser: str = "none",
                 reg_weight: float = 0.0):
        check_regulariser(regulariser)  # refused before sampling starts, not at the first step
        self.consistency, self.weight = consistency, weight
        self.regulariser, self.reg_weight = regulariser, reg_weight

    def step(self, estimate: torch.Tensor, gamma: float) -> torch.Tensor:
        """ν_t·∇ at ``estimate``, one step per batch item."""
        grad = self.consistency.gradient(estimate, self.regulariser, self.reg_weight)
        nu = self.weight * math.sqrt(gamma) / gradient_norm(grad).clamp_min(1e-12)
        return nu.view(-1, *([1] * (grad.dim() - 1))) * grad

    def apply(self, target: torch.Tensor, estimate: torch.Tensor, gamma: float) -> torch.Tensor:
        """``target`` moved against the step taken at ``estimate``; weight 0 costs no gradient."""
        return target if self.weight == 0 else target - self.step(estimate, gamma)
