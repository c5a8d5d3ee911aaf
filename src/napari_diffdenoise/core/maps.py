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

from .normalization import IntensityMap
from .uncertainty import pixel_entropy


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
    description: str  # goes into each layer's metadata ("definition")
    when: Callable[[object], bool]  # whether a run with these restore.Settings makes it
    dtype: str = "input"  # "input": the maps' dtype for this input (restore.output_dtype); "float32"
    style: LayerStyle = LayerStyle()
    compute: Callable[[object, MapContext], np.ndarray] | None = None  # (samples, context) → map

    def dtype_for(self, input_dtype) -> np.dtype:
        return np.dtype(np.float32 if self.dtype == "float32" else input_dtype)


MAPS: dict[str, MapSpec] = {}


def register_map(name: str, compute: Callable[[object, MapContext], np.ndarray] | None = None, *,
                 description: str, when: Callable[[object], bool] | None = None, dtype: str = "input",
                 style: LayerStyle | None = None) -> MapSpec:
    """Declare a map. With ``compute`` it is made from the K samples of every plane (by default
    whenever a run draws samples); it then appears in ``Restoration.maps``, the OME-Zarr store,
    the TIFF output and the widget's layers, in the order maps were registered."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a map's name must be a Python identifier (it names files and layers); got {name!r}")
    if name in MAPS:
        raise ValueError(f"a map named {name!r} is already registered")
    if dtype not in ("input", "float32"):
        raise ValueError(f"dtype must be 'input' or 'float32'; got {dtype!r}")
    if when is None:
        if compute is None:
            raise ValueError(f"map {name!r} needs a compute function, or a `when` saying which run makes it")
        when = _sampled
    spec = MapSpec(name, description, when, dtype, style or LayerStyle(), compute)
    MAPS[name] = spec
    return spec


def map_names(settings) -> list[str]:
    """The maps a run with these settings makes, in the order they are shown and written."""
    return [spec.name for spec in MAPS.values() if spec.when(settings)]


def sample_maps(settings) -> list[MapSpec]:
    """The maps of this run that are computed from the samples."""
    return [spec for spec in MAPS.values() if spec.compute is not None and spec.when(settings)]


def layer_metadata(name: str) -> dict:
    """What a map's layer carries in its metadata besides the run's record."""
    spec = MAPS.get(name)
    return {"map": name, **({"definition": spec.description} if spec is not None else {})}


def layer_kwargs(name: str, metadata: dict, source_colormap: str | None = None) -> dict:
    spec = MAPS.get(name)
    return (spec.style if spec is not None else LayerStyle()).layer_kwargs(metadata, source_colormap)


def _sampled(settings) -> bool:
    return settings.n_samples > 0


def _interval(settings) -> bool:
    return settings.coverage is not None


def _std(samples, context: MapContext) -> np.ndarray:
    return context.imap.scale_to_input(samples.std(dim=0, correction=0).float().cpu().numpy())


def _quantised_entropy(samples, context: MapContext) -> np.ndarray:
    return pixel_entropy(samples, context.value_range).float().cpu().numpy().astype(np.float32)


def _bits_of_k(metadata: dict) -> tuple[float, float] | None:
    k = metadata.get("n_samples")
    return (0.0, max(math.log2(k), 1e-3)) if isinstance(k, int) and k > 0 else None


register_map("mean", description="the estimate of the clean image (docs/method.md, 'The three maps'), in the input's "
             "intensity units", when=lambda s: True)
register_map("std", _std, description="pixel-wise standard deviation of the K samples (population std), in the input's "
             "intensity units", dtype="float32", style=LayerStyle("magma", "additive", 0.7))
register_map("entropy", _quantised_entropy,
             description="pixel-wise Shannon entropy of the K samples quantised to 256 equal bins over the model's "
             "range [−1.5, 1.5] (Osuna-Vargas et al., Eq. 16), in bits: 0 … log2 K",
             dtype="float32", style=LayerStyle("viridis", "additive", 0.7, visible=False, contrast=_bits_of_k))
register_map("lower", description="the interval's lower bound, in the input's intensity units", when=_interval,
             style=LayerStyle(visible=False))
register_map("upper", description="the interval's upper bound, in the input's intensity units", when=_interval,
             style=LayerStyle(visible=False))
