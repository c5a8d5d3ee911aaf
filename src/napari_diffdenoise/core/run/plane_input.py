"""The image a run reads: checked once before any work (its type, axes, size and values, and whether
the machine's memory holds a run on it), read one (Y, X) plane at a time, and the dtype its maps take.
core.run.restore's loop and core.run.batch's file runs refuse the same images by these same checks."""
from __future__ import annotations

import os

import numpy as np

from ..imaging.axes import check_axes, refuse_channels_last
from ..io.image_source import is_lazy

MIN_PLANE = 8  # pixels a side: the least plane a run (and a calibration's noise fit, in 8² blocks) reads


def check_plane_size(shape, name: str = "") -> None:
    if min(shape[-2:]) < MIN_PLANE:
        raise ValueError(f"{name + ': ' if name else ''}planes must be at least {MIN_PLANE}×{MIN_PLANE} pixels, "
                         f"got {tuple(shape[-2:])}")


def check_image(image, axes: str | None = None):
    """(array, axes): the image as given when lazy (dask, zarr), else as a NumPy array, and its axes."""
    if image is None:
        raise TypeError("image must be an array of numbers with 2 to 5 dimensions (axes from TCZYX, e.g. a "
                        "(Y, X) plane or a (Z, Y, X) stack); got None")
    if isinstance(image, np.ma.MaskedArray):
        raise TypeError("masked arrays are not supported: the mask would be ignored. Fill the masked pixels first "
                        "(image.filled(value)) or crop them away")
    array = image if is_lazy(image) else np.asarray(image)
    if np.dtype(array.dtype).kind not in "biuf":
        raise TypeError(f"images must be numeric (integers or real floating point numbers); got dtype {array.dtype}")
    shape = tuple(array.shape)
    if axes is None:
        refuse_channels_last(shape)
    axes = check_axes(axes, shape)
    if int(np.prod(shape)) == 0:
        raise ValueError(f"the image is empty (shape {shape})")
    check_plane_size(shape)
    if isinstance(array, np.ndarray) and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the image contains NaN or infinite values")
    if isinstance(array, np.ndarray):
        _check_resolvable(array)
    return array, axes


def _check_resolvable(array: np.ndarray) -> None:
    """Refuse values whose spread float64 cannot hold or resolve: ±1e308 overflows the span, and
    counts near 2⁶³ have steps of 2048 there, wider than any signal on top of them."""
    lowest, highest = np.min(array), np.max(array)
    # integers exactly (uint64 near 2⁶³ would round to one float64 value and look constant)
    low, high = (int(lowest), int(highest)) if array.dtype.kind in "iu" else (float(lowest), float(highest))
    span = float(high - low)
    step = np.spacing(float(max(abs(low), abs(high))))  # float64's resolution at the image's largest magnitude
    if not np.isfinite(span) or (span > 0 and step > 1e-3 * span):
        raise ValueError(f"the image's values run from {low:.6g} to {high:.6g}: beyond what can be normalised "
                         "(float64 cannot resolve a thousandth of that span at that magnitude); subtract the "
                         "offset or rescale the image first")


def read_plane(array, position: tuple[int, ...]) -> np.ndarray:
    """One (Y, X) plane in memory; a lazy array is read here, and only this plane of it."""
    plane = np.asarray(array[position])
    if plane.dtype.kind == "f" and not np.isfinite(plane).all():
        where = f" (plane {position})" if position else ""
        raise ValueError(f"the image contains NaN or infinite values{where}")
    return plane


# bytes per sample and pixel measured on the CPU at the model's tile (network activations, the
# sampler's state and the K-sample maps): the guard below refuses a run that cannot fit
BYTES_PER_SAMPLE_PIXEL = 27


# bytes per pixel of a whole plane, whatever the block: read_plane loads the plane at once (as
# float64) and the maps of the plane are assembled in memory (mean, std, entropy, bounds, unit)
BYTES_PER_PLANE_PIXEL = 8 + 6 * 8


def check_memory(array, n_samples: int, block: int | None = None) -> None:
    plane = int(np.prod([min(n, block or n) for n in array.shape[-2:]]))  # a block is sampled at a time
    whole = int(np.prod(array.shape[-2:]))
    need = BYTES_PER_SAMPLE_PIXEL * max(n_samples, 1) * plane + BYTES_PER_PLANE_PIXEL * whole
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not every platform tells
        return
    if BYTES_PER_PLANE_PIXEL * whole > 0.8 * total:
        raise MemoryError(f"one {array.shape[-2]}×{array.shape[-1]} plane is read whole and needs about "
                          f"{BYTES_PER_PLANE_PIXEL * whole / 2**30:.1f} GiB with its maps, more than this machine's "
                          f"{total / 2**30:.0f} GiB allow: crop or tile the plane first")
    if need > 0.8 * total:
        fit = max(1, int((0.8 * total - BYTES_PER_PLANE_PIXEL * whole) / (BYTES_PER_SAMPLE_PIXEL * plane)))
        raise MemoryError(f"n_samples = {n_samples} on {array.shape[-2]}×{array.shape[-1]} planes needs about "
                          f"{need / 2**30:.1f} GiB, more than this machine's {total / 2**30:.0f} GiB allow: use "
                          f"n_samples of at most {fit}, or sample in smaller blocks (block=…)")


def check_kept_samples(array, n_samples: int) -> None:
    """keep_samples holds all K samples of the whole image in memory at the end, beside the maps."""
    need = n_samples * int(np.prod(array.shape)) * np.dtype(output_dtype(array)).itemsize
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > KEPT_SAMPLES_SHARE * total:
        raise MemoryError(f"keep_samples=True with n_samples = {n_samples} on an image of {array.shape} keeps "
                          f"{need / 2**30:.1f} GiB of samples, more than {KEPT_SAMPLES_SHARE:.0%} of this machine's "
                          f"{total / 2**30:.0f} GiB: keep the samples of fewer planes, or fewer samples")


KEPT_SAMPLES_SHARE = 0.5  # of the machine's memory that kept samples may take


def output_dtype(image) -> type:
    """float64 maps for float64 input and for integers wider than 16 bits: an offset of 1e9 leaves
    float32 steps of 64 counts (int64 counts near 1e9 came back with 26-count errors)."""
    dtype = np.dtype(image.dtype)
    wide = dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2)
    return np.float64 if wide else np.float32
