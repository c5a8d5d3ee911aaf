"""Axis names of an image (a subset of T, C, Z, Y, X ending in Y, X) and its planes.

Every plane (Y, X) is restored on its own, with its own normalisation, so channels are independent;
the plane's number in row-major order over the leading axes keys its noise (core.sampling.noise), which makes
a plane's result the same whichever process computes it and in whatever order.
"""
from __future__ import annotations

import itertools

import numpy as np

ALL_AXES = "TCZYX"
# what an array of each dimension count holds when nothing says otherwise (napari shows the leading
# dims as sliders; OME-Zarr's order is TCZYX)
DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}


def infer_axes(ndim: int) -> str:
    if ndim not in DEFAULT_AXES:
        raise ValueError(f"images must have 2 to 5 dimensions (axes from {ALL_AXES}, ending in YX); got {ndim}")
    return DEFAULT_AXES[ndim]


def check_axes(axes: str | None, shape) -> str:
    """The axes string for an array of ``shape``: given (validated) or inferred from its dimensions."""
    ndim = len(shape)
    if axes is None:
        return infer_axes(ndim)
    if not isinstance(axes, str):
        raise TypeError(f"axes must be a string such as 'TZYX'; got {axes!r}")
    normal = axes.upper()
    if set(normal) - set(ALL_AXES) or len(set(normal)) != len(normal) or not normal.endswith("YX"):
        raise ValueError(f"axes must name each of {ALL_AXES} at most once and end in YX (e.g. 'ZYX', 'TCZYX'); "
                         f"got {axes!r}")
    if len(normal) != ndim:
        raise ValueError(f"axes {axes!r} name {len(normal)} dimensions but the image has {ndim} (shape {tuple(shape)})")
    return normal


def plane_positions(shape) -> list[tuple[int, ...]]:
    """The index of every (Y, X) plane over the leading axes, in row-major order: position i has
    plane number i."""
    return list(itertools.product(*(range(n) for n in shape[:-2])))


def refuse_channels_last(shape, what: str | None = None) -> None:
    """Refuse a 3D shape that reads as a colour image or as (Y, X, C), whose planes would be taken as Y × C
    images: ``what`` names the image (a training image: its planes would have trained as 64 × 3 px images, and the
    message advised a smaller patch), None for the image a run restores."""
    shape = tuple(shape)
    said = f"{what}: shape {shape}" if what else f"shape {shape}"
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) >= 8:
        raise ValueError(f"{said} looks like an RGB(A) image (Y, X, {shape[-1]}): convert it to "
                         "grey levels or pass each channel as its own (Y, X) image")
    if len(shape) == 3 and shape[-1] <= 16 < min(shape[:2]):
        raise ValueError(f"{said} looks like (Y, X, C) with {shape[-1]} channels, which would be "
                         f"read as planes of width {shape[-1]}: move the channel axis first "
                         "(np.moveaxis(image, -1, 0))" + (" and denoise each channel on its own" if what is None
                                                           else ""))


def as_planes(images, what: str) -> list[np.ndarray]:
    """A list of 2D float32 planes from an array or a list of arrays of 2 to 5 dims (T, C, Z, Y, X: every
    (Y, X) plane is a training image)."""
    if images is None:
        return []
    items = [images] if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)) else list(images)
    planes = []
    for i, item in enumerate(items):
        array = np.asarray(item)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{what} image {i} is not numeric (dtype {array.dtype})")
        # finite float64 beyond float32's range became inf in the cast (with numpy's overflow warning) and was
        # refused as "NaN or infinite"
        if array.dtype.kind == "f" and array.dtype.itemsize > 4 and np.isfinite(array).all() and \
                np.abs(array).max(initial=0.0) > np.finfo(np.float32).max:
            raise ValueError(f"{what} image {i} holds values up to {np.abs(array).max():.3g}, beyond what float32 "
                             f"holds (±{np.finfo(np.float32).max:.3g}): rescale it first")
        if array.ndim == 2:
            planes.append(array.astype(np.float32))
        elif 3 <= array.ndim <= 5:
            refuse_channels_last(array.shape, f"{what} image {i}")
            planes.extend(p.astype(np.float32) for p in array.reshape((-1,) + array.shape[-2:]))
        else:
            raise ValueError(f"{what} image {i} has shape {array.shape}; expected 2 to 5 dims (T, C, Z, Y, X)")
        if not np.isfinite(planes[-1]).all():
            raise ValueError(f"{what} image {i} contains NaN or infinite values")
    return planes
