"""Simulated fluorescence: structures, a PSF, and low-light acquisition (Poisson + read noise).

The acquisition model is PI-DDPM's (Li, della Maggiora et al.; docs/method.md): counts = Poisson(peak · (h ∗ x) + background)
+ N(0, read_noise²). Structures are drawn on a unit intensity scale; the clean target is the
noise-free expected image h ∗ x (same optics, infinite light), which is what a paired
low/high-exposure acquisition measures. Everything is deterministic under a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .camera_noise import CameraNoise

KINDS = ("nuclei", "filaments", "membranes", "puncta")  # what the bundled model was trained on
HELD_OUT_KINDS = ("rings",)  # never in the bundled model's training: for fine-tuning benchmarks


def gaussian_psf_sigma(na: float = 0.8, wavelength_nm: float = 520.0, pixel_nm: float = 100.0, confocal: bool = False) -> float:
    """σ in pixels of the Gaussian approximation of a PSF's lateral profile (Zhang et al. 2007):
    0.21·λ/NA for widefield, 0.15·λ/NA for a confocal with a small pinhole."""
    factor = 0.15 if confocal else 0.21
    return factor * wavelength_nm / na / pixel_nm


def _smooth_noise(shape, sigma, rng):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def draw_nuclei(shape, rng) -> np.ndarray:
    """Ellipses of varied size and brightness with internal chromatin-like texture and nucleoli."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros(shape)
    n = rng.integers(4, 14) * max(1, h * w // 256**2)
    texture = 0.7 + 0.3 * np.clip(_smooth_noise(shape, 1.5, rng), -2, 2) / 2
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a, b = rng.uniform(8, 28), rng.uniform(8, 28)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        r = np.sqrt(u**2 + v**2)
        body = np.clip((1 - r) * 6, 0, 1)  # soft edge over a few pixels
        nuc = body * rng.uniform(0.3, 1.0) * texture
        for _ in range(rng.integers(0, 3)):  # nucleoli: darker spots inside
            ny, nx = cy + rng.uniform(-0.4, 0.4) * b, cx + rng.uniform(-0.4, 0.4) * a
            nuc *= 1 - 0.5 * np.exp(-((yy - ny) ** 2 + (xx - nx) ** 2) / (2 * rng.uniform(1.5, 3.5) ** 2))
        img = np.maximum(img, nuc)
    return img


def _draw_polyline(img, points, weight):
    """Anti-aliased line by dense point splatting with bilinear weights."""
    h, w = img.shape
    for p, q in zip(points[:-1], points[1:]):
        n = int(np.ceil(np.hypot(*(q - p)) * 2)) + 1
        t = np.linspace(0, 1, n)[:, None]
        pts = p[None] * (1 - t) + q[None] * t
        y, x = pts[:, 0], pts[:, 1]
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - y0, x - x0
        for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):
            yi, xi = y0 + dy, x0 + dx
            ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            np.add.at(img, (yi[ok], xi[ok]), weight * wt[ok] * 0.5)


def draw_filaments(shape, rng) -> np.ndarray:
    """Microtubule/actin-like smooth random curves (persistent random walks), some crossing."""
    h, w = shape
    img = np.zeros(shape)
    n = rng.integers(8, 30) * max(1, h * w // 256**2)
    for _ in range(n):
        p = np.array([rng.uniform(0, h), rng.uniform(0, w)])
        angle = rng.uniform(0, 2 * np.pi)
        curvature = rng.uniform(0.02, 0.15)
        points = [p.copy()]
        for _ in range(int(rng.uniform(40, 200))):
            angle += rng.normal(0, curvature)
            p = p + 2.0 * np.array([np.sin(angle), np.cos(angle)])
            points.append(p.copy())
        _draw_polyline(img, np.array(points), rng.uniform(0.4, 1.0))
    return np.clip(img, 0, 1.5)


def draw_membranes(shape, rng) -> np.ndarray:
    """Epithelium-like cell outlines: edges of a jittered Voronoi tessellation, with a dim cytoplasm."""
    h, w = shape
    n = rng.integers(15, 45) * max(1, h * w // 256**2)
    seeds = np.stack([rng.uniform(0, h, n), rng.uniform(0, w, n)], axis=1)
    yy, xx = np.mgrid[0:h, 0:w]
    # warp coordinates so outlines are wavy rather than straight
    wy = yy + 3 * _smooth_noise(shape, 8, rng)
    wx = xx + 3 * _smooth_noise(shape, 8, rng)
    d = (wy[..., None] - seeds[:, 0]) ** 2 + (wx[..., None] - seeds[:, 1]) ** 2
    two = np.sqrt(np.partition(d, 1, axis=-1)[..., :2])
    gap = two[..., 1] - two[..., 0]  # 0 on the boundary between the two nearest cells
    label = np.argmin(d, axis=-1)
    brightness = rng.uniform(0.5, 1.0, n)[label]
    outline = np.exp(-(gap**2) / (2 * rng.uniform(0.6, 1.2) ** 2)) * brightness
    cytoplasm = 0.08 * rng.uniform(0.5, 1.5, n)[label]
    return np.maximum(outline, cytoplasm)


def draw_puncta(shape, rng) -> np.ndarray:
    """Vesicle-like spots, sub-resolution to a few pixels, some clustered."""
    h, w = shape
    n = rng.integers(40, 200) * max(1, h * w // 256**2)
    img = np.zeros(shape)
    centres = rng.uniform(0, 1, (n, 2)) * [h, w]
    clustered = rng.random(n) < 0.4
    anchor = centres[rng.integers(0, n, n)]
    centres[clustered] = anchor[clustered] + rng.normal(0, 6, (clustered.sum(), 2))
    iy, ix = np.clip(centres.astype(int), 0, [h - 1, w - 1]).T
    np.add.at(img, (iy, ix), rng.uniform(0.3, 1.0, n))
    sizes = ndimage.gaussian_filter(img, 0.7) * 2 * np.pi * 0.7**2 + ndimage.gaussian_filter(img, 1.5) * 0.5
    return np.clip(sizes, 0, 1.5)


def draw_rings(shape, rng) -> np.ndarray:
    """Hollow rings (endosome- or nuclear-envelope-like): thin bright walls around dark lumens."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros(shape)
    for _ in range(rng.integers(10, 30) * max(1, h * w // 256**2)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 14)
        wall = rng.uniform(0.7, 1.5)
        d = np.hypot(yy - cy, xx - cx) - r
        img = np.maximum(img, rng.uniform(0.4, 1.0) * np.exp(-(d**2) / (2 * wall**2)))
    return img


_DRAW = {"nuclei": draw_nuclei, "filaments": draw_filaments, "membranes": draw_membranes, "puncta": draw_puncta, "rings": draw_rings}


def draw_structure(kind: str, shape=(256, 256), seed: int | np.random.Generator = 0) -> np.ndarray:
    """Unblurred fluorescence density of one structure kind, normalised to peak 1."""
    if kind not in _DRAW:
        raise ValueError(f"unknown structure kind {kind!r}; choose from {KINDS + HELD_OUT_KINDS}")
    rng = np.random.default_rng(seed)
    img = _DRAW[kind](tuple(shape), rng)
    return (img / max(img.max(), 1e-12)).astype(np.float64)


@dataclass(frozen=True)
class Acquisition:
    """A low-light camera acquisition of a unit-peak density blurred by a Gaussian PSF."""

    peak_photons: float = 20.0  # expected photons at the brightest blurred pixel
    background_photons: float = 2.0  # out-of-focus light and autofluorescence per pixel
    read_noise: float = 1.5  # camera read noise, in photo-electrons (std)
    psf_sigma: float = 1.2  # Gaussian PSF σ in pixels (see gaussian_psf_sigma)
    offset: float = 100.0  # camera baseline (ADU), so values look like a real camera's

    def __post_init__(self):
        from .physics import check_psf_sigma

        if not (np.isfinite(self.peak_photons) and self.peak_photons > 0):
            raise ValueError(f"the photons at peak (--photons) must be a positive number; got {self.peak_photons}")
        if not (np.isfinite(self.background_photons) and self.background_photons >= 0
                and np.isfinite(self.read_noise) and self.read_noise >= 0):
            raise ValueError("the background photons and the read noise must be numbers of at least 0; got "
                             f"{self.background_photons}, {self.read_noise}")
        check_psf_sigma(self.psf_sigma, allow_zero=True)

    def _convolved(self, density: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(density, self.psf_sigma, mode="reflect") if self.psf_sigma > 0 else density

    def blur(self, density: np.ndarray) -> np.ndarray:
        """h ∗ x scaled to peak 1, so ``peak_photons`` is the brightest pixel's expected count."""
        blurred = self._convolved(density)
        return blurred / max(blurred.max(), 1e-12)

    def sharp(self, density: np.ndarray) -> np.ndarray:
        """The unblurred density on :meth:`blur`'s scale: h ∗ sharp(x) = blur(x) exactly, so the
        deconvolution target and the observation obey the same acquisition model."""
        return density / max(self._convolved(density).max(), 1e-12)

    def expected(self, blurred: np.ndarray) -> np.ndarray:
        """Noise-free counts: the clean target, in the same units as :meth:`acquire`."""
        return self.offset + self.background_photons + self.peak_photons * blurred

    def acquire(self, blurred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        photons = rng.poisson(self.peak_photons * blurred + self.background_photons)
        return self.offset + photons + rng.normal(0, self.read_noise, blurred.shape)

    @property
    def camera_noise(self) -> CameraNoise:
        """The noise of :meth:`acquire` as adaptation and calibration describe a camera's: var =
        level − offset + read_noise² at the level :meth:`expected` gives (one unit per photon)."""
        return CameraNoise.poisson_gaussian(self.read_noise, self.offset)


# px: the sides a simulated image may have (the structures' sizes are drawn for fields of tens of px and more;
# 8192² float32 is 256 MiB per image)
SIDES = (16, 8192)


def check_simulation(shape, seed) -> tuple[int, int]:
    """``shape`` as two ints within SIDES, ``seed`` a non-negative int; a ValueError naming either otherwise."""
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and SIDES[0] <= s <= SIDES[1] for s in shape):
        raise ValueError(f"shape must be two sides of {SIDES[0]} to {SIDES[1]} px; got {tuple(shape)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a whole number, 0 or more; got {seed}")
    return int(shape[0]), int(shape[1])


def simulate_pair(kind: str, shape=(256, 256), acquisition: Acquisition = Acquisition(), seed: int = 0):
    """(noisy, clean) float32 images of one structure kind under ``acquisition``."""
    shape = check_simulation(shape, seed)
    rng = np.random.default_rng(seed)
    density = draw_structure(kind, shape, rng)
    blurred = acquisition.blur(density)
    noisy = acquisition.acquire(blurred, rng)
    return noisy.astype(np.float32), acquisition.expected(blurred).astype(np.float32)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def random_acquisition(rng: np.random.Generator, peak_range=(2.0, 200.0)) -> Acquisition:
    """Photon level log-uniform over ``peak_range``; background, read noise and PSF varied around
    typical widefield/confocal values so a model does not learn one camera only."""
    peak = _log_uniform(rng, *peak_range)
    return Acquisition(
        peak_photons=peak,
        background_photons=float(rng.uniform(0.0, 0.2) * peak + rng.uniform(0, 3)),
        read_noise=float(rng.uniform(0.5, 3.0)),
        psf_sigma=float(rng.uniform(0.8, 2.0)),
        offset=float(rng.choice([0.0, 100.0])),
    )


@dataclass(frozen=True)
class NoiseModel:
    """The acquisitions that synthesise the noisy side from a user's clean images: one
    :class:`Acquisition` per patch (:meth:`draw`), its peak photons log-uniform over ``photons``."""

    photons: tuple[float, float] = (2.0, 50.0)  # peak photons, drawn log-uniformly per patch
    background: float = Acquisition.background_photons  # photons per pixel
    read_noise: float = Acquisition.read_noise  # e⁻ std
    psf_sigma: float = 0.0  # extra Gaussian blur of the noisy side, px (0: denoise only)

    def __post_init__(self):
        from .physics import check_psf_sigma

        if not (0 < self.photons[0] <= self.photons[1] and np.isfinite(self.photons[1])):
            raise ValueError(f"photons must be two positive peak photon counts, the lower first; got {self.photons}")
        check_psf_sigma(self.psf_sigma, allow_zero=True)

    def draw(self, rng: np.random.Generator) -> Acquisition:
        # no offset: both sides go through the noisy patch's percentile map, which takes any baseline away
        return Acquisition(_log_uniform(rng, *self.photons), self.background, self.read_noise, self.psf_sigma, offset=0.0)
