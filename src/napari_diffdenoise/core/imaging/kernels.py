"""What every user of a point-spread function checks it against: finite, non-negative, 2D, summing
to 1. Apart from core.imaging.physics (which makes PSFs and runs Richardson–Lucy through core.run.restore) so
that the restoration modules can check a PSF without importing the module that imports them."""
from __future__ import annotations

import numpy as np


def normalised(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def check_psf(psf) -> np.ndarray:
    """``psf`` summing to 1 and centred: its array's centre within half a pixel of its centroid, the array
    padded with zeros (to an odd size) where it was not. A measured bead is rarely cropped centred to the pixel,
    and Richardson–Lucy (scikit-image) shifted the whole image by the PSF's offset from its array's centre (3–4 px
    for a bead cropped 3–4 px off, 0.7 px for any even-sized PSF), as the data consistency of the PSF-guided
    samplers moved their samples. Refused, naming what is wrong: anything but a finite, non-negative 2D image with
    a positive sum."""
    if isinstance(psf, (str, bytes)) or hasattr(psf, "__fspath__"):
        raise ValueError(f"psf must be an image (a 2D array); got the path {psf!r}: read it first "
                         "(e.g. tifffile.imread), or give --psf on the command line")
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2:
        raise ValueError(f"psf must be a 2D image (Y, X); got shape {psf.shape}"
                         + (": give one plane of the bead stack, the in-focus one" if psf.ndim == 3 else ""))
    if not np.isfinite(psf).all():
        raise ValueError("psf must be finite; it holds NaN or infinite values")
    if psf.min() < 0:
        raise ValueError(f"psf must be non-negative; its smallest value is {psf.min():.4g} (take off the camera's "
                         "offset and clip at 0)")
    if psf.sum() <= 0:
        raise ValueError("psf must be an image with a positive sum; it is all zeros")
    return normalised(centred(psf))


def centred(psf: np.ndarray) -> np.ndarray:
    """``psf`` padded with zeros so that its centroid lies within half a pixel of the centre of an odd-sized
    array (where a kernel's origin is for scipy's and scikit-image's convolutions)."""
    # located above the PSF's median: a bead image's camera offset would pull the centroid to the array's centre
    spot = np.clip(psf - np.median(psf), 0, None)
    if spot.sum() <= 0:
        spot = psf
    padding = []
    for axis, length in enumerate(psf.shape):
        profile = spot.sum(axis=1 - axis)
        centroid = round(float(np.dot(np.arange(length), profile) / profile.sum()))
        surplus = length - 1 - 2 * centroid  # rows after the centroid's row less those before it
        padding.append((max(surplus, 0), max(-surplus, 0)))
    return np.pad(psf, padding) if any(p != (0, 0) for p in padding) else psf
