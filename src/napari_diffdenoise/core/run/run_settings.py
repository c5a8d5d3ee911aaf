"""A run's settings resolved against a model: :func:`make_settings` checks each setting by its
declaration (core.run.run_spec), then the rules between the settings and the model, one small function
each, and gives the :class:`Settings` a run reads; its keywords are the declared settings
(core.run.run_keywords). core.run.restore re-exports these names, where callers have always found them.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..imaging.kernels import check_psf
from ..imaging.normalization import check_percentiles
from ..io.maps import DEFAULT_ENTROPY
from ..model.devices import default_batch_pixels, resolve_device
from ..model.model import DiffusionModel
from ..sampling.guidance import GUIDES
from ..sampling.sampler_registry import SAMPLERS, SamplerInfo, get_sampler, list_samplers, samplers_for_model
from .conformal import Calibration, find_calibration
from .run_keywords import RunSpec, run_signature, run_values, settings_given
from .run_record import calibration_key, settings_record
from .run_spec import (
    DEFAULT_BLOCK,
    DEFAULT_BLOCK_OVERLAP,
    DEFAULT_SYMMETRIES,
    EMULATED_BFLOAT16_SLOWDOWN,
    RUN_SETTINGS,
)

DEFAULT_STEPS = 10
DEFAULT_OVERLAP_FRACTION = 0.25  # ~25 % overlap blends cleanly (docs/method.md, tiling)
# what denoise() does unless told otherwise; the bundled models ship calibrated for it
DEFAULT_SAMPLER_SETTINGS = {"sampler": "ddim", "sampler_params": {"steps": 10, "eta": 1.0}, "n_samples": 8}
# a 512² plane's maps in under 10 s on a 2-core CPU, at a cost in how well the std ranks the errors
# (docs/benchmarks/samplers.md); the bundled models ship calibrated for it too
FAST_SAMPLER_SETTINGS = {"sampler": "ddim", "sampler_params": {"steps": 3, "eta": 1.0}, "n_samples": 4}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides the image and the model, validated once (:func:`make_settings`)."""

    sampler: SamplerInfo
    params: dict  # the sampler's parameters, checked against its specs
    n_samples: int
    seed: int
    device: torch.device
    tile: int
    overlap: int
    batch_pixels: int
    percentiles: tuple[float, float]
    mean_estimator: str  # "x0" or "samples", resolved from "auto"
    psf: np.ndarray | None = None
    coverage: float | None = None
    calibration: Calibration | None = None  # the one that gives the intervals, when coverage is asked
    keep_samples: bool = False
    block: int = 4096  # planes larger than this are sampled in overlapping blocks (see plane_sampling.restore_plane)
    block_overlap: int = 128
    guidance: str | None = None  # a guide wrapped around any sampler's network calls (core.sampling.guidance)
    guidance_weight: float = 1.0
    entropy: str = DEFAULT_ENTROPY  # which definition the entropy map takes (core.io.maps.ENTROPY_KINDS)
    std_estimator: str = "samples"  # "head" or "samples", resolved from "auto"
    precision: str = "float32"  # the networks' number format (core.run.run_spec.PRECISIONS)
    low_frequencies: str = "data"  # the mean's smooth part (core.run.run_spec.LOW_FREQUENCY_SOURCES)
    symmetries: int = 1  # the heads' one pass averaged over this many symmetries of the square (core.model.symmetries)
    hot_pixels: str = "pass"  # what the mean holds at a hot pixel (core.run.run_spec.HOT_PIXEL_HANDLING)
    mean_refinement: str = "none"  # what refines the mean once made (:func:`_refinement_rule`)


@run_signature()
def make_settings(model: DiffusionModel, *, spec: RunSpec | None = None, **given) -> Settings:
    """Refuse settings that cannot work, before any work starts; each message names the setting,
    the value given and what is accepted. The keywords are the run's settings (core.run.run_spec);
    each is checked by its declaration, then the rules between settings and the model run, in
    this order."""
    given = run_values(settings_given(spec, given, "make_settings"), "make_settings")
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel, a bundled model name or a checkpoint path; got {model!r}")
    schedule = model.schedule
    v = {s.name: s.check(given[s.name], schedule) if s.checked else given[s.name] for s in RUN_SETTINGS}
    asked = {name for name in ("steps", "eta") if v[name] is not None} | set(v["sampler_params"] or {})
    info = _sampler_rule(model, v["sampler"], v["psf"], v["guidance"], asked)
    _head_sampler_rule(model, info, v["guidance"])
    _psf_rule(model, info, v["guidance"], v["psf"])
    _guidance_coverage_rule(v["guidance"], v["coverage"])
    psf = None if v["psf"] is None else check_psf(v["psf"])
    params = info.parameters(schedule, _shorthand_params(info, v["sampler_params"], steps=v["steps"], eta=v["eta"]))
    mean = _mean_rule(model, v["mean"], v["n_samples"])
    std = _std_estimator(model, v["std"], mean)
    symmetries = _symmetries_rule(v["symmetries"], mean)
    _coverage_rule(v["coverage"], v["n_samples"], std)
    dev = resolve_device(v["device"])
    _precision_rule(v["precision"], dev)
    tile, overlap = _tile_rule(model, v["tile"], v["overlap"])
    block = DEFAULT_BLOCK if v["block"] is None else v["block"]
    block_overlap = _block_overlap_rule(v["block_overlap"], block)
    batch_pixels = default_batch_pixels(dev) if v["batch_pixels"] is None else v["batch_pixels"]
    percentiles = check_percentiles(v["percentiles"])
    settings = Settings(info, params, v["n_samples"], v["seed"], dev, tile, overlap, batch_pixels,
                        tuple(percentiles or model.percentiles), mean, psf, v["coverage"], None, v["keep_samples"],
                        block, block_overlap, v["guidance"], float(v["guidance_weight"]), v["entropy"], std,
                        v["precision"], v["low_frequencies"], symmetries, v["hot_pixels"],
                        _refinement_rule(model, mean, psf, v["guidance"]))
    if v["coverage"] is None:
        return settings
    calibration = find_calibration(model, calibration_key(settings_record(settings)))
    calibration.factor(v["coverage"])  # a coverage outside the calibrated levels is refused here
    return dataclasses.replace(settings, calibration=calibration)


def _precision_rule(precision: str, device: torch.device) -> None:
    # autocast to bfloat16 on Apple GPUs depends on the macOS and torch versions; it is not offered there
    if precision == "bfloat16" and device.type == "mps":
        raise ValueError("precision='bfloat16' runs on the CPU or a CUDA GPU; use precision='float32' on an Apple GPU "
                         "(device='mps')")
    if (precision == "bfloat16" and device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.get_device_capability(device)[0] < 8):
        # before Ampere, GPUs have no bfloat16 arithmetic: older torch refuses it mid-run, newer torch emulates it
        warnings.warn(f"precision='bfloat16' on a GPU without bfloat16 arithmetic (compute capability "
                      f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}, below 8.0): it is emulated "
                      "(slower than float32) or refused by older torch; use precision='float32'", UserWarning,
                      stacklevel=2)
    if precision == "bfloat16" and device.type == "cpu" and not cpu_has_bfloat16():
        # allowed (the maps are the same), but a run the user asked to be faster would be several times slower
        warnings.warn("precision='bfloat16' on this CPU, which has no bfloat16 arithmetic (AVX-512 BF16 or AMX): "
                      f"the networks' bfloat16 is emulated, {EMULATED_BFLOAT16_SLOWDOWN} slower than float32 on such a "
                      "CPU (docs/benchmarks/speed.md); use precision='float32'", UserWarning, stacklevel=2)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (oneDNN's own test, as autocast's kernels use it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN: no fast CPU bfloat16 either
        return False


def _sampler_rule(model: DiffusionModel, sampler: str | None, psf, guidance: str | None,
                  asked: set[str] = frozenset()) -> SamplerInfo:
    """The sampler asked for, else the model's own, steered by the PSF only when the PSF is there
    for it (given, and not taken by the guidance); one that fits the model's kind. Sampler
    parameters (``asked``: steps=20, say) or guidance given without a sampler ask for one that
    takes them: DDIM, when the model's own (the one-step sample head) does not."""
    if sampler is None:
        sampler = model.default_sampler
        info = get_sampler(sampler, model.kind)
        if info.needs_psf and (psf is None or _guide_needs_psf(guidance)):
            sampler = "ddim"
        elif info.head is not None and (guidance is not None or not asked <= {p.name for p in info.params}):
            own, sampler = sampler, "ddim"
            takes = {name: [p.name for p in get_sampler(name, model.kind).params] for name in (own, sampler)}
            unknown = sorted(asked - set(takes[own]) - set(takes[sampler]))
            if unknown:  # named after the sampler the user chose, not after the one this rule would switch to
                raise ValueError(f"sampler parameter(s) {unknown} belong to no sampler this run could take: the "
                                 f"model's own, {own!r}, takes {takes[own]}, and {sampler!r} (taken when parameters "
                                 f"the model's own does not take are given) takes {takes[sampler]}; name the sampler "
                                 "whose parameters they are (sampler=…, the CLI's --sampler)")
    return get_sampler(sampler, model.kind)


def _head_sampler_rule(model: DiffusionModel, info: SamplerInfo, guidance: str | None) -> None:
    """A sampler that draws with one of the model's heads needs the model to carry it, and the mean head
    it is conditioned on; no guide can steer it, as it takes no diffusion steps."""
    if info.head is None:
        return
    if not info.fits(model) or model.mean_network is None:
        others = [n for n in samplers_for_model(model) if SAMPLERS[n].head is None]
        raise ValueError(f"sampler {info.name!r} draws with a sample head (and the mean head it builds on); model "
                         f"{model.name!r} has none: use one of {others}")
    if guidance is not None:
        raise ValueError(f"guidance={guidance!r} steers the diffusion network's steps, and sampler {info.name!r} takes "
                         "none; use guidance with sampler 'ddim'")


def _guide_needs_psf(guidance: str | None) -> bool:
    return guidance is not None and GUIDES[guidance].needs_psf


def _psf_rule(model: DiffusionModel, info: SamplerInfo, guidance: str | None, psf) -> None:
    """Derived from what the sampler and the guide declare they need (``needs_psf``): each that needs
    the PSF is given it, and a PSF given steers exactly one of them, since two would pull the samples
    towards consistency twice and one of none would be ignored."""
    users = [name for name, needs in ((f"sampler {info.name!r}", info.needs_psf),
                                      (f"guidance={guidance!r}", _guide_needs_psf(guidance))) if needs]
    if psf is None and users:
        raise ValueError(f"{users[0]} needs the PSF the image was blurred with (psf=…): e.g. "
                         "physics.gaussian_psf(sigma_px), airy_psf(…) or a measured bead image")
    if len(users) > 1:
        raise ValueError(f"sampler {info.name!r} guides with the PSF itself; use guidance with another sampler")
    if psf is not None and not users:
        samplers = [repr(n) for n in list_samplers(model.kind) if get_sampler(n, model.kind).needs_psf]
        guides = [f"guidance={n!r}" for n, guide in GUIDES.items() if guide.needs_psf]
        choose = f"choose {' or '.join(samplers)} for PSF-guided sampling, or " if samplers else "use "
        raise ValueError(f"sampler {info.name!r} does not use a PSF; {choose}{' or '.join(guides)} to guide any "
                         "sampler with it")


def _guidance_coverage_rule(guidance: str | None, coverage: float | None) -> None:
    # a calibration's key has no guidance (core.run.run_record), so a guided run would take the intervals
    # calibrated for its unguided twin, whose spread differs; guided settings are not calibrated either
    # (core.calibration.calibration_run)
    if guidance is not None and coverage is not None:
        raise ValueError("coverage is calibrated for unguided sampling; guidance changes the spread. Leave "
                         "coverage out: no calibration holds for a guided run")


def _shorthand_params(info: SamplerInfo, sampler_params: dict | None, **shorthands) -> dict:
    """sampler_params with steps= and eta= added: plain arguments for the samplers that take them."""
    given = dict(sampler_params or {})
    for name, value in shorthands.items():
        if value is not None:
            if name not in {p.name for p in info.params}:
                raise ValueError(f"sampler {info.name!r} has no parameter {name!r}; it takes "
                                 f"{[p.name for p in info.params] or 'none'}")
            if name in given and given[name] != value:
                raise ValueError(f"{name}={value!r} and sampler_params[{name!r}]={given[name]!r} disagree; give "
                                 "one of them")
            given.setdefault(name, value)
    return given


def _mean_rule(model: DiffusionModel, mean: str, n_samples: int) -> str:
    """The mean estimator this model can give ("auto" resolved); samples for it when it needs them."""
    if mean == "x0" and model.kind != "paired":
        raise ValueError("mean='x0' needs a paired model (the noisy image is its condition); use mean='samples'")
    if mean == "head" and model.mean_network is None:
        raise ValueError(f"mean='head' needs a model with a mean head; {model.name!r} has none: use mean='samples'")
    if mean == "auto":
        mean = model.mean_estimator
        if (mean == "x0" and model.kind != "paired") or (mean == "head" and model.mean_network is None):
            mean = "samples"
    if n_samples == 0 and mean == "samples":
        raise ValueError("n_samples must be at least 1, unless the mean is a one-pass estimate (mean='head' or "
                         "'x0'), which needs no samples")
    return mean


def _refinement_rule(model: DiffusionModel, mean: str, psf, guidance) -> str:
    """The model's refinement of the mean (DiffusionModel.mean_refinement), where the run's mean is what it
    was judged on: the mean head's, restoring a plane as it was recorded (no PSF, no guidance, whose restoration
    is not the noisy image's to be pulled back to)."""
    if mean == "head" and psf is None and guidance is None and model.task == "denoise":
        return model.mean_refinement
    return "none"


def _coverage_rule(coverage: float | None, n_samples: int, std: str) -> None:
    if coverage is not None and n_samples < 2 and std == "samples":
        raise ValueError("coverage needs n_samples of at least 2 (one sample has no spread), or a model with a "
                         "std head (std='head')")


def _tile_rule(model: DiffusionModel, tile, overlap) -> tuple[int, int]:
    """(tile, overlap) in pixels: the tile a multiple the network takes, the overlap below it."""
    multiple = model.network.config.size_multiple
    if tile is not None and not _whole(tile):  # "64", 40.7: never rounded or parsed behind the user's back
        raise ValueError(f"tile must be a whole number of pixels, at least {multiple} for this model; got {tile!r}")
    tile = model.tile if tile is None else int(tile)
    if tile < multiple:
        raise ValueError(f"tile must be at least {multiple} pixels for this model; got {tile}")
    tile -= tile % multiple
    if overlap is not None and not _whole(overlap):
        raise ValueError(f"overlap must be a whole number of pixels from 0 to below the tile ({tile}); got {overlap!r}")
    overlap = int(tile * DEFAULT_OVERLAP_FRACTION) if overlap is None else int(overlap)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be at least 0 and below the tile ({tile}); got {overlap}")
    return tile, overlap


def _block_overlap_rule(block_overlap, block: int) -> int:
    if block_overlap is not None and not _whole(block_overlap):
        raise ValueError(f"block_overlap must be a whole number of pixels, below half the block ({block // 2}); "
                         f"got {block_overlap!r}")
    block_overlap = DEFAULT_BLOCK_OVERLAP if block_overlap is None else int(block_overlap)
    if not 0 <= block_overlap < block // 2:
        raise ValueError(f"block_overlap must be at least 0 and below half the block ({block // 2}); got {block_overlap}")
    return block_overlap


def calibration_settings(model: DiffusionModel, settings: dict | None = None, *,
                         spec: RunSpec | None = None) -> dict | RunSpec:
    """What a calibration for a run with ``settings`` (a dict of run keywords) or ``spec`` (a
    :class:`RunSpec`, the keywords in ``settings`` beside it overriding it, as for ``denoise``)
    restores with, in the form given: a RunSpec for a spec, else a dict. With the std head the mean
    and the interval unit come from the heads alone, and the calibration's key leaves the sampler
    out (core.run.run_record), so it draws no samples: two network passes instead of K × steps. The
    coverage is left out: a calibration takes its levels as its own argument. Hot pixels keep their
    recorded value in its restorations whatever the run does with them (core.imaging.hot_pixels): a
    residual against a view is then noise there, where the neighbours' median would leave the spike
    itself in it."""
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"calibration_settings() takes settings as a dict of run keywords (or spec=RunSpec(…)); "
                        f"got {type(settings).__name__}")
    given = settings_given(spec, dict(settings or {}), "calibration_settings")
    run = {**{k: v for k, v in given.items() if k != "coverage"}, "keep_samples": False, "hot_pixels": "pass"}
    if make_settings(model, **run).std_estimator == "head":
        run["n_samples"] = 0
    return run if spec is None else spec.replace(**run, coverage=None)


def _std_estimator(model: DiffusionModel, std: str, mean: str) -> str:
    """The std estimator this model can give with this mean ("auto" resolved)."""
    if std == "head" and model.std_network is None:
        raise ValueError(f"std='head' needs a model with a std head; {model.name!r} has none: use std='samples'")
    if std == "head" and mean != "head":
        raise ValueError(f"std='head' gives the error of the mean head's estimate; with mean={mean!r} use std='samples'")
    if std == "auto":
        std = "head" if model.std_network is not None and mean == "head" else "samples"
    return std


def _symmetries_rule(symmetries: int | None, mean: str) -> int:
    """How many symmetries the heads' pass is averaged over: DEFAULT_SYMMETRIES where the run takes the
    mean head, else 1; more than one only where it does (nothing else is averaged, and a setting that
    changed nothing would let the user believe it had)."""
    if symmetries is None:
        return DEFAULT_SYMMETRIES if mean == "head" else 1
    if symmetries > 1 and mean != "head":
        raise ValueError(f"symmetries={symmetries} averages the mean head's pass, and this run takes its mean from "
                         f"{mean!r}: use mean='head' (a model with a mean head), or symmetries=1")
    return symmetries


def _whole(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value) and float(value).is_integer())
