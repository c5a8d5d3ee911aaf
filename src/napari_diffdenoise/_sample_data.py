"""napari sample data: the demo stacks (core.imaging.demo_data), simulated on the fly, as napari layers."""
from __future__ import annotations

from .core.imaging.demo_data import SAMPLE_ACQUISITION, WIDEFIELD_ACQUISITION, sample_stack, widefield_stack


def make_sample_stack():
    noisy, clean = sample_stack()
    return [
        (noisy, {"name": "low-light stack", "metadata": {"photons_at_peak": SAMPLE_ACQUISITION.peak_photons}}, "image"),
        (clean, {"name": "low-light stack [truth]", "visible": False}, "image"),
    ]


def make_widefield_stack():
    noisy, sharp, psf = widefield_stack()
    meta = {"photons_at_peak": WIDEFIELD_ACQUISITION.peak_photons, "psf_sigma_px": WIDEFIELD_ACQUISITION.psf_sigma}
    return [
        (noisy, {"name": "widefield stack", "metadata": meta}, "image"),
        (sharp, {"name": "widefield stack [sharp truth]", "visible": False}, "image"),
        (psf, {"name": "widefield PSF", "visible": False}, "image"),
    ]
