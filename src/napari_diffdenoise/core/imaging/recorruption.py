"""The noise s that recorrupts an image into a pair (ŷ = y + α·s, ȳ = y − s/α) — after
Recorrupted-to-Recorrupted (Pang et al. 2021) — declared once for the two uses of such pairs: the
self-calibration's residuals (core.calibration.residuals) and adaptation's training pairs
(core.training.recorrupted_pairs).

At each pixel s has the camera's variance at the pixel's smoothed level (the noisy value itself would
correlate s with the pixel's own noise) and, drawn from a shifted gamma, the camera's third moment
over α. Why the third moment: the input's noise a = n + α·s and the view's b = n − s/α are
uncorrelated for any s of the camera's variance, but a restoration f reaches them through its
curvature too: E[f(x + a)·b] ∋ ½·f''·E[a²·b], with E[a²·b] = κ₃(n) − α·κ₃(s) — zero for Gaussian
camera noise, not for photon noise at a few photons. With Gaussian s the self-calibration read the
error's V 2–3× the truth's (Golgi at 3 photons, four acquisitions: 0.80 on average; with the camera's
skew 0.38; truth about 0.35), and a head trained on such pairs learns the same curvature term as a
bias.

Where the camera's noise is correlated between pixels (``correlation``: its lag-1 correlation along y
and x, core.calibration.view_noise.NoiseCorrelation.for_draws), s is too — white s through [a, 1, a] along each
axis, a chosen for that lag-1 correlation — and its variance is the camera's divided by what the
camera fit misses of it: the fit reads the variance off second differences (core.imaging.camera_noise),
which see var·(6 − 8ρ₁ + 2ρ₂)/6 of correlated noise. White s on such noise leaves ŷ and ȳ sharing its
correlated part, and s too weak makes them correlate outright; on real images re-acquired with noise
of lag-1 correlation 0.26 along both axes, white draws gave V below 0 on 14 of 15 (the model's spread used,
0.21–0.77 at 0.8) where coloured ones gave 0.74–0.88, within ±0.05 at all three levels on 10 of 15
(docs/benchmarks/noise_correlation.md, the shipped demo)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .camera_noise import CameraNoise

SMOOTHING = 1.5  # px: the level a pixel's noise is read at


@dataclass(frozen=True)
class RecorruptionNoise:
    """The law of s per pixel of some images: its variance and its gamma scale θ (0: drawn normal)."""

    variance: np.ndarray
    theta: np.ndarray
    taps: tuple[float, float] = (0.0, 0.0)  # a of the [a, 1, a] kernel along y and x (0: white)

    @classmethod
    def of(cls, noise: CameraNoise, images: np.ndarray, alpha: float,
           correlation: tuple[float, float] | None = None, level: np.ndarray | None = None) -> RecorruptionNoise:
        """The law for ``images`` (a plane or a stack of planes, each smoothed on its own) recorrupted
        with factor ``alpha``, under the camera ``noise``, correlated between pixels by ``correlation``
        (lag 1 along y and x; None: white). ``level``: the images' noise-free level where something
        better than their smoothing knows it (a restoration of them: bench/estimator_terms.py measures
        what the smoothed level's own noise does to the self-calibration)."""
        images = np.asarray(images, dtype=np.float64)
        sigma = (0,) * (images.ndim - 2) + (SMOOTHING, SMOOTHING)
        level = (ndimage.gaussian_filter(images, sigma) if level is None
                 else np.broadcast_to(np.asarray(level, dtype=np.float64), images.shape))
        taps = (0.0, 0.0) if correlation is None else tuple(kernel_tap(r) for r in correlation)
        variance = noise.variance(level) / np.mean([fitted_share(a) for a in taps])
        theta = noise.third_moment(level) / alpha / (2 * variance)  # a gamma(k, θ) has κ₃ / variance = 2θ
        # a shape k = variance / θ² above 10⁴ is a normal as near as the draws can tell
        return cls(variance, np.where(theta * theta < 1e-4 * variance, 0.0, theta), taps)

    def __getitem__(self, window) -> RecorruptionNoise:
        return RecorruptionNoise(self.variance[window], self.theta[window], self.taps)

    def draw(self, rng) -> np.ndarray:
        """One draw of s, of mean 0, the variance and the third moment 2θ·variance (white), or
        that passed through the kernel (correlated; the variance kept, the skew lessened)."""
        gaussian = self.theta == 0
        theta = np.where(gaussian, 1.0, self.theta)
        shape = np.where(gaussian, 1.0, self.variance / theta ** 2)
        skewed = rng.gamma(shape, theta) - shape * theta
        s = np.where(gaussian, np.sqrt(self.variance) * rng.standard_normal(self.variance.shape), skewed)
        for axis, a in zip((-2, -1), self.taps):
            if a:
                s = ndimage.convolve1d(s, [a, 1.0, a], axis=axis, mode="reflect") / math.sqrt(1 + 2 * a * a)
        return s

    def recorrupt(self, y: np.ndarray, alpha: float, rng) -> tuple[np.ndarray, np.ndarray]:
        """(ŷ, ȳ) = (y + α·s, y − s/α) for one draw of s."""
        s = self.draw(rng)
        return y + alpha * s, y - s / alpha


def kernel_tap(lag1: float) -> float:
    """a of the [a, 1, a] kernel that gives white noise the lag-1 correlation ``lag1`` (2a / (1 + 2a²));
    within ±0.6, the reach of such a kernel being ±1/√2."""
    rho = float(np.clip(lag1, -0.6, 0.6))
    return 0.0 if abs(rho) < 1e-9 else (1 - math.sqrt(1 - 2 * rho * rho)) / (2 * rho)


def fitted_share(tap: float) -> float:
    """The share of noise through [a, 1, a] (unit variance) that the camera fit's second differences
    read along that axis: (6 − 8ρ₁ + 2ρ₂)/6, ρ₁ = 2a / (1 + 2a²), ρ₂ = a² / (1 + 2a²)."""
    norm = 1 + 2 * tap * tap
    return (6 - 8 * (2 * tap / norm) + 2 * (tap * tap / norm)) / 6
