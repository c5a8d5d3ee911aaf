"""Image file → OME-Zarr maps, plane by plane: in this process or on a dask.distributed cluster.

Each task is one plane: it reads that plane from the input file, restores it and writes its maps
into the shared output store (core.io.map_store); the coordinating process sets the plane's done flag
when the task has returned. A plane's noise is keyed on (seed, plane number, pixel position)
(core.sampling.noise) and its normalisation on the plane alone, so the result is bit-identical however the
planes are spread over processes and in whatever order they finish — for the same device and the
same number of torch threads per task (CPU convolutions sum in an order that depends on it), which
is why the coordinator sends its thread count to the workers, and why a plane here keeps that count
however busy the cores are (core.run.cpu_share.same_bits; an in-memory run takes the free ones).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..imaging.axes import plane_positions
from ..io.checkpoint import load_model
from ..io.image_io import is_zarr_path, open_image
from ..io.image_source import ImageSource
from ..io.map_store import MapStore, StorePlanes, ZarrSink, refuse_before_run
from ..io.maps import MAPS
from ..io.microscope_files import BIOIO_PLUGINS
from ..io.output_lock import one_run_into
from ..io.tiff_maps import TiffSink, check_pixel, check_stem, pixel_record, refuse_existing
from ..model.model import DiffusionModel
from .cpu_share import same_bits, usable_threads
from .driving import drive
from .methods import find_method
from .plane_input import check_image, check_memory
from .plane_loop import PlaneLoop, PlaneRun, PlaneTally, steps_text
from .restore import make_settings, plane_run, run_keywords_given
from .run_keywords import RunSpec, run_signature


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


def fingerprint_before_calibrating(source: ImageSource, model, settings_kwargs: dict) -> dict:
    """The fingerprint a store of the run of ``model`` with ``settings_kwargs`` on ``source`` holds, less the
    factors of the calibration its intervals will be scaled by (INTERVAL_FACTORS): what an existing store can be
    compared with before the image is calibrated."""
    from .run_spec import COVERAGE

    without_intervals = plane_run(model, **{**settings_kwargs, "coverage": None})
    coverage = settings_kwargs.get("coverage")  # as the run checks it (a float32 0.9 is written as a float)
    return {**_fingerprint(source, without_intervals),
            "coverage": None if coverage is None else COVERAGE.check(coverage, model.schedule)}


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


MOST_THREADS = 1024  # torch threads per plane a run takes: OpenMP ran out of memory at 100 000 (and crashed once)


def check_threads(threads) -> None:
    """Refuse, before any file is opened, a thread count torch would fail on half-way (a count of 0 or below)
    or OpenMP could not allocate."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MOST_THREADS):
        raise ValueError(f"threads (--threads) must be a whole number from 1 to {MOST_THREADS}; got {threads!r}")


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


def check_outputs_free(input_path, output, *, stem: str | None = None, overwrite: bool = False) -> None:
    """What a file run refuses of its output whatever its settings, asked before any work (a calibration on
    the image first takes tens of seconds): an OME-Zarr store at ``output`` (:func:`~.map_store.refuse_before_run`),
    or, given ``stem``, the TIFF maps ``output/<stem>_<map>.tif``: any map of that stem already there is an
    earlier run's, refused unless ``overwrite`` (and then the run replaces all of them: core.io.tiff_maps)."""
    if stem is None:
        check_output_apart(input_path, output)
        in_the_way = next((f for f in Path(output).parents if f.exists() and not f.is_dir()), None)
        if in_the_way is not None:  # it said "[Errno 20] Not a directory" once the model had loaded
            raise ValueError(f"--out {output}: {in_the_way} is a file, where a folder would be made; choose another "
                             "--out")
        refuse_before_run(output, input_path, overwrite)
        return
    check_stem(stem)
    paths = [Path(output) / f"{stem}_{name}.tif" for name in MAPS]
    check_output_apart(input_path, output, paths)
    refuse_existing(paths, overwrite)


def _load(model_ref):
    return model_ref if isinstance(model_ref, DiffusionModel) else load_model(model_ref)


# per worker process: the opened input and the run (its model moved to its device at the first plane), by run
_WORKER_STATE: dict[str, tuple] = {}


def _worker_state(input_path, axes, model_ref, settings_kwargs, token):
    if token not in _WORKER_STATE:
        _WORKER_STATE.clear()  # one run at a time per worker: free the previous model
        model = _load(model_ref)
        _WORKER_STATE[token] = (open_image(input_path, axes), plane_run(model, make_settings(model, **settings_kwargs)))
    return _WORKER_STATE[token]


def plane_task(input_path: str, axes: str, output_path: str, model_ref, settings_kwargs: dict, token: str,
               number: int, position: tuple, threads: int | None) -> dict:
    """One plane on a worker: the plane loop over that plane alone, into the shared store. Returns
    what the coordinator records (a :class:`~.plane_loop.PlaneTally`'s outcome)."""
    if threads:
        torch.set_num_threads(threads)
    source, run = _worker_state(input_path, axes, model_ref, settings_kwargs, token)
    loop = PlaneLoop(run, source.data, StorePlanes(output_path), planes={number})
    with same_bits(count_given=bool(threads)):  # the coordinator's count, on every worker alike
        tally, _ = drive(loop.steps())
    return {"position": list(position), **tally.outcome()}


class _Reporter:
    """Progress, with the time left, of a loop over ``tally.pending`` planes."""

    def __init__(self, tally: PlaneTally, progress):
        self.tally, self.progress = tally, progress

    def report(self, done_now: float, text: str) -> None:
        if self.progress is None:
            return
        t = self.tally
        done = t.resumed + done_now
        elapsed = t.seconds()
        left = elapsed * (t.pending - done_now) / done_now if done_now > 0 else None
        self.progress(BatchProgress(int(done), t.n_planes, t.resumed, done / max(t.n_planes, 1), elapsed, left, text))


def _axes_in_file(path) -> bool:
    """Whether the file itself names its axes: OME-Zarr, and the microscopes' files (core.io.image_io)."""
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


@run_signature(after=("progress",), rest="method_params")
def denoise_to_zarr(input_path, output_path, model, *, spec: RunSpec | None = None, axes: str | None = None,
                    overwrite: bool = False, workers: int | None = None, scheduler: str | None = None,
                    threads: int | None = None, progress: Callable[[BatchProgress], None] | None = None,
                    **given) -> dict:
    """Restore every plane of the image at ``input_path`` (TIFF or OME-Zarr) into an OME-Zarr store at
    ``output_path``, never holding more than a plane in memory. ``model``: a DiffusionModel, a bundled
    name or a checkpoint path, or a method's name (core.run.methods, e.g. "richardson-lucy", in this process).

    Planes an earlier run with the same settings has finished are skipped (a killed run resumes);
    other settings on an existing store are refused unless ``overwrite``. ``workers=N`` starts a local
    dask.distributed cluster of N processes, ``scheduler`` connects to a running one (every worker must
    see both paths, and ``model`` must then be a bundled name or a checkpoint path). ``threads``:
    torch threads per plane (default: this process's, no more than the CPUs it may use:
    core.run.cpu_share.usable_threads), which makes the result bit-identical to a run
    in one process with that many threads. The run's settings are the keywords of
    :func:`~.restore.denoise` (``spec`` too), checked as there. Returns the run's metadata."""
    settings_kwargs = run_keywords_given(denoise_to_zarr, model, spec, given)
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (a local cluster) or scheduler (a running one), not both")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a whole number of at least 1; got {workers!r}")
    check_threads(threads)
    check_outputs_free(input_path, output_path, overwrite=overwrite)
    distributed = workers is not None or scheduler is not None
    if distributed and find_method(model) is not None:
        raise ValueError(f"{find_method(model).name} runs in this process: leave out workers and scheduler")
    if distributed and not isinstance(model, str):
        raise TypeError("a cluster run needs the model as a bundled name or a checkpoint path, which every "
                        "worker loads itself")
    source, run = _prepare(input_path, model, axes, settings_kwargs)
    threads = int(threads or usable_threads(torch.get_num_threads()))
    with one_run_into(output_path):  # its store replaced or resumed under another run's feet mixed both runs' planes
        try:
            return _into_zarr(source, run, input_path, output_path, model, settings_kwargs, overwrite, threads,
                              workers, scheduler, distributed, progress)
        except OSError as err:  # a full disk said "[Errno 28] No space left on device", naming nothing
            raise OSError(f"writing {output_path} failed ({err}); the planes it finished are kept: the same command "
                          "again resumes from them") from err


def _into_zarr(source, run, input_path, output_path, model, settings_kwargs, overwrite, threads, workers, scheduler,
               distributed, progress) -> dict:
    fingerprint = _fingerprint(source, run)
    calibration = getattr(run.settings, "calibration", None)  # kept in the store: a resumed run takes it again
    sink = ZarrSink(output_path, source, fingerprint, overwrite, None if calibration is None else calibration.to_dict())
    loop = PlaneLoop(run, source.data, sink)
    tally = loop.tally
    reporter = _Reporter(tally, progress)
    reporter.report(0, f"{tally.resumed} of {tally.n_planes} planes already done" if tally.resumed else "starting")
    token = hashlib.sha256(json.dumps([str(input_path), str(output_path), fingerprint], sort_keys=True,
                                      default=str).encode()).hexdigest()
    if distributed:
        _run_on_cluster(loop.pending, str(input_path), source.axes, str(output_path), model, settings_kwargs, token,
                        threads, workers, scheduler, sink.store, reporter)
    else:
        _run_here(loop, reporter, threads)
    metadata = {**run.identity, **fingerprint, "n_planes": tally.n_planes,
                "planes_resumed": tally.resumed, **tally.metadata(), "threads": threads,
                "scale": source.scale_list(), "units": source.units}
    return loop.done(metadata)


@run_signature(after=("progress",), rest="method_params")
def denoise_to_tiff(input_path, folder, model, *, stem: str, spec: RunSpec | None = None, axes: str | None = None,
                    overwrite: bool = False, pixel: dict | None = None, threads: int | None = None,
                    progress: Callable[[BatchProgress], None] | None = None, **given) -> tuple[dict, list]:
    """The same as :func:`denoise_to_zarr` (any file :func:`~.image_io.open_image` reads) into
    ``folder/<stem>_<map>.tif`` files, one per map of the run (core.io.maps), streamed plane by plane in
    the input's axis order (core.io.tiff_maps). Existing maps of that stem are refused unless ``overwrite``,
    which replaces the whole set: a map of the stem this run does not make (an earlier run's intervals) is
    removed with the others replaced, and the metadata returned names it (``earlier_maps_removed``).
    ``pixel``: what the maps carry over from the input, as :func:`~.tiff_maps.pixel_record` gives it
    (pixel sizes, their units, channel names); by default the input's own, ``{}`` for none. In this
    process only, and not resumable. Returns (metadata, paths)."""
    settings_kwargs = run_keywords_given(denoise_to_tiff, model, spec, given)
    check_threads(threads)
    check_outputs_free(input_path, folder, stem=stem, overwrite=overwrite)
    check_pixel(pixel)
    source, run = _prepare(input_path, model, axes, settings_kwargs)
    if pixel is None:
        pixel = pixel_record(source)
    threads = int(threads or usable_threads(torch.get_num_threads()))
    with one_run_into(folder, stem):  # two runs shared its temporary files: both "wrote" maps no reader opens
        sink = TiffSink(folder, stem, source.axes, pixel, overwrite)
        loop = PlaneLoop(run, source.data, sink)
        try:
            _run_here(loop, _Reporter(loop.tally, progress), threads)
            metadata = {**run.record(loop.tally.evaluations, 0.0, {"axes": source.axes}), **loop.tally.metadata(),
                        "n_planes": loop.tally.n_planes, "threads": threads}
            paths = loop.done(metadata)
        except OSError as err:  # a full disk said "16384 requested and 7096 written", naming nothing
            raise OSError(f"writing the maps of {stem} in {folder} failed ({err}); none of them was put in place, and "
                          "any earlier maps of it there are as they were") from err
    removed = [str(p) for p in sink.maps.removed]  # not in the files' record: known once they are in place
    return ({**metadata, "earlier_maps_removed": removed} if removed else metadata), paths


def _run_here(loop: PlaneLoop, reporter: _Reporter, threads: int) -> None:
    """The loop in this process, with ``threads`` torch threads."""
    def on_tile(rank, number, step, n_steps, tiles, n_tiles):
        reporter.report(rank + min(step, n_steps) / n_steps,
                        f"plane {number + 1}: {steps_text(step, n_steps)}, tile {tiles}/{n_tiles}")

    def on_step(at):
        reporter.report(at.rank + min(at.step, at.n_steps) / at.n_steps,
                        f"plane {at.number + 1}: {steps_text(at.step, at.n_steps)}")

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    steps = loop.steps(on_tile)
    try:
        with same_bits():
            drive(steps, on_step)
    except BaseException:  # raised in a progress callback, outside the loop: closing it aborts the sink now
        steps.close()
        raise
    finally:
        torch.set_num_threads(previous)


def _run_on_cluster(pending, input_path, axes, output_path, model, settings_kwargs, token, threads, workers,
                    scheduler, store: MapStore, reporter: _Reporter):
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
                reporter.tally.add(outcome)
                reporter.report(done, f"plane {number + 1} done")
    finally:
        if cluster is not None:
            cluster.close()
