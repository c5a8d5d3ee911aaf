"""A dock widget's image layers: its lists of them kept in step with the viewer, and the plane an estimate reads of one."""
from __future__ import annotations

import numpy as np


def image_choices(viewer):
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


NO_SECOND = "none"  # the second-acquisition choice that is not an image layer


def result_tags() -> tuple[str, ...]:
    """The name tags of this plugin's result layers (a map registered later included)."""
    from ..core.io.maps import MAPS

    return (*(f"[{name}]" for name in MAPS), "[samples]", "[preview")


def is_result(layer) -> bool:
    return any(tag in layer.name for tag in result_tags())


def second_acquisition_choices(viewer, image) -> list:
    """None, and the other image layers of ``image``'s shape (another acquisition of its field) that a
    calibration on ``image`` can also be made against: not a result of this plugin, which no acquisition is."""
    shape = None if image is None or image.multiscale else np.shape(image.data)
    return [(NO_SECOND, NO_SECOND)] + [(name, layer) for name, layer in image_choices(viewer)
                                      if layer is not image and not layer.multiscale and np.shape(layer.data) == shape
                                      and not is_result(layer)]


def follow_layers(viewer, *combos) -> None:
    """Refresh each combo box's choices whenever a layer is added, removed, moved or renamed."""
    events = viewer.layers.events
    for event in (events.inserted, events.removed, events.reordered):
        for combo in combos:
            event.connect(combo.reset_choices)

    follower = _NameFollower(combos)
    for layer in viewer.layers:
        follower.follow(layer)
    # napari holds a bound method weakly (a lambda strongly: it kept a closed widget alive): the follower lives as
    # long as the first combo
    combos[0].__dict__.setdefault("_name_followers", []).append(follower)
    events.inserted.connect(follower.on_inserted)


class _NameFollower:
    """Connects each new layer's renames to the combos' refresh."""

    def __init__(self, combos):
        self.combos = combos

    def follow(self, layer) -> None:
        for combo in self.combos:
            layer.events.name.connect(combo.reset_choices)

    def on_inserted(self, event) -> None:
        self.follow(event.value)


def first_plane(layer) -> np.ndarray | None:
    """The layer's first 2D plane, or None for a lazy or RGB image (not read just for an estimate):
    its bright structure shows whether a run takes the second pass (core.run.bright_pass), which the
    time estimates count, in the run and in a calibration's crops."""
    from ..core.io.image_source import is_lazy

    data = layer.data[0] if layer.multiscale else layer.data
    if is_lazy(data) or layer.rgb:
        return None
    return np.asarray(data[(0,) * (data.ndim - 2)])


# what places a layer's pixels in the world and names its axes; napari before 0.6 had no axis labels or units
PLACEMENT = ("scale", "translate", "rotate", "shear", "affine", "axis_labels", "units")


def placed_like(layer, leading: str | None = None) -> dict:
    """add_image keywords that put a map over ``layer``'s pixels, its axes named and measured as the layer's: a map
    drawn elsewhere (a rotated or registered tile, with only scale and translate copied) cannot be compared with the
    data, and a map whose axes lost their labels is read with other axes when it goes back into a widget.
    ``leading``: the label of an extra first axis the map has (the K samples), placed as a plain index."""
    given = {key: getattr(layer, key) for key in PLACEMENT if hasattr(layer, key)}
    if leading is None:
        return given
    from napari.utils.transforms import Affine

    # napari places a pixel at affine(translate + rotate·shear·scale·x): the scale kept as the scale (a scale bar
    # reads it), the rest as one affine with a plain index axis before it (rotate and shear matrices do not take an
    # extra axis as they are given)
    rest = Affine(translate=layer.translate, rotate=layer.rotate, shear=layer.shear)
    whole = np.eye(layer.ndim + 2)
    whole[1:, 1:] = layer.affine.affine_matrix @ rest.affine_matrix
    given = {key: value for key, value in given.items() if key in ("axis_labels", "units")}
    given.update(scale=(1, *layer.scale), affine=whole)
    if "axis_labels" in given:
        given["axis_labels"] = (leading, *layer.axis_labels)
    if "units" in given:
        given["units"] = ("pixel", *layer.units)
    return given
