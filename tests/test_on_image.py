"""Where a run's intervals are calibrated (core.calibration.on_image): on the image, unless the model holds
a calibration of the user's own; one rule for the library, the CLI and the Denoise widget."""
import dataclasses
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_diffdenoise import calibrate, denoise, load_model, save_checkpoint
from napari_diffdenoise.cli import main
from napari_diffdenoise.core.calibration.on_image import calibrates_on_image, holds_own_calibration

ONE_PASS = {"n_samples": 0, "symmetries": 1}  # demo's mean and std heads: two network passes


def low_light(seed=0, shape=(64, 64)):
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.uniform(0, 40, shape), 3)
    return rng.poisson(clean + 2).astype(np.float32), clean


def test_a_bundled_models_calibrations_are_marked_as_shipped_in_any_copy(tmp_path):
    demo = load_model("demo")
    assert demo.calibrations and all(c["shipped"] for c in demo.calibrations)
    assert not holds_own_calibration(demo)
    save_checkpoint(demo, tmp_path / "copy.safetensors")
    assert not holds_own_calibration(load_model(tmp_path / "copy.safetensors"))


def test_a_bundled_model_is_calibrated_on_the_image_and_the_stored_calibration_is_there_when_asked():
    noisy, _ = low_light()
    demo = load_model("demo")
    here = denoise(noisy, demo, coverage=0.9, **ONE_PASS)
    again = denoise(noisy, demo, coverage=0.9, **ONE_PASS)
    stored = denoise(noisy, demo, coverage=0.9, calibrate_on_image=False, **ONE_PASS)
    assert here.metadata["calibrated_on_this_image"] and here.metadata["self_calibration_seconds"] > 0
    assert here.metadata["calibration_source"].startswith("self-calibrated: residuals against recorrupted pairs")
    assert not stored.metadata["calibrated_on_this_image"] and "self_calibration_seconds" not in stored.metadata
    assert stored.metadata["calibration_source"].startswith("simulated and real structure")
    # the shipped one was checked on held-out simulated pairs; the image's own only by a modelled split-half check
    assert 0.5 < stored.metadata["calibration_held_out_coverage"] <= 1
    assert "calibration_split_half_coverage_modelled" not in stored.metadata
    assert "calibration_held_out_coverage" not in here.metadata
    assert 0 <= here.metadata["calibration_split_half_coverage_modelled"] <= 1
    shipped = next(c for c in demo.calibrations if c["settings"].get("std_estimator") == "head")
    assert stored.metadata["interval_factor"] == pytest.approx(np.interp(0.9, shipped["coverages"],
                                                                         shipped["factors"]))
    assert here.metadata["interval_factor"] != pytest.approx(stored.metadata["interval_factor"], rel=0.01)
    np.testing.assert_array_equal(here.upper, again.upper)  # the calibration's draws are seeded
    np.testing.assert_array_equal(here.mean, stored.mean)  # only the intervals' width differs
    assert demo.calibrations[0]["shipped"] and len(demo.calibrations) == 3  # the caller's model is unchanged


def test_a_calibration_the_user_made_is_taken_as_it_is():
    noisy, clean = low_light(1)
    demo = load_model("demo")
    for mine in (calibrate(demo, noisy, clean, **ONE_PASS), calibrate(demo, noisy, **ONE_PASS)):
        assert holds_own_calibration(mine) and not calibrates_on_image(mine, {"coverage": 0.9})
        result = denoise(noisy, mine, coverage=0.9, **ONE_PASS)
        assert not result.metadata["calibrated_on_this_image"] and "self_calibration_seconds" not in result.metadata
        assert result.metadata["calibration_source"] == mine.calibrations[0]["source"]
        forced = denoise(noisy, mine, coverage=0.9, calibrate_on_image=True, seed=1, **ONE_PASS)
        assert forced.metadata["calibrated_on_this_image"]
    assert not calibrates_on_image(demo, {"coverage": None}) and not calibrates_on_image("richardson-lucy", {"coverage": 0.9})


def test_the_cli_calibrates_on_the_input_unless_told_to_take_the_stored_calibration(tmp_path, capsys):
    noisy, _ = low_light(2)
    path = tmp_path / "low.tif"
    tifffile.imwrite(path, noisy.astype(np.uint16))
    common = ["denoise", str(path), "--model", "demo", "--coverage", "0.9", "--samples", "0", "--symmetries", "1"]
    assert main([*common, "--out", str(tmp_path / "here")]) == 0
    said = capsys.readouterr()
    assert f"self-calibrating on {path}" in said.err and "calibration: self-calibrated: residuals against" in said.err
    # the wait is the calibration's and the run's: the run's seconds alone read as all of it
    assert re.search(r"low_upper\.tif in \d+\.\d s, after \d+\.\d s calibrating on the image$", said.out.strip())
    assert main([*common, "--out", str(tmp_path / "stored"), "--stored-calibration"]) == 0
    said = capsys.readouterr()
    assert "self-calibrating" not in said.err
    assert "intervals from the model's calibration: simulated and real structure" in said.err
    assert re.search(r"low_upper\.tif in \d+\.\d s$", said.out.strip())
    library = denoise(noisy.astype(np.uint16), "demo", coverage=0.9, **ONE_PASS)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "here" / "low_upper.tif"), library.upper)
    assert not np.array_equal(tifffile.imread(tmp_path / "stored" / "low_upper.tif"), library.upper)
    with pytest.raises(SystemExit):  # one or the other
        main([*common, "--out", str(tmp_path / "both"), "--stored-calibration", "--self-calibrate"])
    assert not (tmp_path / "both").exists()


def test_the_packages_file_runs_calibrate_on_the_input_as_denoise_does(tmp_path):
    from napari_diffdenoise import denoise_to_tiff, denoise_to_zarr
    from napari_diffdenoise.core.io.map_store import read_maps

    noisy, _ = low_light(3)
    path = tmp_path / "low.tif"
    tifffile.imwrite(path, noisy.astype(np.uint16))
    library = denoise(noisy.astype(np.uint16), "demo", coverage=0.9, **ONE_PASS)
    said = []
    denoise_to_tiff(path, tmp_path / "tiff", "demo", stem="low", coverage=0.9, progress=said.append, **ONE_PASS)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiff" / "low_upper.tif"), library.upper)
    assert said[0].text.startswith("calibrating on the input: ") and said[-1].planes_done == 1
    denoise_to_zarr(path, tmp_path / "maps.zarr", "demo", coverage=0.9, **ONE_PASS)
    np.testing.assert_array_equal(np.asarray(read_maps(tmp_path / "maps.zarr")[0]["upper"][...]), library.upper)
    stored = denoise(noisy.astype(np.uint16), "demo", coverage=0.9, calibrate_on_image=False, **ONE_PASS)
    denoise_to_tiff(path, tmp_path / "stored", "demo", stem="low", coverage=0.9, calibrate_on_image=False, **ONE_PASS)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "stored" / "low_upper.tif"), stored.upper)
    with pytest.raises(ValueError, match=r"other settings \(interval_factors differ\)"):  # no mix of two widths
        denoise_to_zarr(path, tmp_path / "maps.zarr", "demo", coverage=0.9, calibrate_on_image=False, **ONE_PASS)
    again = denoise_to_zarr(path, tmp_path / "maps.zarr", "demo", coverage=0.9, **ONE_PASS)  # the same calibration
    assert again["planes_resumed"] == 1
    with pytest.raises(ValueError, match="a remote cluster's workers cannot read"):
        denoise_to_zarr(path, tmp_path / "remote.zarr", "demo", coverage=0.9, scheduler="tcp://127.0.0.1:1", **ONE_PASS)
    assert not (tmp_path / "remote.zarr").exists()


def test_a_deconvolution_takes_its_stored_calibration_and_is_refused_without_one():
    """Residuals against the blurred image count the blur as error: a deconvolving run takes the stored calibration
    for its settings (widefield's, made on blurred pairs) and is refused without one, as the Denoise widget's run is
    (the library and the CLI calibrated such a run on the image in silence: widefield with guidance 1.0, README's
    example, got intervals as wide as the blur); asked to, it calibrates on the image. A guided run keeps the stored
    one (a calibration leaves guidance out)."""
    widefield = load_model("widefield")
    psf = np.ones((3, 3)) / 9
    assert not calibrates_on_image(widefield, {"coverage": 0.9, "psf": psf})  # its ddim-dc calibration
    assert not calibrates_on_image(widefield, {"coverage": 0.9, "psf": psf, "steps": 3})  # none for 3 steps: refused
    assert not calibrates_on_image(load_model("demo"), {"coverage": 0.9, "psf": psf, "sampler": "ddim-dc"})
    assert not calibrates_on_image(load_model("demo"), {"coverage": 0.9, "guidance": "dc", "psf": psf})
    assert calibrates_on_image(widefield, {"coverage": 0.9, "psf": psf}, True)
    noisy, _ = low_light(shape=(32, 32))
    with pytest.raises(ValueError,
                       match=r"model 'widefield' has no calibration for .*Use those settings, or calibrate\("):
        denoise(noisy, widefield, psf=psf, coverage=0.9, sampler_params={"guidance": 1.0})


def test_a_resumed_store_takes_the_calibration_it_began_with_and_another_run_is_refused_before_calibrating(
        tmp_path, monkeypatch, capsys):
    """A killed OME-Zarr run with intervals is resumed without calibrating on the image again (tens of seconds
    to minutes, for the same factors), and a store of another run on the input is refused before the
    calibration, not after it."""
    import zarr

    from napari_diffdenoise import denoise_to_zarr
    from napari_diffdenoise.core.calibration import on_image
    from napari_diffdenoise.core.io.map_store import read_maps

    noisy = np.stack([low_light(seed)[0] for seed in range(3)]).astype(np.uint16)
    path = tmp_path / "low.tif"
    tifffile.imwrite(path, noisy, photometric="minisblack")
    store = tmp_path / "maps.zarr"
    whole = denoise_to_zarr(path, store, "demo", axes="ZYX", coverage=0.9, **ONE_PASS)
    upper = np.asarray(read_maps(store)[0]["upper"][...])
    zarr.open_group(str(store), mode="r+")["done"][1:] = False  # as a run killed after its first plane leaves it

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated on the image again")

    monkeypatch.setattr(on_image, "iter_calibrate_on_data", no_calibration)
    said = []
    resumed = denoise_to_zarr(path, store, "demo", axes="ZYX", coverage=0.9, progress=said.append, **ONE_PASS)
    assert resumed["planes_resumed"] == 1 and resumed["interval_factors"] == whole["interval_factors"]
    assert not any(p.text.startswith("calibrating on the input") for p in said)
    np.testing.assert_array_equal(np.asarray(read_maps(store)[0]["upper"][...]), upper)
    assert main(["denoise", str(path), "--out", str(store), "--axes", "ZYX", "--coverage", "0.9", "--samples", "0",
                 "--symmetries", "1"]) == 0
    err = capsys.readouterr().err
    assert "self-calibrating" not in err and f"calibration: {on_image.RESUMED_FROM} {store}" in err
    with pytest.raises(ValueError, match=r"other settings \(seed differ\)"):  # refused, not calibrated first
        denoise_to_zarr(path, store, "demo", axes="ZYX", coverage=0.9, seed=3, **ONE_PASS)
    with pytest.raises(ValueError, match=r"other settings \(coverage differ\)"):
        denoise_to_zarr(path, store, "demo", axes="ZYX", coverage=0.8, **ONE_PASS)
    with pytest.raises(AssertionError, match="calibrated on the image again"):  # replacing it calibrates anew
        denoise_to_zarr(path, store, "demo", axes="ZYX", coverage=0.9, overwrite=True, **ONE_PASS)
    monkeypatch.undo()
    # a coverage given as a float32 resumes (the store holds the value the run checked, a float)
    half = denoise_to_zarr(path, tmp_path / "f32.zarr", "demo", axes="ZYX", coverage=np.float32(0.9), **ONE_PASS)
    zarr.open_group(str(tmp_path / "f32.zarr"), mode="r+")["done"][1:] = False
    assert denoise_to_zarr(path, tmp_path / "f32.zarr", "demo", axes="ZYX", coverage=np.float32(0.9),
                           **ONE_PASS)["interval_factors"] == half["interval_factors"]
    # a store begun on the model's stored calibration is not taken for one made on the image: a run that calibrates
    # on it is refused, as before (its factors differ), not resumed on the bundled calibration
    denoise_to_zarr(path, tmp_path / "stored.zarr", "demo", axes="ZYX", coverage=0.9, calibrate_on_image=False,
                    **ONE_PASS)
    zarr.open_group(str(tmp_path / "stored.zarr"), mode="r+")["done"][1:] = False
    with pytest.raises(ValueError, match=r"other settings \(interval_factors differ\)"):
        denoise_to_zarr(path, tmp_path / "stored.zarr", "demo", axes="ZYX", coverage=0.9, **ONE_PASS)


def test_a_second_run_into_an_output_being_written_is_refused_before_it_calibrates(tmp_path, monkeypatch, capsys):
    """Two runs with intervals into one store both calibrated on the image (minutes) before the second was refused
    at writing; the run now holds its output from its calibration on, and hands the lock on to its writing."""
    from napari_diffdenoise import denoise_to_tiff, denoise_to_zarr
    from napari_diffdenoise.core.calibration import on_image
    from napari_diffdenoise.core.io.output_lock import lock_path, one_run_into

    path = tmp_path / "low.tif"
    tifffile.imwrite(path, low_light()[0].astype(np.uint16), photometric="minisblack")
    calibrated = []
    real = on_image.iter_calibrate_on_data

    def counted(*args, **kwargs):
        calibrated.append(True)
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(on_image, "iter_calibrate_on_data", counted)
    store, folder = tmp_path / "maps.zarr", tmp_path / "maps"
    with one_run_into(store):  # another run, writing it
        with pytest.raises(ValueError, match="another run is writing .* now"):
            denoise_to_zarr(path, store, "demo", coverage=0.9, **ONE_PASS)
        assert main(["denoise", str(path), "--out", str(store), "--coverage", "0.9", "--samples", "0",
                     "--symmetries", "1"]) != 0
        assert "another run is writing" in capsys.readouterr().err
    with one_run_into(folder, "low"):
        with pytest.raises(ValueError, match="another run is writing .* now"):
            denoise_to_tiff(path, folder, "demo", stem="low", coverage=0.9, **ONE_PASS)
    assert not calibrated and not store.exists() and not folder.exists()
    meta = denoise_to_zarr(path, store, "demo", coverage=0.9, **ONE_PASS)  # alone: it calibrates, then writes
    assert calibrated and meta["n_planes"] == 1 and not lock_path(store).exists()
    assert main(["denoise", str(path), "--out", str(folder), "--coverage", "0.9", "--samples", "0",
                 "--symmetries", "1"]) == 0
    assert (folder / "low_upper.tif").exists() and not lock_path(folder, "low").exists()


def test_a_model_holding_the_users_calibrations_never_falls_back_on_one_it_came_with():
    """A calibration the user made for the samples' spread (the Calibrate widget's samples route) left the
    default std-head run on the bundled calibration, in silence: 0.725 held at a stated 0.9 on a 3-photon image.
    The run is refused, naming the user's calibrations; asked to, it calibrates on the image."""
    noisy, _ = low_light()
    demo = load_model("demo")
    samples = next(c for c in demo.calibrations if c["settings"].get("sampler") == "ddim")
    theirs = dataclasses.replace(demo, calibrations=[{**samples, "shipped": False, "source": "user pairs: a, b"},
                                                     *demo.calibrations])
    assert holds_own_calibration(theirs) and not calibrates_on_image(theirs, {"coverage": 0.9})
    with pytest.raises(ValueError, match=r"has no calibration for the std head .*; the calibrations you made are for: "
                                         r"sampler 'ddim' .*calibrate on the image \(calibrate_on_image=True"):
        denoise(noisy, theirs, coverage=0.9, **ONE_PASS)
    here = denoise(noisy, theirs, coverage=0.9, calibrate_on_image=True, **ONE_PASS)
    assert here.metadata["calibration_source"].startswith("self-calibrated")
    bundled = denoise(noisy, demo, coverage=0.9, calibrate_on_image=False, **ONE_PASS)  # a bundled model: its own
    assert bundled.metadata["calibration_source"] == demo.calibrations[0]["source"]


def test_a_bundled_models_file_or_package_loaded_by_path_keeps_its_calibrations_as_shipped(tmp_path):
    """Loaded by its file's path (or from a package exported from it), demo's calibrations read as the user's
    own: its runs took them where the bundled model calibrates on the image."""
    from napari_diffdenoise.core.io.checkpoint import bundled_model_dir

    by_path = load_model(bundled_model_dir() / "demo.safetensors")
    assert by_path.calibrations and all(c["shipped"] for c in by_path.calibrations)
    assert calibrates_on_image(by_path, {"coverage": 0.9})
    noisy, clean = low_light()
    # one of the user's in place of the one for its settings, beside the others
    theirs = calibrate(by_path, noisy, clean, n_samples=0, std="head")
    save_checkpoint(theirs, tmp_path / "theirs.safetensors")
    again = load_model(tmp_path / "theirs.safetensors")
    assert [c["shipped"] for c in again.calibrations] == [False] + [True] * (len(by_path.calibrations) - 1)


def test_the_calibration_on_the_image_takes_the_runs_threads(tmp_path, monkeypatch):
    """--threads set the planes' torch threads but not the calibration's before them, which took torch's default."""
    import torch

    from napari_diffdenoise import denoise_to_tiff
    from napari_diffdenoise.core.calibration import on_image

    path = tmp_path / "low.tif"
    tifffile.imwrite(path, low_light(shape=(32, 32))[0].astype(np.uint16), photometric="minisblack")
    counts, real = [], on_image.iter_calibrate_on_data

    def counted(*args, **kwargs):
        counts.append(torch.get_num_threads())
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(on_image, "iter_calibrate_on_data", counted)
    before = torch.get_num_threads()
    for threads in (1, 3):
        assert main(["denoise", str(path), "--out", str(tmp_path / f"cli{threads}"), "--coverage", "0.9", "--samples",
                     "0", "--symmetries", "1", "--threads", str(threads)]) == 0
        denoise_to_tiff(path, tmp_path / f"lib{threads}", "demo", stem="low", coverage=0.9, threads=threads, **ONE_PASS)
    assert counts == [1, 1, 3, 3] and torch.get_num_threads() == before


def test_a_second_acquisition_refused_says_why_this_run_takes_the_stored_calibration(tmp_path, capsys):
    """A deconvolving run given --second was told to "leave out --stored-calibration", which it had."""
    noisy, _ = low_light(shape=(32, 32))
    path, second = tmp_path / "wide.tif", tmp_path / "wide2.tif"
    tifffile.imwrite(path, noisy.astype(np.uint16))
    tifffile.imwrite(second, noisy.astype(np.uint16))
    assert main(["denoise", str(path), "--model", "widefield", "--psf-sigma", "1.6", "--coverage", "0.9", "--second",
                 str(second), "--out", str(tmp_path / "out")]) == 2
    assert ("which this run does not calibrate on: a run that deconvolves takes the stored calibration (residuals "
            "against the blurred image count the blur as error). Give --self-calibrate too") in capsys.readouterr().err
    with pytest.raises(ValueError, match="a run that deconvolves takes the stored calibration .* Give coverage and "
                                         r"calibrate_on_image=True \(the CLI's --self-calibrate\)"):
        denoise(noisy, "widefield", psf=np.ones((3, 3)) / 9, coverage=0.9, second=noisy)
