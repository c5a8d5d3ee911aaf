"""Richardson–Lucy as a restoration method (core.run.methods): one declaration, run by the library, the
batch writers and the CLI through the same plane loop as a diffusion model."""
import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.restoration import richardson_lucy as skimage_rl

from napari_diffdenoise import Cancelled, denoise
from napari_diffdenoise.cli import main
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.imaging.simulate import draw_structure
from napari_diffdenoise.core.io.image_io import open_image
from napari_diffdenoise.core.io.map_store import read_maps
from napari_diffdenoise.core.io.tiff_maps import RUN_KEY, read_record
from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr
from napari_diffdenoise.core.run.deconvolution import richardson_lucy
from napari_diffdenoise.core.run.methods import METHODS, RICHARDSON_LUCY, method_settings
from napari_diffdenoise.core.run.restore import iter_denoise

PSF = gaussian_psf(1.5)


@pytest.fixture
def blurred() -> np.ndarray:
    """Two planes of puncta blurred by PSF, in counts (float32)."""
    truth = np.stack([draw_structure("puncta", (48, 48), seed=s) for s in (1, 2)])
    return np.stack([ndimage.convolve(t, PSF.astype(np.float64), mode="reflect") * 100 + 10
                     for t in truth]).astype(np.float32)


def _by_hand(plane: np.ndarray, psf: np.ndarray, iterations: int) -> np.ndarray:
    """scikit-image's RL on the plane scaled to [0, 1] by its (1, 99.8) percentiles, mapped back."""
    imap = IntensityMap.from_percentiles(plane, (1.0, 99.8))
    unit = np.clip((imap.to_model(plane) + 1) / 2, 0, None)
    return imap.to_input(skimage_rl(unit, psf / psf.sum(), num_iter=iterations, clip=False) * 2 - 1)


def test_richardson_lucy_through_denoise_is_scikit_images_per_plane_with_a_record(blurred):
    result = denoise(blurred, "richardson-lucy", psf=PSF * 3, iterations=7)  # any scale: normalised
    for z in range(2):
        # within float32 rounding: the PSF given ×3 is normalised in float64 there, in float32 here
        np.testing.assert_allclose(result.mean[z], _by_hand(blurred[z], PSF, 7), rtol=1e-5)
    assert result.std is None and result.entropy is None and result.lower is None and result.samples is None
    assert list(result.maps) == ["mean"] and result.mean.dtype == np.float32
    meta = result.metadata
    assert meta["method"] == "richardson-lucy" and meta["iterations"] == 7 and meta["n_samples"] == 0
    assert meta["psf_shape"] == list(PSF.shape) and meta["percentiles"] == [1.0, 99.8] and meta["axes"] == "ZYX"
    assert "model" not in meta and meta["package_version"]
    # the public function is the same run
    np.testing.assert_array_equal(richardson_lucy(blurred, PSF * 3, iterations=7), result.mean)


@pytest.mark.parametrize("cropped", [lambda p: np.roll(p, (3, -2), (0, 1)), lambda p: p[1:, 1:]],
                         ids=["cropped off-centre", "even-sized"])
def test_a_psf_cropped_off_its_centre_restores_without_moving_the_image(blurred, cropped):
    """A bead cropped 3 px off its centre shifted the whole RL result by 3 px, an even-sized PSF by half a pixel
    on each axis: the PSF is centred on its centroid first (core.imaging.kernels.check_psf)."""
    centred = denoise(blurred, "richardson-lucy", psf=PSF, iterations=10).mean
    off = denoise(blurred, "richardson-lucy", psf=cropped(PSF), iterations=10).mean
    for plane, other in zip(centred, off):
        peak = np.unravel_index(np.argmax(plane), plane.shape)
        assert np.unravel_index(np.argmax(other), other.shape) == peak
    np.testing.assert_allclose(off, centred, atol=0.02 * float(np.ptp(centred)))


def test_the_method_runs_through_the_plane_loop_with_progress_and_cancel(blurred):
    seen = []
    denoise(blurred, "richardson-lucy", psf=PSF, iterations=2, progress=seen.append)
    assert [(p.plane, p.n_planes, p.step, p.n_steps) for p in seen] == [(0, 2, 1, 1), (1, 2, 1, 1)]
    assert seen[-1].fraction == 1.0
    with pytest.raises(Cancelled):
        denoise(blurred, "richardson-lucy", psf=PSF, iterations=2, cancel=lambda: True)
    # the generator form, as napari's worker drives it, with settings made once
    run = iter_denoise(blurred, RICHARDSON_LUCY, method_settings(RICHARDSON_LUCY, psf=PSF, iterations=2), axes="ZYX")
    assert next(run).plane == 0


@pytest.mark.parametrize("kwargs, name, accepted", [
    ({}, "psf", "point spread function"),
    ({"psf": PSF, "iterations": 0}, "iterations", "whole number from 1"),
    ({"psf": PSF, "iterations": 2.5}, "iterations", "whole number from 1"),
    ({"psf": PSF, "coverage": 0.9}, "coverage", "leave coverage out"),
    ({"psf": PSF, "n_samples": 4}, "n_samples", "leave n_samples out"),
    ({"psf": PSF, "sampler": "ddim"}, "sampler", "leave sampler out"),
    ({"psf": -PSF}, "psf", "non-negative"),
    ({"psf": PSF, "percentiles": (50, 10)}, "percentiles", "low < high"),
])
def test_bad_input_is_refused_naming_the_parameter(blurred, kwargs, name, accepted):
    with pytest.raises(ValueError, match=name) as err:
        denoise(blurred, "richardson-lucy", **kwargs)
    assert accepted in str(err.value)


def test_parameters_of_one_kind_of_run_are_refused_by_the_other(blurred, tiny_model):
    with pytest.raises(TypeError, match="iteration"):
        denoise(blurred, "richardson-lucy", psf=PSF, iteration=3)  # a misspelt parameter
    with pytest.raises(TypeError, match="iterations"):
        denoise(blurred, tiny_model, iterations=3)  # a model has no iterations
    # settings at their defaults (as the CLI passes them) are no request
    assert denoise(blurred, "richardson-lucy", psf=PSF, iterations=1, n_samples=8, seed=0, device="auto").maps


def test_every_method_declares_what_the_forms_derive(blurred):
    for method in METHODS.values():
        assert method.maps[0] == "mean" and method.label and method.help
        assert all(p.help and p.label for p in method.params)
        defaults = {p.name: p.default for p in method.params}
        assert method_settings(method, psf=PSF).params == defaults


def test_the_writers_give_the_same_mean_and_record_as_in_memory(tmp_path, blurred):
    tifffile.imwrite(tmp_path / "in.tif", blurred)
    in_memory = denoise(blurred, "richardson-lucy", psf=PSF, iterations=4)
    metadata, paths = denoise_to_tiff(tmp_path / "in.tif", tmp_path / "out", "richardson-lucy", stem="in", psf=PSF,
                                      iterations=4)
    assert [p.name for p in paths] == ["in_mean.tif"]
    with tifffile.TiffFile(paths[0]) as tif:
        np.testing.assert_array_equal(tif.asarray(), in_memory.mean)
        record = read_record(tif)[RUN_KEY]
    assert record == metadata
    for key in ("method", "iterations", "psf_shape", "percentiles", "n_samples"):
        assert record[key] == in_memory.metadata[key], key
    zarr_meta = denoise_to_zarr(tmp_path / "in.tif", tmp_path / "out.zarr", "richardson-lucy", psf=PSF, iterations=4)
    maps, stored = read_maps(tmp_path / "out.zarr")
    np.testing.assert_array_equal(np.asarray(maps["mean"]), in_memory.mean)
    assert list(maps) == ["mean"] and zarr_meta["method"] == "richardson-lucy" and zarr_meta["iterations"] == 4
    # a second run resumes (the same method and settings) …
    assert denoise_to_zarr(tmp_path / "in.tif", tmp_path / "out.zarr", "richardson-lucy", psf=PSF,
                           iterations=4)["planes_resumed"] == 2
    # … and other settings are refused rather than mixed into the store
    with pytest.raises(ValueError, match="iterations"):
        denoise_to_zarr(tmp_path / "in.tif", tmp_path / "out.zarr", "richardson-lucy", psf=PSF, iterations=5)
    with pytest.raises(ValueError, match="in this process"):
        denoise_to_zarr(tmp_path / "in.tif", tmp_path / "o2.zarr", "richardson-lucy", psf=PSF, workers=2)


def test_the_cli_runs_the_method_and_writes_its_record(tmp_path, blurred, capsys):
    tifffile.imwrite(tmp_path / "b.tif", blurred)
    out = tmp_path / "out"
    assert main(["denoise", str(tmp_path / "b.tif"), "--model", "richardson-lucy", "--psf-sigma", "1.5",
                 "--iterations", "6", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b_mean.tif"]
    source = open_image(out / "b_mean.tif")
    np.testing.assert_array_equal(np.asarray(source.data), denoise(blurred, "richardson-lucy", psf=PSF,
                                                                   iterations=6).mean)
    with tifffile.TiffFile(out / "b_mean.tif") as tif:
        record = read_record(tif)[RUN_KEY]
    assert record["method"] == "richardson-lucy" and record["iterations"] == 6 and record["n_planes"] == 2
    # the alias: the same run, and a second one is refused over the first's file
    assert main(["deconvolve", str(tmp_path / "b.tif"), "--psf-sigma", "1.5", "--iterations", "6", "--out",
                 str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert main(["deconvolve", str(tmp_path / "b.tif"), "--psf-sigma", "1.5", "--iterations", "6", "--out",
                 str(tmp_path / "alias")]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "alias" / "b_mean.tif"), np.asarray(source.data))
    for args, message in [(["--model", "richardson-lucy"], "needs a PSF"),
                          (["--model", "richardson-lucy", "--psf-sigma", "1", "--coverage", "0.9"], "coverage"),
                          (["--model", "richardson-lucy", "--psf-sigma", "1", "--iterations", "0"], "iterations"),
                          (["--iterations", "3"], "--iterations belong")]:
        assert main(["denoise", str(tmp_path / "b.tif"), "--out", str(tmp_path / "x"), *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "x").exists()
