"""Files in and out: OME-Zarr and TIFF of any axes, resumable stores, a local dask cluster."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
import zarr

from napari_diffdenoise import denoise
from napari_diffdenoise.cli import main
from napari_diffdenoise.core.calibration.on_image import denoise_to_zarr as library_denoise_to_zarr
from napari_diffdenoise.core.io.map_store import read_maps
from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr

SETTINGS = dict(n_samples=2, steps=2, seed=4)


def _write_ome_zarr(path, data, axes, scale):
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(path), mode="w")
    array = group.create_array("0", shape=data.shape, chunks=(1,) * (data.ndim - 2) + data.shape[-2:], dtype=data.dtype)
    array[...] = data
    names = [{"name": a.lower(), "type": {"T": "time", "C": "channel"}.get(a, "space"),
              **({"unit": "micrometer"} if a in "ZYX" else {})} for a in axes]
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
                               fmt=FormatV05(), axes=names)


@pytest.fixture
def tczyx():
    return np.random.default_rng(2).poisson(5, (2, 2, 2, 24, 32)).astype(np.uint16)


def test_ome_zarr_in_and_out_keeps_axes_and_pixel_sizes_and_matches_the_library(tmp_path, tiny_checkpoint, tczyx):
    _write_ome_zarr(tmp_path / "in.ome.zarr", tczyx, "TCZYX", [60.0, 1.0, 0.8, 0.2, 0.2])
    out = tmp_path / "out.ome.zarr"
    assert main(["denoise", str(tmp_path / "in.ome.zarr"), "--out", str(out), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2", "--seed", "4", "--coverage", "0.9", "--stored-calibration"]) == 2
    # the tiny model holds no calibration to take: intervals are refused with a message, and nothing is written
    assert not out.exists()
    assert main(["denoise", str(tmp_path / "in.ome.zarr"), "--out", str(out), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2", "--seed", "4"]) == 0
    maps, record = read_maps(out)
    expected = denoise(tczyx, str(tiny_checkpoint), **SETTINGS)
    for name in ("mean", "std", "entropy"):
        np.testing.assert_array_equal(np.asarray(maps[name][...]), getattr(expected, name))
    assert record["scale"] == [60.0, 1.0, 0.8, 0.2, 0.2] and record["axes"] == "TCZYX"
    assert record["metadata"]["n_planes"] == 8 and record["metadata"]["planes_resumed"] == 0
    # each map is an NGFF image another reader can open on its own
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(out / "mean")))()))
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "c", "z", "y", "x"]


def test_napari_opens_an_image_and_its_maps_with_the_stores_units(tmp_path, tiny_checkpoint, tczyx):
    """The plugin's reader gave every axis 'pixel', though the stores name micrometres."""
    from napari_diffdenoise._zarr_io import read_zarr

    _write_ome_zarr(tmp_path / "in.ome.zarr", tczyx, "TCZYX", [60.0, 1.0, 0.8, 0.2, 0.2])
    library_denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", str(tiny_checkpoint), **SETTINGS)
    units = ("pixel", "pixel", "micrometer", "micrometer", "micrometer")
    (_, image, _), = read_zarr(tmp_path / "in.ome.zarr")
    assert image["units"] == units and image["axis_labels"] == ("t", "c", "z", "y", "x")
    layers = read_zarr(tmp_path / "out.ome.zarr")
    assert len(layers) == 3 and all(meta["units"] == units for _, meta, _ in layers)


def test_a_layer_saved_by_the_plugin_keeps_its_units(tmp_path):
    from napari.layers import Image

    from napari_diffdenoise._zarr_io import read_zarr, write_image

    layer = Image(np.zeros((2, 16, 16), np.float32), axis_labels=("t", "y", "x"), scale=(5, 0.2, 0.2),
                  units=("second", "micrometer", "micrometer"))
    data, meta, _ = layer.as_layer_data_tuple()
    write_image(str(tmp_path / "saved.ome.zarr"), data, meta)
    (_, read, _), = read_zarr(tmp_path / "saved.ome.zarr")
    assert read["units"] == ("second", "micrometer", "micrometer") and read["scale"] == [5, 0.2, 0.2]


def test_a_tiff_of_any_axis_order_goes_to_ngff_order_with_its_pixel_size(tmp_path, tiny_checkpoint):
    data = np.random.default_rng(3).poisson(5, (2, 3, 24, 32)).astype(np.uint16)  # Z, C, Y, X as ImageJ would not
    tifffile.imwrite(tmp_path / "in.tif", data, resolution=(1 / 0.25, 1 / 0.25), resolutionunit="NONE",
                     metadata={"axes": "ZCYX"})
    out = tmp_path / "out.ome.zarr"
    assert main(["denoise", str(tmp_path / "in.tif"), "--out", str(out), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2", "--seed", "4"]) == 0
    maps, record = read_maps(out)
    assert record["axes"] == "CZYX" and maps["mean"].shape == (3, 2, 24, 32)
    expected = denoise(data, str(tiny_checkpoint), axes="ZCYX", **SETTINGS)
    np.testing.assert_array_equal(np.asarray(maps["mean"][...]), expected.mean.transpose(1, 0, 2, 3))
    assert record["scale"][-2:] == [0.25, 0.25]
    # TIFF out keeps the input's axes
    assert main(["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "tifs"), "--model",
                 str(tiny_checkpoint), "--samples", "2", "--steps", "2", "--seed", "4"]) == 0
    with tifffile.TiffFile(tmp_path / "tifs" / "in_mean.tif") as tif:
        assert tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), expected.mean)


def test_a_two_worker_local_cluster_is_bit_identical_to_one_process(tmp_path, tiny_checkpoint, tczyx, monkeypatch):
    """Intervals too: the model, which holds no calibration, is calibrated on the input in this process (as the
    library's default does) and reaches the workers as a checkpoint written for the run, removed after it."""
    import tempfile

    _write_ome_zarr(tmp_path / "in.ome.zarr", tczyx, "TCZYX", [1.0, 1.0, 1.0, 1.0, 1.0])
    # this process: one torch thread (conftest)
    expected = denoise(tczyx, str(tiny_checkpoint), coverage=0.9, axes="TCZYX", **SETTINGS)
    assert expected.metadata["calibrated_on_this_image"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "cluster.ome.zarr"
    assert main(["denoise", str(tmp_path / "in.ome.zarr"), "--out", str(out), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2", "--seed", "4", "--workers", "2", "--coverage", "0.9"]) == 0
    maps, _ = read_maps(out)
    for name in ("mean", "std", "entropy", "lower", "upper"):
        np.testing.assert_array_equal(np.asarray(maps[name][...]), getattr(expected, name))
    assert not list(scratch.glob("diffdenoise-*"))
    # recorded under the model it was given, not the checkpoint written for the run (whose file holds the
    # calibration's date): the store resumes in this process, whole, as it would on another day
    assert read_maps(out)[1]["metadata"]["model_sha256"] == expected.metadata["model_sha256"]
    again = library_denoise_to_zarr(tmp_path / "in.ome.zarr", out, str(tiny_checkpoint), coverage=0.9, **SETTINGS)
    assert again["planes_resumed"] == again["n_planes"]


def test_a_half_written_plane_is_recomputed_and_finished_planes_are_not(tmp_path, tiny_checkpoint, tczyx,
                                                                         first_pass_only):
    _write_ome_zarr(tmp_path / "in.ome.zarr", tczyx, "TCZYX", [1.0] * 5)
    out = tmp_path / "out.ome.zarr"
    first = denoise_to_zarr(tmp_path / "in.ome.zarr", out, str(tiny_checkpoint), **SETTINGS)
    reference = np.asarray(read_maps(out)[0]["mean"][...])
    root = zarr.open_group(str(out), mode="r+")
    root["done"][1, 0, 1] = False  # as if the run had died while writing plane (1, 0, 1)
    root["mean"]["0"][1, 0, 1] = -1.0
    again = denoise_to_zarr(tmp_path / "in.ome.zarr", out, str(tiny_checkpoint), **SETTINGS)
    assert again["planes_resumed"] == 7 and again["network_evaluations"] == first["network_evaluations"] / 8
    np.testing.assert_array_equal(np.asarray(read_maps(out)[0]["mean"][...]), reference)
    with pytest.raises(ValueError, match="other settings.*--overwrite"):
        denoise_to_zarr(tmp_path / "in.ome.zarr", out, str(tiny_checkpoint), **{**SETTINGS, "seed": 5})
    # a result store the user added to (a segmentation's labels/ group) is not emptied by --overwrite
    (out / "labels").mkdir()
    (out / "NOTES.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds NOTES\.txt, labels, which napari-diffdenoise did not write: it is not "
                                         r"replaced even with --overwrite"):
        denoise_to_zarr(tmp_path / "in.ome.zarr", out, str(tiny_checkpoint), **{**SETTINGS, "seed": 5}, overwrite=True)
    assert (out / "NOTES.txt").read_text() == "mine" and (out / "labels").is_dir()
    (out / "NOTES.txt").unlink()
    (out / "labels").rmdir()
    # a folder holding anything else is never replaced, --overwrite or not (it once emptied a user's folder)
    (tmp_path / "not-ours.zarr" / "sub").mkdir(parents=True)
    (tmp_path / "not-ours.zarr" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a napari-diffdenoise result; it is not replaced even with"):
            denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "not-ours.zarr", str(tiny_checkpoint), **SETTINGS,
                            overwrite=overwrite)
    assert (tmp_path / "not-ours.zarr" / "notes.txt").read_text() == "mine" and (tmp_path / "not-ours.zarr" / "sub").is_dir()
    # an empty folder is written into; a store cut off before its record is replaced when asked
    (tmp_path / "empty.zarr").mkdir()
    denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "empty.zarr", str(tiny_checkpoint), **SETTINGS)
    np.testing.assert_array_equal(np.asarray(read_maps(tmp_path / "empty.zarr")[0]["mean"][...]), reference)
    zarr.open_group(str(tmp_path / "cut.zarr"), mode="w").create_group("mean")
    with pytest.raises(ValueError, match="cut off before it began; pass --overwrite"):
        denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "cut.zarr", str(tiny_checkpoint), **SETTINGS)
    denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "cut.zarr", str(tiny_checkpoint), **SETTINGS, overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_maps(tmp_path / "cut.zarr")[0]["mean"][...]), reference)


def test_a_killed_run_resumes_without_recomputing_finished_planes(tmp_path, tiny_checkpoint):
    data = np.random.default_rng(4).poisson(5, (8, 64, 64)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", data, metadata={"axes": "ZYX"})
    out = tmp_path / "out.ome.zarr"
    command = [sys.executable, "-m", "napari_diffdenoise.cli", "denoise", str(tmp_path / "in.tif"), "--out", str(out),
               "--model", str(tiny_checkpoint), "--samples", "2", "--steps", "40", "--seed", "4", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                done = int(np.asarray(zarr.open_group(str(out), mode="r")["done"][...]).sum())
            except Exception:  # noqa: BLE001 — the store is still being created
                done = 0
            if done >= 2:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    finished = int(np.asarray(zarr.open_group(str(out), mode="r")["done"][...]).sum())
    assert 2 <= finished < 8, "the run ended before it could be killed mid-way"
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"({finished} done by an earlier run)" in result.stdout
    maps, record = read_maps(out)
    assert record["metadata"]["planes_resumed"] == finished
    expected = denoise(data, str(tiny_checkpoint), n_samples=2, steps=40, seed=4)
    np.testing.assert_array_equal(np.asarray(maps["mean"][...]), expected.mean)
    assert json.loads(json.dumps(record["metadata"]))["n_planes"] == 8


def test_napari_opens_a_result_store_and_saves_a_layer_that_reads_back_with_its_pixel_sizes(
        make_napari_viewer, tmp_path, tiny_checkpoint, tczyx):
    viewer = make_napari_viewer()
    _write_ome_zarr(tmp_path / "in.ome.zarr", tczyx, "TCZYX", [60.0, 1.0, 0.8, 0.2, 0.2])
    denoise_to_zarr(tmp_path / "in.ome.zarr", tmp_path / "run.ome.zarr", str(tiny_checkpoint), **SETTINGS)
    layers = viewer.open(str(tmp_path / "run.ome.zarr"), plugin="napari-diffdenoise")
    assert [layer.name for layer in layers] == ["run [mean]", "run [std]", "run [entropy]"]
    mean = viewer.layers["run [mean]"]
    assert list(mean.scale) == [60.0, 1.0, 0.8, 0.2, 0.2] and viewer.layers["run [std]"].colormap.name == "magma"
    expected = denoise(tczyx, str(tiny_checkpoint), **SETTINGS).mean
    np.testing.assert_array_equal(np.asarray(mean.data), expected)
    # save the layer through napari, open it again: the same pixels, the same pixel sizes
    viewer.layers.selection = {mean}
    saved = viewer.layers.save(str(tmp_path / "saved.ome.zarr"), selected=True, plugin="napari-diffdenoise")
    assert saved == [str(tmp_path / "saved.ome.zarr")]
    again = viewer.open(str(tmp_path / "saved.ome.zarr"), plugin="napari-diffdenoise")[0]
    np.testing.assert_array_equal(np.asarray(again.data), expected)
    assert list(again.scale) == [60.0, 1.0, 0.8, 0.2, 0.2]
    assert again.metadata["napari_diffdenoise"]["model_sha256"] == mean.metadata["napari_diffdenoise"]["model_sha256"]
    # a plain 2D layer written with its scale comes back with it, and its axes by dimension count
    viewer.add_image(np.arange(24 * 32, dtype=np.float32).reshape(24, 32), name="plane", scale=(0.3, 0.4))
    viewer.layers.selection = {viewer.layers["plane"]}
    viewer.layers.save(str(tmp_path / "plane.ome.zarr"), selected=True, plugin="napari-diffdenoise")
    plane = viewer.open(str(tmp_path / "plane.ome.zarr"), plugin="napari-diffdenoise")[0]
    assert list(plane.scale) == [0.3, 0.4] and np.asarray(plane.data)[3, 5] == 3 * 32 + 5


def test_tiff_samples_are_channels_when_stored_as_planes_and_refused_as_colour(tmp_path, tiny_checkpoint, capsys):
    from napari_diffdenoise.core.io.image_io import open_image

    tifffile.imwrite(tmp_path / "planes.tif", np.zeros((3, 32, 32), np.uint16))  # tifffile reads it as SYX
    assert open_image(tmp_path / "planes.tif").axes == "CYX"
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    assert main(["denoise", str(tmp_path / "rgb.tif"), "--out", str(tmp_path / "o"), "--model",
                 str(tiny_checkpoint)]) == 2
    assert "8-bit RGB colour pixels (axes YXS)" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_interleaved_16_bit_samples_are_read_as_channels_and_restored_each_on_its_own(tmp_path, tiny_checkpoint):
    """A 16-bit TIFF with 3 samples per pixel (YXS: NEUBIAS's HeLa image is stored so) holds a
    microscope's channels, not a colour picture: read as CYX, lazily, and each channel restored alone
    (its own normalisation: the third channel, 50× brighter, comes back at its own level)."""
    from napari_diffdenoise.core.io.image_io import open_image

    rng = np.random.default_rng(0)
    levels = np.array([20.0, 40.0, 1000.0])
    image = rng.poisson(np.ones((48, 40, 3)) * levels).astype(np.uint16)
    tifffile.imwrite(tmp_path / "hela.tif", image, photometric="rgb")
    source = open_image(tmp_path / "hela.tif")
    assert source.axes == "CYX" and source.shape == (3, 48, 40)
    np.testing.assert_array_equal(np.asarray(source.data[2]), image[..., 2])
    assert main(["denoise", str(tmp_path / "hela.tif"), "--out", str(tmp_path / "o"), "--model",
                 str(tiny_checkpoint), "--samples", "2", "--steps", "2"]) == 0
    mean = tifffile.imread(tmp_path / "o" / "hela_mean.tif")
    assert mean.shape == (3, 48, 40)
    np.testing.assert_allclose(mean.mean(axis=(1, 2)), levels, rtol=0.1)


def test_channel_names_survive_ome_zarr_output(tmp_path, tiny_checkpoint):
    """An OME-TIFF's channel names become each map's omero channel labels, which open_image and other
    OME-Zarr readers read back (TIFF output keeps them in its record)."""
    from napari_diffdenoise.core.io.image_io import open_image

    cyx = np.random.default_rng(6).poisson(5, (2, 24, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.ome.tif", cyx, ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                               "Channel": {"Name": ["DAPI", "GFP"]}})
    out = tmp_path / "out.ome.zarr"
    denoise_to_zarr(tmp_path / "in.ome.tif", out, str(tiny_checkpoint), **SETTINGS)
    maps, record = read_maps(out)
    for name in record["maps"]:
        image = open_image(out / name)
        assert image.channel_names == ["DAPI", "GFP"] and image.axes == "CYX"
        attrs = zarr.open_group(str(out / name), mode="r").attrs.asdict()
        assert [c["label"] for c in attrs["ome"]["omero"]["channels"]] == ["DAPI", "GFP"]
    np.testing.assert_array_equal(np.asarray(maps["mean"][...]), denoise(cyx, str(tiny_checkpoint), axes="CYX",
                                                                         **SETTINGS).mean)
    # an input without names writes no labels (not empty ones)
    tifffile.imwrite(tmp_path / "plain.tif", cyx)
    denoise_to_zarr(tmp_path / "plain.tif", tmp_path / "plain.ome.zarr", str(tiny_checkpoint), **SETTINGS)
    assert "omero" not in zarr.open_group(str(tmp_path / "plain.ome.zarr" / "mean"), mode="r").attrs.asdict()["ome"]
    assert open_image(tmp_path / "plain.ome.zarr" / "mean").channel_names == []


def test_an_ome_tiff_without_a_channel_axis_gives_a_store_without_channel_labels(tmp_path, tiny_checkpoint):
    """Its OME metadata names one channel, "", which became an omero channel of a store with no channel axis.
    (Its length-1 axes are dropped, as tifffile reads them: the OME model declares all five axes of every image,
    so the file cannot say which of them were meant; docs/big-data.md.)"""
    stack = np.random.default_rng(3).poisson(5, (1, 1, 3, 24, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.ome.tif", stack, ome=True, metadata={"axes": "TCZYX"})
    denoise_to_zarr(tmp_path / "in.ome.tif", tmp_path / "out.ome.zarr", str(tiny_checkpoint), **SETTINGS)
    maps, record = read_maps(tmp_path / "out.ome.zarr")
    assert record["axes"] == "ZYX" and maps["mean"].shape == (3, 24, 32)
    attributes = dict(zarr.open_group(str(tmp_path / "out.ome.zarr" / "mean"), mode="r").attrs)
    assert "omero" not in json.dumps(attributes)


def test_a_second_run_into_an_output_being_written_is_refused_and_the_lock_goes_with_the_run(tmp_path,
                                                                                            tiny_checkpoint):
    """Two TIFF runs into one folder shared their temporary files and left maps no reader opened; an --overwrite
    run into a store still being written left planes of both runs' settings under one record."""
    from napari_diffdenoise.core.io.output_lock import lock_path, one_run_into

    data = np.random.default_rng(4).poisson(5, (2, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", data, photometric="minisblack")
    for output, stem, run in ((tmp_path / "maps", "in", lambda: denoise_to_tiff(
            tmp_path / "in.tif", tmp_path / "maps", str(tiny_checkpoint), stem="in", **SETTINGS)),
                              (tmp_path / "out.zarr", None, lambda: denoise_to_zarr(
            tmp_path / "in.tif", tmp_path / "out.zarr", str(tiny_checkpoint), overwrite=True, **SETTINGS))):
        with one_run_into(output, stem):  # another run, writing
            with pytest.raises(ValueError, match="another run is writing .* now"):
                run()
        assert not output.exists()
        run()  # once it has ended
        assert output.exists() and not lock_path(output, stem).exists()
    other = tmp_path / "other"  # another stem in the same folder is another set of maps: not held up
    with one_run_into(other, "a"):
        denoise_to_tiff(tmp_path / "in.tif", other, str(tiny_checkpoint), stem="b", **SETTINGS)


def test_an_output_store_behind_a_link_is_written_through_it(tmp_path, tiny_checkpoint):
    """A store linked to a scratch disk failed: "Cannot call rmtree on a symbolic link" with --overwrite, "Not a
    directory" for a link to an empty folder."""
    data = np.random.default_rng(4).poisson(5, (2, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", data, photometric="minisblack")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "link.zarr").symlink_to(tmp_path / "scratch", target_is_directory=True)
    denoise_to_zarr(tmp_path / "in.tif", tmp_path / "link.zarr", str(tiny_checkpoint), **SETTINGS)
    first = np.asarray(read_maps(tmp_path / "scratch")[0]["mean"][...])
    denoise_to_zarr(tmp_path / "in.tif", tmp_path / "link.zarr", str(tiny_checkpoint), overwrite=True,
                    **{**SETTINGS, "seed": 5})
    assert (tmp_path / "link.zarr").is_symlink()
    assert not np.array_equal(np.asarray(read_maps(tmp_path / "link.zarr")[0]["mean"][...]), first)
