"""Opening images lazily, with their axes, pixel sizes and channel names: OME-Zarr (NGFF 0.4 and
0.5), plain zarr arrays, TIFF and OME-TIFF (read through tifffile's zarr view, so a file larger than
memory is read one plane at a time), and the microscopes' own files (.czi, .nd2, .lif through bioio's
plugins, .ims through h5py), which need the ``formats`` extra.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..imaging.axes import ALL_AXES, check_axes
from .tiff_maps import read_record

# TIFF and ImageJ unit spellings → the unit names NGFF accepts (UDUNITS-2)
_UNITS = {"micron": "micrometer", "um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer",
          "micrometer": "micrometer", "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter",
          "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter", "s": "second",
          "sec": "second", "second": "second", "ms": "millisecond", "min": "minute", "minute": "minute"}
# TIFF ResolutionUnit codes → micrometres per unit (1: none, so the pixel size has no unit)
_RESOLUTION_UNIT_UM = {2: 25400.0, 3: 1e4}

# the microscopes' formats bioio reads, each through its own plugin; .ims (Imaris) has no bioio
# plugin and is read here through h5py. All come with the formats extra.
BIOIO_PLUGINS = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
FORMATS_EXTRA = 'pip install "napari-diffdenoise[formats]"'
# plane-sized chunks, so reading one plane does not decode its whole Z stack
_PLANE_CHUNKS = {".czi": {"chunk_dims": ["Y", "X"]}, ".lif": {"chunk_dims": ["Y", "X"]}}


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

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def scale_list(self) -> list[float]:
        return [float(self.scale.get(a, 1.0)) for a in self.axes]


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
        raise ValueError(f"--axes {axes} disagrees with the file's axes {file_axes}; leave --axes out for OME-Zarr")
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
    return _source(path, data, check_axes(file_axes, data.shape), scale, units, names)


def _tiff_axes(series_axes: str, shape) -> str:
    """tifffile's axis codes → ours: I and Q (sequence, unknown) are read as Z, C or T; S (samples) as C
    when the samples are stored as planes (a 3-plane stack written without saying so reads as SYX), and
    refused when they are interleaved colour (YXS, an RGB picture)."""
    if series_axes.endswith("S"):
        raise ValueError(f"the TIFF holds RGB colour pixels (axes {series_axes}); convert it to grey levels, or save "
                         "each channel as its own plane")
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
            raise ValueError(f"cannot map the TIFF's axes {series_axes} onto TCZYX; give --axes")
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
    unit = _UNITS.get(str(ij.get("unit", "")).lower())
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
            unit = _UNITS.get(pixels.get(f"{key}Unit", default).lower())
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
    store = tifffile.imread(path, aszarr=True)
    data = zarr.open(store, mode="r")
    if isinstance(data, zarr.Group):  # a pyramid: level 0 is the full resolution
        data = data["0"]
    if len(data.shape) != len(file_axes):
        raise ValueError(f"{path.name}: tifffile reports axes {file_axes} for shape {data.shape}; give --axes")
    axes = check_axes(axes, data.shape) if axes is not None else _tiff_axes(file_axes, data.shape)
    return _source(path, data, axes, scale, units, names)


def _source(path: Path, data, axes: str, scale: dict, units: dict, names) -> ImageSource:
    """The ImageSource, keeping the sizes of the axes it has (a channel has none) and channel names
    only when there is one per channel."""
    n_channels = data.shape[axes.index("C")] if "C" in axes else 1
    names = [str(n) for n in names] if len(names) == n_channels else []
    return ImageSource(data, axes, str(path), {a: float(v) for a, v in scale.items() if a in axes and a != "C"},
                       {a: u for a, u in units.items() if a in axes and a in scale}, names)


def _file_axes(path: Path, data, file_axes: str, axes: str | None, scale, units, names) -> ImageSource:
    """A microscope file's TCZYX without its length-1 T, C, Z axes (one plane reads as YX); the file
    names its axes, so a different ``axes`` is refused."""
    index = tuple(0 if a in "TCZ" and n == 1 else slice(None) for a, n in zip(file_axes, data.shape))
    kept = "".join(a for a, i in zip(file_axes, index) if isinstance(i, slice))
    if axes is not None and axes.upper() != kept:
        raise ValueError(f"--axes {axes} disagrees with the file's axes {kept}; leave --axes out for "
                         f"{path.suffix.lower()} files, whose axes are in the file")
    return _source(path, data[index], check_axes(kept, data[index].shape), scale, units, names)


def _open_bioio(path: Path, axes: str | None) -> ImageSource:
    suffix = path.suffix.lower()
    plugin = BIOIO_PLUGINS[suffix]
    try:
        from bioio import BioImage

        reader = importlib.import_module(plugin.replace("-", "_")).Reader
    except ImportError as err:
        raise ValueError(f"{path.name}: reading {suffix} files needs bioio and its plugin {plugin}, which are not "
                         f"installed; install them with {FORMATS_EXTRA}") from err
    kwargs = _PLANE_CHUNKS.get(suffix, {})
    try:
        reader(path, **kwargs)  # the plugin's own words when the file is not one (BioImage's list them all)
    except Exception as err:  # each plugin raises its own types for a damaged or mislabelled file
        raise ValueError(f"{path.name} could not be read as a {suffix} file ({err})") from err
    try:
        image = BioImage(path, reader=reader, **kwargs)  # the first scene
        dims = image.dims
        if "S" in dims.order and dims.S > 1:
            raise ValueError(f"{path.name} holds RGB colour pixels; convert it to grey levels, or save each "
                             "channel as its own plane")
        data = image.get_image_dask_data("TCZYX", **({"S": 0} if "S" in dims.order else {}))
        sizes, properties = image.physical_pixel_sizes, image.dimension_properties
        scale = {a: v for a, v in zip("ZYX", (sizes.Z, sizes.Y, sizes.X)) if v}
        # bioio gives pixel sizes in micrometres unless the reader names another unit
        units = {a: _UNITS.get(str(getattr(properties, a).unit), "micrometer") for a in scale}
        if image.time_interval:
            scale["T"], units["T"] = image.time_interval.total_seconds(), "second"
        names = list(image.channel_names or [])
    except ValueError:
        raise
    except Exception as err:  # each plugin raises its own types for a damaged or mislabelled file
        raise ValueError(f"{path.name} could not be read as a {suffix} file ({type(err).__name__}: {err})") from err
    return _file_axes(path, data, "TCZYX", axes, scale, units, names)


def _ims_text(attrs, key: str) -> str:
    """An Imaris attribute: text stored as an array of one-byte strings."""
    value = attrs.get(key)
    if value is None:
        return ""
    if isinstance(value, (bytes, str)):
        return value.decode(errors="replace") if isinstance(value, bytes) else value
    return b"".join(bytes(v) for v in np.ravel(value)).decode(errors="replace")


def _ims_number(name: str) -> int:  # "TimePoint 12" → 12
    return int(name.rsplit(" ", 1)[-1])


def _open_ims(path: Path, axes: str | None) -> ImageSource:
    """An Imaris file (HDF5): DataSet/ResolutionLevel 0/TimePoint t/Channel c/Data, each a (Z, Y, X)
    block padded to whole chunks, sized and scaled by DataSetInfo/Image's attributes."""
    from datetime import datetime

    try:
        import h5py
    except ImportError as err:
        raise ValueError(f"{path.name}: reading Imaris (.ims) files needs h5py, which is not installed; install it "
                         f"with {FORMATS_EXTRA}") from err
    import dask.array as da

    try:
        handle = h5py.File(path, "r")  # kept open: the dask array reads from it
    except OSError as err:
        raise ValueError(f"{path.name} is not an Imaris file: it is not HDF5 ({err})") from err
    info, level = handle.get("DataSetInfo/Image"), handle.get("DataSet/ResolutionLevel 0")
    if info is None or level is None:
        raise ValueError(f"{path.name} is HDF5 but not an Imaris file (it lacks DataSet/ResolutionLevel 0 or "
                         "DataSetInfo/Image)")
    try:
        size = [int(_ims_text(info.attrs, a)) for a in "ZYX"]
        times = sorted(level, key=_ims_number)
        blocks = [[level[t][c]["Data"] for c in sorted(level[t], key=_ims_number)] for t in times]
        data = da.stack([da.stack([da.from_array(b, chunks=(1,) + b.shape[1:])[: size[0], : size[1], : size[2]]
                                   for b in row]) for row in blocks])
        # ExtMin0/ExtMax0 bound X, 1 Y, 2 Z
        scale = {a: (float(_ims_text(info.attrs, f"ExtMax{i}")) - float(_ims_text(info.attrs, f"ExtMin{i}"))) / n
                 for i, (a, n) in enumerate(zip("XYZ", size[::-1]))}
        unit = _UNITS.get(_ims_text(info.attrs, "Unit").lower(), "micrometer")  # Imaris's default is µm
        units = {a: unit for a in scale}
        names = [_ims_text(handle[f"DataSetInfo/Channel {i}"].attrs, "Name") if f"DataSetInfo/Channel {i}" in handle
                 else "" for i in range(data.shape[1])]
        stamps = handle.get("DataSetInfo/TimeInfo")
        if stamps is not None and len(times) > 1:
            first, last = (datetime.fromisoformat(_ims_text(stamps.attrs, f"TimePoint{k}")) for k in (1, len(times)))
            scale["T"], units["T"] = (last - first).total_seconds() / (len(times) - 1), "second"
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path.name}: the Imaris metadata could not be read ({err})") from err
    return _file_axes(path, data, "TCZYX", axes, scale, units, names if any(names) else [])


def open_image(path, axes: str | None = None) -> ImageSource:
    """An OME-Zarr image, a zarr array, a TIFF or a microscope's file (.czi, .nd2, .lif, .ims: the
    formats extra), opened lazily; ``axes`` overrides what a TIFF or zarr array says (refused for
    OME-Zarr and the microscopes' files, whose axes are part of the format)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if is_zarr_path(path):
        return _open_zarr(path, axes)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _open_tiff(path, axes)
    if suffix in BIOIO_PLUGINS:
        return _open_bioio(path, axes)
    if suffix == ".ims":
        return _open_ims(path, axes)
    raise ValueError(f"{path.name}: expected a TIFF (.tif, .tiff), an OME-Zarr / zarr store (.zarr) or a "
                     f"microscope's file ({', '.join(sorted([*BIOIO_PLUGINS, '.ims']))})")
