"""One plane through a model: its blocks sampled K times (or the heads' one pass over it), the bright
pass over boxes around structure the plane's intensity map would clip, and the maps and intervals
made from them (:func:`restore_plane`). Everything here depends on the plane alone.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..imaging.camera_noise import estimate_noise
from ..imaging.normalization import IntensityMap
from ..imaging.pilot_wiener import refine_mean, refines
from ..imaging.tiling import make_tiles
from ..io.maps import MAPS, MapContext, sample_maps
from ..model.model import DiffusionModel
from ..model.std_head import GAMMA, StdHeadAsEps
from ..model.symmetries import SymmetryAverage
from ..model.tiled_network import TiledEpsilon
from ..sampling.consistency import DataConsistency
from ..sampling.guidance import Guided, make_guide
from ..sampling.noise import FieldNoise
from ..sampling.sample_head import SampleHeadAsEps
from .bright_pass import blend_into as _blend_into
from .bright_pass import bright_boxes, expected_boxes, without_hot_pixels
from .bright_pass import bright_map as _bright_map
from .bright_pass import bright_weight as _bright_weight
from .bright_pass import reaches_ceiling as _reaches_ceiling
from .conformal import interval_unit
from .low_frequency import departure_noise, held_on_device, low_frequency_departure
from .plane_loop import PlaneResult
from .run_settings import Settings


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
    # the camera fitted once for every estimate this call holds to the data (its samples and its mean)
    se2 = departure_noise(plane) if s.low_frequencies == "data" else None
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
        held = _held_to_data(plane, observed, mean[None], imap, se2)[0]
        return _PlaneMaps({"mean": imap.to_input(held.float().cpu().numpy(), dtype), **maps}, None, eps_fn.evaluations)
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
        samples = _held_to_data(plane, observed, stop.value[:, 0], imap, se2)
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
        if s.mean_estimator != "samples":  # the samples' average is made of samples already held to the data
            mean = _held_to_data(plane, observed, mean[None], imap, se2)[0]
        if s.std_estimator != "head":
            std = samples.std(dim=0, correction=0).float().cpu().numpy()
            maps["std"] = imap.scale_to_input(std)
            maps["interval_unit"] = interval_unit(std, s.n_samples, 1.0) * imap.half_span
    maps["mean"] = imap.to_input(mean.float().cpu().numpy(), dtype)
    kept = imap.to_input(samples.float().cpu().numpy(), dtype) if s.keep_samples else None
    return _PlaneMaps(maps, kept, eps_fn.evaluations)


def _held_to_data(plane: np.ndarray, observed: torch.Tensor, estimates: torch.Tensor, imap: IntensityMap,
                  se2: np.ndarray | None) -> torch.Tensor:
    """Each estimate of the clean plane (model units, (n, H, W)) with its smooth part held to the
    data's where the two depart beyond the noise (core.run.low_frequency; ``se2``: that noise, from
    departure_noise; None when the run does not ask for it or the plane is too small). Each on its
    own, so that a sample does not depend on how many were drawn with it. ``observed``: the plane in
    model units, (1, 1, H, W), on the run's device."""
    if se2 is None:
        return estimates
    if _holds_on_device(estimates.device):
        # in float32 at least, as the CPU's path (which works in float64), whatever the networks' format; one
        # estimate at a time, so that the filters' copies of a 4096² block stay one estimate's size
        work = torch.promote_types(estimates.dtype, torch.float32)
        plane_m = observed[0, 0].to(work)
        noise = torch.from_numpy(se2 / imap.half_span ** 2).to(estimates.device, work)
        return torch.cat([held_on_device(plane_m, e[None].to(work), noise) for e in estimates]).to(estimates.dtype)
    held = []
    for estimate in estimates:
        departure = low_frequency_departure(plane, imap.to_input(estimate.float().cpu().numpy(), np.float64), se2)
        held.append(estimate + torch.from_numpy(departure / imap.half_span).to(estimate.device, estimate.dtype))
    return torch.stack(held)


def _holds_on_device(device: torch.device) -> bool:
    """Off the CPU the hold's filters run beside the estimates (core.run.low_frequency.held_on_device); on
    the CPU, scipy's in float64 (faster there than torch's convolutions: 0.28 against 0.45 s for one 2048²
    filter, a scratch timing of 2026-12-06, docs/performance.md)."""
    return device.type != "cpu"


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
    head = TiledEpsilon(SymmetryAverage(_HeadAsEps(model), s.symmetries), observed, shape, s.tile, s.overlap,
                        s.batch_pixels, precision=s.precision)
    estimate = head(torch.zeros((1, 1) + tuple(shape), device=s.device), 0.5)[0, 0]
    eps_fn.evaluations += head.evaluations * s.symmetries
    return estimate.clamp(*model.value_range)


def _head_std_maps(model: DiffusionModel, s: Settings, eps_fn, observed, mean: torch.Tensor, imap) -> dict:
    """std and interval_unit from the std head, in one tiled pass over the plane: its inputs are the
    noisy plane and the mean head's estimate of it (model units)."""
    head = TiledEpsilon(SymmetryAverage(StdHeadAsEps(model.std_network), s.symmetries), observed, mean.shape, s.tile,
                        s.overlap, s.batch_pixels, precision=s.precision)
    log_variance = head(mean[None, None].to(observed.dtype), GAMMA)[0, 0]
    eps_fn.evaluations += head.evaluations * s.symmetries
    std = torch.exp(0.5 * log_variance).float().cpu().numpy()
    return {"std": imap.scale_to_input(std), "interval_unit": interval_unit(std, 1, 1.0) * imap.half_span}


def _posterior_mean(model: DiffusionModel, eps_fn, shape, device) -> torch.Tensor:
    """x̂₀ at the noisiest level with y_t = 0: the one-evaluation estimate of E[clean | noisy] that
    TrainConfig.mean_fraction trains. From ε: x̂₀ = (0 − √(1−γ)·ε̂)/√γ."""
    gamma = float(model.schedule.alphas_cumprod[-1])
    eps = eps_fn(torch.zeros((1, 1) + tuple(shape), device=device), gamma)
    return (-math.sqrt(1 - gamma) / math.sqrt(gamma) * eps[0, 0]).clamp(*model.value_range)


def restore_plane(plane: np.ndarray, model: DiffusionModel, s: Settings, number: int, position=(),
                  dtype=np.float32, on_tile: Callable[[float, float, int, int], None] | None = None):
    """One (Y, X) plane, whose ``number`` keys its noise: yields (steps done, total steps) after every
    network step and returns a :class:`PlaneResult`. Everything in it depends on this plane alone, so
    planes may run in any order and in any process. ``model`` must already be on ``s.device``
    (:func:`device_model`); ``on_tile(steps done, total steps, tiles_done, n_tiles)`` is called after
    each tile, its steps counting the tiles of the step under way.

    Steps are counted as on the whole plane: a block's or a bright box's steps weigh its share of
    the plane's pixels, so that the bright pass's boxes — small, each a run of its own — do not count
    as whole runs (21 boxes on a 1192² plane made the first estimate 1/22 of the progress and the
    time left ten times too long). The total holds the boxes expected before the run
    (bright_pass.expected_boxes) until the blocks' estimates have found them all.

    Hot pixels (core.imaging.hot_pixels) are replaced by their neighbours' median before anything
    else reads the plane; the mean holds what ``s.hot_pixels`` says there."""
    imap = IntensityMap.from_percentiles(plane, s.percentiles)
    recorded = plane
    plane, hot = without_hot_pixels(plane, imap, model)
    # blocks blend like tiles: weights ramp over each overlap and sum to one
    blocks = make_tiles(plane.shape, s.block, s.block_overlap)
    per_run = s.sampler.n_evaluations(model.schedule, s.params) if s.n_samples else 1
    pixels = float(plane.shape[0] * plane.shape[1])

    def share(slices) -> float:  # of the plane's pixels
        return (slices[0].stop - slices[0].start) * (slices[1].stop - slices[1].start) / pixels

    block_steps = per_run * sum(share(block.slices) for block in blocks)
    expected = per_run * sum(share(box) for box in expected_boxes(plane, imap, model))
    at = {"done": 0.0, "share": 1.0, "steps": 0, "found": 0.0, "blocks_left": len(blocks)}

    def total() -> float:
        return block_steps + (max(expected, at["found"]) if at["blocks_left"] else at["found"])

    tile_hook = None if on_tile is None else (
        lambda done, n_tiles: on_tile(at["done"] + at["share"] * (at["steps"] + done / n_tiles), total(), done,
                                      n_tiles))

    def run(intensity_map, y0, x0, slices):
        at.update(share=share(slices), steps=0)
        inner = _sample_plane(plane[slices], intensity_map, model, s, number, dtype, tile_hook, (y0, x0))
        try:
            while True:
                at["steps"], _ = next(inner)
                yield at["done"] + at["share"] * at["steps"], total()
        except StopIteration as stop:
            at["done"] += at["share"] * at["steps"]
            return stop.value

    took_bright = False
    whole: dict[str, np.ndarray] = {}
    kept, evaluations = None, 0
    for block in blocks:
        maps = yield from run(imap, block.y0, block.x0, block.slices)
        weight = _bright_weight(maps.maps["mean"], imap, model)
        boxes = bright_boxes(weight) if _reaches_ceiling(maps.maps["mean"], plane[block.slices], imap, model) else []
        whole_boxes = [(slice(block.y0 + box[0].start, block.y0 + box[0].stop),
                        slice(block.x0 + box[1].start, block.x0 + box[1].stop)) for box in boxes]
        at["found"] += per_run * sum(share(whole_box) for whole_box in whole_boxes)
        at["blocks_left"] -= 1
        for box, whole_box in zip(boxes, whole_boxes):
            y0, x0 = whole_box[0].start, whole_box[1].start
            bright = _bright_map(plane[whole_box], imap)
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
    # on the whole plane, its blocks and bright boxes blended
    refined = s.mean_refinement != "none" and refines(s.mean_refinement, plane, camera := estimate_noise([plane]))
    if refined:
        mean = refine_mean(plane, mean, camera).astype(mean.dtype)
    unit = whole.pop("interval_unit", None)
    non_negative = float(plane.min()) >= 0
    if non_negative:  # counts cannot be negative: an estimate below 0 is noise of the estimate, not signal
        clamped = int((mean < 0).sum())
        mean = np.maximum(mean, 0)
    if s.hot_pixels == "pass" and hot.any():  # what the camera recorded, in every frame of it
        mean[hot] = recorded[hot]
    out = {"mean": mean}
    out.update({name: value.astype(MAPS[name].dtype_for(dtype), copy=False) for name, value in whole.items()})
    if unit is not None:
        out["interval_unit"] = unit
    if s.coverage is not None:
        half = s.calibration.factor(s.coverage, tuple(position)) * unit
        out["lower"], out["upper"] = mean - half, mean + half
        if non_negative:
            out["lower"] = np.maximum(out["lower"], 0)
    return PlaneResult(tuple(position), out, kept, evaluations, took_bright, clamped, int(hot.sum()), refined)


NETWORKS = ("network", "mean_network", "std_network", "sample_network")  # a DiffusionModel's networks
# the caller's network → {device: (its weights' state when copied, the copy)}: copying a network costs
# about a sixth of a Preview (0.1 s of 0.55 s on the neuron plane), paid again by every run without this
_DEVICE_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_state(net: torch.nn.Module) -> tuple:
    """What changes when the weights do: each tensor's storage and its in-place version counter
    (an optimiser step, load_state_dict and copy_ all bump it)."""
    try:
        return tuple((t.data_ptr(), t._version) for t in (*net.parameters(), *net.buffers()))
    except RuntimeError:  # inference tensors keep no version counter: a copy each run, as before
        return (object(),)


def device_model(model: DiffusionModel, device: torch.device, networks=None) -> DiffusionModel:
    """The model with the networks named in ``networks`` (DiffusionModel attributes; None: all) as
    copies on ``device`` in channels-last, without touching the caller's; the others are the
    caller's, never called (their configs are still read). Copying a network the run does not call
    cost a tenth of the fast preset's time. A copy is kept for the next run while the caller's
    network lives and its weights do not change (training the network in place makes a new one)."""
    def moved(name):
        net = getattr(model, name)
        if net is None or (networks is not None and name not in networks):
            return net
        state, copies = _weights_state(net), _DEVICE_COPIES.setdefault(net, {})
        kept = copies.get(str(device))
        if kept is None or kept[0] != state:
            kept = copies[str(device)] = (state, copy.deepcopy(net).to(device).eval().to(
                memory_format=torch.channels_last))
        return kept[1]

    return dataclasses.replace(model, **{name: moved(name) for name in NETWORKS})
