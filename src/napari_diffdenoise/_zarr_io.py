"""npe2 reader and writer: napari opens the plugin's OME-Zarr results (every map as a layer, lazily,
with its pixel sizes) and any single OME-Zarr image, and saves an image layer as OME-Zarr."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .core.io.image_io import is_zarr_path, ngff_multiscales
from .core.io.map_store import ATTRIBUTE, ngff_order, read_maps
from .core.io.maps import layer_kwargs, layer_metadata


def get_reader(path):
    """A reader for an OME-Zarr store this plugin wrote, or a single OME-Zarr image; None otherwise
    (napari then asks the other readers)."""
    if isinstance(path, list):
        return None
    if not is_zarr_path(path) or not Path(path).is_dir():
        return None
    import zarr

    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 — not a zarr group
        return None
    return read_zarr if (ATTRIBUTE in attrs and "maps" in attrs[ATTRIBUTE]) or ngff_multiscales(attrs) else None


def read_zarr(path) -> list[tuple]:
    import dask.array as da
    import zarr

    path = Path(path)
    stem = path.name.removesuffix(".zarr").removesuffix(".ome")
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    if ATTRIBUTE in attrs and "maps" in attrs[ATTRIBUTE]:
        maps, record = read_maps(path)
        # the maps are stored in NGFF order, which may differ from the input's (record["input_axes"])
        meta = {ATTRIBUTE: {**record.get("metadata", {}), "axes": record["axes"]}}
        done, total = _planes_done(path)
        suffix = ""
        if done < total:  # a killed or running run: the planes not yet done hold NaN, which must not pass for data
            meta[ATTRIBUTE]["partial"] = {"planes_done": done, "n_planes": total}
            suffix = f" (partial: {done}/{total} planes)"
        run = record.get("metadata", {})
        # each map styled as the Denoise widget shows it (core.io.maps)
        return [(da.from_zarr(array), {"name": f"{stem} [{name}]{suffix}", "scale": record["scale"],
                                       "metadata": {ATTRIBUTE: {**meta[ATTRIBUTE], **layer_metadata(name, run)}},
                                       "axis_labels": tuple(record["axes"].lower()), **layer_kwargs(name, run),
                                       **_units(record["ngff_axes"])},
                 "image") for name, array in maps.items()]
    image = ngff_multiscales(attrs)[0]
    group = zarr.open_group(str(path), mode="r")
    levels = [da.from_zarr(group[d["path"]]) for d in image["datasets"]]
    scale = None
    for transform in image["datasets"][0].get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = list(transform["scale"])
    axes = [a["name"] if isinstance(a, dict) else a for a in image.get("axes", [])]
    kwargs = {"name": image.get("name") or stem, "multiscale": len(levels) > 1,
              "metadata": {ATTRIBUTE: attrs.get(ATTRIBUTE, {})}}
    if scale:
        kwargs["scale"] = scale
    if axes:
        kwargs["axis_labels"] = tuple(axes)
    kwargs.update(_units(image.get("axes", [])))
    return [(levels if len(levels) > 1 else levels[0], kwargs, "image")]


def _units(ngff_axes: list) -> dict:
    """The layer's ``units`` keyword from a store's NGFF axes (an axis without one in pixels), or none where the
    store names none or one napari's units (pint) cannot read: napari then shows pixels, as it did before."""
    units = [entry.get("unit") if isinstance(entry, dict) else None for entry in ngff_axes]
    if not any(units):
        return {}
    import pint

    registry = pint.get_application_registry()
    try:
        for unit in filter(None, units):
            registry.Unit(unit)
    except (pint.errors.UndefinedUnitError, ValueError, AttributeError):
        return {}
    return {"units": tuple(unit or "pixel" for unit in units)}


def _planes_done(path) -> tuple[int, int]:
    """(planes whose maps are complete, planes in all) of a result store."""
    import zarr

    flags = np.asarray(zarr.open_group(str(path), mode="r")["done"][...])
    return int(flags.sum()), int(flags.size)


# what a zarr store holds at its top level besides its arrays and groups (folders)
_ZARR_FILES = {"zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"}


def _replaceable(target: Path) -> bool:
    """Whether an existing ``target`` may be replaced by a save: only a store this plugin wrote (its
    record in the root's attributes) with nothing but zarr's own files at its top level. napari's
    save dialog has asked the user before replacing it; anything else may hold the user's files."""
    import zarr

    if not target.is_dir() or any(p.is_file() and p.name not in _ZARR_FILES for p in target.iterdir()):
        return False
    try:
        return ATTRIBUTE in dict(zarr.open_group(str(target), mode="r").attrs)
    except Exception:  # noqa: BLE001 — not a zarr group: not ours
        return False


def write_image(path: str, data, meta: dict) -> list[str]:
    """One image layer to an OME-Zarr image (NGFF 0.5): the axes from the plugin's metadata or the
    layer's axis labels (else by dimension count), the layer's scale as pixel sizes, the plugin's
    run record kept. Written beside the target and moved into place when complete, so a failed
    save leaves the old store (or none), never half of one."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    from .core.imaging.axes import check_axes, infer_axes

    target = Path(path)
    if not str(target).lower().endswith(".zarr"):
        target = target.with_name(target.name + ".ome.zarr")
    if target.exists() and not _replaceable(target):
        raise ValueError(f"{target} already exists and is not an OME-Zarr store napari-diffdenoise wrote; saving "
                         "would delete what is in it. Choose another name, or move it away first")
    array = data[0] if meta.get("multiscale") else data
    record = (meta.get("metadata") or {}).get(ATTRIBUTE, {})
    labels = "".join(str(a).upper() for a in meta.get("axis_labels") or ())
    try:
        axes = check_axes(record.get("axes") or labels, array.shape)
    except (ValueError, TypeError):
        axes = infer_axes(np.ndim(array))
    order = ngff_order(axes)
    permutation = [axes.index(a) for a in order]
    scale = list(meta.get("scale") if meta.get("scale") is not None else [1.0] * len(axes))
    values = np.transpose(np.asarray(array), permutation)
    types = {"T": "time", "C": "channel"}
    units = dict(zip(axes, (str(u) for u in meta.get("units") or ())))  # napari ≥ 0.6: pint units, 'pixel' if none
    ngff_axes = [{"name": a.lower(), "type": types.get(a, "space"),
                  **({"unit": units[a]} if units.get(a, "pixel") != "pixel" else {})} for a in order]
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        group = zarr.open_group(str(scratch / "image.zarr"), mode="w")
        chunks = (1,) * (values.ndim - 2) + tuple(min(n, 2048) for n in values.shape[-2:])
        group.create_array("0", shape=values.shape, chunks=chunks, dtype=values.dtype)[...] = values
        write_multiscales_metadata(
            group, [{"path": "0", "coordinateTransformations": [{"type": "scale",
                                                                 "scale": [float(scale[i]) for i in permutation]}]}],
            fmt=FormatV05(), axes=ngff_axes, name=meta.get("name") or target.stem)
        group.attrs[ATTRIBUTE] = json.loads(json.dumps({**record, "axes": order}, default=str))
        if target.exists():
            shutil.rmtree(target)
        (scratch / "image.zarr").rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [str(target)]
