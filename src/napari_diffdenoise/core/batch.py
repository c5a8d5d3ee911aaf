"""Image file → OME-Zarr maps, plane by plane: in this process or on a dask.distributed cluster.

Each task is one plane: it reads that plane from the input file, restores it and writes its maps
into the shared output store (core.map_store); the coordinating process sets the plane's done flag
when the task has returned. A plane's noise is keyed on (seed, plane number, pixel position)
(core.noise) and its normalisation on the plane alone, so the result is bit-identical however the
planes are spread over processes and in whatever order they finish — for the same device and the
same number of torch threads per task (CPU convolutions sum in an order that depends on it), which
is why the coordinator sends its thread count to the workers.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .axes import plane_positions
from .checkpoint import load_model
from .driving import drive
from .image_io import BIOIO_PLUGINS, ImageSource, is_zarr_path, open_image
from .map_store import MapStore
from .maps import MAPS
from .methods import find_method
from .model import DiffusionModel
from .plane_input import check_image, check_memory, output_dtype, read_plane
from .restore import PlaneRun, device_model, make_settings, plane_run, restore_plane
from .tiff_maps import TiffMaps, pixel_record


@dataclass
class BatchProgress:
    planes_done: int  # planes finished, in this run and earlier ones
    n_planes: int
    skipped: int  # planes an earlier run had finished
    fraction: float
    seconds: float  # since this run started
    seconds_left: float | None
    text: str


SAMPLED_BLOCK = 256  # pixels a side of each block the input's content hash reads


def input_content_hash(source: ImageSource) -> str:
    """A cheap hash of the input's content: the shape, the dtype and three blocks (two corners and
    the centre) of the first, middle and last planes, so that a resume into a store written from
    another image (or from this one edited in those places) is caught without reading it all."""
    digest = hashlib.sha256(json.dumps([list(source.shape), str(np.dtype(source.data.dtype))]).encode())
    positions = plane_positions(source.shape)
    height, width = source.shape[-2:]
    b = SAMPLED_BLOCK
    cy, cx = max(0, height // 2 - b // 2), max(0, width // 2 - b // 2)
    corners = [(slice(0, b), slice(0, b)), (slice(cy, cy + b), slice(cx, cx + b)),
               (slice(max(0, height - b), height), slice(max(0, width - b), width))]
    for i in sorted({0, len(positions) // 2, len(positions) - 1}):
        for rows, cols in corners:
            digest.update(np.ascontiguousarray(source.data[tuple(positions[i]) + (rows, cols)]).tobytes())
    return digest.hexdigest()


def _fingerprint(source: ImageSource, run: PlaneRun) -> dict:
    path = None if source.path is None else str(Path(source.path).resolve())
    return {"input_path": path, "input_content_sha256": input_content_hash(source),
            "input_shape": list(source.shape), "input_dtype": str(np.dtype(source.data.dtype)), "axes": source.axes,
            **run.fingerprint}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_apart(input_path, output_path, written=()) -> None:
    """Refuse an output that is the input, lies inside it or holds it: replacing the output (an
    overwrite, or the store being created) would delete or rewrite the image still being read.
    ``written``: the files a folder output will hold (the TIFF maps), which must not be the input
    either; a folder that merely holds the input is fine there, since only those names are written."""
    source, target = Path(input_path).resolve(), Path(output_path).resolve()
    for f in written:
        if Path(f).resolve() == source:
            raise ValueError(f"the map {f} would be written over the input {input_path}; choose another output "
                             "folder (or another stem)")
    clash = _inside(target, source)
    if not written:  # a store replaced whole: it must not hold the input either
        clash = clash or _inside(source, target)
    if clash:
        raise ValueError(f"the output {output_path} is the input {input_path}, or lies inside it or holds it: "
                         "writing there would destroy the image being read; choose another output")


def _load(model_ref):
    return model_ref if isinstance(model_ref, DiffusionModel) else load_model(model_ref)


# per worker process: the opened input, the model on its device and the settings, by run
_WORKER_STATE: dict[str, tuple] = {}


def _worker_state(input_path, axes, model_ref, settings_kwargs, token):
    if token not in _WORKER_STATE:
        _WORKER_STATE.clear()  # one run at a time per worker: free the previous model
        model = _load(model_ref)
        settings = make_settings(model, **settings_kwargs)
        _WORKER_STATE[token] = (open_image(input_path, axes), device_model(model, settings.device), settings)
    return _WORKER_STATE[token]


def plane_task(input_path: str, axes: str, output_path: str, model_ref, settings_kwargs: dict, token: str,
               number: int, position: tuple, threads: int | None) -> dict:
    """One plane on a worker: read, restore, write its maps. Returns what the coordinator records."""
    if threads:
        torch.set_num_threads(threads)
    source, model, s = _worker_state(input_path, axes, model_ref, settings_kwargs, token)
    plane = read_plane(source.data, tuple(position))
    result, _ = drive(restore_plane(plane, model, s, number, tuple(position), output_dtype(source.data)))
    store = MapStore.open_existing(output_path)
    store.write_plane(tuple(position), result.maps)
    return {"position": list(position), "evaluations": result.evaluations, "bright": result.bright,
            "clamped": result.clamped}


class _Tally:
    """Progress (with the time left) and the totals of a run over ``pending`` planes."""

    def __init__(self, n_planes: int, finished: int, pending: int, progress):
        self.n_planes, self.finished, self.pending, self.progress = n_planes, finished, pending, progress
        self.evaluations, self.clamped, self.bright_planes = 0, 0, []
        self.t0 = time.perf_counter()

    def report(self, done_now: float, text: str) -> None:
        if self.progress is None:
            return
        done = self.finished + done_now
        elapsed = time.perf_counter() - self.t0
        left = elapsed * (self.pending - done_now) / done_now if done_now > 0 else None
        self.progress(BatchProgress(int(done), self.n_planes, self.finished, done / max(self.n_planes, 1), elapsed,
                                    left, text))

    def record(self, number: int, outcome: dict) -> None:
        self.evaluations += outcome["evaluations"]
        self.clamped += outcome["clamped"]
        if outcome["bright"]:
            self.bright_planes.append(number)

    def metadata(self) -> dict:
        return {"network_evaluations": self.evaluations, "seconds": round(time.perf_counter() - self.t0, 3),
                **({"bright_pass_planes": sorted(self.bright_planes)} if self.bright_planes else {}),
                **({"clamped_to_zero_pixels": self.clamped} if self.clamped else {})}


def _axes_in_file(path) -> bool:
    """Whether the file itself names its axes: OME-Zarr, and the microscopes' files (core.image_io)."""
    return is_zarr_path(path) or Path(path).suffix.lower() in (*BIOIO_PLUGINS, ".ims")


def _prepare(input_path, model, axes, settings_kwargs):
    source = open_image(input_path, axes)
    # the library's own image checks: a TIFF's axes guessed from its shape (no --axes given) get the
    # same RGB and (Y, X, C) refusals as an array passed to denoise() without axes; OME-Zarr and the
    # microscopes' files name their axes, so a narrow (Z, Y, X) stack there is not taken for (Y, X, C)
    guessed = axes is None and not _axes_in_file(input_path)
    check_image(source.data, None if guessed else source.axes)
    run = plane_run(model if find_method(model) is not None else _load(model), **settings_kwargs)
    check_memory(source.data, run.settings.n_samples, run.settings.block)
    return source, run


def denoise_to_zarr(input_path, output_path, model, *, axes: str | None = None, overwrite: bool = False,
                    workers: int | None = None, scheduler: str | None = None, threads: int | None = None,
                    progress: Callable[[BatchProgress], None] | None = None, **settings_kwargs) -> dict:
    """Restore every plane of the image at ``input_path`` (TIFF or OME-Zarr) into an OME-Zarr store at
    ``output_path``, never holding more than a plane in memory. ``model``: a DiffusionModel, a bundled
    name or a checkpoint path, or a method's name (core.methods, e.g. "richardson-lucy", in this process).

    Planes an earlier run with the same settings has finished are skipped (a killed run resumes);
    other settings on an existing store are refused unless ``overwrite``. ``workers=N`` starts a local
    dask.distributed cluster of N processes, ``scheduler`` connects to a running one (every worker must
    see both paths, and ``model`` must then be a bundled name or a checkpoint path). ``threads``:
    torch threads per plane (default: this process's), which makes the result bit-identical to a run
    in one process with that many threads. Other keywords go to :func:`~.restore.make_settings`.
    Returns the run's metadata."""
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (a local cluster) or scheduler (a running one), not both")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a whole number of at least 1; got {workers!r}")
    check_output_apart(input_path, output_path)
    distributed = workers is not None or scheduler is not None
    if distributed and find_method(model) is not None:
        raise ValueError(f"{find_method(model).name} runs in this process: leave out workers and scheduler")
    if distributed and not isinstance(model, str):
        raise TypeError("a cluster run needs the model as a bundled name or a checkpoint path, which every "
                        "worker loads itself")
    source, run = _prepare(input_path, model, axes, settings_kwargs)
    threads = int(threads or torch.get_num_threads())
    fingerprint = _fingerprint(source, run)
    store = MapStore.open(output_path, source, run.names, output_dtype(source.data), fingerprint, overwrite)
    positions = plane_positions(source.shape)
    finished = store.done_positions()
    pending = [(number, p) for number, p in enumerate(positions) if p not in finished]
    tally = _Tally(len(positions), len(finished), len(pending), progress)
    tally.report(0, f"{len(finished)} of {len(positions)} planes already done" if finished else "starting")
    token = hashlib.sha256(json.dumps([str(input_path), str(output_path), fingerprint], sort_keys=True,
                                      default=str).encode()).hexdigest()
    if distributed:
        _run_on_cluster(pending, str(input_path), source.axes, str(output_path), model, settings_kwargs, token,
                        threads, workers, scheduler, store, tally)
    else:
        _run_here(pending, source, run.plane, store, tally, threads)
    metadata = {**run.identity, **fingerprint, "n_planes": len(positions),
                "planes_resumed": len(finished), **tally.metadata(), "threads": threads,
                "scale": source.scale_list(), "units": source.units}
    store.finish(metadata)
    return metadata


def denoise_to_tiff(input_path, folder, model, *, stem: str, axes: str | None = None, overwrite: bool = False,
                    pixel: dict | None = None, threads: int | None = None,
                    progress: Callable[[BatchProgress], None] | None = None, **settings_kwargs) -> tuple[dict, list]:
    """The same as :func:`denoise_to_zarr` (any file :func:`~.image_io.open_image` reads) into
    ``folder/<stem>_<map>.tif`` files, one per map of the run (core.maps), streamed plane by plane in
    the input's axis order (core.tiff_maps). Existing files are refused unless ``overwrite``.
    ``pixel``: what the maps carry over from the input, as :func:`~.tiff_maps.pixel_record` gives it
    (pixel sizes, their units, channel names); by default the input's own, ``{}`` for none. In this
    process only, and not resumable. Returns (metadata, paths)."""
    check_output_apart(input_path, folder, [Path(folder) / f"{stem}_{name}.tif" for name in MAPS])
    source, run = _prepare(input_path, model, axes, settings_kwargs)
    if pixel is None:
        pixel = pixel_record(source)
    threads = int(threads or torch.get_num_threads())
    names = run.names
    dtype = output_dtype(source.data)
    sink = TiffMaps(folder, stem, names, source.shape, source.axes,
                    {n: MAPS[n].dtype_for(dtype) for n in names}, pixel, overwrite)
    positions = plane_positions(source.shape)
    tally = _Tally(len(positions), 0, len(positions), progress)
    try:
        _run_here(list(enumerate(positions)), source, run.plane, sink, tally, threads)
    except BaseException:
        sink.abort()
        raise
    metadata = {**run.record(tally.evaluations, 0.0, {"axes": source.axes}), **tally.metadata(),
                "n_planes": len(positions), "threads": threads}
    return metadata, sink.finish(metadata)


def _run_here(pending, source, restore_one, store, tally: _Tally, threads):
    """``restore_one``: a PlaneRun's plane generator (core.restore.plane_run)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i, (number, position) in enumerate(pending):
            def on_tile(step, n_steps, tiles, n_tiles, i=i, number=number):
                tally.report(i + (step + tiles / n_tiles) / n_steps,
                             f"plane {number + 1}: step {step + 1}/{n_steps}, tile {tiles}/{n_tiles}")

            run = restore_one(read_plane(source.data, position), number, position, output_dtype(source.data), on_tile)
            try:
                while True:
                    step, n_steps = next(run)
                    tally.report(i + step / n_steps, f"plane {number + 1}: step {step}/{n_steps}")
            except StopIteration as stop:
                result = stop.value
            store.write_plane(position, result.maps)
            store.mark_done(position)
            tally.record(number, {"evaluations": result.evaluations, "bright": result.bright,
                                  "clamped": result.clamped})
    finally:
        torch.set_num_threads(previous)


def _run_on_cluster(pending, input_path, axes, output_path, model, settings_kwargs, token, threads, workers,
                    scheduler, store, tally: _Tally):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise RuntimeError("a cluster run needs dask.distributed: pip install 'dask[distributed]'") from err
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) \
        if workers is not None else None
    try:
        with Client(cluster if cluster is not None else scheduler) as client:
            futures = {client.submit(plane_task, input_path, axes, output_path, model, settings_kwargs, token,
                                     number, list(position), threads, key=f"plane-{token[:12]}-{number}",
                                     pure=False): (number, position)
                       for number, position in pending}
            for done, future in enumerate(as_completed(futures), 1):
                number, position = futures[future]
                outcome = future.result()  # a worker's error is raised here, with its message
                store.mark_done(position)
                tally.record(number, outcome)
                tally.report(done, f"plane {number + 1} done")
    finally:
        if cluster is not None:
            cluster.close()
