"""Restoration methods that need no diffusion model, each declared once: its name (what ``denoise``,
the CLI's ``--model`` and the Denoise widget's model list call it), its own parameters, whether it
needs a PSF, the maps it makes and whether a preview applies. core.run.restore runs a method through
the same plane loop, progress, cancel and writers as a model (core.run.batch, core.io.tiff_maps), so its
output carries the same kind of record; the CLI's and the widget's controls are derived from here.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..imaging.kernels import check_psf
from ..imaging.normalization import DEFAULT_PERCENTILES, IntensityMap, check_percentiles
from ..sampling.params import Param
from .run_spec import DEFAULT_BLOCK, RUN_SETTINGS


def _richardson_lucy(unit: np.ndarray, psf: np.ndarray, iterations: int) -> np.ndarray:
    from skimage.restoration import richardson_lucy  # slow to import; only RL needs it

    return richardson_lucy(unit, psf, num_iter=iterations, clip=False)


@dataclass(frozen=True)
class Method:
    """A restoration without a model: ``restore(unit plane, psf, **params)`` on one (Y, X) plane whose
    percentiles are scaled to [0, 1] (negative values clipped to 0), in the same scale out."""

    name: str
    label: str  # the widget's model list
    help: str
    params: tuple[Param, ...]
    restore: Callable[..., np.ndarray]
    needs_psf: bool = True
    maps: tuple[str, ...] = ("mean",)  # what it makes: no samples, so no std, entropy or intervals
    previewable: bool = False  # a preview is for slow sampling runs; a method is as quick in full


ITERATIONS = Param("iterations", int, 20, 1, 10_000, label="Iterations",
                   help="Richardson-Lucy rounds: more sharpens more and amplifies noise")
RICHARDSON_LUCY = Method(
    "richardson-lucy", "Richardson–Lucy (classical, no model)",
    "Richardson-Lucy deconvolution (scikit-image) of each plane with the PSF: the mean map alone, no uncertainty",
    (ITERATIONS,), _richardson_lucy)

METHODS: dict[str, Method] = {RICHARDSON_LUCY.name: RICHARDSON_LUCY}


def find_method(model) -> Method | None:
    """The method ``model`` names (or is), or None for a diffusion model or its name or path."""
    if isinstance(model, Method):
        return model
    return METHODS.get(model) if isinstance(model, str) else None


@dataclass(frozen=True)
class MethodSettings:
    """A method run's settings, validated once (:func:`method_settings`)."""

    method: Method
    psf: np.ndarray | None
    params: dict
    percentiles: tuple[float, float]
    # what the loop's memory and sample checks read of a model run's settings: a method draws no samples
    n_samples: int = 0
    keep_samples: bool = False
    coverage: None = None
    block: int = DEFAULT_BLOCK  # a plane is restored whole


def method_settings(method: Method, *, psf=None, percentiles=None, **given) -> MethodSettings:
    """Refuse what the method cannot take, naming it: its parameters checked by their declarations,
    the PSF it needs, and any model-run setting (core.run.run_spec) given other than at its default,
    since a method draws no samples and has no sampler, intervals or network."""
    own = {p.name for p in method.params}
    for name, value in given.items():
        if name in own:
            continue
        setting = next((s for s in RUN_SETTINGS if s.name == name), None)
        if setting is None:
            raise TypeError(f"{method.name} has no parameter {name!r}; it takes {sorted(own) + ['psf', 'percentiles']}")
        if value is not None and value != (setting.default if setting else None) and value != {}:
            raise ValueError(f"{name}={value!r} does not apply to {method.name}, which draws no samples and has no "
                             f"sampler, intervals or network (only the mean map); leave {name} out. It takes "
                             f"{', '.join(sorted(own))}, psf and percentiles")
    params = {p.name: p.check(given.get(p.name, p.default), None) for p in method.params}
    if method.needs_psf and psf is None:
        raise ValueError(f"{method.name} needs psf=…, the point spread function the image was blurred with (a 2D "
                         "array, e.g. physics.gaussian_psf(sigma_px), airy_psf(…) or a measured bead image)")
    kernel = None if psf is None else check_psf(psf)
    return MethodSettings(method, kernel, params, tuple(check_percentiles(percentiles) or DEFAULT_PERCENTILES))


def method_maps(plane: np.ndarray, s: MethodSettings, dtype=np.float32) -> dict[str, np.ndarray]:
    """One (Y, X) plane restored by the method, in the input's units."""
    plane = np.asarray(plane, dtype=np.float32)
    imap = IntensityMap.from_percentiles(plane, s.percentiles)
    unit = np.clip((imap.to_model(plane) + 1) / 2, 0, None)  # p_low → 0, p_high → 1: RL needs non-negative data
    restored = s.method.restore(unit, s.psf, **s.params)
    return {"mean": imap.to_input(restored * 2 - 1).astype(dtype, copy=False)}


def method_record(s: MethodSettings) -> dict:
    """The settings part of a method run's metadata and of a zarr store's fingerprint."""
    psf = {} if s.psf is None else {
        "psf_shape": list(s.psf.shape),
        "psf_sha256": hashlib.sha256(np.ascontiguousarray(s.psf, np.float64).tobytes()).hexdigest()}
    return {"method": s.method.name, **s.params, "percentiles": [float(p) for p in s.percentiles], **psf,
            "n_samples": 0}
