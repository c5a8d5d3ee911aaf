"""Intervals calibrated on the user's own noisy image, against the restoration's real error.

Without a truth, the only witness of the restoration's error is a second, independent noisy view of
the same field: the next frame of a time series (``frames``), or a recorrupted pair made from the
image itself (after Pang et al., "Recorrupted-to-Recorrupted", CVPR 2021; Moran et al.,
"Noisier2Noise", CVPR 2020): with z drawn like the camera noise, ŷ = y + α·σ·z and ȳ = y − σ·z/α
carry independent noises, and the residual r = ȳ − f(ŷ) is the restoration's error e = x − f(ŷ)
plus a noise n that does not depend on f.

The restoration's error scale is read off those residuals by statistics in which the noise cancels
(core/calibration/error_scale.py).

Pitfalls handled: camera noise correlated between neighbouring pixels (processed or resampled data)
would pass as error at lag 1, so the noise's own lag-1 correlation is measured first (from second
differences of the image, core.calibration.view_noise.noise_lag1_correlation) and lag 1 is left out (lags 2 … 4 used)
when it could matter. With frames, the view's noise covariance is read off a noise probe (half the
difference of the neighbouring frames) and taken off at every lag; the probe also holds whatever
moved between the frames, which the view does not, so it is read on its quiet blocks only, as a
correlation per offset times a std per image level (core.calibration.view_noise.correlated_noise). At low light the
products are noisy: each bin's V carries a standard error (from disjoint groups of blocks) and is
shrunk towards the pooled value by it; a recorrupted image smaller than the budget is drawn several
times (:func:`recorrupted_draws`), and the known part of the view's noise (−σ·z/α) is taken off the
products, as its mean is 0. The error's correlation length, which the extrapolation to lag 0 needs,
is read off the difference of two draws' restorations (:func:`response_length`), not off the
noisy products.

Known bias: a recorrupted input is noisier than the user's (1 + α² in variance), so V is measured
on a restoration at that noise level, not at the image's own; not corrected. The shape per bin (a
generalised Gaussian, core.calibration.error_scale.ERROR_SHAPE) is an assumption, measured on other images; bench/real_calibration.py measures what it alone costs (the route whose V
per bin is taken from the truth). Frame pairs have no noise-level bias, but count what motion is
left as error.

Where it misses (docs/benchmarks/calibration_diagnosis.md, on real images re-acquired at low light):
on a small image whose error is far below its noise (Golgi, 220×204 px at 3–10 photons) the one
realisation of camera noise that every recorrupted draw shares moves each lag's product by 1–5× the
error it should measure, so V scatters over 0.5–1.8 between acquisitions of one scene (truth 0.4);
a better noise fit changes nothing there. Where the error holds pixel-scale texture of the scene that
the restoration smoothed away (DSB nuclei at 30 photons: excusing that texture brings the coverage
to 0.95, docs/benchmarks/real_calibration.md), V comes out half the truth's, a bias rather than noise
(the products' own noise is ±0.05 V there); the extrapolation to lag 0 over the response's
correlation length, longer than that texture's, is the likely place it is lost (not measured).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..imaging.axes import as_planes
from ..imaging.camera_noise import estimate_noise
from ..io.checkpoint import load_model
from ..run.conformal import COVERAGE_GRID, Calibration, block_split
from ..run.driving import drive
from ..run.restore import Cancelled, iter_denoise
from ..run.run_keywords import RunSpec
from .calibration_run import CalibrationRun, calibration_request, run_settings
from .error_scale import (
    CONFIDENCE_K,
    MAX_LAG,
    N_BINS,
    V_FLOOR,
    correlation_length,
    error_scale,
    lag_offsets,
    pair_moments,
    precision_weights,
)
from .view_noise import CorrelatedNoise, correlated_noise, noise_lag1_correlation

LAG1_BIAS_LIMIT = 0.1  # lag 1 is left out when correlated noise could add this fraction of V there
ALPHA = 1.0  # recorrupting: ŷ = y + α·σ·z, ȳ = y − σ·z/α (equal noises at α = 1: the least noisy products)
CALIBRATION_PLANES = 4  # planes (or frame pairs) of the user's image the widget and CLI calibrate on
MAX_PIXELS = 2 ** 18  # what the calibration restores at most: a 512² plane's worth of crops
# recorrupted pairs of an image smaller than MAX_PIXELS are drawn this many times at most, to fill the
# budget: the products' noise falls as 1/√draws while the error they measure is the same image's
MAX_DRAWS = 8


@dataclass
class Residuals:
    """Standardised residuals of restorations against an independent noisy view, per plane."""

    v: np.ndarray  # (planes, H, W): (view − restoration) / u
    unit: np.ndarray  # (planes, H, W): u of the restoration, input units
    restoration: object  # the Restoration of the restored inputs
    how: str  # for the calibration's source
    noise: CorrelatedNoise | None = None  # the view's noise covariance, read off a noise probe (None: unknown)
    # the part of the view's noise that is known (recorrupted: −σ·z/α), / u: its products have mean 0 and
    # are taken off only to make the estimate less noisy (correlated camera noise is not in it)
    known: np.ndarray | None = None
    draws: int = 1  # recorrupted copies of the same crops stacked along the planes
    restoration_mean: np.ndarray | None = None  # (planes, H, W): the restored means, input units


def _crops(planes: list[np.ndarray], max_pixels: int, *companions):
    """At most ``max_pixels`` in all: evenly spaced planes, each cropped about its centre to a
    common size (the restoration runs on one stack); each companion list (or None) likewise."""
    h = min(p.shape[0] for p in planes)
    w = min(p.shape[1] for p in planes)
    n = max(1, min(len(planes), max_pixels // (h * w)))
    if n == 1 and h * w > max_pixels:
        side = int(math.sqrt(max_pixels))
        h, w = min(h, side), min(w, max_pixels // min(h, side))
    chosen = np.unique(np.linspace(0, len(planes) - 1, n).round().astype(int))

    def crop(p):
        y0, x0 = (p.shape[0] - h) // 2, (p.shape[1] - w) // 2
        return p[y0:y0 + h, x0:x0 + w]

    def pick(items):
        return None if items is None else np.stack([crop(np.asarray(items[i])) for i in chosen])

    return (pick(planes), *(pick(c) for c in companions))


def _restore(model, stack, settings):
    result = yield from iter_denoise(stack.astype(np.float32), model, settings)
    return result


def iter_residuals(model, planes, settings, *, alpha: float | None, seed: int, partner=None, probe=None,
                   view_name: str = "a second acquisition", max_pixels=MAX_PIXELS):
    """Residuals against independent views (``partner[i]`` one of ``planes[i]``, described by
    ``view_name``; ``probe[i]`` noise with the same covariance as that view's, if known) or, with
    ``alpha``, against recorrupted pairs of ``planes`` themselves. Yields the restoration's Progress."""
    known, draws = None, 1
    if partner is not None:
        inputs, views, probes = _crops(planes, max_pixels, partner, probe)
        how = f"{view_name} for {len(inputs)} plane(s) as an independent noisy view"
        restored_input = inputs
    else:
        (inputs, draws), views, probes = recorrupted_crops(planes, max_pixels), None, None
        noise = estimate_noise(list(inputs))
        rng = np.random.default_rng([seed, 23])
        sigma = np.tile(np.stack([noise.sigma_at(p.astype(np.float64)) for p in inputs]), (draws, 1, 1))
        copies = np.tile(inputs.astype(np.float64), (draws, 1, 1))
        z = rng.standard_normal(copies.shape)
        restored_input = copies + alpha * sigma * z
        known = -sigma * z / alpha
        views = copies + known
        how = (f"recorrupted pairs (α = {alpha:g}) of {len(inputs)} crop(s) of {inputs.shape[1]}×{inputs.shape[2]} px"
               + (f", {draws} independent draws" if draws > 1 else ""))
    result = yield from _restore(model, restored_input, settings)
    shape = np.shape(restored_input)
    mean = np.asarray(result.mean, dtype=np.float64).reshape(shape)
    unit = np.asarray(result.interval_unit, dtype=np.float64).reshape(shape)
    v = (np.asarray(views, dtype=np.float64) - mean) / unit
    noise = None
    if probes is not None:
        probes = np.asarray(probes, dtype=np.float64)
        level = ndimage.gaussian_filter(np.asarray(views, dtype=np.float64), (0, 2.0, 2.0))
        noise = correlated_noise(probes, level, unit)
    return Residuals(v, unit, result, how, noise, None if known is None else known / unit, draws, mean), inputs


def response_length(residuals: "Residuals", offsets) -> float | None:
    """The error's correlation length from the restorations of two recorrupted draws of the same
    crops: their difference is the restoration's response to the difference of the known noises,
    J·σ·(z₁ − z₂), with no camera noise and no structure in it, so its correlation length is read
    precisely, where the residuals' own products (noise a hundred times the error) give a length
    that often sits at a bound. It is the length of the part of the error that the noise drives;
    the bias on structure may fall off faster or slower. None with a single draw."""
    if residuals.draws < 2 or residuals.restoration_mean is None:
        return None
    means = residuals.restoration_mean
    planes = len(means) // residuals.draws
    difference = (means[planes:] - means[:-planes]) / residuals.unit[planes:]
    known = None if residuals.known is None else residuals.known[planes:]
    weights = precision_weights(residuals.v[planes:], known)
    return correlation_length(*pair_moments(difference, weights, weights, offsets))


def recorrupted_crops(planes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int]:
    """(crops, draws): what a recorrupted calibration restores, draws × the crops: crops of at most
    half the budget, so that at least two draws fit (their difference gives the error's
    correlation length, :func:`response_length`). The Train widget's time estimate reads it too."""
    crops = _crops(planes, max(max_pixels // 2, 1))[0]
    return crops, recorrupted_draws(crops.size, max_pixels)


def recorrupted_draws(crop_pixels: int, max_pixels: int = MAX_PIXELS) -> int:
    """How many recorrupted copies of crops of ``crop_pixels`` in all the calibration restores: as
    many as fit in ``max_pixels``, at most MAX_DRAWS."""
    return int(min(MAX_DRAWS, max(1, max_pixels // max(int(crop_pixels), 1))))


def iter_self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                        alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                        second_is: str = "a second acquisition", second_noise=None, spec: RunSpec | None = None,
                        **settings):
    """:func:`self_calibrate` as a generator (yields Progress; returns a CalibrationRun whose truth is None)."""
    if isinstance(model, str):
        model = load_model(model)
    coverages, run = calibration_request(model, coverage, settings, spec, "self_calibrate")
    planes = as_planes(noisy, "noisy")
    if second is not None:
        partner = as_planes(second, "second")
        if [p.shape for p in partner] != [p.shape for p in planes]:
            raise ValueError("second must have the noisy image's shape (an independent acquisition of the same field)")
        view_name = second_is
        probe = (as_planes(second_noise, "second_noise") if second_noise is not None
                 else [(b - a) / math.sqrt(2) for a, b in zip(planes, partner)])
    elif frames:
        if len(planes) < 2:
            raise ValueError("frames=True needs at least two frames (a T axis)")
        planes, partner, probe, view_name = frame_views(planes)
    else:
        partner, probe, view_name = None, None, ""
    if partner is None and not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number; got {alpha!r}")

    offsets = lag_offsets()
    last, inputs = yield from iter_residuals(model, planes, run, alpha=None if partner is not None else alpha,
                                             seed=seed, partner=partner, probe=probe, view_name=view_name,
                                             max_pixels=max_pixels)
    mask = np.ones(last.v.shape, dtype=bool)
    taken_off = last.noise if last.noise is not None else last.known
    ell = response_length(last, offsets)
    scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws,
                        ell=ell)
    # correlated camera noise enters the lag-1 products as if it were error: by how much, in V's units
    rho_noise, rho_se = noise_lag1_correlation(inputs)
    camera_share = 1.0 if partner is not None else alpha ** 2 / (1 + alpha ** 2)  # of the view's noise variance
    noise_bias = abs(rho_noise) * camera_share * float(np.mean(last.v ** 2))
    # left out only when the correlation is seen (3 standard errors) and could move V by a tenth
    # (with a noise probe the noise's own cross-moments are taken off at every lag instead)
    dropped = (last.noise is None and abs(rho_noise) > 3 * rho_se
               and noise_bias > LAG1_BIAS_LIMIT * max(scale.pooled, V_FLOOR))
    if dropped:
        offsets = [o for o in lag_offsets(MAX_LAG + 1) if math.hypot(*o) >= 2]
        scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws,
                            ell=ell)

    # V < 0 cannot be: products that come out negative mean the view's noise is not independent of
    # the restoration's, e.g. a camera-noise fit a few per cent low makes the noise the network lets through
    # anti-correlate with the view's (its Jacobian times the misfit). Such residuals say nothing of the
    # error: the model's own spread (V = 1) is used instead, and the source says so
    implausible = scale.pooled < 0
    if implausible:
        scale = dataclasses.replace(scale, variances=[1.0] * len(scale.variances))

    # a split-half check: λ from one half of the blocks, its modelled coverage under the other half's V
    split = np.tile(block_split(inputs.shape, split_seed), (last.draws, 1, 1))  # a block's copies on one side
    half_a = error_scale(last.v, last.unit, split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell)
    half_b = error_scale(last.v, last.unit, ~split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell)
    factors = [scale.factor(c) for c in coverages]
    checked = [math.nan if implausible else half_b.coverage_of(half_a.factor(c)) for c in coverages]
    widths = [float(np.mean(2 * f * last.unit)) for f in factors]
    source = ("self-calibrated: residuals against " + last.how + ". Error scale from cross-moments at lags "
              f"{min(scale.lags_used):g}–{max(scale.lags_used):g} px (noise-cancelling)"
              + (f", extrapolated to lag 0 over the {ell:.2g} px correlation length of the restoration's response to "
                 "the draws' difference" if ell is not None else "")
              + ": V = E[(error/spread)²] = "
              f"{scale.pooled:.3g} ± {scale.pooled_se:.2g} overall; used per {N_BINS} bins of the spread "
              f"{', '.join(f'{v:.3g}' for v in scale.variances)} (measured {', '.join(f'{v:.3g}' for v in scale.raw_variances)}, "
              f"shrunk by their standard errors, then {CONFIDENCE_K:g} standard error above, floor {V_FLOOR:g})"
              + (f"; lag 1 left out: the camera noise is correlated between neighbours (ρ ≈ {rho_noise:.2f})"
                 if dropped else f"; camera noise lag-1 correlation {rho_noise:.3f} ± {rho_se:.3f}")
              + ("; the noise's own cross-moments, read off the frame difference, taken off" if last.noise is not None
                 else "")
              + ("; V came out below 0 (noise in the products, or a noise fit that is off): the model's own "
                 "spread is used (V = 1) and these intervals are not calibrated on this image" if implausible else "")
              + f". Coverage is modelled (a generalised Gaussian of shape β = {scale.shape:g} per bin), not conformal; "
              "held-out coverage = the split-half check")
    settings_record = run_settings(last.restoration.metadata)
    calibration = Calibration(settings_record, coverages, factors, checked, widths, source, int(last.v.size), None)
    kept_calibrations = [c for c in model.calibrations if not Calibration.from_dict(c).matches(settings_record)]
    return CalibrationRun(dataclasses.replace(model, calibrations=[calibration.to_dict(), *kept_calibrations]),
                          calibration, last.restoration, None)


NEIGHBOUR_MEAN = "the mean of frames t − 1 and t + 1"
NEXT_FRAME = "the next frame"


def frame_views(frames: list) -> tuple[list, list, list, str]:
    """(frames, their independent views, noise probes, what the views are) for a time series: the
    mean of the two neighbouring frames where there are three frames or more (a sample moving at
    constant speed is, to first order, where it is in frame t, and the view's noise is halved), else
    the next frame. A probe is noise alone with the view's noise covariance: half the difference of
    the two neighbours, or the difference of the pair / √2 (what moved between them counts too)."""
    if len(frames) >= 3:
        return (list(frames[1:-1]), [(a + b) / 2 for a, b in zip(frames[:-2], frames[2:])],
                [(b - a) / 2 for a, b in zip(frames[:-2], frames[2:])], NEIGHBOUR_MEAN)
    return list(frames[:-1]), list(frames[1:]), [(b - a) / math.sqrt(2) for a, b in zip(frames[:-1], frames[1:])], NEXT_FRAME


def calibration_planes(data, axes: str, count: int = CALIBRATION_PLANES):
    """(planes, their independent views or None, noise probes or None, what the views are): up to
    ``count`` evenly spaced (Y, X) planes of an image with these axes, read one at a time (lazy
    arrays stay lazy). With a T axis of two frames or more, views and probes come from the
    neighbouring frames at the same C and Z (:func:`frame_views`)."""
    lead = tuple(data.shape[:-2])
    positions = list(np.ndindex(*lead)) if lead else [()]
    t = axes.find("T")
    n_frames = lead[t] if t >= 0 else 1

    def spaced(items):
        return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).astype(int))]

    if n_frames < 2:
        return np.stack([np.asarray(data[p], dtype=np.float32) for p in spaced(positions)]), None, None, ""
    edge = 1 if n_frames >= 3 else 0  # frame t needs t − 1 and t + 1, or only t + 1 in a pair of frames
    chosen = spaced([p for p in positions if edge <= p[t] < n_frames - 1])

    def at(p, dt):
        return np.asarray(data[p[:t] + (p[t] + dt,) + p[t + 1:]], dtype=np.float32)

    triplets = [frame_views([at(p, dt) for dt in ((-1, 0, 1) if edge else (0, 1))]) for p in chosen]
    first, views, probes = (np.stack([triplet[k][0] for triplet in triplets]) for k in range(3))
    return first, views, probes, triplets[0][3]


def self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                   alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                   second_is: str = "a second acquisition", second_noise=None, progress=None, cancel=None,
                   spec: RunSpec | None = None, **settings):
    """Calibrate ``model``'s intervals on the user's noisy image alone; return a calibrated copy.

    noisy: a plane or a stack (any of T, C, Z, Y, X; every plane is used).
    second: an independent acquisition of the same field (same shape), if the user has one; or
    frames=True: ``noisy`` is a time series (its planes in time order): frame t's view is the mean
        of frames t − 1 and t + 1 (:func:`frame_views`; what motion is left counts as error: the
        intervals come out wider, not narrower).
    second_is: what ``second`` is, for the calibration's source.
    second_noise: noise alone with the covariance of ``second``'s noise (default: the difference of
        ``second`` and ``noisy`` / √2), whose cross-moments are taken off the residuals' so that
        camera noise correlated between pixels does not pass for error.
    Otherwise the pairs are recorrupted from ``noisy`` with its fitted camera noise (``alpha``).
    settings: the sampler settings the intervals will be used with (as for :func:`denoise`).
    spec: the same as one RunSpec (core.run.run_keywords), ``settings`` beside it overriding it, as for
        :func:`denoise`; its seed is the restoration's (``seed`` here draws the recorruption) and its
        coverage is left out (the levels are ``coverage``).
    Cost: one restoration of at most ``max_pixels`` pixels (crops of evenly spaced planes).
    """
    run, cancelled = drive(iter_self_calibrate(model, noisy, coverage, second=second, frames=frames, alpha=alpha,
                                               second_is=second_is, second_noise=second_noise, seed=seed,
                                               split_seed=split_seed, max_pixels=max_pixels, spec=spec, **settings),
                           progress, cancel)
    if cancelled:
        raise Cancelled("calibration was cancelled")
    return run.model
