"""The one loop over a run's planes: each (Y, X) plane is read, restored by the run (core.run.restore's
plane_run: a diffusion model or a method) and its maps handed to a sink. Memory (:class:`MemorySink`,
what denoise returns), TIFF files (core.io.tiff_maps.TiffSink), an OME-Zarr store that resumes
(core.io.map_store.ZarrSink) and a cluster worker's planes (core.io.map_store.StorePlanes) are sinks of
this loop, not loops of their own, so every output of a run holds the same maps.

A sink has four methods: ``open(names, shape, dtype)`` readies it for maps ``names`` of an image of
``shape`` (each map in ``MAPS[name].dtype_for(dtype)``) and returns the positions of planes it
already holds (a run to resume); ``write(number, position, plane)`` takes a :class:`PlaneResult`;
``done(metadata)`` completes the output and returns it; ``abort()`` undoes what a failed run left.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..imaging.axes import plane_positions
from ..io.maps import MAPS
from .cpu_share import free_threads, torch_threads
from .plane_input import output_dtype, read_plane


@dataclass
class PlaneResult:
    """One plane's maps, final (clamped, intervals applied), in the input's units."""

    position: tuple[int, ...]  # the plane's index over the image's leading axes
    maps: dict[str, np.ndarray]  # mean, std, entropy, lower, upper, interval_unit: those this run computes
    samples: np.ndarray | None  # (K, Y, X) with keep_samples
    evaluations: int
    bright: bool  # took the bright second pass
    clamped: int  # mean pixels raised to 0
    hot: int = 0  # hot pixels restored around (core.imaging.hot_pixels)
    refined: bool = False  # its [mean] refined (core.imaging.pilot_wiener.refines)


@dataclass
class PlaneRun:
    """What a run does to each plane, whatever restores it (a diffusion model, or a method of
    core.run.methods): the plane loop, its progress and cancel, and the sinks are one for both, so
    their outputs carry the same kind of record."""

    names: list[str]  # the maps it makes, in the order they are shown and written (core.io.maps)
    # (plane, number, position, dtype, on_tile) → a generator of (step, n_steps) returning a PlaneResult
    plane: Callable
    identity: dict  # what restores: {"model", "model_sha256"} or {"method"}
    fingerprint: dict  # what a zarr store resumes under only: the model's hash or the method, and the settings
    record: Callable[[int, float, dict], dict]  # (network evaluations, seconds, extra) → the run's metadata
    settings: Any  # restore.Settings or methods.MethodSettings


class Sink(Protocol):
    def open(self, names: list[str], shape: tuple[int, ...], dtype) -> set[tuple[int, ...]]: ...

    def write(self, number: int, position: tuple[int, ...], plane: PlaneResult) -> None: ...

    def done(self, metadata: dict) -> Any: ...

    def abort(self) -> None: ...


@dataclass
class PlaneStep:
    rank: int  # the plane's rank among those this loop restores
    number: int  # the plane's number in its image (which keys its noise)
    step: float  # network steps done in this plane, counted as on the whole plane (plane_sampling.restore_plane)
    n_steps: float


def steps_text(step: float, n_steps: float) -> str:
    """'step k/n' for a plane's progress: the step under way (the last one, once done) of the plane's
    steps, whole numbers (blocks and bright boxes make them fractions: plane_sampling.restore_plane)."""
    n = max(1, round(n_steps))
    return f"step {min(max(math.ceil(step - 1e-9), 1), n)}/{n}"


@dataclass
class PlaneTally:
    """What a run's metadata counts over the planes restored, here or by cluster workers."""

    n_planes: int  # in the image
    resumed: int  # that the sink already held
    pending: int  # that this loop restores
    evaluations: int = 0
    bright_planes: list[int] = field(default_factory=list)
    clamped: int = 0
    hot: int = 0
    refined_planes: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, outcome: dict) -> None:
        """``outcome``: :meth:`outcome`'s keys, of one plane or of another process's tally."""
        self.evaluations += outcome["evaluations"]
        self.bright_planes.extend(outcome["bright_planes"])
        self.clamped += outcome["clamped"]
        self.hot += outcome.get("hot", 0)
        self.refined_planes.extend(outcome.get("refined_planes", []))

    def outcome(self) -> dict:
        return {"evaluations": self.evaluations, "bright_planes": list(self.bright_planes), "clamped": self.clamped,
                "hot": self.hot, "refined_planes": list(self.refined_planes)}

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def extra(self) -> dict:
        """The counts a run's metadata records only when there are any."""
        return {**({"bright_pass_planes": sorted(self.bright_planes)} if self.bright_planes else {}),
                **({"clamped_to_zero_pixels": self.clamped} if self.clamped else {}),
                **({"hot_pixels_found": self.hot} if self.hot else {}),
                **({"mean_refined_planes": sorted(self.refined_planes)} if self.refined_planes else {})}

    def metadata(self) -> dict:
        return {"network_evaluations": self.evaluations, "seconds": round(self.seconds(), 3), **self.extra()}


class PlaneLoop:
    """``run`` over the planes of ``array`` (those numbered in ``planes``, default all) into ``sink``,
    skipping those the sink already holds. The sink is opened here, so a refusal (files that
    exist, a store of another run) comes before any plane is restored. On the CPU each plane runs on the torch
    threads other processes leave free (core.run.cpu_share)."""

    def __init__(self, run: PlaneRun, array, sink: Sink, planes=None):
        self.run, self.array, self.sink = run, array, sink
        positions = plane_positions(array.shape)
        self.dtype = output_dtype(array)
        finished = sink.open(list(run.names), tuple(array.shape), self.dtype)
        self.pending = [(number, position) for number, position in enumerate(positions)
                        if position not in finished and (planes is None or number in planes)]
        self.tally = PlaneTally(len(positions), len(finished), len(self.pending))

    def steps(self, on_tile: Callable[[int, int, int, int, int, int], None] | None = None
              ) -> Generator[PlaneStep, None, PlaneTally]:
        """Restores the pending planes: yields a :class:`PlaneStep` after every network step;
        ``on_tile(rank, number, step, n_steps, tiles_done, n_tiles)`` is called after every tile
        (raising there stops the run). The sink is aborted when the loop fails or is closed."""
        try:
            for rank, (number, position) in enumerate(self.pending):
                tiles = None if on_tile is None else (
                    lambda step, n_steps, done, total, rank=rank, number=number:
                    on_tile(rank, number, step, n_steps, done, total))
                steps = self.run.plane(read_plane(self.array, position), number, position, self.dtype, tiles)
                # set around each step alone: between them the caller's code runs, with its own count
                threads = free_threads(torch.get_num_threads()) if self._on_cpu() else None
                try:
                    while True:
                        with torch_threads(threads):
                            step, n_steps = next(steps)
                        yield PlaneStep(rank, number, step, n_steps)
                except StopIteration as stop:
                    plane = stop.value
                self.sink.write(number, position, plane)
                self.tally.add({"evaluations": plane.evaluations, "bright_planes": [number] if plane.bright else [],
                                "clamped": plane.clamped, "hot": plane.hot,
                                "refined_planes": [number] if plane.refined else []})
        except BaseException:
            self.sink.abort()
            raise
        return self.tally

    def _on_cpu(self) -> bool:
        """Whether the run's networks run on the CPU (a method's settings name no device: its threads are its own)."""
        device = getattr(self.run.settings, "device", None)
        return device is not None and torch.device(device).type == "cpu"

    def done(self, metadata: dict):
        return self.sink.done(metadata)


@dataclass
class Restoration:
    mean: np.ndarray  # the posterior-mean estimate (see MEAN_ESTIMATORS), in the input's units, float32
    std: np.ndarray  # pixel-wise std over the K samples, in the input's intensity units
    # the entropy map in bits (core.io.maps.ENTROPY_KINDS: how far the samples are from one bell curve)
    entropy: np.ndarray
    metadata: dict = field(default_factory=dict)
    samples: np.ndarray | None = None  # (K, *shape) in input units, only with keep_samples=True
    lower: np.ndarray | None = None  # the interval's bounds in input units, with coverage=…
    upper: np.ndarray | None = None
    interval_unit: np.ndarray | None = None  # the interval half-width per unit of λ (core.run.conformal)
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # every map this run made, by name (core.io.maps)


class MemorySink:
    """The maps in memory, as :class:`Restoration`; with ``kept_samples`` = K, the K samples too."""

    def __init__(self, kept_samples: int | None = None):
        self.kept_samples = kept_samples

    def open(self, names, shape, dtype) -> set:
        self.outputs = {name: np.empty(shape, MAPS[name].dtype_for(dtype)) for name in names}
        self.samples = np.empty((self.kept_samples,) + tuple(shape), dtype) if self.kept_samples is not None else None
        self.unit = np.empty(shape, dtype) if "std" in self.outputs else None
        return set()

    def write(self, number, position, plane: PlaneResult) -> None:
        for name, target in self.outputs.items():
            target[position] = plane.maps[name]
        if self.unit is not None:
            self.unit[position] = plane.maps["interval_unit"]
        if self.samples is not None:
            self.samples[(slice(None),) + position] = plane.samples

    def done(self, metadata: dict) -> Restoration:
        out = self.outputs
        return Restoration(out["mean"], out.get("std"), out.get("entropy"), metadata, self.samples,
                           out.get("lower"), out.get("upper"), self.unit, out)

    def abort(self) -> None:  # arrays in memory: nothing outlives the run
        pass
