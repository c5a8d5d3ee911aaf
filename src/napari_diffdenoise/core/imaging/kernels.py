"""What every user of a point-spread function checks it against: finite, non-negative, 2D, summing
to 1. Apart from core.imaging.physics (which makes PSFs and runs Richardson–Lucy through core.run.restore) so
that the restoration modules can check a PSF without importing the module that imports them."""
from __future__ import annotations

import numpy as np


def normalised(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def check_psf(psf) -> np.ndarray:
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.min() < 0 or psf.sum() <= 0:
        raise ValueError("a PSF must be a finite, non-negative 2D image with a positive sum")
    return normalised(psf)
