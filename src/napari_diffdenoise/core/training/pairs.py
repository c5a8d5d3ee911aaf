"""Training batches for the paired model: normalised (noisy, clean) patches with augmentation.

Both images of a pair are normalised with the *noisy* image's percentile map, so the model learns
to predict the clean image in the input's own intensity units (expected counts for simulated
data). Real pairs acquired at different light levels are first put into the noisy image's units
by a least-squares scale-and-offset fit (:func:`align_to`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..imaging.normalization import DEFAULT_PERCENTILES, IntensityMap
from ..imaging.simulate import HELD_OUT_KINDS, KINDS, Acquisition, draw_structure, random_acquisition

TARGETS = ("blurred", "sharp")


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
    # "blurred": the clean side is h ∗ x (denoising); "sharp": it is x itself (denoising and
    # deconvolution, PI-DDPM's training pairs)
    target: str = "blurred"

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; use one of {TARGETS}")
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
        clean = acquisition.expected(acquisition.sharp(density) if self.target == "sharp" else blurred)
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


def random_contrast(image: np.ndarray, rng: np.random.Generator, low: float = 0.1) -> np.ndarray:
    """x ← (x + 1)·c − 1 + o with c log-uniform in [``low``, 1] and o uniform in [0, 1 − c]: the
    affine squeeze that a noisy image's percentile map applies to its clean content.

    Measured on the simulator (nuclei, filaments, membranes, puncta; clean content of the noisy
    image's map fitted to the clean image's own map): c = 0.13–0.22 and o = 0.74–0.80 at 3
    photons, c ≈ 0.4–0.5 at 10, c ≈ 0.7 at 30 and c ≈ 0.9 at 100 photons."""
    contrast = float(np.exp(rng.uniform(np.log(low), 0.0)))
    offset = float(rng.uniform(0.0, 1.0 - contrast))
    return ((image + 1) * contrast - 1 + offset).astype(np.float32)


@dataclass
class SimulatedClean(SimulatedPairs):
    """Clean simulated images only, for the unconditional (unpaired) model: each noise-free
    acquisition through its own percentile map, as Baikal normalises its clean images, then a
    :func:`random_contrast`. Batches are (clean, clean), like :class:`.datasets.CleanPatches`.

    Why the contrast: at inference the observation goes through the *noisy* image's percentiles,
    which sit wider than a clean image's (noise reaches below the background and above the
    brightest pixel), so its structures arrive squeezed towards a raised background. A prior that
    has only seen full-range images would read that squeeze as content to remove."""

    contrast_low: float = 0.1

    def acquired_pair(self, density: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
        clean = acquisition.expected(acquisition.blur(density))
        normalised = IntensityMap.from_percentiles(clean, self.percentiles).to_model(clean)
        normalised = random_contrast(normalised, rng, self.contrast_low)
        return np.stack([normalised, normalised])
