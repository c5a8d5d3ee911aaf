"""Image → planes → (tiled) sampling of K samples → mean, std and entropy maps; or, for a method
that needs no model (core.run.methods), each plane → its mean map, through the same plane loop.

Here: one plane's sampling and its blocks (:func:`restore_plane`), what a run does to each plane
(:func:`plane_run`) and the in-memory run. Around it: a run's settings and the rules between them
(core.run.run_settings, :func:`make_settings`), the image's checks (core.run.plane_input), the tiled network
(core.model.tiled_network), the bright pass (core.run.bright_pass) and the plane loop with its sinks
(core.run.plane_loop); their names are re-exported here, where callers have always found them.

:func:`iter_denoise` is a generator that yields a :class:`Progress` after every network step and
returns a :class:`Restoration`; napari's worker drives it (its quit() lands at the next yield),
and :func:`denoise` drives it with plain callbacks.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from .._version import __version__
from ..imaging.normalization import IntensityMap
from ..imaging.tiling import make_tiles
from ..io.checkpoint import load_model
from ..io.maps import MAPS, MapContext, map_names, sample_maps
from ..model.model import DiffusionModel
from ..model.std_head import GAMMA, StdHeadAsEps
from ..model.tiled_network import TiledEpsilon
from ..model.tiled_network import pad_to_multiple as _pad_to_multiple  # noqa: F401  (re-exported: bench imports it)
from ..sampling.consistency import DataConsistency
from ..sampling.guidance import Guided, make_guide
from ..sampling.noise import FieldNoise
from ..sampling.sample_head import SampleHeadAsEps
from .bright_pass import BLEND_BAND, BRIGHT_MARGIN, bright_boxes  # noqa: F401  (re-exported)
from .bright_pass import blend_into as _blend_into
from .bright_pass import bright_map as _bright_map
from .bright_pass import bright_weight as _bright_weight
from .conformal import interval_unit
from .driving import drive
from .methods import Method, MethodSettings, find_method, method_maps, method_record, method_settings
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
from .plane_loop import MemorySink, PlaneLoop, PlaneResult, PlaneRun, Restoration
from .run_keywords import RunSpec, run_signature, settings_given, split_run_settings
from .run_record import fingerprint_settings, metadata_settings, settings_record
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
    step: int  # sampling steps done in this plane
    n_steps: int
    tile: int = 0  # tiles done inside the step under way (per-tile progress, see iter_denoise's on_tile)
    n_tiles: int = 1

    @property
    def fraction(self) -> float:
        inside = min(self.step + self.tile / max(self.n_tiles, 1), self.n_steps)
        return (self.plane + inside / self.n_steps) / self.n_planes


@dataclass
class _PlaneMaps:
    maps: dict[str, np.ndarray]  # mean, the sample maps (core.io.maps) and, when sampled, interval_unit
    samples: np.ndarray | None
    evaluations: int


def _sample_plane(plane, imap: IntensityMap, model: DiffusionModel, s: Settings, number: int, dtype=np.float32,
                  on_tile: Callable[[int, int], None] | None = None, origin: tuple[int, int] = (0, 0)):
    """One plane (or one block of it, at ``origin``) through the sampler in one intensity map: yields
    (step, n_steps), returns _PlaneMaps. ``number`` (the plane's number in its image) keys the noise,
    with the seed and the global pixel position (core.sampling.noise)."""
    dev = s.device
    observed = torch.from_numpy(imap.to_model(plane))[None, None].to(dev)
    cond = observed if model.kind == "paired" else None
    eps_fn = TiledEpsilon(model, cond, plane.shape, s.tile, s.overlap, s.batch_pixels, on_tile, s.precision)
    extra = {"observation": observed} if s.sampler.needs_observation else {}
    # a PSF steers exactly one of the sampler and the guide (_psf_rule): one consistency, for that one
    consistency = None if s.psf is None else DataConsistency(observed, s.psf)
    if s.sampler.needs_psf:
        extra["consistency"] = consistency
    noise_fn = FieldNoise(s.seed, number, s.n_samples, dev, origin)
    sampled_eps = eps_fn
    if s.guidance is not None:
        sampled_eps = Guided(eps_fn, make_guide(s.guidance, consistency, s.guidance_weight))
    if s.n_samples == 0:  # the one-pass mean, and the std head's std when the run takes it; no samples
        with torch.inference_mode():
            mean = _one_pass_mean(model, s, eps_fn, observed, plane.shape)
            maps = _head_std_maps(model, s, eps_fn, observed, mean, imap) if s.std_estimator == "head" else {}
        yield 1, 1
        return _PlaneMaps({"mean": imap.to_input(mean.float().cpu().numpy(), dtype), **maps}, None, eps_fn.evaluations)
    head_mean = None
    if s.sampler.head is not None:  # it draws with a head, from noise fields, about the mean head's estimate
        with torch.inference_mode():
            head_mean = _head_mean(model, s, eps_fn, observed, plane.shape)
        sampled_eps = TiledEpsilon(SampleHeadAsEps(getattr(model, s.sampler.head)),
                                   torch.cat([observed, head_mean[None, None].to(observed.dtype)], dim=1), plane.shape,
                                   s.tile, s.overlap, s.batch_pixels, on_tile, s.precision)
    y_T = noise_fn((s.n_samples, 1) + plane.shape)
    run = s.sampler.function(sampled_eps, model.schedule, y_T, noise_fn, clip=model.value_range, **s.params, **extra)
    try:
        while True:
            step = next(run)
            yield step.index + 1, step.n_steps
    except StopIteration as stop:
        samples = stop.value[:, 0]
    if s.sampler.head is not None:
        eps_fn.evaluations += sampled_eps.evaluations
    with torch.inference_mode():
        context = MapContext(imap, model.value_range, s)
        maps = {spec.name: spec.compute(samples, context) for spec in sample_maps(s)}
        if s.mean_estimator == "samples":
            mean = samples.mean(dim=0)
        elif s.mean_estimator == "head" and head_mean is not None:
            mean = head_mean
        else:
            mean = _one_pass_mean(model, s, eps_fn, observed, plane.shape)
        if s.std_estimator == "head":
            maps.update(_head_std_maps(model, s, eps_fn, observed, mean, imap))
        else:
            std = samples.std(dim=0, correction=0).float().cpu().numpy()
            maps["std"] = imap.scale_to_input(std)
            maps["interval_unit"] = interval_unit(std, s.n_samples, 1.0) * imap.half_span
    maps["mean"] = imap.to_input(mean.float().cpu().numpy(), dtype)
    kept = imap.to_input(samples.float().cpu().numpy(), dtype) if s.keep_samples else None
    return _PlaneMaps(maps, kept, eps_fn.evaluations)


class _HeadAsEps:
    """The mean head in TiledEpsilon's clothes, so that it is tiled and blended like the sampler:
    its 'ε' is the head's clean estimate of the condition, whatever y is."""

    def __init__(self, model: DiffusionModel):
        self.model, self.network = model, model.mean_network

    def predict_eps(self, y, gammas, cond):
        return self.model.predict_mean(cond)


def _one_pass_mean(model: DiffusionModel, s: Settings, eps_fn, observed, shape) -> torch.Tensor:
    if s.mean_estimator == "x0":
        return _posterior_mean(model, eps_fn, shape, s.device)
    return _head_mean(model, s, eps_fn, observed, shape)


def _head_mean(model: DiffusionModel, s: Settings, eps_fn, observed, shape) -> torch.Tensor:
    """The mean head's estimate over the plane, in model units; its evaluations count in eps_fn's."""
    head = TiledEpsilon(_HeadAsEps(model), observed, shape, s.tile, s.overlap, s.batch_pixels,
                       precision=s.precision)
    estimate = head(torch.zeros((1, 1) + tuple(shape), device=s.device), 0.5)[0, 0]
    eps_fn.evaluations += head.evaluations
    return estimate.clamp(*model.value_range)


def _head_std_maps(model: DiffusionModel, s: Settings, eps_fn, observed, mean: torch.Tensor, imap) -> dict:
    """std and interval_unit from the std head, in one tiled pass over the plane: its inputs are the
    noisy plane and the mean head's estimate of it (model units)."""
    head = TiledEpsilon(StdHeadAsEps(model.std_network), observed, mean.shape, s.tile, s.overlap, s.batch_pixels,
                       precision=s.precision)
    log_variance = head(mean[None, None].to(observed.dtype), GAMMA)[0, 0]
    eps_fn.evaluations += head.evaluations
    std = torch.exp(0.5 * log_variance).float().cpu().numpy()
    return {"std": imap.scale_to_input(std), "interval_unit": interval_unit(std, 1, 1.0) * imap.half_span}


def _posterior_mean(model: DiffusionModel, eps_fn, shape, device) -> torch.Tensor:
    """x̂₀ at the noisiest level with y_t = 0: the one-evaluation estimate of E[clean | noisy] that
    TrainConfig.mean_fraction trains. From ε: x̂₀ = (0 − √(1−γ)·ε̂)/√γ."""
    gamma = float(model.schedule.alphas_cumprod[-1])
    eps = eps_fn(torch.zeros((1, 1) + tuple(shape), device=device), gamma)
    return (-math.sqrt(1 - gamma) / math.sqrt(gamma) * eps[0, 0]).clamp(*model.value_range)


def restore_plane(plane: np.ndarray, model: DiffusionModel, s: Settings, number: int, position=(),
                  dtype=np.float32, on_tile: Callable[[int, int, int], None] | None = None):
    """One (Y, X) plane, whose ``number`` keys its noise: yields (steps done, total steps) after every
    network step and returns a :class:`PlaneResult`. Everything in it depends on this plane alone, so
    planes may run in any order and in any process. ``model`` must already be on ``s.device``
    (:func:`device_model`); ``on_tile(steps_done, n_steps, tiles_done, n_tiles)`` is called after each tile."""
    imap = IntensityMap.from_percentiles(plane, s.percentiles)
    bright = _bright_map(plane, imap, model)
    # blocks blend like tiles: weights ramp over each overlap and sum to one
    blocks = make_tiles(plane.shape, s.block, s.block_overlap)
    runs = [len(blocks)]  # sampler runs this plane takes: one per block, plus one per bright box found
    steps_done, offset = [0], [0]
    per_run = s.sampler.n_evaluations(model.schedule, s.params) if s.n_samples else 1
    totals = [per_run * runs[0]]
    tile_hook = None if on_tile is None else (
        lambda done, n_tiles: on_tile(offset[0] + steps_done[0], totals[0], done, n_tiles))

    def run(intensity_map, y0, x0, slices):
        inner = _sample_plane(plane[slices], intensity_map, model, s, number, dtype, tile_hook, (y0, x0))
        try:
            while True:
                steps_done[0], per_run = next(inner)
                totals[0] = per_run * runs[0]
                yield offset[0] + steps_done[0], totals[0]
        except StopIteration as stop:
            offset[0] += steps_done[0]
            steps_done[0] = 0
            return stop.value

    took_bright = False
    whole: dict[str, np.ndarray] = {}
    kept, evaluations = None, 0
    for block in blocks:
        maps = yield from run(imap, block.y0, block.x0, block.slices)
        weight = _bright_weight(maps.maps["mean"], imap, model) if bright is not None else None
        boxes = bright_boxes(weight) if weight is not None and weight.any() else []
        runs[0] += len(boxes)
        for box in boxes:
            y0, x0 = block.y0 + box[0].start, block.x0 + box[1].start
            whole_box = (slice(y0, block.y0 + box[0].stop), slice(x0, block.x0 + box[1].stop))
            maps = _blend_into(maps, box, (yield from run(bright, y0, x0, whole_box)), weight[box])
        took_bright |= bool(boxes)
        evaluations += maps.evaluations
        if len(blocks) == 1:
            whole, kept = dict(maps.maps), maps.samples
            continue
        for name, value in [*maps.maps.items(), ("samples", maps.samples)]:
            if value is None:
                continue
            if name not in whole:
                whole[name] = np.zeros(value.shape[:-2] + plane.shape, value.dtype)
            whole[name][(...,) + block.slices] += value * block.weight
        kept = whole.pop("samples", None) if block is blocks[-1] else None
    mean, clamped = whole.pop("mean"), 0
    unit = whole.pop("interval_unit", None)
    non_negative = float(plane.min()) >= 0
    if non_negative:  # counts cannot be negative: an estimate below 0 is noise of the estimate, not signal
        clamped = int((mean < 0).sum())
        mean = np.maximum(mean, 0)
    out = {"mean": mean}
    out.update({name: value.astype(MAPS[name].dtype_for(dtype), copy=False) for name, value in whole.items()})
    if unit is not None:
        out["interval_unit"] = unit
    if s.coverage is not None:
        half = s.calibration.factor(s.coverage) * unit
        out["lower"], out["upper"] = mean - half, mean + half
        if non_negative:
            out["lower"] = np.maximum(out["lower"], 0)
    return PlaneResult(tuple(position), out, kept, evaluations, took_bright, clamped)


def device_model(model: DiffusionModel, device: torch.device) -> DiffusionModel:
    """The model on ``device`` in channels-last, without touching the caller's network."""
    def moved(net):
        return None if net is None else copy.deepcopy(net).to(device).eval().to(memory_format=torch.channels_last)

    return dataclasses.replace(model, network=moved(model.network), mean_network=moved(model.mean_network),
                               std_network=moved(model.std_network), sample_network=moved(model.sample_network))


def _metadata(model: DiffusionModel, s: Settings, evaluations: int, n_steps: int, seconds: float, extra: dict) -> dict:
    return {
        "model": model.name,
        "model_sha256": model.sha256,
        "model_kind": model.kind,
        **s.params,  # each sampler parameter on its own too, as the metadata has always had them
        **metadata_settings(settings_record(s)),
        "n_steps": n_steps,
        "network_evaluations": evaluations,
        **({"interval_factor": s.calibration.factor(s.coverage),
            "calibration_source": s.calibration.source,
            "calibration_held_out_coverage": float(np.interp(s.coverage, s.calibration.coverages,
                                                             s.calibration.held_out_coverage))}
           if s.coverage is not None else {}),
        **extra,
        "seconds": round(seconds, 3),
        "package_version": __version__,
    }


def network_passes(model: DiffusionModel, s: Settings) -> dict[str, int]:
    """{network: its sequential passes per plane} for the networks a run calls (DiffusionModel
    attributes): the network the sampler steps (the diffusion network, or the head it draws with)
    its evaluations per sample, none without samples; one pass for each one-pass network: the mean
    head, x̂₀ (the diffusion network), the std head. Each pass of the sampled network runs K samples."""
    passes = {s.sampler.head or "network": s.sampler.n_evaluations(model.schedule, s.params) if s.n_samples else 0}
    # a sampler that draws with a head draws about the mean head's estimate, made first whatever the
    # mean is taken from (mean="head" reuses it)
    passes["mean_network"] = int(s.mean_estimator == "head" or bool(s.n_samples and s.sampler.head is not None))
    passes["network"] = passes.get("network", 0) + (s.mean_estimator == "x0")
    passes["std_network"] = int(s.std_estimator == "head")
    return {network: n for network, n in passes.items() if n}


def network_steps(model: DiffusionModel, s: Settings) -> int:
    """The run's sequential network steps per plane, as its metadata records them (:func:`network_passes`)."""
    return sum(network_passes(model, s).values())


def run_keywords_given(function: Callable, model, spec: RunSpec | None, given: dict) -> dict:
    """The run's keywords ``function`` was given: ``spec``'s settings, those given beside it over
    them. For a model's run a name that is no run setting (core.run.run_spec) is refused here, naming
    ``function`` and what it takes from its signature: a misspelt keyword would otherwise be dropped
    and the run made with the default the caller meant to change. A method's own parameters are
    checked by its declaration (:func:`~.methods.method_settings`)."""
    given = settings_given(spec, given, function.__name__)
    unknown = split_run_settings(given)[1]
    if find_method(model) is None and unknown:
        takes = [name for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY]
        raise TypeError(f"{function.__name__}() got unexpected keyword argument(s) {', '.join(sorted(unknown))}: "
                        "only a method (core.run.methods.METHODS) takes parameters of its own; a model's run takes "
                        f"{', '.join(takes)}")
    return given


def _settings_or_keywords(function: Callable, settings, spec: RunSpec | None, given: dict) -> None:
    # made settings are the run's whole description: a keyword beside them would be dropped unseen
    named = sorted(given) + (["spec"] if spec is not None else [])
    if settings is not None and named:
        raise TypeError(f"{function.__name__}() takes settings (made by make_settings or method_settings) or the run's "
                        f"keywords, not both; got settings and {', '.join(named)}")


@run_signature(rest="method_params")
def plane_run(model: DiffusionModel | Method | str, settings: Settings | MethodSettings | None = None, *,
              spec: RunSpec | None = None, **given) -> PlaneRun:
    """The run of ``model`` (a DiffusionModel, or a method or its name) with ``settings``, or the
    run's keywords (core.run.run_spec; ``spec`` gives them as one value) and a method's own parameters."""
    _settings_or_keywords(plane_run, settings, spec, given)
    kwargs = run_keywords_given(plane_run, model, spec, given)
    method = find_method(model)
    if method is not None:
        ms = settings if settings is not None else method_settings(method, **kwargs)

        def method_plane(plane, number, position, dtype, on_tile):
            maps = method_maps(plane, ms, dtype)
            yield 1, 1  # one step a plane: a cancel lands between planes
            return PlaneResult(tuple(position), maps, None, 0, False, 0)

        def method_metadata(evaluations, seconds, extra):
            return {**method_record(ms), **extra, "seconds": round(seconds, 3), "package_version": __version__}

        return PlaneRun(list(method.maps), method_plane, {"method": method.name}, method_record(ms), method_metadata, ms)
    s = settings if settings is not None else make_settings(model, **kwargs)
    moved = []  # the model on the run's device, made at the first plane (a cluster's coordinator needs none)

    def model_plane(plane, number, position, dtype, on_tile):
        if not moved:
            moved.append(device_model(model, s.device))
        return restore_plane(plane, moved[0], s, number, position, dtype, on_tile)

    n_steps = network_steps(model, s)
    return PlaneRun(map_names(s), model_plane, {"model": model.name, "model_sha256": model.sha256},
                    {"model_sha256": model.sha256, **fingerprint_settings(settings_record(s))},
                    lambda evaluations, seconds, extra: _metadata(model, s, evaluations, n_steps, seconds, extra), s)


@run_signature(after=("on_tile",), rest="method_params")
def iter_denoise(image, model: DiffusionModel | str, settings: Settings | MethodSettings | None = None, *,
                 spec: RunSpec | None = None, axes: str | None = None,
                 on_tile: Callable[[Progress], None] | None = None, **given) -> Generator[Progress, None, Restoration]:
    """See :func:`denoise`; ``model`` a DiffusionModel or a method's name (core.run.methods), ``settings``
    from :func:`make_settings` (or :func:`~.methods.method_settings`), or the run's keywords as
    :func:`denoise` takes them (``spec`` too). Yields a :class:`Progress` after every network step;
    ``on_tile``, if given, is called with one after every tile inside a step (a large plane shows
    movement within seconds; raising there stops the run)."""
    _settings_or_keywords(iter_denoise, settings, spec, given)
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
    coverage: e.g. 0.9 for intervals ``lower``/``upper`` that hold the truth in 90 % of pixels, from
        the model's conformal calibration for these settings (core.calibration.calibration); refused when the
        model has none for them.
    seed: the same seed gives the same output on the same device.
    precision: "float32" (default) or "bfloat16": the networks' number format (core.run.run_spec.PRECISION).
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

    def on_tile(info: Progress) -> None:  # the same order as drive(): report, then ask
        if progress is not None:
            progress(info)
        if cancel is not None and cancel():
            raise Cancelled("denoising was cancelled")

    on_tile_ = on_tile if (progress is not None or cancel is not None) else None
    result, cancelled = drive(iter_denoise(image, model, settings, axes=axes, on_tile=on_tile_), progress, cancel)
    if cancelled:
        raise Cancelled("denoising was cancelled")
    return result
