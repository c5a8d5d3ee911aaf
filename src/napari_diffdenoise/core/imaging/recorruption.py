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
bias."""
from __future__ import annotations

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

    @classmethod
    def of(cls, noise: CameraNoise, images: np.ndarray, alpha: float) -> RecorruptionNoise:
        """The law for ``images`` (a plane or a stack of planes, each smoothed on its own) recorrupted
        with factor ``alpha``, under the camera ``noise``."""
        images = np.asarray(images, dtype=np.float64)
        sigma = (0,) * (images.ndim - 2) + (SMOOTHING, SMOOTHING)
        level = ndimage.gaussian_filter(images, sigma)
        variance = noise.variance(level)
        theta = noise.third_moment(level) / alpha / (2 * variance)  # a gamma(k, θ) has κ₃ / variance = 2θ
        # a shape k = variance / θ² above 10⁴ is a normal as near as the draws can tell
        return cls(variance, np.where(theta * theta < 1e-4 * variance, 0.0, theta))

    def __getitem__(self, window) -> RecorruptionNoise:
        return RecorruptionNoise(self.variance[window], self.theta[window])

    def draw(self, rng) -> np.ndarray:
        """One draw of s, of mean 0, the variance and the third moment 2θ·variance."""
        gaussian = self.theta == 0
        theta = np.where(gaussian, 1.0, self.theta)
        shape = np.where(gaussian, 1.0, self.variance / theta ** 2)
        skewed = rng.gamma(shape, theta) - shape * theta
        return np.where(gaussian, np.sqrt(self.variance) * rng.standard_normal(self.variance.shape), skewed)

    def recorrupt(self, y: np.ndarray, alpha: float, rng) -> tuple[np.ndarray, np.ndarray]:
        """(ŷ, ȳ) = (y + α·s, y − s/α) for one draw of s."""
        s = self.draw(rng)
        return y + alpha * s, y - s / alpha
