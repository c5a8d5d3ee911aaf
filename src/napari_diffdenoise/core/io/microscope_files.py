"""The microscopes' own files, opened lazily: .czi, .nd2 and .lif through bioio's plugins, .ims
(Imaris) through h5py; all need the ``formats`` extra."""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from ..imaging.axes import check_axes
from .image_source import UNITS, ImageSource, image_source

# the microscopes' formats bioio reads, each through its own plugin; .ims (Imaris) has no bioio
# plugin and is read here through h5py. All come with the formats extra.
BIOIO_PLUGINS = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
FORMATS_EXTRA = 'pip install "napari-diffdenoise[formats]"'
# plane-sized chunks, so reading one plane does not decode its whole Z stack
_PLANE_CHUNKS = {".czi": {"chunk_dims": ["Y", "X"]}, ".lif": {"chunk_dims": ["Y", "X"]}}


def file_axes(path: Path, data, file_axes: str, axes: str | None, scale, units, names) -> ImageSource:
    """A microscope file's TCZYX without its length-1 T, C, Z axes (one plane reads as YX); the file
    names its axes, so a different ``axes`` is refused."""
    index = tuple(0 if a in "TCZ" and n == 1 else slice(None) for a, n in zip(file_axes, data.shape))
    kept = "".join(a for a, i in zip(file_axes, index) if isinstance(i, slice))
    if axes is not None and axes.upper() != kept:
        raise ValueError(f"--axes (axes) {axes} disagrees with the file's axes {kept}; leave --axes out for "
                         f"{path.suffix.lower()} files, whose axes are in the file")
    return image_source(path, data[index], check_axes(kept, data[index].shape), scale, units, names)


def open_bioio(path: Path, axes: str | None) -> ImageSource:
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
        units = {a: UNITS.get(str(getattr(properties, a).unit), "micrometer") for a in scale}
        if image.time_interval:
            scale["T"], units["T"] = image.time_interval.total_seconds(), "second"
        names = list(image.channel_names or [])
    except ValueError:
        raise
    except Exception as err:  # each plugin raises its own types for a damaged or mislabelled file
        raise ValueError(f"{path.name} could not be read as a {suffix} file ({type(err).__name__}: {err})") from err
    return file_axes(path, data, "TCZYX", axes, scale, units, names)


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


def open_ims(path: Path, axes: str | None) -> ImageSource:
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
        unit = UNITS.get(_ims_text(info.attrs, "Unit").lower(), "micrometer")  # Imaris's default is µm
        units = {a: unit for a in scale}
        names = [_ims_text(handle[f"DataSetInfo/Channel {i}"].attrs, "Name") if f"DataSetInfo/Channel {i}" in handle
                 else "" for i in range(data.shape[1])]
        stamps = handle.get("DataSetInfo/TimeInfo")
        if stamps is not None and len(times) > 1:
            first, last = (datetime.fromisoformat(_ims_text(stamps.attrs, f"TimePoint{k}")) for k in (1, len(times)))
            scale["T"], units["T"] = (last - first).total_seconds() / (len(times) - 1), "second"
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path.name}: the Imaris metadata could not be read ({err})") from err
    return file_axes(path, data, "TCZYX", axes, scale, units, names if any(names) else [])
