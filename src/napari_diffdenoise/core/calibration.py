"""Intervals with a stated coverage: split-conformal calibration of the per-pixel uncertainty.

Following Angelopoulos et al. 2022 ("Image-to-Image Regression with Distribution-Free Uncertainty
Quantification and Applications in Imaging", arXiv 2202.05265), the interval is
[mean − λ·u, mean + λ·u] with u a heuristic spread per pixel (here the unbiased std of the K
samples, with a small floor so that pixels where every sample agrees still get a width; see
:func:`interval_unit`), and λ is the ⌈(n + 1)·c⌉-th smallest of the scores |truth − mean| / u on n
calibration pixels (split conformal prediction, their §2.2): on pixels exchangeable with those,
the truth falls inside in a fraction ≥ c. Pixels of one image are not exchangeable in the strict
sense; so λ is chosen on half of the image blocks and the coverage is *measured* on the other half
and stored beside λ.

λ depends on the sampler and its settings (they set the spread): a calibration records the
settings it holds for, and :func:`~.restore.denoise` with ``coverage=`` refuses settings that no
calibration of the model covers.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ._version import __version__
from .metrics import fit_scale_offset

COVERAGE_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
UNIT_FLOOR = 0.01  # in model units (the percentile map's half span): 0.5 % of the image's range
BLOCK = 32  # pixels: the split into calibration and held-out halves is by blocks, not pixels
WITHOUT_TRUTH = ("residuals", "simulated")  # calibrate(clean=None): how, see calibrate()


def interval_unit(std: np.ndarray, n_samples: int, half_span: float) -> np.ndarray:
    """u = √(s²·K/(K − 1) + f²): the unbiased sample std with a floor f (UNIT_FLOOR in model units),
    in the input's units. K/(K − 1) makes λ nearly independent of K."""
    unbiased = np.asarray(std, dtype=np.float64) ** 2 * n_samples / max(n_samples - 1, 1)
    return np.sqrt(unbiased + (UNIT_FLOOR * half_span) ** 2).astype(np.float32)


def conformal_factor(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ⌈(n + 1)·c⌉-th smallest score (∞ if n is too small)."""
    scores = np.sort(np.ravel(scores))
    rank = math.ceil((len(scores) + 1) * coverage)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def block_split(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A boolean mask: True on a random half of the BLOCK² blocks of every plane (calibration),
    False on the other half (held out)."""
    planes = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    h, w = shape[-2:]
    by, bx = -(-h // BLOCK), -(-w // BLOCK)
    rng = np.random.default_rng(seed)
    mask = np.zeros((planes, by * BLOCK, bx * BLOCK), dtype=bool)
    for z in range(planes):
        order = rng.permutation(by * bx)
        chosen = np.zeros(by * bx, dtype=bool)
        chosen[order[: (by * bx + 1) // 2]] = True
        mask[z] = np.kron(chosen.reshape(by, bx), np.ones((BLOCK, BLOCK), dtype=bool))
    return mask[:, :h, :w].reshape(shape)


@dataclass
class Calibration:
    """λ per nominal coverage for one sampler setting, and what it achieved on held-out pixels."""

    settings: dict  # sampler, params, mean_estimator (what the spread depends on) and n_samples
    coverages: list[float]
    factors: list[float]  # λ for each coverage
    held_out_coverage: list[float]  # the fraction of held-out pixels inside, per coverage
    held_out_width: list[float]  # mean interval width on held-out pixels, in the input's units
    source: str  # where the pairs came from: "user pairs", "simulated: …"
    n_pixels: int  # calibration pixels
    spearman: float | None = None  # ρ(std, |error|) over all pixels, per-plane average
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d"))
    package_version: str = __version__

    def matches(self, settings: dict) -> bool:
        from .restore import calibration_keys

        # only the keys the width depends on: a stored calibration holds n_samples too, for the record
        return all(self.settings.get(k) == settings.get(k) for k in calibration_keys())

    def factor(self, coverage: float) -> float:
        """λ for ``coverage``, interpolated linearly between the calibrated levels."""
        lo, hi = self.coverages[0], self.coverages[-1]
        if not lo <= coverage <= hi:
            raise ValueError(f"coverage must be between {lo} and {hi} for this calibration; got {coverage}")
        return float(np.interp(coverage, self.coverages, self.factors))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class CalibrationRun(NamedTuple):
    model: object  # the calibrated copy (a DiffusionModel)
    calibration: Calibration
    restoration: object  # the Restoration it was measured on (for a reliability diagram)
    truth: np.ndarray  # the truth as compared (after the scale-and-offset fit)


def run_settings(metadata: dict) -> dict:
    """The part of a restoration's metadata that a calibration must match."""
    from .restore import calibration_key_from_metadata

    return {**calibration_key_from_metadata(metadata), "n_samples": metadata["n_samples"]}


def find_calibration(model, settings: dict) -> Calibration:
    """The model's calibration for these settings, or a ValueError saying which ones exist."""
    for entry in model.calibrations:
        calibration = Calibration.from_dict(entry)
        if calibration.matches(settings):
            return calibration
    have = [f"{c['settings']['sampler']} {c['settings']['params']}" for c in model.calibrations]
    raise ValueError(
        f"model {model.name!r} has no calibration for sampler {settings['sampler']!r} with {settings['params']} "
        f"(mean: {settings['mean_estimator']}); "
        + (f"it is calibrated for: {'; '.join(have)}. " if have else "it has none. ")
        + "Use those settings, or calibrate(model, noisy, clean, ...) with these first")


def measure(mean, unit, truth, coverages, mask, std=None) -> tuple[list, list, list, int, float | None]:
    """(factors, held-out coverage, held-out width, n calibration pixels, Spearman ρ) from restored
    planes, their interval units and the truth; ``mask`` marks the calibration pixels."""
    from .metrics import calibration as error_bins

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


def calibration_request(model, coverage, settings: dict):
    """(the coverage levels, sorted, and the validated run Settings) a calibration is asked for."""
    from .restore import make_settings

    coverages = sorted({float(c) for c in np.atleast_1d(coverage)})
    if not all(0 < c < 1 for c in coverages):
        raise ValueError(f"coverage must be between 0 and 1 (exclusive); got {coverage}")
    run = make_settings(model, **settings)
    if run.n_samples < 2:
        raise ValueError("n_samples must be at least 2 to calibrate: one sample has no spread")
    return coverages, run


def iter_calibrate(model, noisy, clean=None, coverage=COVERAGE_GRID, *, source: str = "user pairs",
                   fit_truth: bool = True, split_seed: int = 0, without_truth: str = "residuals", second=None,
                   frames: bool = False, **settings):
    """:func:`calibrate` as a generator: yields the restoration's Progress after every network step
    (for a napari worker), returns a :class:`CalibrationRun`."""
    from .checkpoint import load_model
    from .restore import iter_denoise

    if isinstance(model, str):
        model = load_model(model)
    if clean is None and without_truth == "residuals":  # the model's real error on this image (core.self_calibration)
        from .self_calibration import iter_self_calibrate

        return (yield from iter_self_calibrate(model, noisy, coverage, second=second, frames=frames,
                                               split_seed=split_seed, **settings))
    if clean is None:  # pairs simulated from the user's own image (self_simulated_pairs)
        if without_truth != "simulated":
            raise ValueError(f"without_truth must be one of {WITHOUT_TRUTH}; got {without_truth!r}")
        noisy, clean, source = self_simulated_pairs(model, noisy, split_seed)
        fit_truth = False
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy and clean must have the same shape; got {noisy.shape} and {clean.shape}")
    coverages, run_settings_ = calibration_request(model, coverage, settings)
    result = yield from iter_denoise(noisy, model, run_settings_)
    truth = clean.astype(np.float32)
    if fit_truth:
        planes = truth.reshape(-1, *truth.shape[-2:])
        means = result.mean.reshape(planes.shape)
        # the truth in the restoration's units: a long average or a high-light image has its own exposure
        truth = np.stack([fit_scale_offset(t, m) for t, m in zip(planes, means)]).reshape(truth.shape).astype(np.float32)
    mask = block_split(noisy.shape, split_seed)
    factors, covered, widths, n, rho = measure(result.mean, result.interval_unit, truth, coverages, mask, result.std)
    calibration = Calibration(run_settings(result.metadata), coverages, factors, covered, widths, source, n, rho)
    kept = [c for c in model.calibrations if not Calibration.from_dict(c).matches(calibration.settings)]
    return CalibrationRun(dataclasses.replace(model, calibrations=[calibration.to_dict(), *kept]), calibration,
                          result, truth)


def self_simulated_pairs(model, noisy, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(simulated noisy, truth, source) when the user has no clean image: the truth is the model's
    own mean of ``noisy``, re-noised with the camera model fitted to ``noisy`` (core.camera_noise.
    estimate_noise). The interval then covers what the model would get wrong on images like the
    user's own, at the user's own noise."""
    from .camera_noise import estimate_noise, simulate_like
    from .datasets import as_planes
    from .restore import denoise

    planes = as_planes(noisy, "noisy")
    noise = estimate_noise(planes)
    one_pass = model.mean_network is not None or model.mean_estimator == "x0"
    truths = [np.maximum(denoise(p, model, n_samples=0 if one_pass else 8, seed=seed).mean, 0) for p in planes]
    rng = np.random.default_rng([seed, 7])
    simulated = [simulate_like(t, noise, rng) for t in truths]
    h, w = min(p.shape[0] for p in planes), min(p.shape[1] for p in planes)  # one stack: a common size
    source = (f"simulated: the model's mean of the user's {len(planes)} noisy plane(s), re-noised with the camera "
              f"model fitted to them (var = {noise.gain:.4g}·level + {noise.floor:.4g})")
    return np.stack([x[:h, :w] for x in simulated]), np.stack([t[:h, :w] for t in truths]), source


def calibrate(model, noisy, clean=None, coverage=COVERAGE_GRID, *, source: str = "user pairs", fit_truth: bool = True,
              split_seed: int = 0, without_truth: str = "residuals", second=None, frames: bool = False,
              progress=None, cancel=None, **settings):
    """Calibrate ``model``'s intervals on (noisy, clean) pairs and return a calibrated copy.

    noisy, clean: the same shape, a 2D plane or a (Z, Y, X) stack; clean is the truth (a long
        average, a high-light image, or the simulated expected image). With ``fit_truth`` it is
        first mapped onto each restored plane by a least-squares scale and offset.
    Without ``clean`` (None) the calibration comes from the noisy image alone, by ``without_truth``:
        "residuals" (default): the restoration's real error on this image, seen through residuals
        against an independent noisy view — ``second`` (another acquisition of the same field),
        consecutive frames of ``noisy`` (``frames=True``), or recorrupted pairs of ``noisy`` itself
        (core.self_calibration; a model of the residuals, not conformal);
        "simulated": the model's own mean re-noised with the fitted camera model
        (:func:`self_simulated_pairs`; it cannot see the model's error on structure it never learnt).
        The calibration's source says which.
    coverage: one level or several (default: 0.5 … 0.99); :func:`denoise` interpolates between them.
    source: recorded in the calibration: where the pairs came from ("user pairs", "simulated: …").
    settings: the sampler settings to calibrate, as for :func:`denoise` (sampler, n_samples, steps,
        eta, sampler_params, mean, seed, ...); the calibration holds for those only.

    The returned model carries the new calibration first among its calibrations (one for the same
    settings is replaced); save it with ``save_checkpoint`` to keep it. ``model`` is not changed.
    """
    from .driving import drive
    from .restore import Cancelled

    run, cancelled = drive(iter_calibrate(model, noisy, clean, coverage, source=source, fit_truth=fit_truth,
                                          split_seed=split_seed, without_truth=without_truth, second=second,
                                          frames=frames, **settings), progress, cancel)
    if cancelled:
        raise Cancelled("calibration was cancelled")
    return run.model
