"""The self-calibration's witness of the restoration's error: residuals of restorations against an
independent noisy view (a second acquisition, the neighbouring frames, or a recorrupted pair made
from the image itself), standardised by the restoration's own interval unit, and the error's
correlation length read off two recorrupted draws (core/calibration/self_calibration.py uses them)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..imaging.camera_noise import estimate_noise
from ..imaging.pilot_wiener import ALWAYS, BRIGHT_PHOTONS, IF_BRIGHT, decided
from ..imaging.recorruption import RecorruptionNoise
from ..run.restore import iter_denoise
from .error_scale import correlation_length, pair_moments, precision_weights
from .view_noise import CorrelatedNoise, NoiseCorrelation, correlated_noise, noise_correlation

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
    # the part of the view's noise that is known (recorrupted: −s/α), / u: it weighs the draws' difference
    # (response_length); its products are not taken off the residuals' (core.calibration.self_calibration)
    known: np.ndarray | None = None
    draws: int = 1  # recorrupted copies of the same crops stacked along the planes
    restoration_mean: np.ndarray | None = None  # (planes, H, W): the restored means, input units
    # the camera noise's correlation between pixels, read off the inputs (view_noise.noise_correlation)
    camera: NoiseCorrelation | None = None
    coloured: bool = False  # whether the recorrupting draws were given it


MIN_CROP = 128  # px: the least side a crop is cut to so that more than one plane has one


def _crops(planes: list[np.ndarray], max_pixels: int, *companions):
    """At most ``max_pixels`` in all: evenly spaced planes, each cropped about its centre to a
    common size (the restoration runs on one stack); each companion list (or None) likewise. As
    many whole planes as fit; where not even two do, a crop of each plane as large as the budget
    lets them all have one (fewer planes where that would be under MIN_CROP a side): the budget
    spent on the first plane alone saw one channel of a multi-channel image (NEUBIAS's membranes
    image: channel 0's crop calibrated both) and the first, often least focused, plane of a Z stack."""
    h = min(p.shape[0] for p in planes)
    w = min(p.shape[1] for p in planes)
    n = max(1, min(len(planes), max_pixels // (h * w)))
    if n == 1:
        for n in range(len(planes), 0, -1):
            scale = min(1.0, math.sqrt(max_pixels / n / (h * w)))
            ch, cw = max(1, min(h, int(h * scale))), max(1, min(w, int(w * scale)))
            if n == 1 or min(ch, cw) >= min(MIN_CROP, h, w):
                break
        h, w = ch, cw
    chosen = np.unique(np.linspace(0, len(planes) - 1, n).round().astype(int))

    def crop(p):
        y0, x0 = (p.shape[0] - h) // 2, (p.shape[1] - w) // 2
        return p[y0:y0 + h, x0:x0 + w]

    def pick(items):
        return None if items is None else np.stack([crop(np.asarray(items[i])) for i in chosen])

    return (pick(planes), *(pick(c) for c in companions))


CROP_UNIT = "calibration crop"  # what the restoration's progress calls each of its planes


RECORRUPTED_PART = "recorrupted copies"  # the progress's name of a recorrupted restoration (Progress.part)


def _restore(model, stack, settings, part: str):
    steps = iter_denoise(stack.astype(np.float32), model, settings)
    try:
        while True:
            yield dataclasses.replace(next(steps), unit=CROP_UNIT).within(0.0, 1.0, part)
    except StopIteration as stop:
        return stop.value


def iter_residuals(model, planes, settings, *, alpha: float | None, seed: int, partner=None, probe=None,
                   view_name: str = "a second acquisition", max_pixels=MAX_PIXELS, draw_level=None):
    """Residuals against independent views (``partner[i]`` one of ``planes[i]``, described by
    ``view_name``; ``probe[i]`` noise with the same covariance as that view's, if known) or, with
    ``alpha``, against recorrupted pairs of ``planes`` themselves. Yields the restoration's Progress.
    ``draw_level``: for recorrupted pairs, a function of the crops (crops, H, W) that gives their
    noise-free level, at which the draws' variance is read (None: the crops smoothed,
    core.imaging.recorruption.RecorruptionNoise.of)."""
    known, draws = None, 1
    if partner is not None:
        inputs, views, probes = _crops(planes, max_pixels, partner, probe)
        how = f"{view_name} for {len(inputs)} plane(s) as an independent noisy view"
        camera, coloured = noise_correlation(inputs), False
        restored_input = inputs
    else:
        (inputs, draws), views, probes = recorrupted_crops(planes, max_pixels), None, None
        noise = estimate_noise(list(inputs))
        camera = noise_correlation(inputs)
        draws_correlation = camera.for_draws()
        coloured = draws_correlation is not None
        rng = np.random.default_rng([seed, 23])
        copies = np.tile(inputs.astype(np.float64), (draws, 1, 1))
        copies_level = None if draw_level is None else np.tile(np.asarray(draw_level(inputs), np.float64), (draws, 1, 1))
        drawn = RecorruptionNoise.of(noise, copies, alpha, draws_correlation, copies_level).draw(rng)
        restored_input = copies + alpha * drawn
        known = -drawn / alpha
        views = copies + known
        how = (f"recorrupted pairs (α = {alpha:g}) of {len(inputs)} crop(s) of {inputs.shape[1]}×{inputs.shape[2]} px"
               + (f", {draws} independent draws" if draws > 1 else "")
               + (f", drawn with the camera noise's correlation between pixels ({camera.describe()})" if coloured
                  else ""))
    restore_settings, refinement = _refinement_as_the_image(settings, None if partner is not None else inputs)
    how += refinement
    result = yield from _restore(model, restored_input, restore_settings,
                                 RECORRUPTED_PART if partner is None else f"against {view_name}")
    # the calibration is the run's, whose rule it is, whatever the crops' restoration was told
    result.metadata["mean_refinement"] = settings.mean_refinement
    shape = np.shape(restored_input)
    mean = np.asarray(result.mean, dtype=np.float64).reshape(shape)
    unit = np.asarray(result.interval_unit, dtype=np.float64).reshape(shape)
    v = (np.asarray(views, dtype=np.float64) - mean) / unit
    noise = None
    if probes is not None:
        probes = np.asarray(probes, dtype=np.float64)
        level = ndimage.gaussian_filter(np.asarray(views, dtype=np.float64), (0, 2.0, 2.0))
        noise = correlated_noise(probes, level, unit)
    return Residuals(v, unit, result, how, noise, None if known is None else known / unit, draws, mean, camera,
                     coloured), inputs


def _refinement_as_the_image(settings, crops) -> tuple[object, str]:
    """(the settings a calibration restores its recorrupted ``crops`` with, what its source says of them): a model
    that refines its [mean] where a plane is bright (core.imaging.pilot_wiener.IF_BRIGHT) would read a recorrupted
    crop, with (1 + α²) times the image's noise, as a fraction of its photons and leave it unrefined where the run
    refines the image: the crops are restored refined or not as the run restores most of them (a view the user
    gives is restored as the run restores it, plane by plane)."""
    if crops is None or settings.mean_refinement != IF_BRIGHT:
        return settings, ""
    rule, bright = decided(IF_BRIGHT, crops)
    said = (f", their [mean] {'refined' if rule == ALWAYS else 'left unrefined'} as the run's ({bright} of {len(crops)} "
            f"crop(s) at least {BRIGHT_PHOTONS:g} photons bright before recorrupting)")
    return dataclasses.replace(settings, mean_refinement=rule), said


def response_length(residuals: Residuals, offsets) -> float | None:
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


def pixels_restored(planes, paired: bool, max_pixels: int = MAX_PIXELS) -> int:
    """How many pixels :func:`iter_residuals` restores for ``planes``: against paired views their crops, else the
    recorrupted copies of theirs (:func:`recorrupted_crops`)."""
    if paired:
        return int(_crops(planes, max_pixels)[0].size)
    crops, draws = recorrupted_crops(planes, max_pixels)
    return int(crops.size) * draws


def recorrupted_draws(crop_pixels: int, max_pixels: int = MAX_PIXELS) -> int:
    """How many recorrupted copies of crops of ``crop_pixels`` in all the calibration restores: as
    many as fit in ``max_pixels``, at most MAX_DRAWS."""
    return int(min(MAX_DRAWS, max(1, max_pixels // max(int(crop_pixels), 1))))
