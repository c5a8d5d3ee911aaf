"""Classical baselines, each tuned against the truth (an oracle: the best a user could get)."""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_nl_means, estimate_sigma

from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.pilot_wiener import anscombe, inverse_anscombe


def best_of(candidates, clean, where=None):
    """(best PSNR, best image) over an iterable of candidate restorations; ``where``: score on those pixels only."""
    def score(c):
        return psnr_fitted(c, clean) if where is None else psnr_fitted(c[where], clean[where])

    return max(((score(c), c) for c in candidates), key=lambda t: t[0])


def gaussian(noisy, clean):
    return best_of((ndimage.gaussian_filter(noisy, s) for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)), clean)


def nlm(noisy, clean):
    sigma = float(estimate_sigma(noisy))
    return best_of((denoise_nl_means(noisy, h=f * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True)
                    for f in (0.6, 0.8, 1.0, 1.3)), clean)


def vst_bm3d_candidates(noisy, offset: float, read_noise: float) -> list[np.ndarray]:
    """BM3D (Dabov et al. 2007, the `bm3d` package) in the variance-stabilised domain, where the
    noise is N(0, 1), at a few strengths around 1 (one restoration each, to be chosen against a truth)."""
    import bm3d

    d = anscombe(noisy.astype(np.float64), offset, read_noise)
    lo, hi = d.min(), d.max()
    scaled = (d - lo) / (hi - lo)
    return [inverse_anscombe(bm3d.bm3d(scaled, sigma_psd=f / (hi - lo)) * (hi - lo) + lo, offset, read_noise)
            for f in (0.8, 1.0, 1.25)]


def vst_bm3d(noisy, clean, offset: float, read_noise: float, where=None):
    """(PSNR, image) of the best of :func:`vst_bm3d_candidates` against the truth (on ``where``'s pixels)."""
    return best_of(vst_bm3d_candidates(noisy, offset, read_noise), clean, where)


def vst_bm3d_camera_candidates(noisy, camera) -> list[np.ndarray]:
    """:func:`vst_bm3d_candidates` for any Poisson–Gaussian camera (core.imaging.camera_noise.CameraNoise,
    known or fitted: var(y) = gain·y + floor): in units of ``gain`` the noise is Poisson plus a constant
    variance floor / gain², which the Anscombe transform takes as a shifted offset."""
    gain = float(camera.gain)
    return [image * gain for image in vst_bm3d_candidates(np.asarray(noisy, np.float64) / gain,
                                                          offset=-float(camera.floor) / gain**2, read_noise=0.0)]


@functools.cache
def _care_network():
    from . import care

    if not care.DEFAULT_PATH.is_file():
        raise FileNotFoundError(f"{care.DEFAULT_PATH} is missing: train it with `python -m bench.care` (docs/training.md)")
    return care.load(care.DEFAULT_PATH)


def care_unet(noisy, clean):
    """The one-step U-Net baseline (bench/care.py): no tuning against the truth, one forward pass."""
    from . import care

    image = care.restore(_care_network(), noisy)
    return psnr_fitted(image, clean), image
