"""What a recorrupted self-calibration will cost on this machine, said before it runs: the crops it
restores (core.calibration.self_calibration) priced as core.run.run_cost prices a restoration."""
from __future__ import annotations

import numpy as np

from ..model.model import DiffusionModel
from ..run.restore import DEFAULT_SAMPLER_SETTINGS, calibration_settings, make_settings
from ..run.run_cost import RunCost, planes_cost
from .residuals import MAX_PIXELS, recorrupted_crops


def recalibration_cost(model: DiffusionModel, shape: tuple[int, ...], max_pixels: int = MAX_PIXELS,
                       **settings) -> RunCost:
    """A recorrupted self-calibration's cost for an image of ``shape``, from the very selection it
    makes (:func:`residuals.recorrupted_crops`): its crops, restored as several recorrupted
    copies, with what a calibration for a run at ``settings`` restores with (restore.calibration_settings;
    the default sampler's settings when none are given)."""
    settings = make_settings(model, **calibration_settings(model, settings or DEFAULT_SAMPLER_SETTINGS))
    planes = [np.broadcast_to(np.float32(0), shape[-2:])] * int(np.prod(shape[:-2], dtype=np.int64))
    crops, draws = recorrupted_crops(planes, max_pixels)
    return planes_cost(model, settings, tuple(crops.shape[-2:]), draws * len(crops))
