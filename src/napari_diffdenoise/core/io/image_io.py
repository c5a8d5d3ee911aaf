"""Opening images lazily, with their axes, pixel sizes and channel names: OME-Zarr (NGFF 0.4 and
0.5), plain zarr arrays, TIFF and OME-TIFF (read through tifffile's zarr view, so a file larger than
memory is read one plane at a time), and the microscopes' own files (.czi, .nd2, .lif through bioio's
plugins, .ims through h5py: core.io.microscope_files), which need the ``formats`` extra.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..imaging.axes import ALL_AXES, check_axes
from .image_source import UNITS, ImageSource, image_source
from .microscope_files import BIOIO_PLUGINS, open_bioio, open_ims
from .tiff_maps import read_record

# TIFF ResolutionUnit codes → micrometres per unit (1: none, so the pixel size has no unit)
_RESOLUTION_UNIT_UM = {2: 25400.0, 3: 1e4}


def is_zarr_path(path) -> bool:
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and ((p / "zarr.json").exists() or (p / ".zattrs").exists()
                                                          or (p / ".zarray").exists() or (p / ".zgroup").exists()))


def ngff_multiscales(attrs: dict) -> list | None:
    """The multiscales list of an NGFF image group's attributes (0.5 nests it under "ome")."""
    return (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")


def _open_zarr(path: Path, axes: str | None) -> ImageSource:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a folder that is not a store
        raise ValueError(f"{path} is not a zarr store ({err})") from err
    if isinstance(node, zarr.Array):
        return ImageSource(node, check_axes(axes, node.shape), str(path))
    multiscales = ngff_multiscales(dict(node.attrs))
    if not multiscales:
        raise ValueError(f"{path} is a zarr group without OME-Zarr (NGFF) image metadata; give the path of the "
                         "image group or of an array inside it")
    image = multiscales[0]
    names = [a["name"] if isinstance(a, dict) else a for a in image.get("axes", [])]
    file_axes = "".join(n.upper() for n in names)
    if set(file_axes) - set(ALL_AXES):
        raise ValueError(f"{path} has axes {names}; only t, c, z, y, x are supported")
    level0 = image["datasets"][0]
    data = node[level0["path"]]  # the full-resolution level; the others are for display
    if axes is not None and axes.upper() != file_axes:
        raise ValueError(f"--axes (axes) {axes} disagrees with the file's axes {file_axes}; leave it out for "
                         "OME-Zarr")
    scale, units = {}, {}
    for transform in level0.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            scale = dict(zip(file_axes, (float(v) for v in transform["scale"])))
    for axis, entry in zip(file_axes, image.get("axes", [])):
        if isinstance(entry, dict) and entry.get("unit"):
            units[axis] = entry["unit"]
    attrs = dict(node.attrs)
    omero = (attrs.get("ome") or {}).get("omero") or attrs.get("omero") or {}
    names = [c.get("label", "") for c in omero.get("channels", []) if isinstance(c, dict)]
    return image_source(path, data, check_axes(file_axes, data.shape), scale, units, names)


def _tiff_axes(series_axes: str, shape) -> str:
    """tifffile's axis codes → ours: I and Q (sequence, unknown) are read as Z, C or T; S (samples) as C
    when the samples are stored as planes (a 3-plane stack written without saying so reads as SYX) or
    are 16-bit or more (moved before YX by :func:`_open_tiff`), and refused when they are interleaved
    8-bit colour (YXS, an RGB picture)."""
    if series_axes.endswith("S"):
        raise ValueError(f"the TIFF holds 8-bit RGB colour pixels (axes {series_axes}), a picture rather than a "
                         "microscope's counts; convert it to grey levels, or save each channel as its own plane")
    if "S" in series_axes:
        series_axes = series_axes.replace("S", "C" if "C" not in series_axes else "Q")
    free = [a for a in "TCZ" if a not in series_axes]
    out = ""
    for code in series_axes:
        if code in ALL_AXES:
            out += code
        elif free:
            out += free.pop(-1)  # Z first, then C, then T
        else:
            raise ValueError(f"cannot map the TIFF's axes {series_axes} onto TCZYX; give --axes (axes=)")
    return check_axes(out, shape)


def _resolution_scale(tif) -> tuple[dict, dict]:
    """X and Y from the resolution tags, Z and T from ImageJ's spacing and frame interval; centimetres
    and inches are said in micrometres."""
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    scale = {}
    x, y = page.tags.get("XResolution"), page.tags.get("YResolution")
    if x is not None and y is not None and x.value[0] and y.value[0]:
        scale["X"], scale["Y"] = x.value[1] / x.value[0], y.value[1] / y.value[0]
    if "spacing" in ij:
        scale["Z"] = float(ij["spacing"])
    unit_tag = page.tags.get("ResolutionUnit")
    # ImageJ writes a unit outside ASCII escaped: Fiji's µm is the 7 characters "\u00B5m"
    unit = UNITS.get(re.sub(r"\\u([0-9a-fA-F]{4})", lambda code: chr(int(code.group(1), 16)),
                            str(ij.get("unit", ""))).lower())
    per_unit_um = {"centimeter": 1e4}.get(unit) if unit else _RESOLUTION_UNIT_UM.get(
        int(unit_tag.value) if unit_tag is not None else 1)
    if per_unit_um:
        scale, unit = {a: v * per_unit_um for a, v in scale.items()}, "micrometer"
    units = {a: unit for a in scale} if unit else {}
    if ij.get("finterval"):
        scale["T"], units["T"] = float(ij["finterval"]), "second"
    return scale, units


def _ome_metadata(xml: str) -> tuple[dict, dict, list]:
    """Pixel sizes, their units and the channel names of the first image of an OME-XML document."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return {}, {}, []
    ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
    pixels = root.find(f"{ns}Image/{ns}Pixels")
    if pixels is None:
        return {}, {}, []
    scale, units = {}, {}
    # OME's default units: micrometres for sizes, seconds for the time increment
    for axis, key, default in (("X", "PhysicalSizeX", "µm"), ("Y", "PhysicalSizeY", "µm"),
                               ("Z", "PhysicalSizeZ", "µm"), ("T", "TimeIncrement", "s")):
        if pixels.get(key):
            scale[axis] = float(pixels.get(key))
            unit = UNITS.get(pixels.get(f"{key}Unit", default).lower())
            if unit:
                units[axis] = unit
    return scale, units, [c.get("Name", "") for c in pixels.findall(f"{ns}Channel")]


def _open_tiff(path: Path, axes: str | None) -> ImageSource:
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        scale, units = _resolution_scale(tif)
        names = []
        if tif.is_ome:
            ome_scale, ome_units, names = _ome_metadata(tif.ome_metadata)
            scale, units = {**scale, **ome_scale}, {**units, **ome_units}
        record = read_record(tif)
        if isinstance(record.get("scale"), dict):
            scale, units = {**scale, **record["scale"]}, {**units, **record.get("units", {})}
            names = record.get("channel_names", names)
        file_axes = tif.series[0].axes  # matches series.shape, which tifffile squeezes of length-1 axes
        # a hyperstack cut short (a partial copy) reads as its first plane, with nothing said but tifffile's log
        said = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
        readable = int(np.prod([n for n, a in zip(tif.series[0].shape, file_axes) if a not in "YXS"]))
        if isinstance(said, int) and said > readable:
            raise ValueError(f"{path.name} looks truncated or damaged: its ImageJ metadata says {said} planes, "
                             f"{readable} can be read (a partial copy?)")
    store = tifffile.imread(path, aszarr=True)
    data = zarr.open(store, mode="r")
    if isinstance(data, zarr.Group):  # a pyramid: level 0 is the full resolution
        data = data["0"]
    if len(data.shape) != len(file_axes):
        raise ValueError(f"{path.name}: tifffile reports axes {file_axes} for shape {data.shape}; give --axes (axes=)")
    if file_axes.endswith("S") and np.dtype(data.dtype) != np.uint8:
        # interleaved samples of 16 bits or more are a microscope's channels (a 12-bit 3-channel HeLa image
        # from NEUBIAS's training resources is stored so), not a colour picture: read lazily as C before YX
        import dask.array as da

        data = da.moveaxis(da.from_zarr(data), -1, -3)
        file_axes = file_axes[:-3] + "S" + file_axes[-3:-1]
    guessed = axes is None and any(code not in ALL_AXES + "S" for code in file_axes)
    axes = check_axes(axes, data.shape) if axes is not None else _tiff_axes(file_axes, data.shape)
    return image_source(path, data, axes, scale, units, names, guessed)


def open_image(path, axes: str | None = None) -> ImageSource:
    """An OME-Zarr image, a zarr array, a TIFF or a microscope's file (.czi, .nd2, .lif, .ims: the
    formats extra), opened lazily; ``axes`` overrides what a TIFF or zarr array says (refused for
    OME-Zarr and the microscopes' files, whose axes are part of the format)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if is_zarr_path(path):
        return _open_zarr(path, axes)
    if path.is_dir():  # read as a file it said "[Errno 21] Is a directory"
        raise ValueError(f"{path} is a folder, not an image file (a folder of images is read one file at a time; "
                         "an OME-Zarr store's name ends in .zarr)")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            return _open_tiff(path, axes)
        except tifffile.TiffFileError as err:  # its own message names no file ("not a TIFF file: header=…")
            raise ValueError(f"{path} cannot be read as a TIFF ({err})") from err
    if suffix in BIOIO_PLUGINS:
        return open_bioio(path, axes)
    if suffix == ".ims":
        return open_ims(path, axes)
    raise ValueError(f"{path.name}: expected a TIFF (.tif, .tiff), an OME-Zarr / zarr store (.zarr) or a "
                     f"microscope's file ({', '.join(sorted([*BIOIO_PLUGINS, '.ims']))})")
