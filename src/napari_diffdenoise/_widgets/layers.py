"""A dock widget's image layers: its lists of them kept in step with the viewer, and the plane an estimate reads of one."""
from __future__ import annotations

import numpy as np


def image_choices(viewer):
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


NO_SECOND = "none"  # the second-acquisition choice that is not an image layer


def second_acquisition_choices(viewer, image) -> list:
    """None, and the other image layers of ``image``'s shape (another acquisition of its field) that a
    calibration on ``image`` can also be made against."""
    shape = None if image is None or image.multiscale else np.shape(image.data)
    return [(NO_SECOND, NO_SECOND)] + [(name, layer) for name, layer in image_choices(viewer)
                                      if layer is not image and not layer.multiscale and np.shape(layer.data) == shape]


def follow_layers(viewer, *combos) -> None:
    """Refresh each combo box's choices whenever a layer is added, removed or moved."""
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered):
        for combo in combos:
            event.connect(combo.reset_choices)


def first_plane(layer) -> np.ndarray | None:
    """The layer's first 2D plane, or None for a lazy or RGB image (not read just for an estimate):
    its bright structure shows whether a run takes the second pass (core.run.bright_pass), which the
    time estimates count, in the run and in a calibration's crops."""
    from ..core.io.image_source import is_lazy

    data = layer.data[0] if layer.multiscale else layer.data
    if is_lazy(data) or layer.rgb:
        return None
    return np.asarray(data[(0,) * (data.ndim - 2)])
