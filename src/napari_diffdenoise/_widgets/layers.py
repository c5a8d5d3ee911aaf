"""Keeping a dock widget's layer lists in step with the viewer."""
from __future__ import annotations


def image_choices(viewer):
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def follow_layers(viewer, *combos) -> None:
    """Refresh each combo box's choices whenever a layer is added, removed or moved."""
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered):
        for combo in combos:
            event.connect(combo.reset_choices)
