"""What a self-calibration will cost on this machine, said before it runs: the crops it restores
(core.calibration.self_calibration) priced as core.run.run_cost prices a restoration, and what it
spends besides (the noise fit, the residuals' cross-moments, the standard errors: with the std head's
network passes, most of its time — a 512² plane's calibration took 3.6–4.7 s where the crops'
network calls alone were priced at 0.41 s, before the cross-moments were taken in one pass per offset,
docs/performance.md, 2026-12-02; with the heads averaged over 4 symmetries it takes 3.76 s, the estimate
saying 3.66 s, docs/benchmarks/speed.md), timed once per model and settings."""
from __future__ import annotations

import numpy as np

from ..model.model import DiffusionModel
from ..run.driving import drive
from ..run.restore import DEFAULT_SAMPLER_SETTINGS, calibration_settings, make_settings
from ..run.run_cost import (
    RunCost,
    bright_shapes,
    check_stop,
    outside_network,
    outside_network_timed,
    overhead_key,
    planes_cost,
    register_timings,
    timed_overhead,
    timing_plane,
    timing_side,
)
from .residuals import MAX_PIXELS, _crops, recorrupted_crops
from .self_calibration import calibration_positions, iter_self_calibrate

# run_cost.overhead_key of the calibration's settings → seconds per pixel restored
_CALIBRATION_OVERHEAD: dict = register_timings({})


def recalibration_cost(model: DiffusionModel, shape: tuple[int, ...], max_pixels: int = MAX_PIXELS,
                       axes: str | None = None, sample_plane: np.ndarray | None = None, with_second: bool = False,
                       **settings) -> RunCost:
    """A self-calibration's cost for an image of ``shape``, from the very selection it makes
    (:func:`residuals.recorrupted_crops`): its crops, restored as several recorrupted copies, with
    what a calibration for a run at ``settings`` restores with (restore.calibration_settings; the
    default sampler's settings when none are given). ``axes``: the image's, for the calibration the
    Denoise widget and the CLI make (self_calibration.iter_calibrate_on_data: the planes at
    calibration_positions, and with a T axis of two frames or more their frame pairs too); None
    for adapt's recalibration, which recorrupts every plane. ``sample_plane``: a plane of the image,
    whose crops' bright structure takes the second pass (core.run.bright_pass) in every restoration
    of them, a run over each box (on the neuron plane of docs/benchmarks/speed.md, a fifth of the
    calibration's time). ``with_second``: against a second acquisition too (priced as frame pairs are)."""
    c = -1 if axes is None else axes.find("C")
    if c >= 0 and shape[c] > 1:  # each channel is calibrated on its own (self_calibration.per_channel)
        one = recalibration_cost(model, shape[:c] + shape[c + 1:], max_pixels, axes.replace("C", ""), sample_plane,
                                 with_second, **settings)
        return RunCost(one.pixels * shape[c], one.n_samples, one.evaluations, one.seconds * shape[c])
    given = calibration_settings(model, settings or DEFAULT_SAMPLER_SETTINGS)
    settings = make_settings(model, **given)
    if axes is None:
        n_planes, paired = int(np.prod(shape[:-2], dtype=np.int64)), False
    else:
        chosen, paired = calibration_positions(shape, axes)
        n_planes, paired = len(chosen), paired or with_second
    plane = np.broadcast_to(np.float32(0), shape[-2:]) if sample_plane is None else np.asarray(sample_plane,
                                                                                                np.float32)
    crops, draws = recorrupted_crops([plane] * n_planes, max_pixels)
    cost = planes_cost(model, settings, tuple(crops.shape[-2:]), draws * len(crops))
    restored = [(crops[0], draws * len(crops))]  # (a crop, how many times it is restored): all of the one plane
    if paired:
        frames = _crops([plane] * n_planes, max_pixels)[0]
        cost = cost + planes_cost(model, settings, tuple(frames.shape[-2:]), len(frames))
        restored.append((frames[0], len(frames)))
    per_pixel, per_run = outside_network(model, settings, given)
    boxes = 0.0 if sample_plane is None else sum(
        times * (planes_cost(model, settings, box, 1).seconds + per_run + box[0] * box[1] * per_pixel)
        for crop, times in restored for box in bright_shapes(model, crop, settings))
    outside = cost.pixels * calibration_overhead_per_pixel(model, settings, given)
    return RunCost(cost.pixels, cost.n_samples, cost.evaluations, cost.seconds + boxes + outside)


def calibration_is_timed(model: DiffusionModel, **settings) -> bool:
    """Whether :func:`recalibration_cost` for these run settings costs no timing any more."""
    calibration = make_settings(model, **calibration_settings(model, settings or DEFAULT_SAMPLER_SETTINGS))
    return overhead_key(model, calibration) in _CALIBRATION_OVERHEAD and outside_network_timed(model, calibration)


def calibration_overhead_per_pixel(model: DiffusionModel, settings, given: dict) -> float:
    """Seconds per restored pixel a self-calibration spends outside its network calls: one of a
    plane (two recorrupted draws of it) timed whole, less its network calls at the measured rates
    (run_cost.timed_overhead) — a tile-sized plane, or the largest whose calls fit the timing budget
    (run_cost.timing_side: with the heads averaged over 4 symmetries a 512² plane's took 2.8 s here,
    over the budget, and the analysis went uncounted: 'Time here' said 1.4 s of 2.6 s)."""
    def priced(side: int) -> float:
        return planes_cost(model, settings, (side, side), 2).seconds

    side = timing_side(priced, settings.tile) or settings.tile  # None: over budget at every side, not timed
    return timed_overhead(_CALIBRATION_OVERHEAD, overhead_key(model, settings), priced(side), 2 * side * side,
                          lambda: drive(iter_self_calibrate(model, timing_plane(side), max_pixels=2 * side * side,
                                                            **given), lambda _step: check_stop()))
