"""Split-conformal intervals with a stated coverage: the unit of an interval, the factor λ per
coverage, and the calibration that stores λ for one sampler setting.

Following Angelopoulos et al. 2022 ("Image-to-Image Regression with Distribution-Free Uncertainty
Quantification and Applications in Imaging", arXiv 2202.05265), the interval is
[mean − λ·u, mean + λ·u] with u a heuristic spread per pixel (here the unbiased std of the K
samples, with a small floor so that pixels where every sample agrees still get a width; see
:func:`interval_unit`), and λ is the ⌈(n + 1)·c⌉-th smallest of the scores |truth − mean| / u on n
calibration pixels (split conformal prediction, their §2.2): on pixels exchangeable with those,
the truth falls inside in a fraction ≥ c. Pixels of one image are not exchangeable in the strict
sense; so λ is chosen on half of the image blocks (:func:`block_split`) and the coverage is
*measured* on the other half and stored beside λ.

λ depends on the sampler and its settings (they set the spread): a calibration records the
settings it holds for (:func:`find_calibration` finds it). :func:`~.restore.denoise` with ``coverage=``
calibrates on the image itself unless the user made a calibration for the model (core.calibration.on_image);
told to take a stored one (``calibrate_on_image=False``), it refuses settings that no calibration of the
model covers. Calibrating a model is core.calibration.calibration's job.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from .run_record import calibration_keys, recorded_value

COVERAGE_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
UNIT_FLOOR = 0.01  # in model units (the percentile map's half span): 0.5 % of the image's range
BLOCK = 32  # pixels: the split into calibration and held-out halves is by blocks, not pixels


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


# in a calibration's source where its coverage is modelled from the image's residuals, not measured against
# truths: its held-out coverage is then a split-half check's model, and a record must not call it measured
MODELLED_COVERAGE = "Coverage is modelled"


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
    # λ per coverage for each channel of the image it was made on, and where C lies among that image's
    # leading axes: channels differ in structure and noise, and one λ for all of them was 0.3–1.9× one's own
    # (self_calibration.iter_calibrate_on_data); ``factors`` is then each level's widest
    channel_factors: list | None = None
    channel_axis: int | None = None
    # measured against a truth the caller gave (split conformal on their pairs), not read off the noisy image's
    # residuals nor off simulated pairs: on the user's own data the one route with a guarantee, which the
    # Denoise widget keeps rather than calibrating on the image again
    against_truth: bool = False
    # came inside a bundled model (made by this project on its own pairs, not on the user's data): a run asking
    # for intervals calibrates on its image instead unless told otherwise (core.calibration.on_image)
    shipped: bool = False

    def matches(self, settings: dict) -> bool:
        # only the keys the width depends on: a stored calibration holds n_samples too, for the record
        return all(recorded_value(self.settings, k) == recorded_value(settings, k) for k in calibration_keys(settings))

    def factor(self, coverage: float, position: tuple = ()) -> float:
        """λ for ``coverage``, interpolated linearly between the calibrated levels; for the plane at
        ``position`` (its index over the image's leading axes) its channel's, where it has one."""
        lo, hi = self.coverages[0], self.coverages[-1]
        if not lo <= coverage <= hi:
            raise ValueError(f"coverage must be between {lo} and {hi} for this calibration; got {coverage}")
        factors = self.factors
        if self.channel_factors and self.channel_axis is not None and len(position) > self.channel_axis:
            channel = int(position[self.channel_axis])
            if channel < len(self.channel_factors):
                factors = self.channel_factors[channel]
        return float(np.interp(coverage, self.coverages, factors))

    @property
    def held_out_measured(self) -> bool:
        """Whether ``held_out_coverage`` was measured against truths on held-out pixels (pairs, simulated or
        the user's) rather than modelled by a self-calibration's split-half check, which on simulated
        filaments at 20 photons read 0.665 where the measured coverage was 0.967."""
        return MODELLED_COVERAGE not in self.source

    def record(self, coverage: float) -> dict:
        """The run record's entries on the check of this calibration at ``coverage``, keyed by what it is."""
        check = float(np.interp(coverage, self.coverages, self.held_out_coverage))
        key = "calibration_held_out_coverage" if self.held_out_measured else "calibration_split_half_coverage_modelled"
        return {key: check}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        # a check that could not be made (NaN) reads back from JSON as null
        kept["held_out_coverage"] = [math.nan if h is None else h for h in kept.get("held_out_coverage", [])]
        return cls(**kept)


def source_headline(source: str) -> str:
    """A calibration's source in a few words, for a status line: its text up to the first colon or full stop
    outside brackets ("self-calibrated: residuals against …" → "self-calibrated"; "the wider of two
    self-calibrations at each level (the second's at 0.85, 0.9). First: …" → all before ". First")."""
    depth = 0
    for i, char in enumerate(source):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and (char == ":" or source.startswith(". ", i)):
            return source[:i]
    return source.rstrip(".")


class NoCalibration(ValueError):
    """The model holds no calibration for a run's settings (the message says which it holds). ``what``: the message
    without its remedy (the library's calls), for a form to give its own."""

    def __init__(self, what: str, remedy: str):
        super().__init__(f"{what}. {remedy}")
        self.what = what


def find_calibration(model, settings: dict) -> Calibration:
    """The model's calibration for these settings, or a :class:`NoCalibration` saying which ones exist. A model
    that holds calibrations of the user's own is taken at those alone: one it came with was made on other data,
    and a run whose settings none of the user's covers once took it in silence (0.725 held at a stated 0.9 on a
    3-photon image the user's covered at 0.917: the Calibrate widget's samples route, the Denoise widget's std
    head)."""
    own = [entry for entry in model.calibrations if not Calibration.from_dict(entry).shipped]
    for entry in own or model.calibrations:
        calibration = Calibration.from_dict(entry)
        if calibration.matches(settings):
            return calibration
    def described(key: dict) -> str:
        # the [mean]'s refinement too: keys that differ by it alone read the same without it
        refined = recorded_value(key, "mean_refinement")
        mean = f"{key.get('mean_estimator')}" + (f", refined: {refined}" if refined not in (None, "none") else "")
        if recorded_value(key, "std_estimator") == "head":
            return f"the std head (mean: {mean})"
        return f"sampler {key.get('sampler')!r} with {key.get('params')} (mean: {mean})"

    have = [described(c["settings"]) for c in own or model.calibrations]
    # "you made" only beside ones it came with: a checkpoint from before the mark holds the project's unmarked
    mixed = 0 < len(own) < len(model.calibrations)
    # residuals against a blurred image count the blur as error: not offered for a deconvolution
    here = "" if getattr(model, "task", None) == "deconvolve" else (
        "calibrate on the image (calibrate_on_image=True; the CLI's --self-calibrate), ")
    raise NoCalibration(
        f"model {model.name!r} has no calibration for {described(settings)}; "
        + (f"{'the calibrations you made are' if mixed else 'it is calibrated'} for: {'; '.join(have)}" if have
           else "it has none"),
        f"Use those settings, {here}or calibrate(model, noisy, clean, ...) with these first")
