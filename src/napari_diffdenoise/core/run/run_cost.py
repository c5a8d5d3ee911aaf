"""What a restoration will cost on this machine, said before it runs (issue #21: times measured on
the user's machine, not constants written for another one).

The work is derived from the code that does it (the blocks and tiles a plane is cut into, the
sampler's network evaluations, the one-pass mean; core.calibration.recalibration_cost adds the crops a
self-calibration restores); the cost of a network call per pixel is measured, once per model,
device and tile, and so is what the run spends outside the network calls (the samples' statistics,
the mean's smooth part, the blending: a third to a half of a one-step run's time, which a network-only
estimate left out, docs/benchmarks/speed.md), per pixel and per run (:func:`outside_network`). A plane
whose bright structure needs the second pass (docs/method.md, "The whole dynamic range") costs a run
over each of its boxes more, counted when a plane of the image is given (:func:`bright_shapes`): a box
is a small run, which costs more than its share of the plane's pixels.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..imaging.normalization import IntensityMap
from ..imaging.pilot_wiener import ALWAYS, IF_BRIGHT, decided
from ..imaging.tiling import TILE_STRETCH, tile_grid
from ..model.devices import bfloat16_autocast
from ..model.model import DiffusionModel
from .bright_pass import expected_boxes
from .cpu_share import free_threads, torch_threads
from .plane_runs import network_passes
from .plane_sampling import device_model
from .restore import Cancelled, Settings, denoise, make_settings

_SECONDS_PER_PIXEL: dict = {}  # (model, device, tile side) → measured seconds per pixel and network call
# (model, device, tile, what the run computes) → (seconds per pixel, seconds per run) spent outside the network calls
_OUTSIDE_NETWORK: dict = {}
_OTHER_TIMINGS: list[dict] = []  # the caches of timings kept elsewhere (register_timings), which forget_timings empties too
# what a run spends outside its network calls is timed on planes whose network calls take at most this long
# (the tile's side halved until they do, down to MIN_TIMING_SIDE): where even that takes longer (many steps),
# what is spent outside them is a small share of the run, and is left out
OVERHEAD_TIMING_BUDGET = 1.0  # seconds
MIN_TIMING_SIDE = 128
# px: the side of the small plane a run's fixed cost is read from. The bright pass's boxes on the real 512² plane of
# docs/benchmarks/speed.md are 65–132 px a side; a run over one took 0.08–0.19 s where their pixels' share of
# the plane's run was priced at 0.03–0.08 s (a network call on a 64² tile takes 2–4× its pixels' share of a 512²
# one, and a run sets up its maps and statistics whatever its size; a scratch measurement of 2026-12-04)
FIXED_TIMING_SIDE = 64
_stopping = threading.local()  # .ask: what a timing in this thread polls between its pieces (stoppable)


@dataclass(frozen=True)
class RunCost:
    """One restoration's work and its time here."""

    pixels: int  # pixels restored (the tiles' overlaps not counted)
    n_samples: int
    evaluations: int  # network evaluations per sample (the sampler's steps)
    seconds: float  # the estimate on this machine

    def describe(self) -> str:
        work = f"{self.pixels:,} px × {self.n_samples} samples × {self.evaluations} steps" if self.n_samples \
            else f"{self.pixels:,} px, one pass"
        return f"{work}, about {duration(self.seconds)} here"

    def __add__(self, other: RunCost) -> RunCost:
        return RunCost(self.pixels + other.pixels, self.n_samples, self.evaluations, self.seconds + other.seconds)


@contextlib.contextmanager
def stoppable(ask: Callable[[], bool]):
    """Inside, in this thread, a timing polls ``ask`` before each network call and restoration it times (and
    each tile of those) and raises :class:`~.restore.Cancelled` when it answers True. A widget's timing runs
    in a worker thread that napari waits for when it quits (superqt's await_workers asks the worker to quit):
    without this, quitting waited up to several seconds for a timing nobody would read."""
    previous = getattr(_stopping, "ask", None)
    _stopping.ask = ask
    try:
        yield
    finally:
        _stopping.ask = previous


def stop_asked() -> bool:
    ask = getattr(_stopping, "ask", None)
    return ask is not None and bool(ask())


def check_stop() -> None:
    """Raises :class:`~.restore.Cancelled` where the timing's caller asked it to stop (:func:`stoppable`)."""
    if stop_asked():
        raise Cancelled("the timing was stopped")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _rate_key(model: DiffusionModel, settings: Settings, network: str) -> tuple:
    # last, the torch threads a run would take now (core.run.cpu_share; None off the CPU): a rate timed beside a
    # busy process is not one for an idle machine
    threads = free_threads(torch.get_num_threads()) if settings.device.type == "cpu" else None
    return model.sha256 or model.name, network, str(settings.device), settings.tile, settings.precision, threads


def overhead_key(model: DiffusionModel, settings: Settings) -> tuple:
    # not the sampler nor its steps: what is spent outside the network calls follows the samples, not the steps
    # the symmetries too: each turns and copies the heads' inputs and outputs outside the network calls; and the
    # mean's refinement (a Wiener filter over the plane's windows: 7 s for a 2048² plane here)
    return (*_rate_key(model, settings, ""), settings.n_samples, settings.mean_estimator, settings.std_estimator,
            settings.entropy, settings.low_frequencies, settings.keep_samples, settings.psf is not None,
            settings.symmetries, settings.mean_refinement)


def is_timed(model: DiffusionModel, **settings) -> bool:
    """Whether this model's calls and the run's overhead are already timed for these settings: an
    estimate then costs nothing."""
    s = make_settings(model, **settings)
    return (all(_rate_key(model, s, network) in _SECONDS_PER_PIXEL for network, _ in _calls(model, s)[1])
            and outside_network_timed(model, s))


def outside_network_timed(model: DiffusionModel, settings: Settings) -> bool:
    """Whether :func:`outside_network` is timed for these made settings."""
    return overhead_key(model, settings) in _OUTSIDE_NETWORK


def seconds_per_pixel(model: DiffusionModel, settings: Settings, network: str = "network", calls: int = 3,
                      warm_up: int = 2) -> float:
    """Timed once per model, network (the diffusion network or one of its heads, a DiffusionModel
    attribute), device, tile and the threads a run would take (:func:`_rate_key`): calls on a tile of the
    size the restoration uses, batched as it batches them, after ``warm_up`` calls that pay for allocations and kernel choice (with one, the
    estimate came out 2–3.5× above the measured run in bench speed); the median of ``calls``, as one
    alone swings with whatever else the machine runs."""
    side = settings.tile
    key = _rate_key(model, settings, network)
    if key not in _SECONDS_PER_PIXEL:
        net = getattr(device_model(model, settings.device, (network,)), network)
        batch = max(1, min(max(settings.n_samples, 1), settings.batch_pixels // (side * side)))

        def plane(channels):
            return torch.zeros(batch, channels, side, side, device=settings.device).contiguous(
                memory_format=torch.channels_last)

        y, cond = plane(1), plane(net.config.cond_channels) if net.config.cond_channels else None
        gamma = torch.full((batch,), 0.5, device=settings.device)
        seconds = []
        bfloat16 = bfloat16_autocast(settings.device, settings.precision == "bfloat16")
        with torch.inference_mode(), bfloat16, torch_threads(key[-1]):  # the threads a run would take now
            for _ in range(warm_up):
                check_stop()
                net(y, gamma, cond)
            for _ in range(calls):
                check_stop()
                _synchronize(settings.device)
                start = time.perf_counter()
                net(y, gamma, cond)
                _synchronize(settings.device)
                seconds.append(time.perf_counter() - start)
        _SECONDS_PER_PIXEL[key] = float(np.median(seconds)) / (batch * side * side)
    return _SECONDS_PER_PIXEL[key]


def outside_network(model: DiffusionModel, settings: Settings, given: dict) -> tuple[float, float]:
    """(seconds per pixel, seconds per run) a run with these settings (``given``: as the caller gave them)
    spends outside its network calls — the samples' statistics, the mean's smooth part, the blending,
    and the network calls' own fixed cost, which a small run pays as a large one does: a line through
    two planes' runs (the faster of two each), less what their network calls take at the measured
    rates — the largest plane up to the tile whose calls fit OVERHEAD_TIMING_BUDGET
    (:func:`timing_side`), and one of FIXED_TIMING_SIDE² (at most half that side). Timed once per
    :func:`overhead_key`; (0, 0) where no plane fits the budget."""
    key = overhead_key(model, settings)
    if key not in _OUTSIDE_NETWORK:
        def priced(side: int) -> float:
            return planes_cost(model, settings, (side, side), 1).seconds

        def outside(side: int) -> float:
            return seconds_beyond(lambda: denoise(timing_plane(side), model, cancel=stop_asked,
                                                  **{**given, "coverage": None}), priced(side), repeats=2)

        large = timing_side(priced, settings.tile)
        if large is None:
            _OUTSIDE_NETWORK[key] = (0.0, 0.0)
        else:
            small = min(FIXED_TIMING_SIDE, large // 2)
            at_large, at_small = outside(large), outside(small)
            per_pixel = max((at_large - at_small) / (large * large - small * small), 0.0)
            _OUTSIDE_NETWORK[key] = (per_pixel, max(at_small - per_pixel * small * small, 0.0))
    return _OUTSIDE_NETWORK[key]


def timing_side(priced, tile: int) -> int | None:
    """The side of the plane an overhead is timed on: ``tile``, halved until ``priced(side)`` (the
    network calls' seconds on a plane of that side) is within OVERHEAD_TIMING_BUDGET, not below
    MIN_TIMING_SIDE (nor the tile); None where none is."""
    side = tile
    while priced(side) > OVERHEAD_TIMING_BUDGET:
        if side // 2 < min(MIN_TIMING_SIDE, tile):
            return None
        side //= 2
    return side


def register_timings(cache: dict) -> dict:
    """``cache``, a module's store of timings taken on this machine, emptied by :func:`forget_timings` with these."""
    _OTHER_TIMINGS.append(cache)
    return cache


def forget_timings() -> None:
    """Drop every timing taken so far, to be taken again when next asked for: each is kept for the session,
    and one taken while a run shared the CPU reads long (on the bundled sample a 'Time here' timed beside
    the run said 8 s for a run of 4.6 s, and went on saying so: 2 cores, 2026-12-05)."""
    for cache in (_SECONDS_PER_PIXEL, _OUTSIDE_NETWORK, *_OTHER_TIMINGS):
        cache.clear()


def timed_overhead(cache: dict, key, network: float, pixels: int, work, repeats: int = 1) -> float:
    """Seconds per pixel that ``work`` (over ``pixels``) spends beyond its ``network`` seconds of
    network calls, timed once per ``key`` into ``cache`` (the fastest of ``repeats``); 0 where the
    network calls alone would take over OVERHEAD_TIMING_BUDGET."""
    if key not in cache:
        overhead = 0.0
        if network <= OVERHEAD_TIMING_BUDGET:
            overhead = max(seconds_beyond(work, network, repeats), 0.0) / pixels
        cache[key] = overhead
    return cache[key]


def seconds_beyond(work, network: float, repeats: int = 1) -> float:
    """Seconds ``work`` takes (the fastest of ``repeats``) beyond its ``network`` seconds of network calls."""
    return min(timed_seconds(work) for _ in range(repeats)) - network


def timing_plane(side: int) -> np.ndarray:
    """What the overheads are timed on: a plane like a dim cell, smooth structure over a background,
    with its photon noise."""
    yy, xx = np.mgrid[:side, :side] / side
    return np.random.default_rng(0).poisson(5 + 40 * np.sin(7 * yy) ** 2 * np.cos(5 * xx) ** 2).astype(np.float32)


def timed_seconds(work) -> float:
    check_stop()
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _tiled_pixels(model: DiffusionModel, shape: tuple[int, int], settings: Settings) -> int:
    """Pixels one network step runs over for a plane of ``shape``: its blocks, cut into tiles padded
    to the network's size multiple (overlaps are paid for twice). Counted from the tiling's layout
    (tiling.tile_grid), not from the tiles themselves: building their blend weights would cost the
    GUI thread, which asks for this on every change of the form, a plane-sized array per block."""
    multiple = model.network.config.size_multiple
    block_ys, block_xs, block_height, block_width = tile_grid(shape, settings.block, settings.block_overlap)
    # all blocks have one size, and so all their tiles
    ys, xs, height, width = tile_grid((block_height, block_width), settings.tile, settings.overlap, TILE_STRETCH,
                                      multiple)
    padded = -(-height // multiple) * multiple * -(-width // multiple) * multiple
    return len(block_ys) * len(block_xs) * len(ys) * len(xs) * padded


def restoration_cost(model: DiffusionModel, shape: tuple[int, ...], sample_plane: np.ndarray | None = None,
                     **settings) -> RunCost:
    """The cost of ``denoise(image of shape, model, **settings)``: every (Y, X) plane through the
    sampler (K samples × its evaluations per tiled pixel) plus the one-pass mean when the run makes
    one, and what the run spends outside the network calls, per pixel and per run (:func:`outside_network`);
    with ``sample_plane`` (a plane of the image), a run over each of the bright pass's boxes on it counted for every
    plane. A model that refines bright planes (core.imaging.pilot_wiener.IF_BRIGHT) is priced as ``sample_plane``
    says, refined where it is bright, and refined where no plane is given (the filter costs 7 s on a 2048² plane
    here: an estimate that left it out would be the wrong side of the time). Raises what
    :func:`restore.make_settings` raises for settings it refuses."""
    # the settings made as the run makes them, its stored calibration found under the model's rule: made under the
    # rule's outcome instead, a run with the bundled demo's calibration was refused ("no calibration for the std
    # head", naming the one it holds) and 'Time here' left blank for it
    s = make_settings(model, **settings)
    if s.mean_refinement == IF_BRIGHT:
        rule = ALWAYS if sample_plane is None else decided(IF_BRIGHT, [sample_plane])[0]
        model, s = dataclasses.replace(model, mean_refinement=rule), dataclasses.replace(s, mean_refinement=rule)
    boxes = [] if sample_plane is None else bright_shapes(model, np.asarray(sample_plane), s)
    n_planes = int(np.prod(shape[:-2], dtype=np.int64))
    cost = planes_cost(model, s, tuple(shape[-2:]), n_planes)
    # each box of the bright pass is a run of its own over a small plane, on every plane
    again = sum(planes_cost(model, s, box, n_planes).seconds for box in boxes)
    pixels = int(np.prod(shape[-2:])) + sum(h * w for h, w in boxes)
    block_ys, block_xs = tile_grid(tuple(shape[-2:]), s.block, s.block_overlap)[:2]
    per_pixel, per_run = outside_network(model, s, settings)
    outside = n_planes * (pixels * per_pixel + (len(block_ys) * len(block_xs) + len(boxes)) * per_run)
    return RunCost(cost.pixels, cost.n_samples, cost.evaluations, cost.seconds + again + outside)


def planes_cost(model: DiffusionModel, s: Settings, plane_shape: tuple[int, int], n_planes: int) -> RunCost:
    """The network calls' cost of restoring ``n_planes`` planes of ``plane_shape`` with the made settings ``s``."""
    tiled = _tiled_pixels(model, plane_shape, s)
    evaluations, calls = _calls(model, s)
    seconds = n_planes * tiled * _seconds_per_tiled_pixel(model, s, calls)
    return RunCost(n_planes * int(np.prod(plane_shape)), s.n_samples, evaluations, seconds)


def bright_shapes(model: DiffusionModel, plane: np.ndarray, settings: Settings) -> list[tuple[int, int]]:
    """The (height, width) of each box the bright pass is expected to restore a second time on
    ``plane`` (core.run.bright_pass.expected_boxes)."""
    imap = IntensityMap.from_percentiles(np.asarray(plane, dtype=np.float32), settings.percentiles)
    return [(box[0].stop - box[0].start, box[1].stop - box[1].start) for box in expected_boxes(plane, imap, model)]


def _calls(model: DiffusionModel, s: Settings) -> tuple[int, list[tuple[str, int]]]:
    """(the sampler's evaluations per sample, [(network, its calls per tiled pixel)]): each network's
    passes (plane_runs.network_passes), K of them per pass of the one the sampler steps; each network
    is timed on its own, as the heads are smaller."""
    evaluations = s.sampler.n_evaluations(model.schedule, s.params) if s.n_samples else 0
    calls = network_passes(model, s)
    if evaluations:  # each of the sampler's passes runs K samples
        calls[s.sampler.head or "network"] += evaluations * (s.n_samples - 1)
    return evaluations, list(calls.items())


def _seconds_per_tiled_pixel(model: DiffusionModel, s: Settings, calls: list[tuple[str, int]]) -> float:
    return sum(n * seconds_per_pixel(model, s, network) for network, n in calls)
