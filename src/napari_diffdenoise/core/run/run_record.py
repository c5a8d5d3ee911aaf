"""How a run's settings are written down: one record, and the views of it that the restoration's
metadata, a zarr store's fingerprint (core.run.batch) and a calibration's key (core.run.conformal) take."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for annotations only: run_settings builds the Settings and imports this module
    from .run_settings import Settings


@dataclass(frozen=True)
class Recorded:
    """One setting of a run as it is written down. The metadata, the zarr fingerprint (core.run.batch) and
    the calibration key (core.run.conformal) are views of :func:`settings_record`, so a setting declared
    here reaches all three that it belongs to."""

    key: str  # its name in the record, the fingerprint and the calibration key
    value: Callable[[Settings], object]  # JSON-safe
    # a zarr store resumes only under the same value (or, given the record, whether that holds)
    fingerprint: bool | Callable[[dict], bool] = True
    # the intervals' width depends on it (or, given the record, whether it does): a calibration holds
    # for this value only
    calibration: bool | Callable[[dict], bool] = False
    shown: Callable[[dict], bool] = lambda record: True  # whether the metadata carries it, given the record
    before: object = None  # the value a record written before this setting existed stands for

    def in_calibration(self, record: dict) -> bool:
        return self.calibration(record) if callable(self.calibration) else self.calibration


def _sampled_spread(record: dict) -> bool:
    """The intervals' unit is the samples' spread, so the sampler's settings shape it; a std head's
    unit is the same whatever the sampler."""
    return record.get("std_estimator", "samples") == "samples"


def _psf_sha256(s: Settings) -> str | None:
    return None if s.psf is None else hashlib.sha256(np.ascontiguousarray(s.psf, np.float64).tobytes()).hexdigest()


# The flags reproduce what each view held before they were derived from one record, so stores and
# calibrations written then are still recognised: the fingerprint never had device (nor guidance: a guided
# store then resumed under another guidance, which it no longer does), the
# metadata never had block, block_overlap or the PSF's hash.
RECORDED = (
    Recorded("sampler", lambda s: s.sampler.name, calibration=_sampled_spread),
    Recorded("params", lambda s: dict(s.params), calibration=_sampled_spread),
    Recorded("n_samples", lambda s: s.n_samples),
    Recorded("seed", lambda s: s.seed),
    Recorded("mean_estimator", lambda s: s.mean_estimator, calibration=True),
    Recorded("tile", lambda s: s.tile),
    Recorded("overlap", lambda s: s.overlap),
    Recorded("percentiles", lambda s: [float(p) if isinstance(p, np.floating) else p for p in s.percentiles]),
    Recorded("coverage", lambda s: s.coverage, shown=lambda r: r["coverage"] is not None),
    Recorded("psf_sha256", _psf_sha256, shown=lambda r: False),
    Recorded("psf_shape", lambda s: None if s.psf is None else list(np.shape(s.psf)), fingerprint=False,
             shown=lambda r: r["psf_shape"] is not None),
    Recorded("block", lambda s: s.block, shown=lambda r: False),
    Recorded("block_overlap", lambda s: s.block_overlap, shown=lambda r: False),
    Recorded("entropy", lambda s: s.entropy),
    Recorded("device", lambda s: str(s.device), fingerprint=False),
    # guidance changes every sample, so a store resumes only under the same guidance; an unguided run's
    # fingerprint stays as it was before guidance was recorded in it (those stores still resume)
    Recorded("guidance", lambda s: s.guidance, fingerprint=lambda r: r["guidance"] is not None,
             shown=lambda r: r["guidance"] is not None),
    Recorded("guidance_weight", lambda s: s.guidance_weight, fingerprint=lambda r: r["guidance"] is not None,
             shown=lambda r: r["guidance"] is not None),
    # runs and calibrations from before the std head took their std from the samples
    Recorded("std_estimator", lambda s: s.std_estimator, fingerprint=lambda r: r["std_estimator"] != "samples",
             calibration=True, before="samples"),
    # the maps move by under 1 % of their range in bfloat16: a store resumes only under the same format (its
    # planes would differ from one another), a float32 store's fingerprint stays as it was; the intervals'
    # calibration holds for both
    Recorded("precision", lambda s: s.precision, fingerprint=lambda r: r["precision"] != "float32",
             shown=lambda r: r["precision"] != "float32", before="float32"),
    # runs from before it kept the network's smooth part: a store made so resumes only under "model"
    Recorded("low_frequencies", lambda s: s.low_frequencies, fingerprint=lambda r: r["low_frequencies"] != "model",
             before="model"),
    # runs from before it made one pass: a store made so resumes only under 1. The intervals' calibration holds
    # for every count, as it does for both precisions: from 1 to 4 the shipped calibration's coverage at 0.9 moved
    # by +0.004 on average (−0.006 … +0.014) on 21 real cases (docs/benchmarks/symmetries.md)
    Recorded("symmetries", lambda s: s.symmetries, fingerprint=lambda r: r["symmetries"] != 1, before=1),
    # runs from before it restored hot pixels as data (a blob each): a store made so resumes under "pass", whose
    # planes differ from its own only where a plane holds one
    Recorded("hot_pixels", lambda s: s.hot_pixels, fingerprint=lambda r: r["hot_pixels"] != "pass", before="pass"),
    # the model's, where adapting chose one (DiffusionModel.mean_refinement): every run before it had none. The
    # intervals are centred on the refined mean, so a calibration holds for the refinement it was made with (and the
    # metadata says it always, as it does every calibration key)
    Recorded("mean_refinement", lambda s: s.mean_refinement, fingerprint=lambda r: r["mean_refinement"] != "none",
             calibration=True, before="none"),
)
# the metadata's own names where they differ from the record's (readers look for these)
METADATA_NAMES = {"params": "sampler_params"}


def settings_record(s: Settings) -> dict:
    """The run's settings as one JSON-safe record, the source of its metadata, fingerprint and calibration key."""
    return {field.key: field.value(s) for field in RECORDED}


def metadata_settings(record: dict) -> dict:
    """The settings part of a restoration's metadata."""
    return {METADATA_NAMES.get(f.key, f.key): record[f.key] for f in RECORDED if f.shown(record)}


def fingerprint_settings(record: dict) -> dict:
    """The settings part of a zarr store's fingerprint (core.run.batch adds the input's identity)."""
    return {f.key: record[f.key] for f in RECORDED
            if (f.fingerprint(record) if callable(f.fingerprint) else f.fingerprint)}


def recorded_value(record: dict, key: str):
    """``record[key]``, or what a record written before that setting existed stands for."""
    return record.get(key, next(f.before for f in RECORDED if f.key == key))


def calibration_keys(record: dict) -> tuple[str, ...]:
    """The settings the intervals' width depends on for this run: a calibration holds for their values only."""
    return tuple(f.key for f in RECORDED if f.in_calibration(record))


def calibration_key(record: dict) -> dict:
    """What a calibration must match. A setting at the value that records written before it existed
    stand for is left out, so such a key is what it was then."""
    keys = calibration_keys(record)
    return {f.key: record[f.key] for f in RECORDED
            if f.key in keys and not (f.before is not None and record[f.key] == f.before)}


def calibration_key_from_metadata(metadata: dict) -> dict:
    """:func:`calibration_key` read back from a restoration's metadata."""
    record = {f.key: metadata.get(METADATA_NAMES.get(f.key, f.key), f.before) for f in RECORDED}
    return calibration_key(record)
