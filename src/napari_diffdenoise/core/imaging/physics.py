"""Image formation: point-spread functions from the optics (Richardson–Lucy deconvolution with them is
core.run.deconvolution).

PSFs are 2D in-focus lateral profiles (PI-DDPM, Li, della Maggiora et al.; docs/method.md): an Airy pattern for a widefield
microscope, the product of the excitation PSF and the emission PSF convolved with the pinhole for
a confocal one, or the Gaussian approximation of either (Zhang et al. 2007, which the simulator
uses). All are sampled on the camera's pixel grid and normalised to sum 1.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, special

from .kernels import check_psf, normalised  # noqa: F401  (check_psf: re-exported, physics has always offered it)


def _radius_grid(size: int) -> np.ndarray:
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    return np.hypot(y, x).astype(np.float64)


# px: the widest Gaussian PSF σ taken (restoring, simulating, training): wider is no in-focus PSF on a sensible pixel
# grid, and σ = 10⁶ px asked for a 931 TiB kernel
MOST_PSF_SIGMA = 20.0
MOST_PSF_SIZE = 1025  # px a side: a PSF from the optics larger than this says the optics were mistyped
MOST_NA = 1.7  # oil immersion's highest numerical aperture


def _odd_size(extent_px: float) -> int:
    if not np.isfinite(extent_px) or 2 * np.ceil(extent_px) + 1 > MOST_PSF_SIZE:
        raise ValueError(f"the PSF would span {extent_px:.3g} px each side of its centre, beyond {MOST_PSF_SIZE // 2}: "
                         "check the optics (NA, wavelength and pixel size in nm, or the PSF width)")
    return int(2 * np.ceil(extent_px) + 1)


def check_psf_sigma(sigma_px: float, allow_zero: bool = False) -> None:
    """A Gaussian PSF's σ in pixels: finite, positive (or 0 where no blur is meant) and at most MOST_PSF_SIGMA."""
    if not (np.isfinite(sigma_px) and (0 < sigma_px or (allow_zero and sigma_px == 0)) and sigma_px <= MOST_PSF_SIGMA):
        accepted = f"from 0 (no blur) to {MOST_PSF_SIGMA:g} px" if allow_zero else f"above 0 and at most {MOST_PSF_SIGMA:g} px"
        raise ValueError(f"the PSF width σ (--psf-sigma, psf_sigma) must be {accepted}; got {sigma_px}")


def gaussian_psf(sigma_px: float, size: int | None = None) -> np.ndarray:
    check_psf_sigma(sigma_px)
    r = _radius_grid(size or _odd_size(4 * sigma_px))
    return normalised(np.exp(-(r**2) / (2 * sigma_px**2)))


def airy_psf(na: float, wavelength_nm: float, pixel_nm: float, size: int | None = None, oversample: int = 5) -> np.ndarray:
    """In-focus widefield PSF: I(r) = (2·J1(v)/v)², v = 2π·NA·r/λ, integrated over each pixel."""
    if not 0 < na <= MOST_NA:
        raise ValueError(f"NA (--na) must be above 0 and at most {MOST_NA:g} (oil immersion); got {na}")
    if not (np.isfinite(wavelength_nm) and wavelength_nm > 0 and np.isfinite(pixel_nm) and pixel_nm > 0):
        raise ValueError(f"the wavelength and the pixel size must be positive numbers of nm; got {wavelength_nm}, "
                         f"{pixel_nm}")
    first_zero_px = 0.61 * wavelength_nm / na / pixel_nm
    size = size or _odd_size(3 * first_zero_px + 2)
    fine = _radius_grid(size * oversample) / oversample  # sub-pixel samples, in pixels
    v = 2 * np.pi * na * fine * pixel_nm / wavelength_nm
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(v == 0, 1.0, (2 * special.j1(v) / v) ** 2)
    n = size * oversample
    binned = intensity[: n, : n].reshape(size, oversample, size, oversample).mean(axis=(1, 3))
    return normalised(binned)


def confocal_psf(na: float, excitation_nm: float, emission_nm: float, pixel_nm: float,
                 pinhole_airy_units: float = 1.0) -> np.ndarray:
    """Confocal PSF = excitation PSF × (emission PSF ∗ pinhole disk); the pinhole diameter is in
    Airy units of the emission wavelength (1 AU = 1.22·λem/NA)."""
    emission = airy_psf(na, emission_nm, pixel_nm)
    size = emission.shape[0]
    excitation = airy_psf(na, excitation_nm, pixel_nm, size=size)
    radius_px = pinhole_airy_units * 1.22 * emission_nm / na / pixel_nm / 2
    disk = (_radius_grid(size) <= max(radius_px, 0.5)).astype(np.float64)
    detection = ndimage.convolve(emission.astype(np.float64), disk / disk.sum(), mode="constant")
    return normalised(excitation * detection)
