"""What adapting costs beyond its time budget, said before it runs (the Train widget's plan): before the steps, the
judge's targets on a series' held-out frames (each window registered against its block's other frames); after them, the
judge of the refined [mean] on those frames, then the recalibration of the intervals on the image.

The judge's targets are registered before the budget's clock starts (core.training.adapt), 41–62 s on the 30 whole
511² frames of the real 8-bit time-lapse beside a busy process, which the Train widget's time left out until it was
priced here (2026-12-07): one window registered against as many frames as a block holds, timed once per window size.

The judge (core.training.adapt_criteria.iter_refinement_judge) restores each held-out frame's centre window, the
[mean] alone, priced as core.run.run_cost prices a restoration, and spends besides (the camera fit, registering
the neighbouring frames onto the frame, the refinement) what is timed once per model on this machine. On a
30-frame series of 512² planes it took 16–17.5 s here (5 frames judged), which the Train widget's time left out
until it was priced (2026-12-05). The recalibration is core.calibration.recalibration_cost's."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..calibration.recalibration_cost import recalibration_cost
from ..imaging.axes import as_planes
from ..imaging.camera_noise import estimate_noise
from ..imaging.pilot_wiener import IF_BRIGHT
from ..model.model import DiffusionModel
from ..run.restore import make_settings
from ..run.run_cost import (
    RunCost,
    duration,
    overhead_key,
    register_timings,
    restoration_cost,
    timed_overhead,
    timed_seconds,
    timing_plane,
    timing_side,
)
from .adapt_criteria import (
    JUDGE_RUN,
    REGISTRATION_MARGIN,
    criterion_count,
    held_out_frames,
    judges_refinement,
    refinement_judge,
    refinement_window,
    registered_parts,
)
from .finetune import PATCH_SIZE

# run_cost.overhead_key of the judge's restoration → seconds per window pixel beyond its restoration
_JUDGE_OVERHEAD: dict = register_timings({})
# (window size, frames registered onto it) → seconds to register one of the judge's windows
_TARGET_SECONDS: dict = register_timings({})


@dataclasses.dataclass
class BeyondBudget:
    """What adapting spends outside its budget: before the steps, registering the judge's ``targets`` windows
    (``registering`` seconds; none for a single image or a series judged on strips); after them, judging the refined
    [mean] on ``frames`` held-out frames (none for a single image), then recalibrating."""

    targets: int
    registering: float
    frames: int
    judging: RunCost
    recalibrating: RunCost

    @property
    def seconds(self) -> float:
        return self.registering + self.judging.seconds + self.recalibrating.seconds

    def describe(self) -> str:
        before = (f"before the steps, the held-out frames' neighbours registered onto {self.targets} windows for the "
                  f"judge (about {duration(self.registering)}); after them, " if self.targets else "")
        judged = (f"the refined [mean] judged on {self.frames} held-out frame{'s' * (self.frames > 1)} "
                  f"(about {duration(self.judging.seconds)}), then " if self.frames else "")
        return f"{before}{judged}the intervals recalibrated on this image: {self.recalibrating.describe()}"


def beyond_budget_cost(model: DiffusionModel, noisy, axes: str | None = None, sample_plane=None,
                       time_series: bool | None = None, patch_size: int = PATCH_SIZE.default) -> BeyondBudget:
    """:class:`BeyondBudget` when ``model`` is adapted to ``noisy`` with ``time_series`` and ``patch_size`` as
    iter_adapt takes them, its recalibration taking ``axes`` (core.training.adapt.recalibration_axes) and pricing
    the bright pass on ``sample_plane``."""
    planes = as_planes(noisy, "noisy")
    # the frames adapt holds out, found once for both judges' prices (a series' planes are smoothed to tell it one)
    held, _, _, strips_only, _ = held_out_frames(noisy, planes, time_series, patch_size)
    targets, registering = judge_targets_cost(planes, held, strips_only, patch_size)
    frames, judging = refinement_judge_cost(model, planes, held, strips_only)
    return BeyondBudget(targets, registering, frames, judging,
                        recalibration_cost(model, np.shape(noisy), axes=axes, sample_plane=sample_plane))


def judge_targets_cost(planes, held, strips_only: bool, patch_size: int) -> tuple[int, float]:
    """(windows, seconds): the judge's windows on a series' held-out frames (``held``, ``strips_only``: as
    core.training.adapt_criteria.held_out_frames gives them), each registered against the rest of its block before the
    budget's clock starts (adapt_criteria.iter_criterion_patches); none where adapt holds no frame out whole."""
    if not held or strips_only:
        return 0, 0.0
    # the batch size counts only where frames are not held out whole
    windows = criterion_count(planes, held, strips_only, patch_size, batch_size=1)
    return windows, windows * _seconds_per_target(patch_size, max(len(others) for _, others in held))


def _seconds_per_target(size: int, frames: int) -> float:
    """Seconds to register ``frames`` frames onto one window of size², with the margin the judge registers on, timed
    once on moving copies of a timing plane."""
    if (size, frames) not in _TARGET_SECONDS:
        side = size + 2 * REGISTRATION_MARGIN
        plane = timing_plane(side + frames).astype(np.float64)
        rng = np.random.default_rng(0)
        # a drift of a pixel a frame, each frame with its own noise: registration has work to do
        views = [rng.poisson(plane[k:k + side, k:k + side]).astype(np.float64) for k in range(frames + 1)]
        noise = estimate_noise(views[:1])
        _TARGET_SECONDS[(size, frames)] = timed_seconds(lambda: registered_parts(views[0], views[1:], noise))
    return _TARGET_SECONDS[(size, frames)]


def refinement_judge_cost(model: DiffusionModel, planes, held, strips_only: bool) -> tuple[int, RunCost]:
    """(frames judged, the judge's cost) when ``model`` is adapted to ``planes`` holding out ``held``
    (core.training.adapt_criteria.held_out_frames): none where adapt judges nothing (single images, a series too
    short to hold frames out whole)."""
    if not judges_refinement(model, held, strips_only):
        return 0, RunCost(0, 0, 0, 0.0)
    first = planes[held[0][0]]
    window = first[refinement_window(first.shape)]
    unrefined = dataclasses.replace(model, mean_refinement="none")
    cost = restoration_cost(unrefined, (len(held), *window.shape), window, **JUDGE_RUN)
    cost = dataclasses.replace(cost, seconds=cost.seconds + cost.pixels * _per_pixel(unrefined))
    if model.mean_refinement == IF_BRIGHT:  # an adapted head is judged against the model as it runs, too
        cost = cost + restoration_cost(model, (len(held), *window.shape), window, **JUDGE_RUN)
    return len(held), cost


def _per_pixel(model: DiffusionModel) -> float:
    """Seconds per window pixel the judge spends beyond restoring it, timed once on three frames of a
    timing plane (the largest whose restoration fits the timing budget)."""
    settings = make_settings(model, **JUDGE_RUN)

    def priced(side: int) -> float:
        return restoration_cost(model, (side, side), **JUDGE_RUN).seconds

    side = timing_side(priced, settings.tile) or settings.tile
    plane = timing_plane(side).astype(np.float64)
    frames = [plane, plane, plane]
    return timed_overhead(_JUDGE_OVERHEAD, overhead_key(model, settings), priced(side), side * side,
                          lambda: refinement_judge(model, frames, [(1, (0, 2))], estimate_noise(frames)))
