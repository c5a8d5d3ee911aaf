"""Training batches for the paired model: normalised (noisy, clean) patches with augmentation.

Both images of a pair are normalised with the *noisy* image's percentile map, so the model learns
to predict the clean image in the input's own intensity units (expected counts for simulated
data). Real pairs acquired at different light levels are first put into the noisy image's units
by a least-squares scale-and-offset fit (:func:`align_to`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .normalization import DEFAULT_PERCENTILES, IntensityMap
from .simulate import HELD_OUT_KINDS, KINDS, Acquisition, draw_structure, random_acquisition


def align_to(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """a·target + b with (a, b) minimising ‖a·target + b − reference‖² (E[noisy] is affine in clean)."""
    t = target.astype(np.float64).ravel()
    design = np.stack([t, np.ones_like(t)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, reference.astype(np.float64).ravel(), rcond=None)
    return (a * target + b).astype(np.float32)


def augment(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same random flip and 90° rotation (the 8 symmetries of the square) on every channel of
    one sample; ``patches`` is (C, H, W)."""
    k = int(rng.integers(4))
    out = np.rot90(patches, k, axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def random_crop(images: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (C, size, size) crop at one random position of (C, H, W) images."""
    _, h, w = images.shape
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return images[:, y : y + size, x : x + size]


@dataclass
class SimulatedPairs:
    """Endless (noisy, clean) batches from the simulator: a pool of structure images drawn once,
    each time re-acquired at a random photon level, background, read noise and PSF."""

    kinds: tuple[str, ...] = KINDS
    image_size: int = 256
    pool_size: int = 96
    peak_range: tuple[float, float] = (2.0, 200.0)
    patches_per_image: int = 4  # crops per acquisition: the percentiles are per whole image
    mix_probability: float = 0.3  # chance that an image overlays two structure kinds
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    seed: int = 0

    def __post_init__(self):
        unknown = set(self.kinds) - set(KINDS + HELD_OUT_KINDS)
        if unknown:
            raise ValueError(f"unknown structure kinds {sorted(unknown)}; choose from {KINDS + HELD_OUT_KINDS}")
        self.rng = np.random.default_rng(self.seed)
        self.pool = [self._density() for _ in range(self.pool_size)]

    def _density(self) -> np.ndarray:
        shape = (self.image_size, self.image_size)
        kind = self.kinds[self.rng.integers(len(self.kinds))]
        density = draw_structure(kind, shape, self.rng)
        if self.rng.random() < self.mix_probability:
            other = self.kinds[self.rng.integers(len(self.kinds))]
            density = density + self.rng.uniform(0.2, 0.8) * draw_structure(other, shape, self.rng)
        return density

    def acquired_pair(self, density: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
        """(2, H, W): noisy and clean, both through the noisy image's percentile map."""
        blurred = acquisition.blur(density)
        noisy = acquisition.acquire(blurred, rng)
        clean = acquisition.expected(blurred)
        imap = IntensityMap.from_percentiles(noisy, self.percentiles)
        return np.stack([imap.to_model(noisy), imap.to_model(clean)])

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator | None = None):
        """(noisy, clean), each (B, 1, P, P) float32 in model units."""
        rng = rng if rng is not None else self.rng
        out = []
        while len(out) < batch_size:
            density = self.pool[rng.integers(len(self.pool))]
            pair = self.acquired_pair(density, self.acquisition(rng), rng)
            for _ in range(min(self.patches_per_image, batch_size - len(out))):
                out.append(augment(random_crop(pair, patch_size, rng), rng))
        stacked = np.stack(out).astype(np.float32)
        return stacked[:, :1], stacked[:, 1:]

    def acquisition(self, rng: np.random.Generator) -> Acquisition:
        return random_acquisition(rng, self.peak_range)
