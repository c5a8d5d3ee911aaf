"""An image ready to be read plane by plane (:class:`ImageSource`), as every reader of core.io gives
it: its data (lazy or in memory), axes, pixel sizes with their units, and channel names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# TIFF and ImageJ unit spellings → the unit names NGFF accepts (UDUNITS-2)
UNITS = {"micron": "micrometer", "um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer",
          "micrometer": "micrometer", "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter",
          "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter", "s": "second",
          "sec": "second", "second": "second", "ms": "millisecond", "min": "minute", "minute": "minute"}


def is_lazy(image) -> bool:
    """A dask or zarr array (or anything array-like that is not in memory): read plane by plane."""
    return (not isinstance(image, np.ndarray) and hasattr(image, "shape") and hasattr(image, "dtype")
            and hasattr(image, "__getitem__"))


@dataclass
class ImageSource:
    """An image ready to be read plane by plane: ``data`` is lazy (zarr, dask) or in memory."""

    data: object
    axes: str
    path: str | None = None
    scale: dict = field(default_factory=dict)  # axis → pixel size (per axis, in ``units``)
    units: dict = field(default_factory=dict)  # axis → NGFF unit name
    # one per channel (along C; a single name when the file's one channel left no C axis)
    channel_names: list = field(default_factory=list)
    axes_guessed: bool = False  # the file did not say what some axis is (a TIFF's Q or I): read as Z, C or T

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def scale_list(self) -> list[float]:
        return [float(self.scale.get(a, 1.0)) for a in self.axes]


def image_source(path: Path, data, axes: str, scale: dict, units: dict, names, axes_guessed: bool = False
                 ) -> ImageSource:
    """The ImageSource, keeping the sizes of the axes it has (a channel has none) and channel names
    only when there is one per channel."""
    n_channels = data.shape[axes.index("C")] if "C" in axes else 1
    names = [str(n) for n in names] if len(names) == n_channels else []
    return ImageSource(data, axes, str(path), {a: float(v) for a, v in scale.items() if a in axes and a != "C"},
                       {a: u for a, u in units.items() if a in axes and a in scale}, names, axes_guessed)
