"""Where a run's intervals are calibrated: on the image it restores, or by a calibration the model holds.

The calibrations inside a bundled model were made on this project's own pairs (simulated structures and
real images with simulated noise). On real camera noise they do not hold: against the real images of
docs/benchmarks/real_calibration.md they covered 0.56–0.98 at a nominal 0.9 (under at 30 photons,
over on real frames against their registered truth), where a calibration made on each image itself,
from residuals against an independent noisy view (core.calibration.self_calibration), came to 0.78–0.99
with the same mean head and std head. So a run that asks for intervals (``coverage``) calibrates on its
own image, unless the model holds a calibration of the user's own — made against their truth (split
conformal on their pairs: the one route with a guarantee) or on their noisy images (``calibrate(model,
noisy)``, ``adapt``) — or the caller says which (``calibrate_on_image``). One rule for the library's
``denoise`` and file runs, the CLI and the Denoise widget's *Calibrate on this image*.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..imaging.axes import infer_axes
from ..io.checkpoint import load_model
from ..run.batch import denoise_to_tiff as batch_denoise_to_tiff
from ..run.batch import denoise_to_zarr as batch_denoise_to_zarr
from ..run.conformal import COVERAGE_GRID, Calibration
from ..run.cpu_share import same_bits, torch_threads
from ..run.driving import drive
from ..run.methods import find_method
from ..run.plane_runs import CALIBRATED_COPY_OF, run_keywords_given
from ..run.restore import Restoration, run_to_end, tile_callback
from ..run.restore import denoise as restore_denoise
from ..run.restore import iter_denoise as restore_iter_denoise
from ..run.run_keywords import RunSpec, run_signature
from ..run.run_settings import calibration_settings
from .self_calibration import acquisitions_differ, iter_calibrate_on_data


def holds_own_calibration(model) -> bool:
    """Whether ``model`` holds a calibration made on the user's data (their truth or their noisy images), not
    only those it came with (:attr:`Calibration.shipped`). Whatever its settings: a run whose settings the
    user's calibrations do not cover is refused with the ones they do (core.run.conformal.find_calibration,
    which then never falls back on one the model came with), rather than calibrated on the image behind their
    back."""
    return any(not Calibration.from_dict(c).shipped for c in model.calibrations)


def deconvolves(model, settings: dict) -> bool:
    """Whether the run restores a sharp image from a blurred one (a deconvolving model, or a PSF given): its
    error is against the sharp image, and residuals against a view of the blurred one count the blur as error
    too: intervals too wide, not too narrow, where a deconvolving model's stored calibration was made on
    blurred pairs with their sharp truth (bench/calibrate_bundled.py)."""
    return getattr(model, "task", None) == "deconvolve" or settings.get("psf") is not None


def calibrates_on_image(model, settings: dict, calibrate_on_image: bool | None = None) -> bool:
    """Whether a run of ``model`` with ``settings`` (run keywords) calibrates its intervals on its image
    first: never without a coverage or for a method; else as ``calibrate_on_image`` says, and where it
    says nothing (None), unless the model holds a calibration of the user's own, the run is guided (a
    calibration leaves guidance out: the stored one is taken, as before) or it deconvolves (:func:`deconvolves`:
    residuals against the blurred image count the blur as error), each of which takes the stored calibration for
    its settings and is refused without one, as the Denoise widget's run is. A deconvolution calibrated on its
    image when the model held none for its settings (a sampler parameter changed), in silence, with intervals as
    wide as the blur."""
    return not_on_image_because(model, settings, calibrate_on_image) is None


def not_on_image_because(model, settings: dict, calibrate_on_image: bool | None) -> str | None:
    """None where :func:`calibrates_on_image` says yes; else why not, in words for a refusal of what needs a
    calibration on the image (a second acquisition: "leave calibrate_on_image True or None" was said to a
    deconvolving run that had). The rule itself, declared here once."""
    if settings.get("coverage") is None:
        return "it asks for no intervals"
    if find_method(model) is not None:
        return "a method's run is not calibrated"
    if calibrate_on_image is not None:
        if not isinstance(calibrate_on_image, bool):
            raise TypeError(f"calibrate_on_image must be True, False or None (the model's own calibration where it "
                            f"holds one of yours, else this image); got {calibrate_on_image!r}")
        return None if calibrate_on_image else ("calibrate_on_image=False, the CLI's --stored-calibration, takes the "
                                                "stored calibration")
    if holds_own_calibration(model):
        return "the model holds a calibration you made, which it keeps"
    if settings.get("guidance") is not None:
        return "a guided run takes the stored calibration"
    if deconvolves(model, settings):
        return ("a run that deconvolves takes the stored calibration (residuals against the blurred image count the "
                "blur as error)")
    return None


def _calibration_spec(model, settings: dict) -> RunSpec:
    """The run's settings as a calibration restores with them, as a RunSpec: given as keywords, the run's
    seed would be taken for the recorruption's (core.calibration.self_calibration.iter_self_calibrate)."""
    return calibration_settings(model, spec=RunSpec(**{k: v for k, v in settings.items() if k != "coverage"}))


def check_coverage_on_image(coverage: float, schedule) -> None:
    """Refuse, before the calibration's tens of seconds, a run's coverage that no run takes (RunSpec's COVERAGE) or
    that a calibration on the image cannot give: it measures the levels of COVERAGE_GRID, and a run interpolates
    between them. ``schedule``: the model's (the run parameters' checks take it)."""
    from ..run.run_spec import COVERAGE

    COVERAGE.check(coverage, schedule)
    lo, hi = COVERAGE_GRID[0], COVERAGE_GRID[-1]
    if not lo <= coverage <= hi:  # NaN too
        raise ValueError(f"coverage (--coverage) must be between {lo:g} and {hi:g} for intervals calibrated on the "
                         f"image (the levels its calibration measures); got {coverage:g}")


def iter_denoise(image, model, settings: dict, axes: str | None = None, on_tile=None,
                 calibrate_on_image: bool | None = None, second=None):
    """:func:`denoise` as a generator (yields Progress; returns a Restoration) for run keywords ``settings``:
    where :func:`calibrates_on_image` says so, first calibrates on up to
    core.calibration.self_calibration.CALIBRATION_PLANES planes of ``image`` (and against ``second``, another
    acquisition of its field, where given), then restores with that calibration. The record says which:
    ``calibrated_on_this_image``, and ``self_calibration_seconds`` (the run's own ``seconds`` leave it out)."""
    if isinstance(model, str) and find_method(model) is None:
        model = load_model(model)
    here = calibrates_on_image(model, settings, calibrate_on_image)
    if second is not None and not here:
        raise ValueError("second is an acquisition the intervals are calibrated against on the image, which this run "
                         f"does not calibrate on: {not_on_image_because(model, settings, calibrate_on_image)}. Give "
                         "coverage and calibrate_on_image=True (the CLI's --self-calibrate)")
    differ = calibrating = None
    if here:
        check_coverage_on_image(settings["coverage"], model.schedule)
        started = time.perf_counter()
        axes_read = axes or infer_axes(np.ndim(image))
        model = (yield from iter_calibrate_on_data(model, image, axes_read, second,
                                                   spec=_calibration_spec(model, settings))).model
        differ = None if second is None else acquisitions_differ(image, second, axes_read)
        calibrating = time.perf_counter() - started
    result = yield from restore_iter_denoise(image, model, axes=axes, on_tile=on_tile, **settings)
    if settings.get("coverage") is not None:
        result.metadata["calibrated_on_this_image"] = here
    if here:
        result.metadata["self_calibration_seconds"] = round(calibrating, 3)
        if differ is not None:
            result.metadata["second_acquisition_differs"] = round(differ, 4)
    return result


@run_signature(after=("progress", "cancel", "calibrate_on_image", "second"), rest="method_params")
def denoise(image, model, *, spec: RunSpec | None = None, axes: str | None = None, progress=None, cancel=None,
            calibrate_on_image: bool | None = None, second=None, **given) -> Restoration:
    if isinstance(model, str) and find_method(model) is None:
        model = load_model(model)
    given = run_keywords_given(denoise, model, spec, given)
    if not calibrates_on_image(model, given, calibrate_on_image) and second is None:
        result = restore_denoise(image, model, axes=axes, progress=progress, cancel=cancel, **given)
        if given.get("coverage") is not None:
            result.metadata["calibrated_on_this_image"] = False
        return result

    return run_to_end(iter_denoise(image, model, given, axes, tile_callback(progress, cancel), calibrate_on_image,
                                   second), progress, cancel)


denoise.__doc__ = restore_denoise.__doc__.replace(
    "    progress: called with",
    """    calibrate_on_image: where the intervals (``coverage``) are calibrated: True, on up to four planes of
        ``image`` itself first (core.calibration.self_calibration: residuals against recorrupted copies,
        and against neighbouring frames with a T axis in ``axes``; about one more run of those planes);
        False, the model's stored calibration for these settings (refused where it has none); None
        (default), the model's where it holds any of the user's own (made on their truth or their
        images), else this image: a bundled model's calibrations were made on other data
        (core.calibration.on_image).
    second: another acquisition of the same field (``image``'s shape, its noise independent of
        ``image``'s), also calibrated against where the intervals are calibrated on the image: the
        wider interval at each level.
    progress: called with""", 1)


@dataclasses.dataclass
class FilesCalibration:
    """What calibrating on an input file made: the model the planes are restored with (a checkpoint's path
    for a local cluster's workers), the calibration, the axes the input was read with and whether they were
    guessed, and the share of the calibrated pixels where ``second`` differs beyond noise (None without)."""

    model: object
    source: str
    axes: str
    axes_guessed: bool
    second_differs: float | None
    resumed: bool = False  # the calibration was taken from the store being resumed, not made now


def _second_view(second, source):
    """The data of the acquisition at ``second``, read with the input's axes: its shape must be the input's."""
    from ..io.image_io import open_image

    view = open_image(second, None).data
    if tuple(view.shape) != tuple(source.shape):
        raise ValueError(f"second must have the noisy image's shape {tuple(source.shape)} (axes {source.axes}): "
                         f"another acquisition of the same field; {second} has {tuple(view.shape)}")
    return open_image(second, source.axes).data


def iter_model_for_files(model, input_path, settings: dict, *, axes: str | None = None,
                         calibrate_on_image: bool | None = None, second=None, workers: int | None = None,
                         scheduler: str | None = None, keep: contextlib.ExitStack | None = None,
                         resume=None):
    """What the file runs (:func:`denoise_to_zarr`, :func:`denoise_to_tiff`, the CLI) restore an input with:
    ``model`` as given, or — where :func:`calibrates_on_image` says so — calibrated on up to four planes of the
    image at ``input_path`` (and against the image at ``second``, a path) in this process first. A generator
    (yields Progress); returns a FilesCalibration, or None where nothing was calibrated. A local cluster's
    workers (``workers``) load the calibrated model from a checkpoint written into a temporary folder that
    ``keep`` removes when it closes; a remote one (``scheduler``) cannot read it, and is refused. ``resume``: the
    OME-Zarr store the run writes, where it may resume one (not overwriting): the calibration a store of this run
    holds is taken again (:func:`calibration_to_resume`)."""
    from ..io.image_io import open_image

    if settings.get("coverage") is None and (calibrate_on_image or second is not None):
        raise ValueError(("second is an acquisition the intervals are calibrated against" if second is not None else
                          "calibrate_on_image calibrates intervals") + ": give coverage too (e.g. 0.9)")
    loaded = load_model(model) if isinstance(model, (str, os.PathLike)) and find_method(str(model)) is None else model
    if not calibrates_on_image(loaded, settings, calibrate_on_image):
        if second is not None:
            raise ValueError("second is what the intervals are calibrated against on the image, which this run does "
                             f"not calibrate on: {not_on_image_because(loaded, settings, calibrate_on_image)}. Give "
                             "calibrate_on_image=True")
        return None
    if scheduler is not None:
        raise ValueError("the intervals are calibrated on the input in this process, which a remote cluster's workers "
                         "cannot read: calibrate first (calibrate(model, noisy)), save the model and pass its path, or "
                         "take the stored calibration (calibrate_on_image=False; the CLI's --stored-calibration)")
    source = open_image(input_path, axes)
    resumed = None if resume is None else calibration_to_resume(loaded, source, settings, resume, second)
    if resumed is not None:
        run_model, differs = dataclasses.replace(loaded, calibrations=[resumed, *loaded.calibrations]), None
        said = f"{RESUMED_FROM} {resume} (made on this input when that run began): {resumed['source']}"
    else:
        view = None if second is None else _second_view(second, source)
        run_model = (yield from iter_calibrate_on_data(loaded, source.data, source.axes, view,
                                                       spec=_calibration_spec(loaded, settings))).model
        differs = None if view is None else acquisitions_differ(source.data, view, source.axes)
        said = run_model.calibrations[0]["source"]
    calibrated = run_model
    if workers is not None:
        from ..io.checkpoint import save_checkpoint

        if keep is None:
            raise TypeError("a local cluster's calibrated model is written for the run: give keep (an ExitStack)")
        folder = keep.enter_context(tempfile.TemporaryDirectory(prefix="diffdenoise-"))
        calibrated = str(Path(folder) / "calibrated.safetensors")
        # the file's own hash holds the calibration's date: the run is recorded, and its store resumed, under the
        # source model's (as this process's calibrated copy keeps it), the calibration by its factors
        save_checkpoint(dataclasses.replace(run_model, provenance={**run_model.provenance,
                                                                   CALIBRATED_COPY_OF: run_model.sha256}), calibrated)
    return FilesCalibration(calibrated, said, source.axes, source.axes_guessed, differs, resumed is not None)


# how a calibration taken from the store being resumed is said (the CLI's "calibration:" line, the run's progress)
RESUMED_FROM = "the calibration of the run being resumed in"


def calibration_to_resume(model, source, settings: dict, store, second=None) -> dict | None:
    """The calibration (a Calibration's dict) that the OME-Zarr store at ``store`` holds of a run of ``model``
    with ``settings`` (run keywords) on the image ``source``, which resuming it takes again rather than
    calibrating on the image a second time (tens of seconds to minutes, for the same factors); None where there
    is no such store, or it was calibrated against a second acquisition (which its record does not name), or
    ``second`` is given. A store of another run on this input, or of a run on another input, is refused here,
    before the calibration it would be refused after."""
    from ..io.map_store import refuse_other_run, resumable_run
    from ..run.batch import fingerprint_before_calibrating
    from ..run.plane_runs import INTERVAL_FACTORS
    from .self_calibration import SECOND_ACQUISITION

    stored = resumable_run(store)
    if stored is None:
        return None
    refuse_other_run(store, stored, fingerprint_before_calibrating(source, model, settings),
                     ignoring=(INTERVAL_FACTORS,))
    calibration = stored.calibration
    if calibration is None or second is not None or SECOND_ACQUISITION in calibration.get("source", ""):
        return None
    made = Calibration.from_dict(calibration)
    if made.shipped or made.against_truth or made.held_out_measured:
        return None  # not made on the image (a store begun on a stored calibration): it is calibrated now
    return calibration


def _files_run(function, input_path, outputs: tuple, model, spec, given: dict, axes, progress, calibrate_on_image,
               second, **options):
    """``function`` (a run-layer file run, given ``outputs`` after the input and ``options`` beside the run's
    keywords) with the model :func:`iter_model_for_files` gives; the calibration's progress reported as the
    run's (no plane done yet, its text saying what is calibrated)."""
    from ..io.output_lock import one_run_into
    from ..io.tiff_maps import check_pixel
    from ..run.batch import BatchProgress, check_outputs_free, check_threads

    given = run_keywords_given(function, model, spec, given)
    # refused outputs are refused before the calibration's tens of seconds, not after them
    check_outputs_free(input_path, *outputs, stem=options.get("stem"), overwrite=options.get("overwrite", False))
    check_pixel(options.get("pixel"))
    check_threads(options.get("threads"))  # before the calibration takes them
    started = time.perf_counter()

    def calibrating(info) -> None:
        if progress is not None:
            progress(BatchProgress(0, 0, 0, 0.0, time.perf_counter() - started, None,
                                   f"calibrating on the input: {info.where}"))

    # the file's maps are the same bits on every run, the calibration they are scaled by too (resumes check them);
    # the output is the run's from its calibration on (a second run into it was refused only after calibrating)
    with one_run_into(outputs[0], options.get("stem"), handed_on=True), contextlib.ExitStack() as keep, same_bits(), \
            torch_threads(options.get("threads")):  # the calibration with the run's threads
        resume = None if "stem" in options or options.get("overwrite") else outputs[0]
        made, _ = drive(iter_model_for_files(model, input_path, given, axes=axes, calibrate_on_image=calibrate_on_image,
                                             second=second, workers=options.get("workers"),
                                             scheduler=options.get("scheduler"), keep=keep, resume=resume), calibrating)
        return function(input_path, *outputs, model if made is None else made.model, axes=axes, progress=progress,
                        **options, **given)


@run_signature(after=("progress", "calibrate_on_image", "second"), rest="method_params")
def denoise_to_zarr(input_path, output_path, model, *, spec: RunSpec | None = None, axes: str | None = None,
                    overwrite: bool = False, workers: int | None = None, scheduler: str | None = None,
                    threads: int | None = None, progress=None, calibrate_on_image: bool | None = None, second=None,
                    **given) -> dict:
    return _files_run(batch_denoise_to_zarr, input_path, (output_path,), model, spec, given, axes, progress,
                      calibrate_on_image, second, overwrite=overwrite, workers=workers, scheduler=scheduler,
                      threads=threads)


@run_signature(after=("progress", "calibrate_on_image", "second"), rest="method_params")
def denoise_to_tiff(input_path, folder, model, *, stem: str, spec: RunSpec | None = None, axes: str | None = None,
                    overwrite: bool = False, pixel: dict | None = None, threads: int | None = None, progress=None,
                    calibrate_on_image: bool | None = None, second=None, **given) -> tuple[dict, list]:
    return _files_run(batch_denoise_to_tiff, input_path, (folder,), model, spec, given, axes, progress,
                      calibrate_on_image, second, stem=stem, overwrite=overwrite, pixel=pixel, threads=threads)


_FILES_DOC = """
    Intervals (``coverage``) are calibrated as :func:`denoise`'s are (core.calibration.on_image): on up to four
    planes of the input in this process first, unless the model holds a calibration the user made, or as
    ``calibrate_on_image`` says; ``second``: the path of another acquisition of the same field to calibrate
    against too. A local cluster (``workers``) loads the calibrated model from a checkpoint written for the
    run and removed after it; a remote one (``scheduler``) cannot, and is refused: calibrate first, or take the
    stored calibration."""
denoise_to_zarr.__doc__ = batch_denoise_to_zarr.__doc__ + _FILES_DOC
denoise_to_tiff.__doc__ = batch_denoise_to_tiff.__doc__ + _FILES_DOC
