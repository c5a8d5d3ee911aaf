"""A time series whose sample moves, with its clean frames: for the registration's tests."""
import numpy as np


def moving_series(n=7, size=96, step=(0.6, 0.9), photons=200.0, seed=0):
    """Clean frames of Gaussian blobs drifting ``step`` px a frame (sub-pixel, so the warp must
    interpolate) and their Poisson acquisitions."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(15, size - 15, (12, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    clean = []
    for t in range(n):
        frame = np.full((size, size), 5.0)
        for cy, cx in centres:
            frame += photons * np.exp(-((yy - cy - step[0] * t) ** 2 + (xx - cx - step[1] * t) ** 2) / (2 * 3.0 ** 2))
        clean.append(frame)
    clean = np.array(clean)
    return clean, rng.poisson(clean).astype(np.float64)
