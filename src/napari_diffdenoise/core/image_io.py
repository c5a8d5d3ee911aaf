"""Opening images lazily, with their axes and pixel sizes: OME-Zarr (NGFF 0.4 and 0.5), plain zarr
arrays and TIFF (read through tifffile's zarr view, so a file larger than memory is read one plane
at a time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .axes import ALL_AXES, check_axes

# TIFF and ImageJ unit spellings → the unit names NGFF accepts (UDUNITS-2)
_UNITS = {"micron": "micrometer", "um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer",
          "micrometer": "micrometer", "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter",
          "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter", "s": "second",
          "sec": "second", "second": "second", "ms": "millisecond", "min": "minute", "minute": "minute"}


@dataclass
class ImageSource:
    """An image ready to be read plane by plane: ``data`` is lazy (zarr, dask) or in memory."""

    data: object
    axes: str
    path: str | None = None
    scale: dict = field(default_factory=dict)  # axis → pixel size (per axis, in ``units``)
    units: dict = field(default_factory=dict)  # axis → NGFF unit name

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
    return ImageSource(data, check_axes(file_axes, data.shape), str(path), scale, units)


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


def _open_tiff(path: Path, axes: str | None) -> ImageSource:
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages[0]
        scale, units = {}, {}
        x, y = page.tags.get("XResolution"), page.tags.get("YResolution")
        unit_tag = page.tags.get("ResolutionUnit")
        ij = tif.imagej_metadata or {}
        unit = _UNITS.get(str(ij.get("unit", "")).lower()) or {3: "centimeter"}.get(
            int(unit_tag.value) if unit_tag is not None else 0)
        if x is not None and y is not None and x.value[0] and y.value[0]:
            scale["X"], scale["Y"] = x.value[1] / x.value[0], y.value[1] / y.value[0]
            if unit == "centimeter":  # the TIFF resolution unit; say it in micrometres
                scale = {k: v * 1e4 for k, v in scale.items()}
                unit = "micrometer"
        if "spacing" in ij:
            scale["Z"] = float(ij["spacing"])
        if ij.get("finterval"):
            scale["T"] = float(ij["finterval"])
        file_axes = series.axes  # matches series.shape, which tifffile squeezes of length-1 axes
    store = tifffile.imread(path, aszarr=True)
    data = zarr.open(store, mode="r")
    if isinstance(data, zarr.Group):  # a pyramid: level 0 is the full resolution
        data = data["0"]
    if len(data.shape) != len(file_axes):
        raise ValueError(f"{path.name}: tifffile reports axes {file_axes} for shape {data.shape}; give --axes")
    axes = check_axes(axes, data.shape) if axes is not None else _tiff_axes(file_axes, data.shape)
    units = {a: unit for a in "ZYX" if unit and a in scale and a in axes}
    if "T" in scale:
        units["T"] = "second"
    return ImageSource(data, axes, str(path), {a: v for a, v in scale.items() if a in axes}, units)


def open_image(path, axes: str | None = None) -> ImageSource:
    """An OME-Zarr image, a zarr array or a TIFF, opened lazily; ``axes`` overrides what the file says
    (refused for OME-Zarr, whose axes are part of the format)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if is_zarr_path(path):
        return _open_zarr(path, axes)
    if path.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(path, axes)
    raise ValueError(f"{path.name}: expected a TIFF (.tif, .tiff) or an OME-Zarr / zarr store (.zarr)")
