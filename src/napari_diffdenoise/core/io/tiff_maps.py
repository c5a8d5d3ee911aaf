"""The TIFF files this package writes, and the record it reads back from them. Maps are streamed into
TIFF files plane by plane (in the input's axis order), so a stack larger than memory can be written
as TIFF too; arrays in memory (the demo's maps, simulated pairs) go the same way (:func:`write_maps`). Every file is written under a temporary name and renamed only when all
planes of all maps are in: a failed or interrupted run leaves the earlier files (or none), never a
partial set. TIFF output does not resume; OME-Zarr output does (core.io.map_store).

Each file's first description holds the record: its shape and axes, the input's :func:`pixel_record`
and, under :data:`RUN_KEY`, the run's metadata as JSON; :func:`read_record` reads it back.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np

from ..imaging.axes import infer_axes
from .maps import MAPS

RUN_KEY = "napari_diffdenoise"  # the run's metadata in a file's record


def record_json(value) -> str:
    """``value`` as strict JSON, which other programs' parsers read: a NaN or an infinity (Python's json writes
    them as bare words, which no JSON parser takes: a held-out coverage not measured is NaN) as null, and what
    JSON has no type for as its str."""
    def finite(v):
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        return v.item() if isinstance(v, np.generic) else v

    return json.dumps(finite(value), default=str, allow_nan=False)


def refuse_existing(paths, overwrite: bool) -> None:
    """Refuse, before any work, to write ``paths`` (files in one or more folders): where a folder stands at a
    file's name or in place of its folder, whatever ``overwrite`` says (a folder at a map's name was once set
    aside under a hidden name after the maps were written, and the run failed then), and where files exist,
    unless ``overwrite``."""
    paths = [Path(p) for p in paths]
    for folder in {p.parent for p in paths}:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {folder} is a file, not a folder; choose a folder for the maps")
    folders = [str(p) for p in paths if p.is_dir()]
    if folders:
        raise ValueError(f"{', '.join(folders)} is a folder where a map file goes; it is not replaced even with "
                         "--overwrite (overwrite=True): move it away, or choose another --out (folder)")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exist(s); pass --overwrite (overwrite=True) to replace, or "
                         "choose another --out (folder)")
    for folder in {p.parent for p in paths}:
        # the folder, or the one it would be made in: a run that cannot write learns it before its minutes of work
        # (it failed after them, naming a hidden temporary file: "Permission denied: …/.x.partial")
        made_in = next(f for f in (folder, *folder.parents) if f.exists())
        if not made_in.is_dir():  # it was said as a permission ("this user may not write in afile")
            raise ValueError(f"--out {folder}: {made_in} is a file, where a folder would be made; choose another --out")
        if not os.access(made_in, os.W_OK | os.X_OK):
            raise ValueError(f"--out {folder}: this user may not write in {made_in}; choose another --out")


def replace_all(temps: list[Path], paths: list[Path], stale: list[Path] = ()) -> None:
    """Rename each finished temporary file over its final name, all or none: a rename that fails half-way
    (a full disk, a file locked by another program) would otherwise leave new maps beside old ones.
    The earlier files are set aside first and put back when any rename fails; ``stale`` files (an earlier
    run's maps that this run does not make) are set aside with them and removed only when all is in place."""
    moved, placed = [], []
    try:
        for path in [*paths, *stale]:
            if path.exists():
                backup = path.with_name(f".{path.name}.previous")
                os.replace(path, backup)
                moved.append((backup, path))
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
            placed.append(path)
    except OSError as err:
        for path in placed:
            path.unlink(missing_ok=True)
        for backup, path in moved:
            os.replace(backup, path)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise OSError(f"could not put the maps in place ({err}); the earlier files, if any, are as they were") from err
    for backup, _ in moved:
        backup.unlink(missing_ok=True)


def pixel_record(source) -> dict | None:
    """What the maps carry over from their input (an ImageSource): each axis's pixel size and unit, and
    the channel names. It goes into every map's description, where core.io.image_io reads it back."""
    record = {"scale": dict(source.scale), "units": dict(source.units),
              **({"channel_names": list(source.channel_names)} if source.channel_names else {})}
    return record if source.scale or source.channel_names else None


def check_pixel(pixel) -> None:
    """Refuse a ``pixel`` record (:func:`pixel_record`'s form) the maps could not carry: {"scale": "big"} was written
    into every map as it was, and read back as no pixel size at all."""
    if pixel is None:
        return
    said = ('pixel must be None or {"scale": {axis: size > 0}, "units": {axis: unit name}, "channel_names": '
            f"[names]}} with axes from TCZYX; got {pixel!r}")
    if not isinstance(pixel, dict) or set(pixel) - {"scale", "units", "channel_names"}:
        raise ValueError(said)
    scale, units = pixel.get("scale", {}), pixel.get("units", {})
    if not isinstance(scale, dict) or not isinstance(units, dict) or (set(scale) | set(units)) - set("TCZYX"):
        raise ValueError(said)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
           for v in scale.values()) or not all(isinstance(u, str) for u in units.values()):
        raise ValueError(said)
    if not isinstance(pixel.get("channel_names", []), (list, tuple)):
        raise ValueError(said)


_UM_PER_UNIT = {"nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3, "centimeter": 1e4}


def resolution_args(pixel: dict | None) -> dict:
    """tifffile keywords for the X/Y resolution tags, which every TIFF reader (Fiji's too) takes for
    the pixel size: pixels per centimetre when the size has a length unit, else per unit of nothing."""
    scale, units = (pixel or {}).get("scale", {}), (pixel or {}).get("units", {})
    if "X" not in scale or "Y" not in scale:
        return {}
    per_um = [_UM_PER_UNIT.get(units.get(a)) for a in "XY"]
    if None in per_um:
        return {"resolution": (1 / scale["X"], 1 / scale["Y"]), "resolutionunit": "NONE"}
    return {"resolution": tuple(1e4 / (scale[a] * um) for a, um in zip("XY", per_um)), "resolutionunit": "CENTIMETER"}


def check_stem(stem: str) -> None:
    """Refuse a stem that is not a plain file name: '../x' wrote the maps outside the folder given."""
    if not isinstance(stem, str) or not stem or Path(stem).name != stem or stem in (".", ".."):
        raise ValueError(f"stem must be a file name with no folder in it; got {stem!r}")


class TiffMaps:
    def __init__(self, folder, stem: str, names: list[str], shape, axes: str, dtypes: dict, pixel: dict | None = None,
                 overwrite: bool = False, run_maps: bool = False):
        """``pixel``: the input's :func:`pixel_record`. ``run_maps``: ``names`` are a run's maps (core.io.maps),
        and an overwrite replaces the stem's whole set: the maps of that stem this run does not make (the
        intervals of an earlier run with a coverage) go too, so that the folder never mixes two runs
        (:attr:`removed` names them)."""
        import tifffile

        folder = Path(folder)
        check_stem(stem)
        self.paths = [folder / f"{stem}_{name}.tif" for name in names]
        refuse_existing(self.paths, overwrite)
        others = [folder / f"{stem}_{name}.tif" for name in MAPS if name not in names] if run_maps else []
        self.removed = [p for p in others if p.is_file()]
        refuse_existing(self.removed, overwrite)
        # the folders this run makes, outermost first: a run that fails leaves none of them behind, empty
        self.made = [p for p in (*reversed(folder.parents), folder) if not p.exists()]
        self.writers, self.temps = {}, []
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # where access() says yes and the file system says no (/proc, a full or read-only disk)
            self.abort()
            raise ValueError(f"--out {folder}: the folder could not be made ({err.strerror or err}); choose another "
                             "--out") from err
        self.names, self.dtypes, self.pixel = names, dtypes, pixel
        self.description = {"shape": [int(n) for n in shape], "axes": axes}
        self.temps = [p.with_name(f".{p.name}.partial") for p in self.paths]
        self.writers = {}
        try:
            for name, tmp in zip(names, self.temps):
                self.writers[name] = tifffile.TiffWriter(tmp, bigtiff=int(np.prod(shape)) * 8 > 2**31)
        except BaseException:
            self.abort()
            raise
        if run_maps:  # a killed run's hidden part-written maps of this stem that this run does not replace
            for name in MAPS:
                if name not in names:
                    (folder / f".{stem}_{name}.tif.partial").unlink(missing_ok=True)

    def write_plane(self, position, maps: dict[str, np.ndarray]) -> None:
        """The next plane (planes come in row-major order over the leading axes)."""
        for name, writer in self.writers.items():
            # grey levels whatever the plane count (a 3- or 4-plane stack is not RGB(A))
            writer.write(np.asarray(maps[name], self.dtypes[name]), contiguous=True, photometric="minisblack",
                         metadata=self.description, **resolution_args(self.pixel))

    def finish(self, metadata: dict | None) -> list[Path]:
        """``metadata``: the run's, or None for data no run made (a simulated pair)."""
        import tifffile

        for writer in self.writers.values():
            writer.close()
        record = {**self.description, **(self.pixel or {}),
                  **({RUN_KEY: record_json(metadata)} if metadata is not None else {})}
        try:
            for tmp in self.temps:  # the run's record is known only now: rewrite the first page's description
                tifffile.tiffcomment(tmp, json.dumps(record))
        except BaseException:
            self.abort()
            raise
        replace_all(self.temps, self.paths, self.removed)
        return self.paths

    def abort(self) -> None:
        for writer in self.writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 — a full disk may fail the close too; the file goes anyway
                pass
        for tmp in self.temps:
            tmp.unlink(missing_ok=True)
        for made in reversed(self.made):  # innermost first; one that holds anything now is not ours alone
            with contextlib.suppress(OSError):
                made.rmdir()


class TiffSink:
    """The plane loop's sink (core.run.plane_loop) into ``folder/<stem>_<map>.tif``: :class:`TiffMaps` once
    the loop names the maps. The files appear only when the run is done; nothing is resumed."""

    def __init__(self, folder, stem: str, axes: str, pixel: dict | None = None, overwrite: bool = False):
        self.folder, self.stem, self.axes, self.pixel, self.overwrite = folder, stem, axes, pixel, overwrite
        self.maps: TiffMaps | None = None

    def open(self, names: list[str], shape, dtype) -> set:
        self.maps = TiffMaps(self.folder, self.stem, names, shape, self.axes,
                             {n: MAPS[n].dtype_for(dtype) for n in names}, self.pixel, self.overwrite, run_maps=True)
        return set()

    def write(self, number: int, position, plane) -> None:
        self.maps.write_plane(position, plane.maps)

    def done(self, metadata: dict) -> list[Path]:
        return self.maps.finish(metadata)

    def abort(self) -> None:
        if self.maps is not None:
            self.maps.abort()


def write_maps(folder, stem: str, maps: dict[str, np.ndarray], axes: str | None = None, pixel: dict | None = None,
               metadata: dict | None = None, overwrite: bool = False) -> list[Path]:
    """Arrays of one shape in memory to ``folder/<stem>_<name>.tif``, as :class:`TiffMaps` writes a
    run's maps (``axes`` by default from the number of dimensions, core.imaging.axes.infer_axes)."""
    shape = np.shape(next(iter(maps.values())))
    sink = TiffMaps(folder, stem, list(maps), shape, axes or infer_axes(len(shape)),
                    {name: np.asarray(m).dtype for name, m in maps.items()}, pixel, overwrite)
    try:
        for position in np.ndindex(*shape[:-2]):
            sink.write_plane(position, {name: m[position] for name, m in maps.items()})
    except OSError as err:
        sink.abort()
        raise OSError(f"could not write the results to {folder}: {err}; nothing was written") from err
    except BaseException:
        sink.abort()
        raise
    return sink.finish(metadata)


def read_record(tif) -> dict:
    """The record of a file written here (an open ``tifffile.TiffFile``), with the run's metadata
    under :data:`RUN_KEY` decoded; a TIFF written elsewhere gives what tifffile reads as its shaped
    description, most often {}."""
    record = dict((tif.shaped_metadata or ({},))[0])
    if isinstance(record.get(RUN_KEY), str):
        try:
            record[RUN_KEY] = json.loads(record[RUN_KEY])
        except ValueError:  # not ours after all: left as the text it is
            pass
    return record
