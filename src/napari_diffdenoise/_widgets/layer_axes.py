"""Which axis of a napari image layer is which (T, C, Z, Y, X): what the layer names, else what the file it
was opened from names, else what its dimension count implies."""
from __future__ import annotations

import functools
import os


def _layer_shape(layer) -> tuple[int, ...]:
    return tuple((layer.data[0] if layer.multiscale else layer.data).shape)


def named_axes(layer) -> str | None:
    """The axes the layer names — its axis labels when they are T, C, Z, Y, X (as OME-Zarr readers set
    them) — else those of its file (:func:`file_axes`), else None."""
    from ..core.imaging.axes import check_axes

    labels = "".join(str(label).upper() for label in getattr(layer, "axis_labels", ()) or ())
    try:
        return check_axes(labels, _layer_shape(layer))
    except (ValueError, TypeError):
        return file_axes(layer)


def file_axes(layer) -> str | None:
    """The axes the file the layer was opened from names, where its shape is the layer's: napari's own TIFF
    reader opens a CYX or ZCYX TIFF as one layer with no axis labels, whose dimensions alone would say ZYX
    or TZYX (a Z axis taken for time, channels for Z). None where the file names no axes (a TIFF's Q) or
    is not one the plugin reads."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or not os.path.exists(path):
        return None
    found = _axes_in_file(str(path), os.stat(path).st_mtime)
    return found[0] if found is not None and found[1] == _layer_shape(layer) else None


@functools.lru_cache(maxsize=32)
def _axes_in_file(path: str, mtime: float) -> tuple[str, tuple[int, ...]] | None:
    """(axes, shape) as the CLI reads the file (core.io.image_io.open_image: metadata only, the pixels stay
    on disk); keyed by the file's modification time so that a rewritten file is read again."""
    from ..core.io.image_io import open_image

    try:
        source = open_image(path)
    except Exception:  # noqa: BLE001 — any file the plugin cannot read leaves the layer's own dimensions to decide
        return None
    return None if source.axes_guessed else (source.axes, tuple(source.shape))


def layer_axes(layer) -> str:
    """The layer's axes: :func:`named_axes`, else what its dimension count implies (napari's sliders
    lead: ZYX, TZYX, TCZYX)."""
    from ..core.imaging.axes import infer_axes

    return named_axes(layer) or infer_axes(layer.ndim)
