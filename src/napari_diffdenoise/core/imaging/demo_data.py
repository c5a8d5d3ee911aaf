"""The demo stacks, simulated on the fly (offline): a low-light stack with its clean truth, and a
blurred widefield stack with its PSF and sharp truth for PSF-guided restoration. napari offers them as
sample data (napari_diffdenoise._sample_data); the CLI, the bioimage.io export and the tests use them too."""
from __future__ import annotations

import numpy as np

from .physics import gaussian_psf
from .simulate import KINDS, Acquisition, draw_structure, simulate_pair

SAMPLE_ACQUISITION = Acquisition(peak_photons=8.0, background_photons=2.0, read_noise=1.5, psf_sigma=1.2)


def sample_stack(shape=(256, 256), seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) (Z, Y, X) float32 stacks, one plane per structure kind, ~8 photons at peak."""
    pairs = [simulate_pair(kind, shape, SAMPLE_ACQUISITION, seed=seed + i) for i, kind in enumerate(KINDS)]
    noisy = np.stack([p[0] for p in pairs])
    clean = np.stack([p[1] for p in pairs])
    return noisy, clean


WIDEFIELD_ACQUISITION = Acquisition(peak_photons=30.0, background_photons=2.0, read_noise=1.5, psf_sigma=1.6)


def widefield_stack(shape=(256, 256), seed: int = 2025) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(noisy blurred, sharp truth, PSF): one plane per structure kind, Gaussian PSF σ = 1.6 px."""
    acq = WIDEFIELD_ACQUISITION
    noisy, sharp = [], []
    for i, kind in enumerate(KINDS):
        rng = np.random.default_rng(seed + i)
        density = draw_structure(kind, shape, rng)
        noisy.append(acq.acquire(acq.blur(density), rng))
        sharp.append(acq.expected(acq.sharp(density)))
    return (np.stack(noisy).astype(np.float32), np.stack(sharp).astype(np.float32),
            gaussian_psf(acq.psf_sigma))
