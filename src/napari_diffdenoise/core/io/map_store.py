"""The maps of a run written to an OME-Zarr store plane by plane, so that a killed run resumes.

Layout: ``OUT.ome.zarr/<map>`` for each map of the run (core.io.maps: mean, std, entropy[, lower,
upper]), each an NGFF image (one resolution level, the input's axes and pixel sizes, its channel
names as omero channel labels) that any OME-Zarr reader opens; the root's attributes hold
the run's fingerprint and metadata, and ``OUT.ome.zarr/done`` one flag per plane. A plane's flag is
set only after all its maps are written, so a plane cut off half-way is never taken as done: a
second run with the same settings skips the flagged planes and recomputes the rest. A run with other
settings is refused unless it may overwrite.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .image_io import ngff_multiscales
from .image_source import ImageSource
from .maps import MAPS
from .tiff_maps import record_json

ATTRIBUTE = "napari_diffdenoise"
_AXIS_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def ngff_order(axes: str) -> str:
    """NGFF's order (time, channel, space): the maps are stored in it whatever the input's order."""
    return "".join(a for a in "TCZYX" if a in axes)


def _ngff_axes(source: ImageSource) -> list[dict]:
    out = []
    for axis in ngff_order(source.axes):
        entry = {"name": axis.lower(), "type": _AXIS_TYPES[axis]}
        if axis in source.units:
            entry["unit"] = source.units[axis]
        out.append(entry)
    return out


def plane_chunks(shape, max_plane_pixels: int = 4096 * 4096) -> tuple[int, ...]:
    """One chunk per plane (planes are written whole); planes over 16 M pixels in 2048² blocks."""
    height, width = shape[-2:]
    if height * width > max_plane_pixels:
        height, width = min(height, 2048), min(width, 2048)
    return (1,) * (len(shape) - 2) + (height, width)


class MapStore:
    """An OME-Zarr store of a run's maps, with per-plane done flags."""

    def __init__(self, path, root):
        self.path, self.root = Path(path), root
        record = root.attrs.get(ATTRIBUTE, {})
        given, stored = record.get("input_axes", ""), record.get("axes", "")
        # leading dims of the input, in the store's order (Y, X are last in both)
        self._order = [given.index(a) for a in stored[:-2]]

    def _stored(self, position: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(position[i] for i in self._order)

    @classmethod
    def open(cls, path, source: ImageSource, names: list[str], dtype, fingerprint: dict,
             overwrite: bool = False, calibration: dict | None = None) -> MapStore:
        """Create the store, or reopen it to resume when it holds a run with this ``fingerprint``.
        ``calibration``: the one the intervals are scaled by (a Calibration's dict), kept so that a resumed run takes
        it rather than calibrating on the image again (:func:`resumable_run`)."""
        import zarr
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_multiscales_metadata

        # a link to the store (a scratch disk's) is followed: its folder, not the link, is emptied or replaced
        path = Path(path).resolve()
        fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back: lists, not tuples
        if path.is_dir() and not any(path.iterdir()):  # an empty folder to write into: nothing there to lose
            path.rmdir()
        if path.exists():
            previous = _read_fingerprint(path)
            if previous == fingerprint and not overwrite:
                return cls(path, zarr.open_group(str(path), mode="r+"))
            _refuse_unless_ours(path, previous)
            if not overwrite:
                _refuse(path, _difference(previous, fingerprint) if previous is not None else _CUT_OFF)
            _refuse_theirs_inside(path)
            shutil.rmtree(path)
        root = zarr.open_group(str(path), mode="w")
        stored_axes = ngff_order(source.axes)
        shape = tuple(source.shape[source.axes.index(a)] for a in stored_axes)
        chunks = plane_chunks(shape)
        transforms = [{"type": "scale", "scale": [float(source.scale.get(a, 1.0)) for a in stored_axes]}]
        # the input's channel names as each map's omero channel labels, which OME-Zarr readers show
        # (none without a C axis: an OME-TIFF names its one channel "" and the store got a channel it does not have)
        labels = {"metadata": {"omero": {"channels": [{"label": str(n)} for n in source.channel_names]}}} \
            if source.channel_names and "C" in source.axes else {}
        for name in names:
            group = root.create_group(name)
            group.create_array("0", shape=shape, chunks=chunks,
                               dtype=MAPS[name].dtype_for(dtype), fill_value=np.nan)
            write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": transforms}],
                                       fmt=FormatV05(), axes=_ngff_axes(source), name=name,
                                       **json.loads(json.dumps(labels)))  # a copy: ome_zarr pops what it takes
        leading = shape[:-2] or (1,)
        root.create_array("done", shape=leading, chunks=(1,) * len(leading), dtype=bool, fill_value=False)
        # the fingerprint goes in last: a store cut off before this line is not taken for a run to resume
        kept = {} if calibration is None else {"calibration": json.loads(record_json(calibration))}
        root.attrs[ATTRIBUTE] = {"fingerprint": fingerprint, "maps": names, "axes": stored_axes,
                                 "input_axes": source.axes, **kept}
        return cls(path, root)

    @classmethod
    def open_existing(cls, path) -> MapStore:
        """A store another process created (a cluster worker writing its planes)."""
        import zarr

        return cls(path, zarr.open_group(str(path), mode="r+"))

    @property
    def names(self) -> list[str]:
        return list(self.root.attrs[ATTRIBUTE]["maps"])

    def done_positions(self) -> set[tuple[int, ...]]:
        """The finished planes, as positions in the input's axis order."""
        flags = np.asarray(self.root["done"][...])
        if not self._order:
            return {()} if flags[0] else set()
        inverse = np.argsort(self._order)
        return {tuple(int(index[i]) for i in inverse) for index in zip(*np.nonzero(flags))}

    def write_plane(self, position: tuple[int, ...], maps: dict[str, np.ndarray]) -> None:
        """A plane's maps (``position`` in the input's order); its done flag is set separately
        (:meth:`mark_done`), after this returns."""
        for name in self.names:
            self.root[name]["0"][self._stored(position)] = maps[name]

    def mark_done(self, position: tuple[int, ...]) -> None:
        self.root["done"][self._stored(position) or (0,)] = True

    def finish(self, metadata: dict) -> None:
        record = dict(self.root.attrs[ATTRIBUTE])
        record["metadata"] = json.loads(record_json(metadata))
        self.root.attrs[ATTRIBUTE] = record


class ZarrSink:
    """The plane loop's sink (core.run.plane_loop) into an OME-Zarr store at ``path``: created, or reopened
    when it holds a run with this ``fingerprint``, whose finished planes the loop then skips. Each
    plane's done flag is set once its maps are in, so a run killed at any point resumes."""

    def __init__(self, path, source: ImageSource, fingerprint: dict, overwrite: bool = False,
                 calibration: dict | None = None):
        self.path, self.source, self.fingerprint, self.overwrite = path, source, fingerprint, overwrite
        self.calibration = calibration
        self.store: MapStore | None = None

    def open(self, names: list[str], shape, dtype) -> set[tuple[int, ...]]:
        self.store = MapStore.open(self.path, self.source, names, dtype, self.fingerprint, self.overwrite,
                                   self.calibration)
        return self.store.done_positions()

    def write(self, number: int, position: tuple[int, ...], plane) -> None:
        self.store.write_plane(position, plane.maps)
        self.store.mark_done(position)

    def done(self, metadata: dict) -> dict:
        """Records the run's ``metadata`` in the store; a finished run asked again (every plane resumed) keeps the
        record of the run that restored them — its seconds, not this call's nothing."""
        finished = "metadata" in self.store.root.attrs[ATTRIBUTE]
        if not (finished and metadata.get("planes_resumed") == metadata.get("n_planes")):
            self.store.finish(metadata)
        return metadata

    def abort(self) -> None:  # the planes written are flagged done: a rerun resumes from them
        pass


class StorePlanes:
    """A cluster worker's planes into the store its coordinator made (a :class:`ZarrSink`): the maps
    only. The coordinator sets each plane's done flag when the task has returned, and finishes the store."""

    def __init__(self, path):
        self.path = path
        self.store: MapStore | None = None

    def open(self, names: list[str], shape, dtype) -> set:
        self.store = MapStore.open_existing(self.path)
        return set()

    def write(self, number: int, position: tuple[int, ...], plane) -> None:
        self.store.write_plane(position, plane.maps)

    def done(self, metadata: dict) -> dict:
        return metadata

    def abort(self) -> None:
        pass


_CUT_OFF = "holds a run of ours that was cut off before it began"


def _refuse_unless_ours(path: Path, previous: dict | None) -> None:
    if previous is None and not _replaceable(path):
        # --overwrite replaces a result of ours: it once emptied a user's folder that held other files
        raise ValueError(f"{path} exists and is not a napari-diffdenoise result; it is not replaced even with "
                         "--overwrite (overwrite=True): choose another output, or move it away yourself")


def _ours() -> set[str]:
    """What a store of ours holds (a map registered later included): anything else in it was put there by someone
    else (a segmentation's labels/ group)."""
    return {"zarr.json", ".zgroup", ".zattrs", ".zmetadata", "done", *MAPS}


def _refuse_theirs_inside(path: Path) -> None:
    """Refuse to replace a result store that holds entries this package does not write (--overwrite emptied a store
    of the user's NOTES.txt and labels/ group without a word)."""
    theirs = sorted(entry.name for entry in path.iterdir() if entry.name not in _ours())
    if theirs:
        raise ValueError(f"{path} holds {', '.join(theirs)}, which napari-diffdenoise did not write: it is not "
                         "replaced even with --overwrite (overwrite=True); move them out of it, or choose another "
                         "output")


def _refuse(path: Path, why: str) -> None:
    raise ValueError(f"{path} {why}; pass --overwrite (overwrite=True) to replace it, or choose another output")


def refuse_before_run(path, input_path, overwrite: bool = False) -> None:
    """What :meth:`MapStore.open` refuses whatever the run's settings, asked before the run's work (a
    calibration on the image takes tens of seconds, and the settings a resumable store is compared on include
    it): a store that is not ours, and, without ``overwrite``, one cut off before it began or holding a run on
    another input."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    previous = _read_fingerprint(path)
    _refuse_unless_ours(path, previous)
    if overwrite:
        _refuse_theirs_inside(path)
        return
    if previous is None:
        _refuse(path, _CUT_OFF)
    now = {"input_path": None if input_path is None else str(Path(input_path).resolve())}
    if "input_content_sha256" not in previous or previous.get("input_path") != now["input_path"]:
        _refuse(path, _difference(previous, now))


def _difference(previous: dict, now: dict) -> str:
    """What makes a store's run not this one, said so that a user knows which it is."""
    if "input_content_sha256" not in previous:
        return "holds a run that did not record its input (an earlier version wrote it), so it cannot be resumed safely"
    if previous.get("input_path") != now.get("input_path"):
        return f"holds a run on another input ({previous.get('input_path')}), not {now.get('input_path')}"
    if previous.get("input_content_sha256") != now.get("input_content_sha256"):
        return (f"holds a run on {now.get('input_path')} as it was before: the input's content has changed since, "
                "and resuming would mix planes of both")
    changed = sorted(k for k in set(previous) | set(now) if previous.get(k) != now.get(k))
    return f"holds a run with other settings ({', '.join(changed)} differ)"


@dataclass(frozen=True)
class StoredRun:
    """What a store holds of the run that made it: its fingerprint, and the calibration its intervals are scaled
    by (None for a run without intervals, or one written before stores kept it)."""

    fingerprint: dict
    calibration: dict | None


def resumable_run(path) -> StoredRun | None:
    """The run a store at ``path`` holds (None where there is no store of ours with a run's record)."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        return None
    try:
        record = dict(zarr.open_group(str(path), mode="r").attrs).get(ATTRIBUTE, {})
    except Exception:  # noqa: BLE001 — not a zarr group: not ours
        return None
    if record.get("fingerprint") is None:
        return None
    return StoredRun(record["fingerprint"], record.get("calibration"))


def refuse_other_run(path, stored: StoredRun, fingerprint: dict, ignoring: tuple[str, ...] = ()) -> None:
    """Refuse, before the run's work, the store at ``path`` (``stored``: what :func:`resumable_run` read of it) when
    it holds a run other than the one ``fingerprint`` describes (its keys in ``ignoring`` left out of the
    comparison: what is not known yet)."""
    previous = {k: v for k, v in stored.fingerprint.items() if k not in ignoring}
    now = {k: v for k, v in json.loads(json.dumps(fingerprint)).items() if k not in ignoring}
    if previous != now:
        _refuse(Path(path), _difference(previous, now))


def _replaceable(path: Path) -> bool:
    """Whether a folder with no run's record is still ours to replace: it holds only what :meth:`MapStore.open`
    creates before it writes the record (a run cut off there)."""
    return path.is_dir() and all(entry.name in _ours() for entry in path.iterdir())


def _read_fingerprint(path: Path):
    stored = resumable_run(path)
    return None if stored is None else stored.fingerprint


def read_maps(path) -> tuple[dict, dict]:
    """(name → lazy array, record) of a store written by :class:`MapStore`, with each map's scale
    (``record["scale"]``), its NGFF axes (``record["ngff_axes"]``: names, types, units) and the run's metadata."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    record = dict(root.attrs).get(ATTRIBUTE)
    if record is None:
        raise ValueError(f"{path} is not a napari-diffdenoise result")
    maps, scale, axes = {}, None, []
    for name in record["maps"]:
        image = ngff_multiscales(dict(root[name].attrs))[0]
        maps[name] = root[name][image["datasets"][0]["path"]]
        axes = image.get("axes", [])
        for transform in image["datasets"][0].get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                scale = list(transform["scale"])
    return maps, {**record, "scale": scale, "ngff_axes": axes}
