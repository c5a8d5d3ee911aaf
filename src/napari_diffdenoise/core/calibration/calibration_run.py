"""What a calibration run is asked for and what it returns, for both ways of calibrating a model:
against a truth (core.calibration.calibration) and from the noisy image alone (core.calibration.self_calibration)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..run.conformal import Calibration
from ..run.restore import make_settings
from ..run.run_keywords import RunSpec, settings_given
from ..run.run_record import calibration_key_from_metadata

# one sample has no spread: the fewest that calibrating the samples' spread takes (std="samples")
MIN_CALIBRATION_SAMPLES = 2


class CalibrationRun(NamedTuple):
    model: object  # the calibrated copy (a DiffusionModel)
    calibration: Calibration
    restoration: object  # the Restoration it was measured on (for a reliability diagram)
    truth: np.ndarray  # the truth as compared (after the scale-and-offset fit)
    channels: tuple = ()  # calibrated each channel on its own: each channel's CalibrationRun, in channel order


def run_settings(metadata: dict) -> dict:
    """The part of a restoration's metadata that a calibration must match."""
    return {**calibration_key_from_metadata(metadata), "n_samples": metadata["n_samples"]}


def calibration_request(model, coverage, settings: dict, spec: RunSpec | None = None, caller: str = "calibrate"):
    """(the coverage levels, sorted, and the validated run Settings) a calibration is asked for: the
    run's settings are ``spec``'s (a RunSpec) with the keywords in ``settings`` over them, as for
    ``denoise``. A spec's coverage is left out: it is the level a run's intervals are drawn at, and
    the calibration's levels are ``coverage`` (the default grid spans it: runs interpolate)."""
    coverages = sorted({float(c) for c in np.atleast_1d(coverage)})
    if not all(0 < c < 1 for c in coverages):
        raise ValueError(f"coverage must be between 0 and 1 (exclusive); got {coverage}")
    given = settings_given(spec, settings, caller)
    if spec is not None:
        given = {k: v for k, v in given.items() if k != "coverage"}
    run = make_settings(model, **given)
    # a calibration's key has no guidance (core.run.run_record): unguided runs would take it
    if run.guidance is not None:
        raise ValueError(f"guidance={run.guidance!r} cannot be calibrated: a calibration's settings leave guidance out, "
                         "so one measured with it would give unguided runs their intervals. Leave guidance out")
    if run.n_samples < MIN_CALIBRATION_SAMPLES and run.std_estimator == "samples":
        raise ValueError(f"n_samples must be at least {MIN_CALIBRATION_SAMPLES} to calibrate the samples' spread: "
                         "one sample has none (a model with a std head needs no samples: std='head')")
    return coverages, run
