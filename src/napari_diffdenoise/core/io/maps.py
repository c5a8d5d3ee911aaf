"""One declaration per output map of a run: its name, its dtype, how napari shows it, when a run
makes it, what it means, and — for a map computed from the K samples — the function that computes
it. The restore loop, the OME-Zarr store, the TIFF writer, the zarr reader and the Denoise widget
all read :data:`MAPS`, so a new map is one :func:`register_map` call plus its function.

A sample map's function takes the plane's K samples (a (K, Y, X) tensor in the model's normalised
range) and a :class:`MapContext`, and returns the map in output units as a NumPy array; blocks and
the bright second pass are blended like the built-in maps. Maps without a function (mean, lower,
upper) are made by the restore loop itself.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..imaging.normalization import IntensityMap
from ..imaging.uncertainty import pixel_entropy


@dataclass(frozen=True)
class MapContext:
    """What a sample map's function may need besides the samples."""

    imap: IntensityMap  # model units ↔ the input's units for this plane (or block)
    value_range: tuple[float, float]  # the model's range of sample values
    settings: object  # the run's restore.Settings


@dataclass(frozen=True)
class LayerStyle:
    """How napari shows a map. ``colormap`` None: the source layer's colormap (gray when read from a
    store). ``contrast``: the contrast limits from the run's metadata (the layer may be lazy, so
    never from its data), or None for napari's own."""

    colormap: str | None = None
    blending: str | None = None
    opacity: float | None = None
    visible: bool = True
    contrast: Callable[[dict], tuple[float, float] | None] | None = None

    def layer_kwargs(self, metadata: dict, source_colormap: str | None = None) -> dict:
        out = {"visible": self.visible}
        colormap = self.colormap or source_colormap
        if colormap is not None:
            out["colormap"] = colormap
        if self.blending is not None:
            out["blending"] = self.blending
        if self.opacity is not None:
            out["opacity"] = self.opacity
        limits = None if self.contrast is None else self.contrast(metadata)
        if limits is not None:
            out["contrast_limits"] = tuple(float(v) for v in limits)
        return out


@dataclass(frozen=True)
class MapSpec:
    name: str
    description: str | Callable[[dict], str]  # each layer's metadata["definition"], or a function of the run's metadata
    when: Callable[[object], bool]  # whether a run with these restore.Settings makes it
    dtype: str = "input"  # "input": the maps' dtype for this input (restore.output_dtype); "float32"
    style: LayerStyle = LayerStyle()
    compute: Callable[[object, MapContext], np.ndarray] | None = None  # (samples, context) → map

    def dtype_for(self, input_dtype) -> np.dtype:
        return np.dtype(np.float32 if self.dtype == "float32" else input_dtype)

    def describe(self, metadata: dict) -> str:
        return self.description(metadata) if callable(self.description) else self.description


MAPS: dict[str, MapSpec] = {}


def register_map(name: str, compute: Callable[[object, MapContext], np.ndarray], *,
                 description: str | Callable[[dict], str], when: Callable[[object], bool] | None = None,
                 dtype: str = "input", style: LayerStyle | None = None) -> MapSpec:
    """Declare a map made by ``compute`` from the K samples of every plane, by default whenever a
    run draws samples (``when``: a function of the run's restore.Settings). It then appears in
    ``Restoration.maps``, the OME-Zarr store, the TIFF output, the reader's and the widget's layers,
    in the order maps were registered."""
    if not callable(compute):
        raise TypeError(f"map {name!r} needs a compute function of (samples, context); got {compute!r}")
    return _declare(name, compute, description, when or _sampled, dtype, style)


def _declare(name, compute, description, when, dtype="input", style=None) -> MapSpec:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a map's name must be a Python identifier (it names files and layers); got {name!r}")
    if name in MAPS:
        raise ValueError(f"a map named {name!r} is already registered")
    if dtype not in ("input", "float32"):
        raise ValueError(f"dtype must be 'input' or 'float32'; got {dtype!r}")
    spec = MapSpec(name, description, when, dtype, style or LayerStyle(), compute)
    MAPS[name] = spec
    return spec


def map_names(settings) -> list[str]:
    """The maps a run with these settings makes, in the order they are shown and written."""
    return [spec.name for spec in MAPS.values() if spec.when(settings)]


def sample_maps(settings) -> list[MapSpec]:
    """The maps of this run that are computed from the samples."""
    return [spec for spec in MAPS.values() if spec.compute is not None and spec.when(settings)]


def layer_metadata(name: str, metadata: dict) -> dict:
    """What a map's layer carries in its metadata besides the run's record."""
    spec = MAPS.get(name)
    return {"map": name, **({"definition": spec.describe(metadata)} if spec is not None else {})}


def layer_kwargs(name: str, metadata: dict, source_colormap: str | None = None) -> dict:
    spec = MAPS.get(name)
    return (spec.style if spec is not None else LayerStyle()).layer_kwargs(metadata, source_colormap)


def _sampled(settings) -> bool:
    return settings.n_samples > 0


def _interval(settings) -> bool:
    return settings.coverage is not None


def _spread(settings) -> bool:
    """A std (and an interval unit) comes with the run: from its samples or from a std head."""
    return settings.n_samples > 0 or getattr(settings, "std_estimator", "samples") == "head"


def _std_definition(metadata: dict) -> str:
    if metadata.get("std_estimator") == "head":
        return ("the std head's estimate of the mean's error, √E[(clean − mean)² | noisy] (core/model/std_head.py), "
                "in the input's intensity units")
    return "pixel-wise standard deviation of the K samples (population std), in the input's intensity units"


def negentropy(samples: torch.Tensor) -> torch.Tensor:
    """How far the K samples of each pixel are from one bell curve, in bits: the entropy of a
    Gaussian with their std minus the entropy of their kernel density estimate (Gaussian kernels,
    Silverman's bandwidth 1.06·σ·K^(−1/5)), clamped at 0. It depends on the samples' shape alone,
    not on their spread: about 0.03 bits for K = 8 Gaussian draws, 0.26 bits for two equal groups
    of K/2 identical values. Over the sample axis 0 of ``samples`` (K, ...)."""
    k = samples.shape[0]
    x = samples.float()  # float64 is slow on GPUs and missing on Apple's
    std = x.std(dim=0, correction=0)
    # standardised values over the bandwidth: the measure is free of the spread's scale
    z = (x - x.mean(dim=0)) / (std.clamp_min(1e-12) * 1.06 * k ** -0.2)
    density = torch.ones_like(z)  # Σ_j exp(−(z_i − z_j)²/2), the j = i term already in
    for i in range(k - 1):  # each pair once (the kernel is symmetric), in place: K planes, not K²
        pair = (z[i + 1:] - z[i]).square_().mul_(-0.5).exp_()
        density[i] += pair.sum(dim=0)
        density[i + 1:] += pair
    nats = 0.5 - math.log(1.06 * k ** -0.2) + density.div_(k).log_().mean(dim=0)
    return torch.where(std > SPREAD_FLOOR, nats / math.log(2), torch.zeros_like(nats)).clamp_min(0).float()


SPREAD_FLOOR = 1e-6  # model units: samples that agree to this have no shape (all 0 bits)


@dataclass(frozen=True)
class EntropyKind:
    """One definition the entropy map may take (make_settings(entropy=…))."""

    compute: Callable[[torch.Tensor, MapContext], torch.Tensor]  # (samples, context) → bits
    definition: str  # the layer's metadata["definition"], the widget's tooltip
    contrast: Callable[[dict], tuple[float, float] | None]  # from the run's metadata


def _bits_of_k(metadata: dict) -> tuple[float, float] | None:
    k = metadata.get("n_samples")
    return (0.0, max(math.log2(k), 1e-3)) if isinstance(k, int) and k > 0 else None


NEGENTROPY_CONTRAST = (0.0, 0.5)  # bits: two separate groups of samples (≈ 0.26) show mid-scale
# the first is the default, chosen by docs/benchmarks/entropy.md: of the candidates measured it alone
# is not a function of the std, tells two groups of samples from one bell curve, and reads 0 for one
ENTROPY_KINDS = {
    "negentropy": EntropyKind(
        lambda samples, context: negentropy(samples),
        "how far the K samples are from a single bell curve, in bits: the entropy of a Gaussian with their std "
        "minus that of their kernel density estimate (Silverman's bandwidth), clamped at 0. 0 where the samples "
        "spread like one bell curve, higher where they fall into separate groups (a structure present in some "
        "samples and absent in others); independent of the spread itself, which the std shows",
        lambda metadata: NEGENTROPY_CONTRAST),
    "quantised": EntropyKind(
        lambda samples, context: pixel_entropy(samples, context.value_range),
        "pixel-wise Shannon entropy of the K samples quantised to 256 equal bins over the model's range "
        "[−1.5, 1.5] (Osuna-Vargas et al., Eq. 16), in bits: 0 … log2 K",
        _bits_of_k),
}
DEFAULT_ENTROPY = next(iter(ENTROPY_KINDS))


def _entropy_kind(metadata: dict) -> EntropyKind:
    # runs recorded before the setting existed were quantised
    return ENTROPY_KINDS.get(metadata.get("entropy", "quantised"), ENTROPY_KINDS["quantised"])


def _entropy(samples, context: MapContext) -> np.ndarray:
    kind = ENTROPY_KINDS[getattr(context.settings, "entropy", DEFAULT_ENTROPY)]
    return kind.compute(samples, context).float().cpu().numpy().astype(np.float32)


# mean, std, lower and upper have no function here: the restore loop makes them (one-pass estimators,
# the bright-pass blend, the calibrated interval)
_declare("mean", None, "the estimate of the clean image (docs/method.md, 'The three maps'), in the input's intensity "
         "units", lambda s: True)
# the loop makes std: from the samples, or in one pass from the model's std head (restore.STD_ESTIMATORS)
_declare("std", None, _std_definition, _spread, dtype="float32", style=LayerStyle("magma", "additive", 0.7))
register_map("entropy", _entropy, description=lambda metadata: _entropy_kind(metadata).definition,
             dtype="float32", style=LayerStyle("viridis", "additive", 0.7, visible=False,
                                               contrast=lambda metadata: _entropy_kind(metadata).contrast(metadata)))
_declare("lower", None, "the interval's lower bound, in the input's intensity units", _interval,
         style=LayerStyle(visible=False))
_declare("upper", None, "the interval's upper bound, in the input's intensity units", _interval,
         style=LayerStyle(visible=False))
