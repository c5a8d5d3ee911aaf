"""Richardson–Lucy deconvolution of a whole image, as a function: the "richardson-lucy" method
(core.run.methods) run through :func:`~.restore.denoise`, plane by plane."""
from __future__ import annotations

import numpy as np

from .restore import denoise


def richardson_lucy(image, psf, iterations: int = 20, percentiles=None) -> np.ndarray:
    """Richardson–Lucy deconvolution (scikit-image) of each (Y, X) plane of an image of 2 to 5 dims:
    the mean map of ``denoise(image, "richardson-lucy", …)`` (core.run.methods) as float32. Each plane
    is scaled to [0, 1] by its percentiles (RL needs non-negative data; default (1, 99.8)),
    deconvolved, and mapped back to the input's units."""
    result = denoise(image, "richardson-lucy", psf=psf, iterations=iterations, percentiles=percentiles)
    return result.mean.astype(np.float32, copy=False)
