"""napari sample data: a simulated low-light stack with its clean truth (made on the fly, offline)."""
from __future__ import annotations

import numpy as np

from .core.simulate import KINDS, Acquisition, simulate_pair

SAMPLE_ACQUISITION = Acquisition(peak_photons=8.0, background_photons=2.0, read_noise=1.5, psf_sigma=1.2)


def sample_stack(shape=(256, 256), seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) (Z, Y, X) float32 stacks, one plane per structure kind, ~8 photons at peak."""
    pairs = [simulate_pair(kind, shape, SAMPLE_ACQUISITION, seed=seed + i) for i, kind in enumerate(KINDS)]
    noisy = np.stack([p[0] for p in pairs])
    clean = np.stack([p[1] for p in pairs])
    return noisy, clean


def make_sample_stack():
    noisy, clean = sample_stack()
    return [
        (noisy, {"name": "low-light stack", "metadata": {"photons_at_peak": SAMPLE_ACQUISITION.peak_photons}}, "image"),
        (clean, {"name": "low-light stack [truth]", "visible": False}, "image"),
    ]
