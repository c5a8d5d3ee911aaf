"""Hot pixels (core.imaging.hot_pixels): found where no optics could make them, restored around, and
the mean holding what the run asks there."""
import numpy as np
import pytest

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging import hot_pixels as hot_module
from napari_diffdenoise.core.imaging.hot_pixels import hot_pixels


def _background(shape=(96, 96), level=13.0, seed=0):
    return np.random.default_rng(seed).poisson(level, shape).astype(np.float64)


def test_a_lone_spike_is_hot_and_a_blurred_spot_of_the_same_height_is_not():
    plane = _background()
    plane[40, 50] = 60000  # NEUBIAS's membranes image: 60 014 counts over a background of 13
    yy, xx = np.mgrid[:96, :96]
    for sigma in (1.0, 0.6):  # a point through optics: its neighbours hold e^(−1/2σ²) of its height
        plane += 5000 * np.exp(-((yy - 70) ** 2 + (xx - (20 if sigma == 1 else 30)) ** 2) / (2 * sigma**2))
    found = hot_pixels(plane)
    assert found.sum() == 1 and found[40, 50]
    # photon noise alone, even at a few photons, is never 10 of its standard deviations above everything near
    assert not hot_pixels(_background((256, 256), 2.0, seed=1)).any()
    assert not hot_pixels(_background((256, 256), 300.0, seed=2)).any()
    assert not hot_pixels(np.zeros((4, 4))).any()  # too small to tell


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_a_hot_pixel_is_restored_around_not_as_a_blob_and_the_mean_keeps_what_the_run_asks(demo, monkeypatch):
    plane = _background((128, 128))
    plane[60, 70] = 60000
    passed = denoise(plane, demo, n_samples=0, symmetries=1, coverage=0.9)
    assert passed.metadata["hot_pixels"] == "pass" and passed.metadata["hot_pixels_found"] == 1
    assert passed.mean[60, 70] == 60000  # what the camera recorded: in every frame, and any average of them
    around = passed.mean[57:64, 67:74].copy()
    around[3, 3] = 13
    assert around.max() < 13 + 10 * np.sqrt(13)  # no blob around it
    assert passed.lower[60, 70] <= 60000 <= passed.upper[60, 70]
    replaced = denoise(plane, demo, n_samples=0, symmetries=1, hot_pixels="replace")
    assert abs(replaced.mean[60, 70] - 13) < 5 and replaced.metadata["hot_pixels"] == "replace"
    # restored as data (as before this was found), the spike became a blob several pixels across
    monkeypatch.setattr(hot_module, "hot_pixels", lambda p, above: np.zeros(p.shape, bool))
    blob = denoise(plane, demo, n_samples=0, symmetries=1).mean[57:64, 67:74]
    assert (blob > 13 + 10 * np.sqrt(13)).sum() >= 9


def test_hot_pixels_setting_is_checked_and_offered_by_the_cli():
    from napari_diffdenoise.core.run.run_spec import HOT_PIXELS, cli_settings

    assert HOT_PIXELS in cli_settings() and HOT_PIXELS.flag == "--hot-pixels"
    with pytest.raises(ValueError, match=r"hot_pixels must be one of \('pass', 'replace'\); got 'keep'"):
        denoise(np.ones((32, 32)), load_model("demo"), n_samples=0, hot_pixels="keep")


def test_the_threshold_is_in_noise_units_of_the_plane(monkeypatch):
    """Ten standard deviations of the camera fitted to the plane: a spike of 8 σ is not hot, of 12 σ is."""
    plane = _background((128, 128), 400.0, seed=3)
    plane[30, 30] = 400 + 8 * 20
    plane[90, 90] = 400 + 12 * 20
    found = hot_pixels(plane)
    assert not found[30, 30] and found[90, 90]
    assert hot_module.HOT_SIGMAS == 10.0


def test_the_cli_says_what_it_did_with_hot_pixels(tmp_path, tiny_checkpoint, capsys):
    import tifffile

    from napari_diffdenoise.cli import main

    plane = _background((64, 64)).astype(np.uint16)
    plane[20, 20] = 60000
    tifffile.imwrite(tmp_path / "hot.tif", plane)
    assert main(["denoise", str(tmp_path / "hot.tif"), "--out", str(tmp_path / "o"), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "1 hot pixel (single pixels far above everything near them, which no optics makes) restored around, not " \
           "as blobs; the mean keeps their recorded values (--hot-pixels replace: their neighbours' median)" in err
    assert tifffile.imread(tmp_path / "o" / "hot_mean.tif")[20, 20] == 60000
    plane[20, 20] = 13
    tifffile.imwrite(tmp_path / "cold.tif", plane)
    assert main(["denoise", str(tmp_path / "cold.tif"), "--out", str(tmp_path / "c"), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "2"]) == 0
    assert "hot pixel" not in capsys.readouterr().err


def test_a_spike_within_the_range_of_the_planes_structure_is_left_to_the_model(demo):
    """10–15 σ single-pixel events in the dark of an EMCCD-like image can be photons: only what lies above
    the top of the plane's intensity map (brighter than its structure) is taken for a hot pixel."""
    plane = _background((128, 128))
    yy, xx = np.mgrid[:128, :128]
    plane += 5000 * np.exp(-((yy - 90) ** 2 + (xx - 90) ** 2) / (2 * 6.0**2))  # structure up to 5000 counts
    plane[30, 30] = 13 + 300  # 80 σ over the background, far under the structure
    assert hot_pixels(plane)[30, 30]  # a spike, anywhere
    result = denoise(plane, demo, n_samples=0, symmetries=1)
    assert "hot_pixels_found" not in result.metadata
    plane[30, 30] = 60000
    assert denoise(plane, demo, n_samples=0, symmetries=1).metadata["hot_pixels_found"] == 1


def test_a_calibration_keeps_hot_pixels_as_recorded_whatever_the_run_does(demo):
    """Replaced by their neighbours' median, a hot pixel would leave its whole spike in the residual
    against a view (recorrupted pair, next frame) and swamp the error's moments there."""
    from napari_diffdenoise.core.run.run_keywords import RunSpec
    from napari_diffdenoise.core.run.run_settings import calibration_settings

    assert calibration_settings(demo, {"hot_pixels": "replace"})["hot_pixels"] == "pass"
    assert calibration_settings(demo, spec=RunSpec(hot_pixels="replace")).hot_pixels == "pass"


def test_adapt_trains_on_the_plane_without_its_hot_pixels(headed, monkeypatch):
    """Adapt's recorrupted pairs are drawn from the planes as a run would restore them: a hot pixel
    left in would be trained on as a bright spot."""
    from napari_diffdenoise.core.run.driving import drive
    from napari_diffdenoise.core.training import adapt as adapt_module

    drawn = []
    of = adapt_module.RecorruptionNoise.of
    monkeypatch.setattr(adapt_module.RecorruptionNoise, "of",
                        staticmethod(lambda noise, plane, *a: (drawn.append(np.array(plane)), of(noise, plane, *a))[1]))
    plane = _background((96, 96))
    plane[40, 50] = 60000
    drive(adapt_module.iter_adapt(headed, plane.astype(np.float32), steps=2, patch_size=32))
    assert drawn and drawn[0][40, 50] < 100 and drawn[0].max() < 100
