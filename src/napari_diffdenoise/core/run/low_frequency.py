"""The restoration's low frequencies held to the data's, where they depart beyond the noise.

Camera noise has mean zero, so the noisy plane smoothed over SMOOTHING px is an unbiased and nearly
noise-free view of the same smoothing of what the camera records on average (for an 8-bit camera whose
dark counts are clipped and quantised, that average is what a long average of the same field shows:
issue #23's truths). Where the restoration's smoothing departs from the data's by more than the noise
can explain, the restoration is biased there, and the departure is added back, shrunk by its own
noise (the positive part of James–Stein's factor, pixel by pixel):

    x̂ + d·max(0, 1 − (k·se)² / d²),   d = G_σ ∗ (y − x̂),   se² = Σ g² · var(noise)

with k = SIGNIFICANCE and var(noise) from the camera fitted to the plane (core.imaging.camera_noise).
se counts the data's noise only; the part of it the restoration passes through cancels in d, so se
is an upper bound and the test conservative.

Each sample and the one-pass mean are held on their own (core.run.plane_sampling), so that a sample
does not depend on how many were drawn and the samples' average is still their mean.

Why: under a high dynamic range a mean head can lift the dark background. The head of 2026-12-03 did,
by 0.7–1.0 counts on the still pixels of the real 8-bit time-lapse (a background of a few counts, a
hundredth of the plane's range above the model's −1) and by 27–61 counts on the lysosome series' raw
counts, and the step took that off. The heads shipped since, fine-tuned on bright camera frames, lift
those backgrounds by 0.02–0.11 and 0.5–3.7 counts, which the step moves by no more than 0.01 dB; on
the re-acquired real images it costs at most 0.06 dB (0.11 fitted, Golgi at 3 photons). Kept for data
outside what the heads were fine-tuned on. Measured by bench/low_frequency.py
(docs/benchmarks/low_frequency.md; docs/method.md has the figures of both heads).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from ..imaging.camera_noise import estimate_noise

SMOOTHING = 8.0  # px: σ of the Gaussian whose view of the data is trusted over the restoration's
SIGNIFICANCE = 3.0  # standard errors of that view's noise a departure must exceed to count
LEVEL_SMOOTHING = 2.0  # px: the level each pixel's noise variance is read at
MIN_SIDE = 32  # px: a smaller plane holds too few noise blocks for a camera fit (core.imaging.camera_noise)


def departure_noise(plane: np.ndarray) -> np.ndarray | None:
    """se², the noise variance of the data smoothed over SMOOTHING px, per pixel, from the camera
    fitted to ``plane``; None for a plane too small to fit the camera on."""
    if min(plane.shape) < MIN_SIDE:
        return None
    data = np.asarray(plane, dtype=np.float64)
    variance = estimate_noise([data]).variance(ndimage.gaussian_filter(data, LEVEL_SMOOTHING))
    # Σ g² · var for a Gaussian g of σ: var smoothed by σ/√2, over 4πσ²
    se2 = ndimage.gaussian_filter(variance, SMOOTHING / math.sqrt(2), mode="reflect") / (4 * math.pi * SMOOTHING ** 2)
    return se2 if np.all(np.isfinite(se2)) else None


def low_frequency_departure(plane: np.ndarray, mean: np.ndarray, se2: np.ndarray | None = None) -> np.ndarray | None:
    """What to add to ``mean`` (an estimate of ``plane``'s clean image, both in input units): its
    smoothed departure from the data, shrunk by that departure's noise (``se2``: from
    :func:`departure_noise`, computed here when not given); None for a plane too small to fit the
    camera on."""
    se2 = departure_noise(plane) if se2 is None else se2
    if se2 is None:
        return None
    departure = ndimage.gaussian_filter(np.asarray(plane, dtype=np.float64) - mean, SMOOTHING, mode="reflect")
    return _shrunk(departure, se2, 1e-300)


def _shrunk(departure, se2, tiny: float):
    """The departure shrunk by its own noise, pixel by pixel (the positive part of James–Stein's factor),
    for NumPy arrays and torch tensors alike; ``tiny`` keeps a zero departure from dividing by zero."""
    return departure * (1.0 - SIGNIFICANCE ** 2 * se2 / (departure ** 2).clip(min=tiny)).clip(min=0.0)


def gaussian_smoothed(images: torch.Tensor, sigma: float = SMOOTHING, truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="reflect")`` of every (H, W) image of ``images``
    (n, H, W), on their own device: the same taps (radius int(truncate·σ + 0.5), normalised to sum 1) and the
    same half-sample mirror at the edges."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = taps / taps.sum()
    height, width = images.shape[-2:]
    x = images[:, None].index_select(-2, _mirrored(height, radius, images.device))
    x = torch.nn.functional.conv2d(x, taps.view(1, 1, -1, 1))
    x = torch.nn.functional.conv2d(x.index_select(-1, _mirrored(width, radius, images.device)), taps.view(1, 1, 1, -1))
    return x[:, 0]


def _mirrored(n: int, radius: int, device) -> torch.Tensor:
    """Indices 0 … n − 1 extended by ``radius`` at each end as scipy's mode="reflect" extends an axis
    (d c b a | a b c d | d c b a, repeated where the radius exceeds the axis)."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def held_on_device(observed: torch.Tensor, estimates: torch.Tensor, se2: torch.Tensor) -> torch.Tensor:
    """Each estimate (n, H, W) plus its :func:`low_frequency_departure`, computed in model units on the
    estimates' device: ``observed`` the plane (H, W) and ``se2`` its departure noise, both in model units.
    On a GPU the host's Gaussian filters were most of a run (45 σ = 8 filters in a 512² run; one of a 2048²
    plane takes 0.28 s on the CPU: docs/benchmarks/gpu_speed.md, docs/performance.md); the same arithmetic,
    another device."""
    departure = gaussian_smoothed(observed[None] - estimates)
    return estimates + _shrunk(departure, se2, torch.finfo(departure.dtype).tiny)
