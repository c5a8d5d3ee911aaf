"""What a self-calibration will cost on this machine, said before it runs: the crops it restores
(core.calibration.self_calibration) priced as core.run.run_cost prices a restoration."""
from __future__ import annotations

import numpy as np

from ..model.model import DiffusionModel
from ..run.restore import DEFAULT_SAMPLER_SETTINGS, calibration_settings, make_settings
from ..run.run_cost import RunCost, planes_cost
from .residuals import MAX_PIXELS, _crops, recorrupted_crops
from .self_calibration import calibration_positions


def recalibration_cost(model: DiffusionModel, shape: tuple[int, ...], max_pixels: int = MAX_PIXELS,
                       axes: str | None = None, **settings) -> RunCost:
    """A self-calibration's cost for an image of ``shape``, from the very selection it makes
    (:func:`residuals.recorrupted_crops`): its crops, restored as several recorrupted copies, with
    what a calibration for a run at ``settings`` restores with (restore.calibration_settings; the
    default sampler's settings when none are given). ``axes``: the image's, for the calibration the
    Denoise widget and the CLI make (self_calibration.iter_calibrate_on_data: the planes at
    calibration_positions, and with a T axis of two frames or more their frame pairs too); None
    for adapt's recalibration, which recorrupts every plane."""
    settings = make_settings(model, **calibration_settings(model, settings or DEFAULT_SAMPLER_SETTINGS))
    if axes is None:
        n_planes, paired = int(np.prod(shape[:-2], dtype=np.int64)), False
    else:
        chosen, paired = calibration_positions(shape, axes)
        n_planes = len(chosen)
    planes = [np.broadcast_to(np.float32(0), shape[-2:])] * n_planes
    crops, draws = recorrupted_crops(planes, max_pixels)
    cost = planes_cost(model, settings, tuple(crops.shape[-2:]), draws * len(crops))
    if paired:
        frames = _crops(planes, max_pixels)[0]
        cost = cost + planes_cost(model, settings, tuple(frames.shape[-2:]), len(frames))
    return cost
