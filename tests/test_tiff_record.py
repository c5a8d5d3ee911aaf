"""One TIFF writer and one reader of its record (issue #20): every TIFF the package writes goes through
core.io.tiff_maps (TiffMaps, write_maps) and reads back through open_image and read_record; every command
reads its images through open_image, with its errors."""
import numpy as np
import pytest
import tifffile

from napari_diffdenoise.cli import main
from napari_diffdenoise.core.io.image_io import open_image
from napari_diffdenoise.core.io.tiff_maps import RUN_KEY, read_record, write_maps


def _record(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return read_record(tif)


def test_arrays_in_memory_are_written_as_the_streamed_maps_are(tmp_path):
    maps = {"a": np.arange(3 * 8 * 10, dtype=np.float32).reshape(3, 8, 10), "b": np.ones((3, 8, 10), np.uint16)}
    pixel = {"scale": {"Y": 0.5, "X": 0.25}, "units": {"Y": "micrometer", "X": "micrometer"}}
    paths = write_maps(tmp_path, "s", maps, pixel=pixel, metadata={"seed": 4})
    assert [p.name for p in paths] == ["s_a.tif", "s_b.tif"]
    for path, (name, array) in zip(paths, maps.items()):
        written = open_image(path)
        assert written.axes == "ZYX" and written.scale == pytest.approx({"Y": 0.5, "X": 0.25})
        np.testing.assert_array_equal(np.asarray(written.data), array)
        assert np.asarray(written.data).dtype == array.dtype
        record = _record(path)
        assert record[RUN_KEY] == {"seed": 4} and record["axes"] == "ZYX" and record["shape"] == [3, 8, 10]
    with pytest.raises(ValueError, match="already exist"):
        write_maps(tmp_path, "s", maps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_a.tif", "s_b.tif"]  # no temporary file left


def test_a_tiff_from_elsewhere_has_no_record(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8), description="a microscope's text")
    assert RUN_KEY not in _record(tmp_path / "plain.tif")


def test_the_commands_write_through_the_one_writer(tmp_path):
    assert main(["simulate", "--kind", "puncta", "--size", "32", "--out", str(tmp_path)]) == 0
    for name in ("puncta_noisy.tif", "puncta_clean.tif"):
        record = _record(tmp_path / name)
        assert record["axes"] == "YX" and RUN_KEY not in record  # no run made them
    assert main(["deconvolve", str(tmp_path / "puncta_noisy.tif"), "--psf-sigma", "1", "--iterations", "2",
                 "--out", str(tmp_path)]) == 0
    assert _record(tmp_path / "puncta_noisy_mean.tif")[RUN_KEY]["method"] == "richardson-lucy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["puncta_clean.tif", "puncta_noisy.tif", "puncta_noisy_mean.tif"]


@pytest.mark.parametrize("name, error", [("missing.tif", "does not exist"), ("picture.png", "expected a TIFF")])
def test_every_command_reads_through_open_image_with_its_errors(tmp_path, capsys, name, error):
    (tmp_path / "picture.png").write_bytes(b"\x89PNG")
    path = str(tmp_path / name)
    out = str(tmp_path / "m.safetensors")
    commands = {"denoise": ["denoise", path, "--out", str(tmp_path)],
                "deconvolve": ["deconvolve", path, "--psf-sigma", "1", "--out", str(tmp_path)],
                "train, noisy": ["train", "--noisy", path, "--clean", path, "--out", out],
                "train, clean": ["train", "--clean", path, "--out", out],
                "adapt": ["adapt", path, "--out", out]}
    for command, args in commands.items():
        assert main(args) == 2, command
        assert error in capsys.readouterr().err, command


@pytest.mark.parametrize("unit", ["\\u00B5m", "\\u03BCm", "micron", "um"])  # ImageJ metadata is ASCII
def test_imagej_units_as_fiji_writes_them_are_read(tmp_path, unit):
    """Fiji saves µm escaped, as the 7 characters \\u00B5m: the maps lost the unit of such files."""
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint16), imagej=True, resolution=(1 / 0.065, 1 / 0.065),
                     metadata={"unit": unit, "axes": "ZYX", "spacing": 0.2})
    source = open_image(path)
    assert source.units == {"X": "micrometer", "Y": "micrometer", "Z": "micrometer"}
    assert source.scale == pytest.approx({"X": 0.065, "Y": 0.065, "Z": 0.2})


def test_the_record_is_strict_json_that_other_programs_parse(tmp_path):
    """A held-out coverage the split-half check could not measure is NaN: Python wrote it as the bare word NaN,
    which a strict JSON parser refuses. It is null in the TIFF record and in an OME-Zarr store's attributes."""
    import json

    from napari_diffdenoise.core.io.map_store import ATTRIBUTE, MapStore
    from napari_diffdenoise.core.run.batch import denoise_to_zarr

    def strict(text):
        return json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} is not JSON"))

    metadata = {"calibration_held_out_coverage": float("nan"), "factors": [np.float32(1.5), np.inf], "n": np.int64(2)}
    (path,) = write_maps(tmp_path, "s", {"a": np.zeros((8, 8), np.float32)}, metadata=metadata)
    with tifffile.TiffFile(path) as tif:
        record = strict(tif.pages[0].description)
    assert strict(record[RUN_KEY]) == {"calibration_held_out_coverage": None, "factors": [1.5, None], "n": 2}
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    denoise_to_zarr(tmp_path / "in.tif", tmp_path / "out.zarr", "demo", n_samples=0, symmetries=1)
    MapStore.open_existing(tmp_path / "out.zarr").finish(metadata)
    with open(tmp_path / "out.zarr" / "zarr.json") as f:
        attributes = strict(f.read())["attributes"]
    assert attributes[ATTRIBUTE]["metadata"] == {"calibration_held_out_coverage": None, "factors": [1.5, None], "n": 2}


def test_a_folder_the_file_system_refuses_is_said_as_such(tmp_path, monkeypatch):
    """access() may allow what mkdir then refuses (/proc, a read-only mount): the error named no option."""
    import errno
    from pathlib import Path

    def refused(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(ValueError, match=r"--out .*/a/b: the folder could not be made \(Read-only file system\)"):
        write_maps(tmp_path / "a" / "b", "s", {"m": np.zeros((8, 8), np.float32)})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
