"""Calibrating a model's intervals: split-conformal λ per coverage (core.run.conformal) measured on the
model's own restoration of (noisy, clean) pairs, of pairs simulated from the noisy image, or, with no
clean image at all, from the restoration's residuals (core.calibration.self_calibration)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..imaging.axes import as_planes, check_axes
from ..imaging.camera_noise import estimate_noise, simulate_like
from ..imaging.metrics import calibration as error_bins
from ..imaging.metrics import fit_scale_offset
from ..io.checkpoint import load_model
from ..run.conformal import BLOCK, COVERAGE_GRID, Calibration, block_split, conformal_factor
from ..run.driving import drive
from ..run.restore import Cancelled, denoise, iter_denoise
from ..run.run_keywords import RunSpec, settings_given
from .calibration_run import CalibrationRun, calibration_request, run_settings
from .self_calibration import iter_calibrate_by_axes, iter_each_channel, iter_self_calibrate

WITHOUT_TRUTH = ("residuals", "simulated")  # calibrate(clean=None): how, see calibrate()


def measure(mean, unit, truth, coverages, mask, std=None) -> tuple[list, list, list, int, float | None]:
    """(factors, held-out coverage, held-out width, n calibration pixels, Spearman ρ) from restored
    planes, their interval units and the truth; ``mask`` marks the calibration pixels."""
    scores = np.abs(truth - mean) / unit
    factors = [conformal_factor(scores[mask], c) for c in coverages]
    n = int(mask.sum())
    short = [c for c, f in zip(coverages, factors) if not math.isfinite(f)]
    if short:
        need = math.ceil(max(short) / (1 - max(short)))
        raise ValueError(f"coverage {max(short)} needs at least {need} calibration pixels (half of the image's "
                         f"{BLOCK}² blocks); this image gives {n}: use a larger image or a lower coverage")
    held = ~mask
    covered = [float(np.mean(scores[held] <= f)) for f in factors]
    widths = [float(np.mean(2 * f * unit[held])) for f in factors]
    rho = None
    if std is not None:
        planes = std.reshape(-1, *std.shape[-2:])
        errors = np.abs(truth - mean).reshape(planes.shape)
        rho = float(np.mean([error_bins(s, e)[2] for s, e in zip(planes, errors)]))
    return factors, covered, widths, int(mask.sum()), rho


def iter_calibrate(model, noisy, clean=None, coverage=COVERAGE_GRID, *, source: str = "user pairs",
                   fit_truth: bool = True, split_seed: int = 0, without_truth: str = "residuals", second=None,
                   frames: bool = False, axes: str | None = None, spec: RunSpec | None = None, **settings):
    """:func:`calibrate` as a generator: yields the restoration's Progress after every network step
    (for a napari worker), returns a :class:`CalibrationRun`."""
    settings_given(spec, {}, "calibrate")  # a wrong spec named as calibrate's, whichever route follows
    if isinstance(model, str):
        model = load_model(model)
    if axes is not None and clean is not None:  # against a truth only the C axis matters: each channel on its own
        axes = check_axes(axes, np.shape(noisy))
        c = axes.find("C")
        if np.shape(clean) != np.shape(noisy):
            raise ValueError(f"noisy and clean must have the same shape; got {np.shape(noisy)} and {np.shape(clean)}")
        if c >= 0 and np.shape(noisy)[c] > 1:
            return (yield from iter_each_channel(
                lambda x, t: iter_calibrate(model, x, t, coverage, source=source, fit_truth=fit_truth,
                                            split_seed=split_seed, spec=spec, **settings), c, noisy, clean))
    elif axes is not None:
        if without_truth != "residuals":
            raise ValueError("axes is for calibrating against a truth or on the residuals of the noisy image "
                             "(without_truth='residuals'); the simulated pairs pool every plane")
        return (yield from iter_calibrate_by_axes(model, noisy, axes, coverage, second=second, frames=frames,
                                                  split_seed=split_seed, spec=spec, **settings))
    against_truth = clean is not None
    # the model's real error on this image (core.calibration.self_calibration)
    if clean is None and without_truth == "residuals":
        return (yield from iter_self_calibrate(model, noisy, coverage, second=second, frames=frames,
                                               split_seed=split_seed, spec=spec, **settings))
    if clean is None:  # pairs simulated from the user's own image (self_simulated_pairs)
        if without_truth != "simulated":
            raise ValueError(f"without_truth must be one of {WITHOUT_TRUTH}; got {without_truth!r}")
        noisy, clean, source = self_simulated_pairs(model, noisy, split_seed)
        fit_truth = False
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy and clean must have the same shape; got {noisy.shape} and {clean.shape}")
    coverages, run_settings_ = calibration_request(model, coverage, settings, spec)
    result = yield from iter_denoise(noisy, model, run_settings_)
    truth = clean.astype(np.float32)
    if fit_truth:
        planes = truth.reshape(-1, *truth.shape[-2:])
        means = result.mean.reshape(planes.shape)
        # the truth in the restoration's units: a long average or a high-light image has its own exposure
        truth = np.stack([fit_scale_offset(t, m) for t, m in zip(planes, means)]).reshape(truth.shape).astype(np.float32)
    mask = block_split(noisy.shape, split_seed)
    factors, covered, widths, n, rho = measure(result.mean, result.interval_unit, truth, coverages, mask, result.std)
    calibration = Calibration(run_settings(result.metadata), coverages, factors, covered, widths, source, n, rho,
                              against_truth=against_truth)
    kept = [c for c in model.calibrations if not Calibration.from_dict(c).matches(calibration.settings)]
    return CalibrationRun(dataclasses.replace(model, calibrations=[calibration.to_dict(), *kept]), calibration,
                          result, truth)


def self_simulated_pairs(model, noisy, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(simulated noisy, truth, source) when the user has no clean image: the truth is the model's
    own mean of ``noisy``, re-noised with the camera model fitted to ``noisy`` (core.imaging.camera_noise.
    estimate_noise). The interval then covers what the model would get wrong on images like the
    user's own, at the user's own noise."""
    planes = as_planes(noisy, "noisy")
    noise = estimate_noise(planes)
    one_pass = model.mean_network is not None or model.mean_estimator == "x0"
    truths = [np.maximum(denoise(p, model, n_samples=0 if one_pass else 8, seed=seed).mean, 0) for p in planes]
    rng = np.random.default_rng([seed, 7])
    simulated = [simulate_like(t, noise, rng) for t in truths]
    h, w = min(p.shape[0] for p in planes), min(p.shape[1] for p in planes)  # one stack: a common size
    source = (f"simulated: the model's mean of the user's {len(planes)} noisy plane(s), re-noised with the camera "
              f"model fitted to them (var = {noise.gain:.4g}·level {noise.floor:+.4g})")
    return np.stack([x[:h, :w] for x in simulated]), np.stack([t[:h, :w] for t in truths]), source


def calibrate(model, noisy, clean=None, coverage=COVERAGE_GRID, *, source: str = "user pairs", fit_truth: bool = True,
              split_seed: int = 0, without_truth: str = "residuals", second=None, frames: bool = False,
              axes: str | None = None, progress=None, cancel=None, spec: RunSpec | None = None, **settings):
    """Calibrate ``model``'s intervals on (noisy, clean) pairs and return a calibrated copy.

    noisy, clean: the same shape, a 2D plane or a (Z, Y, X) stack; clean is the truth (a long
        average, a high-light image, or the simulated expected image). With ``fit_truth`` it is
        first mapped onto each restored plane by a least-squares scale and offset.
    Without ``clean`` (None) the calibration comes from the noisy image alone, by ``without_truth``:
        "residuals" (default): the restoration's real error on this image, seen through residuals
        against an independent noisy view — ``second`` (another acquisition of the same field),
        consecutive frames of ``noisy`` (``frames=True``), or recorrupted pairs of ``noisy`` itself
        (core.calibration.self_calibration; a model of the residuals, not conformal);
        "simulated": the model's own mean re-noised with the fitted camera model
        (:func:`self_simulated_pairs`; it cannot see the model's error on structure it never learnt).
        The calibration's source says which.
    axes: the axes of ``noisy`` (e.g. "CYX", "TYX", "TCZYX"): each channel of a C axis is calibrated on
        its own (restore with ``denoise(..., axes=...)`` of the same axes, and each plane's interval takes
        its channel's λ), against ``clean`` or, without one, as the Denoise widget and the CLI's
        ``--self-calibrate`` do (self_calibration.iter_calibrate_on_data: a T axis's neighbouring frames
        as views beside the recorrupted pairs, the wider interval taken; not with ``second`` or ``frames``).
        Without ``axes`` every plane is pooled into one calibration.
    coverage: one level or several (default: 0.5 … 0.99); :func:`denoise` interpolates between them.
    source: recorded in the calibration: where the pairs came from ("user pairs", "simulated: …").
    settings: the sampler settings to calibrate, as for :func:`denoise` (sampler, n_samples, steps,
        eta, sampler_params, mean, seed, ...); the calibration holds for those only.
    spec: the same as one RunSpec (core.run.run_keywords), ``settings`` beside it overriding it, as for
        :func:`denoise`; its coverage is left out (the levels are ``coverage``).

    The returned model carries the new calibration first among its calibrations (one for the same
    settings is replaced); save it with ``save_checkpoint`` to keep it. ``model`` is not changed.
    """
    run, cancelled = drive(iter_calibrate(model, noisy, clean, coverage, source=source, fit_truth=fit_truth,
                                          split_seed=split_seed, without_truth=without_truth, second=second,
                                          frames=frames, axes=axes, spec=spec, **settings), progress, cancel)
    if cancelled:
        raise Cancelled("calibration was cancelled")
    return run.model
