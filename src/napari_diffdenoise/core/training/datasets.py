"""Training data from a user's own images, with validation held out by region.

Each plane is cut once into a training part and a validation strip (the last rows, or the last
columns of a wide plane); training patches never touch the strip, so validation measures pixels
the model has not been trained on, not new crops of the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..imaging.axes import as_planes
from ..imaging.normalization import DEFAULT_PERCENTILES, IntensityMap
from ..imaging.simulate import NoiseModel
from .pairs import align_to, augment, random_contrast, random_crop


@dataclass(frozen=True)
class Split:
    """Where a plane's validation strip lies: rows (axis 0) or columns (axis 1) from ``start``."""

    axis: int
    start: int

    @classmethod
    def of(cls, shape, val_fraction: float, patch_size: int, what: str) -> Split:
        axis = 0 if shape[0] >= shape[1] else 1
        length, other = shape[axis], shape[1 - axis]
        val_len = 0 if val_fraction <= 0 else max(patch_size, int(round(length * val_fraction)))
        if other < patch_size or length - val_len < patch_size:
            need = f"{patch_size} px" + (f" plus a {val_len} px validation strip" if val_len else "")
            # the strip is a patch at least: a smaller fraction helps only where it asks for more than that
            smaller = "patch size or validation fraction" if val_len > patch_size else "patch size (--patch-size)"
            raise ValueError(
                f"{what} plane of {shape[0]}×{shape[1]} px is too small for {patch_size} px patches ({need}); "
                f"use a smaller {smaller}"
            )
        return cls(axis, length - val_len)

    def train_part(self, array: np.ndarray) -> np.ndarray:
        return array[..., : self.start, :] if self.axis == 0 else array[..., : self.start]

    def val_part(self, array: np.ndarray) -> np.ndarray:
        return array[..., self.start :, :] if self.axis == 0 else array[..., self.start :]


def held_out_share(images, val_fraction: float, patch_size: int) -> float:
    """The share of the pixels of ``images``' planes that their validation strips hold: at least a patch each,
    so more than ``val_fraction`` on planes under ``patch_size / val_fraction`` px long."""
    planes = as_planes(images, "images")
    strips = [p.size - Split.of(p.shape, val_fraction, patch_size, "an image's").train_part(p).size for p in planes]
    return sum(strips) / max(sum(p.size for p in planes), 1)


def _tiles(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping (C, size, size) tiles of a (C, H, W) array."""
    _, h, w = image.shape
    return [image[:, y : y + size, x : x + size] for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


class _PlaneSource:
    """Shared sampling: planes weighted by their training area, augmented random crops."""

    parts: list[np.ndarray]  # (2, H, W) normalised noisy/clean training parts
    val_parts: list[np.ndarray]

    def _pick(self, rng) -> int:
        areas = np.array([p.shape[1] * p.shape[2] for p in self.parts], dtype=np.float64)
        return int(rng.choice(len(self.parts), p=areas / areas.sum()))

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator):
        """(noisy, clean), each (B, 1, P, P): augmented random crops of the training parts."""
        out = [augment(random_crop(self.parts[self._pick(rng)], patch_size, rng), rng) for _ in range(batch_size)]
        stacked = np.stack(out).astype(np.float32)
        return stacked[:, :1], stacked[:, 1:]

    def validation_batch(self, patch_size: int, max_patches: int = 32):
        tiles = [t for part in self.val_parts for t in _tiles(part, patch_size)][:max_patches]
        if not tiles:
            return None
        stacked = np.stack(tiles).astype(np.float32)
        return stacked[:, :1], stacked[:, 1:]


class ArrayPairs(_PlaneSource):
    """Paired acquisitions (low light, high light). The clean image is put into the noisy image's
    units by a least-squares affine fit, then both go through the noisy plane's percentile map —
    the same normalisation inference uses."""

    def __init__(self, noisy, clean, patch_size: int, val_fraction: float = 0.1, percentiles=DEFAULT_PERCENTILES):
        noisy_planes, clean_planes = as_planes(noisy, "noisy"), as_planes(clean, "clean")
        if not noisy_planes:
            raise ValueError("no noisy images given")
        if len(noisy_planes) != len(clean_planes):
            raise ValueError(f"{len(noisy_planes)} noisy planes but {len(clean_planes)} clean planes: they must pair up")
        self.parts, self.val_parts = [], []
        for i, (n, c) in enumerate(zip(noisy_planes, clean_planes)):
            if n.shape != c.shape:
                raise ValueError(f"noisy plane {i} is {n.shape} but its clean plane is {c.shape}: they must match")
            split = Split.of(n.shape, val_fraction, patch_size, f"noisy/clean {i}")
            imap = IntensityMap.from_percentiles(n, percentiles)
            aligned = align_to(c, n)
            # the same image given twice trained in silence into a model that keeps the noise (validation loss 0.39
            # where a real pair of the field gave 0.012)
            spread = float(np.ptp(n))  # a constant noisy plane (dark, or saturated) is any clean plane's fit
            if spread > 0 and np.max(np.abs(aligned - n), initial=0.0) <= 1e-6 * spread:
                raise ValueError(f"clean plane {i} holds the noisy plane's pixels (up to a scale and an offset): a "
                                 "model trained on it learns to keep the noise. Give a high-light acquisition or a "
                                 "long average of the same field as the clean image")
            pair = np.stack([imap.to_model(n), imap.to_model(aligned)])
            self.parts.append(split.train_part(pair))
            if split.start < n.shape[split.axis]:
                self.val_parts.append(split.val_part(pair))


def refuse_flat(plane: np.ndarray, percentiles, what: str) -> None:
    """A clean plane with nothing between its percentiles trained in silence (adapt refused a flat image, train did
    not): a model learns nothing of structure from it."""
    low, high = np.percentile(plane, percentiles)
    if high <= low:
        raise ValueError(f"{what} is flat: {low:g} at both of its {percentiles[0]:g} and {percentiles[1]:g} "
                         f"percentiles (constant, or its structure covers under {100 - percentiles[1]:g} % of it), "
                         "with no structure its intensity map can scale")


class CleanWithSimulatedNoise(_PlaneSource):
    """Clean images only; every batch re-acquires crops of them with the simulator's camera model.
    Each clean plane, scaled to [0, 1] by its percentiles, is the unit-peak density."""

    context = 2  # crops are acquired at this multiple of the patch size, for the percentiles

    def __init__(self, clean, patch_size: int, noise: NoiseModel = NoiseModel(), val_fraction: float = 0.1,
                 percentiles=DEFAULT_PERCENTILES, seed: int = 0):
        planes = as_planes(clean, "clean")
        if not planes:
            raise ValueError("no clean images given")
        self.noise, self.percentiles = noise, percentiles
        self.parts, self.val_parts = [], []
        val_rng = np.random.default_rng(seed + 7919)
        for i, c in enumerate(planes):
            split = Split.of(c.shape, val_fraction, patch_size, f"clean {i}")
            refuse_flat(c, percentiles, f"clean plane {i}")
            low, high = np.percentile(c, percentiles)
            density = np.clip((c - low) / max(high - low, 1e-12), 0, None)[None]
            self.parts.append(split.train_part(density))
            if split.start < c.shape[split.axis]:
                self.val_parts.append(self._acquire(split.val_part(density)[0], val_rng))

    def _acquire(self, density: np.ndarray, rng) -> np.ndarray:
        """(noisy, clean) in the noisy image's map. With a PSF only the noisy side is blurred and
        the clean side stays sharp (PI-DDPM's pairs), so the model learns to deconvolve."""
        acq = self.noise.draw(rng)
        blurred = acq.blur(density) if acq.psf_sigma > 0 else density
        sharp = acq.sharp(density) if acq.psf_sigma > 0 else density
        noisy = acq.acquire(blurred, rng)
        imap = IntensityMap.from_percentiles(noisy, self.percentiles)
        return np.stack([imap.to_model(noisy), imap.to_model(acq.expected(sharp))])

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator):
        out = []
        for _ in range(batch_size):
            part = self.parts[self._pick(rng)]
            size = min(part.shape[1], part.shape[2], self.context * patch_size)
            crop = random_crop(part, size, rng)[0]
            out.append(augment(random_crop(self._acquire(crop, rng), patch_size, rng), rng))
        stacked = np.stack(out).astype(np.float32)
        return stacked[:, :1], stacked[:, 1:]


class CleanPatches(_PlaneSource):
    """Clean images only, for an unconditional (unpaired) model: each plane through its own
    percentile map, as Baikal's inputs are (CSBDeep normalisation). Batches are (clean, clean) so
    the training loop stays one; the unconditional network never reads the first."""

    def __init__(self, clean, patch_size: int, val_fraction: float = 0.1, percentiles=DEFAULT_PERCENTILES):
        planes = as_planes(clean, "clean")
        if not planes:
            raise ValueError("no clean images given")
        self.parts, self.val_parts = [], []
        for i, c in enumerate(planes):
            split = Split.of(c.shape, val_fraction, patch_size, f"clean {i}")
            refuse_flat(c, percentiles, f"clean plane {i}")
            normalised = IntensityMap.from_percentiles(c, percentiles).to_model(c)
            both = np.stack([normalised, normalised])
            self.parts.append(split.train_part(both))
            if split.start < c.shape[split.axis]:
                self.val_parts.append(split.val_part(both))

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator):
        """Crops with a random contrast squeeze (:func:`.pairs.random_contrast`): the prior must
        cover clean content as a noisy image's percentile map presents it at inference."""
        clean, _ = super().batch(batch_size, patch_size, rng)
        squeezed = np.stack([random_contrast(c, rng) for c in clean])
        return squeezed, squeezed

