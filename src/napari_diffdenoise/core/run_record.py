"""How a run's settings are written down: one record, and the views of it that the restoration's
metadata, a zarr store's fingerprint (core.batch) and a calibration's key (core.conformal) take."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # for annotations only: restore builds the Settings and imports this module
    from .restore import Settings


@dataclass(frozen=True)
class Recorded:
    """One setting of a run as it is written down. The metadata, the zarr fingerprint (core.batch) and
    the calibration key (core.conformal) are views of :func:`settings_record`, so a setting declared
    here reaches all three that it belongs to."""

    key: str  # its name in the record, the fingerprint and the calibration key
    value: Callable[[Settings], object]  # JSON-safe
    # a zarr store resumes only under the same value (or, given the record, whether that holds)
    fingerprint: bool | Callable[[dict], bool] = True
    calibration: bool = False  # the intervals' width depends on it: a calibration holds for this value only
    shown: Callable[[dict], bool] = lambda record: True  # whether the metadata carries it, given the record


def _psf_sha256(s: Settings) -> str | None:
    return None if s.psf is None else hashlib.sha256(np.ascontiguousarray(s.psf, np.float64).tobytes()).hexdigest()


# The flags reproduce what each view held before they were derived from one record, so stores and
# calibrations written then are still recognised: the fingerprint never had device (nor guidance: a guided
# store then resumed under another guidance, which it no longer does), the
# metadata never had block, block_overlap or the PSF's hash.
RECORDED = (
    Recorded("sampler", lambda s: s.sampler.name, calibration=True),
    Recorded("params", lambda s: dict(s.params), calibration=True),
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
    """The settings part of a zarr store's fingerprint (core.batch adds the input's identity)."""
    return {f.key: record[f.key] for f in RECORDED
            if (f.fingerprint(record) if callable(f.fingerprint) else f.fingerprint)}


def calibration_keys() -> tuple[str, ...]:
    """The settings the intervals' width depends on: a calibration holds for their values only."""
    return tuple(f.key for f in RECORDED if f.calibration)


def calibration_key(record: dict) -> dict:
    """What a calibration must match."""
    return {key: record[key] for key in calibration_keys()}


def calibration_key_from_metadata(metadata: dict) -> dict:
    """:func:`calibration_key` read back from a restoration's metadata."""
    return {key: metadata[METADATA_NAMES.get(key, key)] for key in calibration_keys()}
