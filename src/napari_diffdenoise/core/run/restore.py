"""Image → planes → (tiled) sampling of K samples → mean, std and entropy maps; or, for a method
that needs no model (core.run.methods), each plane → its mean map, through the same plane loop.

Here: the in-memory run (:func:`iter_denoise`, :func:`denoise`). Around it: what a run does to each
plane (core.run.plane_runs, :func:`plane_run`) and one plane's sampling and its blocks
(core.run.plane_sampling, :func:`restore_plane`); a run's settings and the rules between them
(core.run.run_settings, :func:`make_settings`), the image's checks (core.run.plane_input), the tiled
network (core.model.tiled_network), the bright pass (core.run.bright_pass) and the plane loop with
its sinks (core.run.plane_loop). The names below marked re-exported are where callers have always
found them.

:func:`iter_denoise` is a generator that yields a :class:`Progress` after every network step and
returns a :class:`Restoration`; napari's worker drives it (its quit() lands at the next yield),
and :func:`denoise` drives it with plain callbacks.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from dataclasses import dataclass

from ..io.checkpoint import load_model
from ..model.model import DiffusionModel
from ..model.tiled_network import pad_to_multiple as _pad_to_multiple  # noqa: F401  (re-exported: bench imports it)
from .bright_pass import BLEND_BAND, BRIGHT_MARGIN, bright_boxes  # noqa: F401  (re-exported)
from .driving import drive
from .methods import MethodSettings, find_method, method_settings
from .plane_input import (  # noqa: F401  (re-exported: the names restore has always offered)
    BYTES_PER_PLANE_PIXEL,
    BYTES_PER_SAMPLE_PIXEL,
    KEPT_SAMPLES_SHARE,
    check_image,
    check_kept_samples,
    check_memory,
    output_dtype,
    read_plane,
)
from .plane_loop import MemorySink, PlaneLoop, Restoration, steps_text
from .plane_runs import plane_run, refuse_settings_with_keywords, run_keywords_given
from .run_keywords import RunSpec, run_signature
from .run_settings import (  # noqa: F401  (re-exported: the names restore has always offered)
    DEFAULT_OVERLAP_FRACTION,
    DEFAULT_SAMPLER_SETTINGS,
    DEFAULT_STEPS,
    FAST_SAMPLER_SETTINGS,
    Settings,
    _precision_rule,
    calibration_settings,
    make_settings,
)
from .run_spec import (  # noqa: F401  (re-exported: the names restore has always offered)
    BATCH_PIXELS,
    BLOCK,
    COVERAGE,
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_OVERLAP,
    KEEP_SAMPLES,
    MEAN_ESTIMATORS,
    N_SAMPLES,
    RUN_SETTINGS,
    SEED,
    STD_ESTIMATORS,
)

# the private names these checks had while they lived here (tests and scripts import them)
_check_image, _check_memory, _check_kept_samples = check_image, check_memory, check_kept_samples


class Cancelled(Exception):
    """Raised by :func:`denoise` when ``cancel()`` returned True; nothing is returned."""


@dataclass
class Progress:
    plane: int  # 0-based plane being processed (its rank among the planes of this run)
    n_planes: int
    # network steps done in this plane, the tiles of the one under way included (per-tile progress, see
    # iter_denoise's on_tile); blocks and bright boxes count by their share of the plane's pixels
    step: float
    n_steps: float
    tile: int = 0  # tiles done inside the step under way
    n_tiles: int = 1
    # what a 'plane' of this run is to the user: a self-calibration restores crops of the image (and
    # recorrupted copies of them), so 'plane 1/2' on a one-plane image would name planes it does not have
    unit: str = "plane"
    # which part of a job of several restorations this one is (a self-calibration's routes and channels), said
    # after its count; ``start`` and ``span``: the share of the whole job done before it and its own, so that the
    # fraction covers the whole job and a progress bar does not run back when the next part starts at its crop 1
    part: str = ""
    start: float = 0.0
    span: float = 1.0

    @property
    def fraction(self) -> float:
        return self.start + self.span * (self.plane + min(self.step, self.n_steps) / self.n_steps) / self.n_planes

    @property
    def where(self) -> str:
        """'plane 2/5, step 3/10, tile 4/9': where the run is, as the widgets and the CLI say it."""
        tile = f", tile {self.tile}/{self.n_tiles}" if self.n_tiles > 1 and self.tile else ""
        part = f" ({self.part})" if self.part else ""
        return f"{self.unit} {self.plane + 1}/{self.n_planes}{part}, {steps_text(self.step, self.n_steps)}{tile}"

    def within(self, start: float, span: float, part: str) -> Progress:
        """This progress as that of a part of a larger job: the part taking ``span`` of it from ``start``, and
        named ``part`` (after any name it had)."""
        return dataclasses.replace(self, start=start + span * self.start, span=span * self.span,
                                   part="; ".join(filter(None, (self.part, part))))


@run_signature(after=("on_tile",), rest="method_params")
def iter_denoise(image, model: DiffusionModel | str, settings: Settings | MethodSettings | None = None, *,
                 spec: RunSpec | None = None, axes: str | None = None,
                 on_tile: Callable[[Progress], None] | None = None, **given) -> Generator[Progress, None, Restoration]:
    """See :func:`denoise`; ``model`` a DiffusionModel or a method's name (core.run.methods), ``settings``
    from :func:`make_settings` (or :func:`~.methods.method_settings`), or the run's keywords as
    :func:`denoise` takes them (``spec`` too). Yields a :class:`Progress` after every network step;
    ``on_tile``, if given, is called with one after every tile inside a step (a large plane shows
    movement within seconds; raising there stops the run)."""
    refuse_settings_with_keywords(iter_denoise, settings, spec, given)
    array, axes = check_image(image, axes)
    run = plane_run(model, settings, **run_keywords_given(iter_denoise, model, spec, given))
    s = run.settings
    check_memory(array, s.n_samples, s.block)
    if s.keep_samples:
        check_kept_samples(array, s.n_samples)
    loop = PlaneLoop(run, array, MemorySink(s.n_samples if s.keep_samples else None))
    n_planes = loop.tally.n_planes
    tiles = None if on_tile is None else (
        lambda rank, number, step, steps, done, total: on_tile(Progress(rank, n_planes, step, steps, done, total)))
    # no grad-mode context may span a yield: grad mode is thread-local, and a suspended generator would
    # leave its thread (napari's pooled worker, or the caller's) in inference mode
    steps = loop.steps(tiles)
    try:
        while True:
            at = next(steps)
            yield Progress(at.rank, n_planes, min(at.step, at.n_steps), at.n_steps)
    except StopIteration as stop:
        tally = stop.value
    return loop.done(run.record(tally.evaluations, tally.seconds(), {"axes": axes, **tally.extra()}))


@run_signature(after=("progress", "cancel"), rest="method_params")
def denoise(
    image,
    model: DiffusionModel | str,
    *,
    spec: RunSpec | None = None,
    axes: str | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **given,
) -> Restoration:
    """Restore an image of any of the axes T, C, Z, Y, X, one (Y, X) plane at a time, with K samples
    of a diffusion model, or with a method that needs none (core.run.methods).

    The run's settings (sampler … precision) are its keywords as core.run.run_spec declares them, each
    at its declared default; one it does not declare is refused by name. ``spec``, a
    :class:`~.run_keywords.RunSpec`, gives them as one value, the keywords beside it overriding it.

    Parameters
    ----------
    image: a NumPy array, or a lazy one (dask, zarr: read one plane at a time, never whole).
    model: a :class:`DiffusionModel`, a bundled model name or a checkpoint path; or a method's name
        (``methods.METHODS``): "richardson-lucy" deconvolves each plane with ``psf`` in
        ``iterations`` rounds (default 20) and gives the mean map alone; the settings of sampling
        (n_samples, coverage, sampler…) are refused for it unless left at their defaults.
    axes: the image's axes, e.g. "TCZYX" (default from its dimensions: YX, ZYX, TZYX, TCZYX). Each
        plane has its own normalisation, so channels are independent.
    sampler: a registered sampler (``list_samplers(model.kind)``); by default the model's own
        (``model.default_sampler``: "one-step" for a model with mean and sample heads, such as demo,
        unless steps, η or guidance are given; else "ddim", or "ddim-dc" for a deconvolving model given
        a PSF that no guidance takes, "fb" for an unpaired one). For paired models "ddim", "ddpm" (the
        seed procedure: all T steps), "dpm++2m", "dpm++2m-sde", "heun", "one-step" (the sample head,
        core/sampling/sample_head.py), or "ddim-dc" (needs ``psf``); for unpaired models "fb", "mixing",
        "repaint", "repaint-baikal".
        Its parameters go in ``sampler_params``; each is checked against the sampler's declared specs.
    steps, eta: shorthands for ``sampler_params["steps"]`` / ``["eta"]``, for samplers that take them.
    psf: the point spread function (2D array, any scale; normalised to sum 1) for "ddim-dc" or guidance.
    guidance, guidance_weight: "dc" pulls the clean estimate of any sampler towards consistency with
        the PSF at every network call (core.sampling.guidance), by steps of ``guidance_weight``·√γ.
    n_samples: K, the number of samples; std, entropy and the intervals are taken over them.
    entropy: what the entropy map shows (core.io.maps.ENTROPY_KINDS): "negentropy" (default) how far the
        samples are from one bell curve, in bits, whatever their spread; "quantised" the seed paper's
        Shannon entropy of the samples in 256 bins (docs/method.md, "The three maps").
    mean: how the ``mean`` map is estimated (MEAN_ESTIMATORS): "x0" the one-evaluation posterior
        mean, "samples" the average of the K samples (DDPM-avg), "auto" what the model declares.
    std: how the ``std`` map and the intervals' unit are made (STD_ESTIMATORS): "head" in one pass by
        the model's std head (core.model.std_head; with the mean head's mean), "samples" the spread of the K
        samples, "auto" the head when the model has one. With the head, ``n_samples=0`` still gives
        std and intervals: mean and std in two network passes.
    coverage: e.g. 0.9 for intervals ``lower``/``upper`` that hold the truth in 90 % of pixels: from the
        model's calibration for these settings (core.calibration.calibration; refused when it has none), or,
        with the package's ``denoise`` (core.calibration.on_image), calibrated on the image first where
        ``calibrate_on_image`` says so.
    seed: the same seed gives the same output on the same device.
    precision: "float32" (default) or "bfloat16": the networks' number format (core.run.run_spec.PRECISION).
    low_frequencies: "data" (default): where the mean smoothed over a few pixels departs from the noisy
        image smoothed alike beyond the noise, the departure is taken off (core.run.low_frequency);
        "model": the network's mean as it is.
    tile, overlap: tile size and overlap in pixels (default: the model's tile, 25 % overlap).
    block, block_overlap: planes with a side over ``block`` pixels (default 4096) are sampled in
        overlapping blocks of that size, which bounds memory (default overlap 128 pixels).
    percentiles: normalisation percentiles (default: those the model was trained with).
    progress: called with a :class:`Progress` after every network step and every tile inside one.
    keep_samples: also return the K samples themselves (``.samples``, K × the input's shape).
    cancel: polled after every tile; returning True raises :class:`Cancelled`.
    method_params: a method's own parameters (e.g. ``iterations=20``), checked by its declaration.

    Returns
    -------
    Restoration
        Maps of the input's shape, in memory. For a plane without negative values, the mean and the
        lower bound are clamped at 0 (``metadata["clamped_to_zero_pixels"]`` counts the pixels);
        structure far brighter than the plane's 99.8th percentile gets a second pass, over boxes
        around it, in a brighter intensity map (``metadata["bright_pass_planes"]``).
    """
    given = run_keywords_given(denoise, model, spec, given)
    method = find_method(model)
    if method is None and not isinstance(model, DiffusionModel):
        if model is None:
            raise TypeError("model must be a DiffusionModel, a bundled model name or a checkpoint path; got None")
        model = load_model(model)
    settings = method_settings(method, **given) if method is not None else make_settings(model, **given)

    return run_to_end(iter_denoise(image, model, settings, axes=axes, on_tile=tile_callback(progress, cancel)),
                      progress, cancel)


def tile_callback(progress, cancel):
    """The ``on_tile`` hook of a denoising generator driven with plain callbacks: each tile's Progress reported,
    then ``cancel`` asked (drive()'s order), Cancelled raised within the step; None where neither is given, so
    that a run nobody watches pays nothing per tile."""
    if progress is None and cancel is None:
        return None

    def on_tile(info: Progress) -> None:
        if progress is not None:
            progress(info)
        if cancel is not None and cancel():
            raise Cancelled("denoising was cancelled")

    return on_tile


def run_to_end(run, progress, cancel):
    """A denoising generator's result, driven with plain callbacks (core.run.driving.drive); Cancelled where
    ``cancel`` stopped it between steps."""
    result, cancelled = drive(run, progress, cancel)
    if cancelled:
        raise Cancelled("denoising was cancelled")
    return result
