"""The microscopes' files (.czi through bioio, .ims through h5py, OME-TIFF) in, their metadata out:
real files written here by each format's own writer (pylibCZIrw for CZI) or layout (Imaris's HDF5)."""
from datetime import datetime, timedelta

import numpy as np
import pytest
import tifffile

from napari_diffdenoise import denoise
from napari_diffdenoise.cli import main
from napari_diffdenoise.core.io.image_io import open_image
from napari_diffdenoise.core.io.map_store import read_maps
from napari_diffdenoise.core.io.tiff_maps import RUN_KEY, read_record

SETTINGS = dict(n_samples=2, steps=1, seed=3)
CLI_SETTINGS = ["--samples", "2", "--steps", "1", "--seed", "3"]


def write_czi(path, czyx, names, scale_zyx_um):
    """A CZI as ZEN would write it: one subblock per plane, channel names and the pixel size (in metres)."""
    from pylibCZIrw import czi

    z_um, y_um, x_um = scale_zyx_um
    with czi.create_czi(str(path), exist_ok=True) as writer:
        for c in range(czyx.shape[0]):
            for z in range(czyx.shape[1]):
                writer.write(czyx[c, z], plane={"C": c, "Z": z})
        writer.write_metadata(channel_names=dict(enumerate(names)), scale_x=x_um * 1e-6, scale_y=y_um * 1e-6,
                              scale_z=z_um * 1e-6)


def _text(value) -> np.ndarray:
    return np.frombuffer(str(value).encode(), dtype="S1")  # Imaris stores text as arrays of single bytes


def write_ims(path, tczyx, voxel_zyx, names, seconds):
    """An Imaris 5.5 file: one (Z, Y, X) block per time point and channel, padded to whole chunks as
    Imaris pads them, the image's extent, channel names and time stamps in DataSetInfo."""
    import h5py

    n_t, n_c, n_z, n_y, n_x = tczyx.shape
    with h5py.File(path, "w") as f:
        root = {"ImarisDataSet": "ImarisDataSet", "ImarisVersion": "5.5.0", "DataSetDirectoryName": "DataSet",
                "DataSetInfoDirectoryName": "DataSetInfo", "ThumbnailDirectoryName": "Thumbnail"}
        for key, value in root.items():
            f.attrs[key] = _text(value)
        info = f.create_group("DataSetInfo/Image")
        sizes = {"X": n_x, "Y": n_y, "Z": n_z}
        for i, axis in enumerate("XYZ"):
            info.attrs[axis] = _text(sizes[axis])
            info.attrs[f"ExtMin{i}"] = _text(-1.5)
            info.attrs[f"ExtMax{i}"] = _text(-1.5 + sizes[axis] * voxel_zyx[2 - i])
        info.attrs["Unit"] = _text("um")
        for c, name in enumerate(names):
            f.create_group(f"DataSetInfo/Channel {c}").attrs["Name"] = _text(name)
        stamps = f.create_group("DataSetInfo/TimeInfo")
        start = datetime(2026, 5, 4, 10, 0, 0)
        for t in range(n_t):
            stamps.attrs[f"TimePoint{t + 1}"] = _text((start + timedelta(seconds=t * seconds)).isoformat(" "))
        padded = (-(-n_z // 4) * 4, -(-n_y // 16) * 16, -(-n_x // 16) * 16)
        for t in range(n_t):
            for c in range(n_c):
                block = np.zeros(padded, tczyx.dtype)
                block[:n_z, :n_y, :n_x] = tczyx[t, c]
                group = f.create_group(f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}")
                group.create_dataset("Data", data=block, chunks=(4, 16, 16), compression="gzip")
                for axis in "XYZ":
                    group.attrs[f"ImageSize{axis}"] = _text(sizes[axis])


@pytest.fixture
def czyx():
    return np.random.default_rng(5).poisson(6, (2, 3, 24, 32)).astype(np.uint16)


def test_a_czi_is_denoised_from_the_command_line_with_its_axes_pixel_sizes_and_channel_names(tmp_path, czyx,
                                                                                              tiny_checkpoint):
    write_czi(tmp_path / "cells.czi", czyx, ["DAPI", "GFP"], (0.5, 0.125, 0.1))
    expected = denoise(czyx, str(tiny_checkpoint), axes="CZYX", **SETTINGS)

    assert main(["denoise", str(tmp_path / "cells.czi"), "--out", str(tmp_path / "tifs"), "--model",
                 str(tiny_checkpoint), *CLI_SETTINGS]) == 0
    with tifffile.TiffFile(tmp_path / "tifs" / "cells_mean.tif") as tif:
        assert tif.series[0].axes == "CZYX"
        np.testing.assert_array_equal(tif.asarray(), expected.mean)
        x_per_cm = tif.pages[0].tags["XResolution"].value
        assert x_per_cm[0] / x_per_cm[1] == pytest.approx(1e5) and tif.pages[0].tags["ResolutionUnit"].value == 3
        record = read_record(tif)
    assert record["channel_names"] == ["DAPI", "GFP"]
    assert record["scale"] == pytest.approx({"Z": 0.5, "Y": 0.125, "X": 0.1})
    assert record[RUN_KEY]["axes"] == "CZYX"
    # a map opened again has the input's metadata back
    again = open_image(tmp_path / "tifs" / "cells_std.tif")
    assert again.axes == "CZYX" and again.channel_names == ["DAPI", "GFP"]
    assert again.scale == pytest.approx({"Z": 0.5, "Y": 0.125, "X": 0.1}) and again.units["Z"] == "micrometer"

    assert main(["denoise", str(tmp_path / "cells.czi"), "--out", str(tmp_path / "maps.ome.zarr"), "--model",
                 str(tiny_checkpoint), *CLI_SETTINGS]) == 0
    maps, record = read_maps(tmp_path / "maps.ome.zarr")
    np.testing.assert_array_equal(np.asarray(maps["mean"][...]), expected.mean)
    assert record["axes"] == "CZYX" and record["scale"] == pytest.approx([1.0, 0.5, 0.125, 0.1])


def test_a_czi_is_read_a_plane_at_a_time(tmp_path, czyx):
    write_czi(tmp_path / "cells.czi", czyx, ["DAPI", "GFP"], (0.5, 0.125, 0.1))
    source = open_image(tmp_path / "cells.czi")
    assert source.data.chunksize == (1, 1, 24, 32)  # dask, one chunk per plane: never the whole file
    np.testing.assert_array_equal(np.asarray(source.data[1, 2]), czyx[1, 2])


def test_a_czi_of_one_channel_and_one_plane_is_a_yx_image_with_its_channel_name(tmp_path, czyx):
    write_czi(tmp_path / "one.czi", czyx[:1, :1], ["mCherry"], (1.0, 0.2, 0.2))
    source = open_image(tmp_path / "one.czi")
    assert source.axes == "YX" and source.shape == (24, 32) and source.channel_names == ["mCherry"]
    assert source.scale == pytest.approx({"Y": 0.2, "X": 0.2})  # no Z axis left, so no Z size


def test_an_imaris_file_opens_lazily_with_its_extent_channel_names_and_time_step(tmp_path):
    tczyx = np.random.default_rng(6).poisson(4, (2, 2, 3, 40, 36)).astype(np.uint16)
    write_ims(tmp_path / "movie.ims", tczyx, (0.8, 0.2, 0.25), ["Hoechst", "Tubulin"], seconds=30.0)
    source = open_image(tmp_path / "movie.ims")
    assert source.axes == "TCZYX" and source.shape == (2, 2, 3, 40, 36)  # the chunk padding cut away
    assert source.data.chunksize == (1, 1, 1, 40, 36)
    np.testing.assert_array_equal(np.asarray(source.data), tczyx)
    assert source.scale == pytest.approx({"T": 30.0, "Z": 0.8, "Y": 0.2, "X": 0.25})
    assert source.units == {"T": "second", "Z": "micrometer", "Y": "micrometer", "X": "micrometer"}
    assert source.channel_names == ["Hoechst", "Tubulin"]


def test_every_command_reads_the_same_formats(tmp_path, tiny_checkpoint, headed):
    from napari_diffdenoise import load_model
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint

    clean = np.random.default_rng(7).uniform(5, 40, (1, 1, 2, 80, 80)).astype(np.float32)
    write_ims(tmp_path / "clean.ims", clean, (1.0, 0.1, 0.1), ["GFP"], seconds=1.0)
    out = tmp_path / "ft.safetensors"
    assert main(["train", "--clean", str(tmp_path / "clean.ims"), "--model", str(tiny_checkpoint), "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--patch-size", "32", "--val-fraction", "0.1"]) == 0
    assert load_model(out).provenance["step"] == 2
    assert main(["deconvolve", str(tmp_path / "clean.ims"), "--psf-sigma", "1", "--iterations", "2",
                 "--out", str(tmp_path)]) == 0
    restored = open_image(tmp_path / "clean_mean.tif")
    assert restored.axes == "ZYX" and restored.shape == (2, 80, 80)
    assert restored.scale == pytest.approx({"Z": 1.0, "Y": 0.1, "X": 0.1}) and restored.channel_names == ["GFP"]

    save_checkpoint(headed, tmp_path / "headed.safetensors")
    counts = np.random.default_rng(8).poisson(np.linspace(2, 30, 160)[None, :] * np.ones((160, 1))) + 100
    write_czi(tmp_path / "noisy.czi", counts[None, None].astype(np.uint16), ["GFP"], (1.0, 0.1, 0.1))
    assert main(["adapt", str(tmp_path / "noisy.czi"), "--out", str(tmp_path / "adapted.safetensors"), "--model",
                 str(tmp_path / "headed.safetensors"), "--steps", "2", "--no-recalibrate"]) == 0
    assert load_model(tmp_path / "adapted.safetensors").provenance["adapted"]["steps"] == 2


def test_an_ome_tiff_keeps_its_physical_sizes_and_channel_names(tmp_path, czyx):
    tifffile.imwrite(tmp_path / "in.ome.tif", czyx, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2.0,
                               "PhysicalSizeZUnit": "nm", "Channel": {"Name": ["DAPI", "GFP"]}})
    source = open_image(tmp_path / "in.ome.tif")
    assert source.axes == "CZYX" and source.channel_names == ["DAPI", "GFP"]
    assert source.scale == pytest.approx({"Z": 2.0, "Y": 0.3, "X": 0.3})
    assert source.units == {"Z": "nanometer", "Y": "micrometer", "X": "micrometer"}


def test_a_missing_plugin_names_the_extra_to_install(tmp_path, monkeypatch):
    import sys

    (tmp_path / "scan.nd2").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "bioio_nd2", None)  # as if the formats extra were not installed
    with pytest.raises(ValueError, match=r'scan.nd2: reading .nd2 files needs bioio and its plugin bioio-nd2, .*'
                                         r'pip install "napari-diffdenoise\[formats\]"'):
        open_image(tmp_path / "scan.nd2")


def test_ome_zarr_channel_labels_are_the_channel_names_of_the_tiff_maps(tmp_path, czyx, tiny_checkpoint):
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w")
    group.create_array("0", shape=czyx.shape, chunks=(1, 1, 24, 32), dtype=czyx.dtype)[...] = czyx
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 0.7, 0.15, 0.15]}]}], fmt=FormatV05(), axes=axes)
    group.attrs["ome"] = {**group.attrs["ome"], "omero": {"channels": [{"label": "DAPI"}, {"label": "GFP"}]}}
    assert main(["denoise", str(tmp_path / "in.ome.zarr"), "--out", str(tmp_path / "tifs"), "--model",
                 str(tiny_checkpoint), *CLI_SETTINGS]) == 0
    written = open_image(tmp_path / "tifs" / "in_mean.tif")  # "in.ome.zarr" → in_<map>.tif
    assert written.channel_names == ["DAPI", "GFP"] and written.axes == "CZYX"
    assert written.scale == pytest.approx({"Z": 0.7, "Y": 0.15, "X": 0.15})
