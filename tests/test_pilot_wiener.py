"""The [mean] refined by a Wiener filter with itself as the pilot (core.imaging.pilot_wiener): what the filter
does, that a model carries the choice, that a run applies it as the model says, and that adapting on a series
refines only where the series' own frames show it better (core.training.adapt_criteria.refinement_judge)."""
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.camera_noise import CameraNoise, estimate_noise
from napari_diffdenoise.core.imaging.pilot_wiener import dct_wiener, refine_mean
from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint
from napari_diffdenoise.core.training import adapt_criteria


def bright_scene(size=96, peak=400.0, seed=0):
    """(expected counts, a Poisson frame of them): small bright puncta on a dim background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = np.full((size, size), 10.0)
    for cy, cx in rng.integers(6, size - 6, (25, 2)):
        clean += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    return clean, rng.poisson(clean).astype(np.float32)


def test_the_filter_keeps_what_the_pilot_calls_signal_and_drops_what_it_calls_noise():
    d = np.random.default_rng(0).normal(size=(40, 56))
    assert np.allclose(dct_wiener(d, 1e4 * d), d, atol=1e-3)  # every coefficient far above the noise: kept
    assert np.allclose(dct_wiener(d, np.zeros_like(d)), 0.0)  # none above it: all gone


def test_refining_gives_back_bright_structure_an_oversmoothed_mean_lost_and_costs_a_good_mean_at_low_light():
    """Why a model refines only where its user's frames show it better: it helps a mean that smoothed structure
    the camera resolved (the lysosome frames), and spoils one that held more than the noisy pixels do."""
    clean, noisy = bright_scene()
    smoothed = ndimage.gaussian_filter(clean, 1.5)
    refined = refine_mean(noisy, smoothed, estimate_noise([noisy]))
    assert np.mean((refined - clean) ** 2) < 0.5 * np.mean((smoothed - clean) ** 2)
    dim, dim_noisy = bright_scene(peak=4.0)
    good = ndimage.gaussian_filter(dim, 0.5)
    worse = refine_mean(dim_noisy, good, CameraNoise(1.0, 0.0))
    assert np.mean((worse - dim) ** 2) > 2 * np.mean((good - dim) ** 2)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_a_model_carries_its_refinement_through_a_checkpoint(demo, tmp_path):
    refined = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    save_checkpoint(refined, tmp_path / "refined.safetensors")
    assert load_model(tmp_path / "refined.safetensors").mean_refinement == "pilot-wiener"
    assert "mean_refinement" not in demo.metadata()  # unset, the metadata (and a file's hash) stay as before
    assert load_model(tmp_path / "refined.safetensors").metadata()["mean_refinement"] == "pilot-wiener"


def test_a_run_refines_the_head_s_mean_as_the_model_says_and_records_it(demo):
    _, noisy = bright_scene(size=80)
    plain = denoise(noisy, demo, seed=0, n_samples=0)
    refined_model = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    run = denoise(noisy, refined_model, seed=0, n_samples=0)
    expected = np.maximum(refine_mean(noisy, plain.mean, estimate_noise([noisy])), 0)
    assert np.allclose(run.mean, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(run.mean - plain.mean).max() > 1.0  # it moved the mean
    assert run.metadata["mean_refinement"] == "pilot-wiener" and plain.metadata["mean_refinement"] == "none"
    assert np.array_equal(run.mean, denoise(noisy, refined_model, seed=0, n_samples=0).mean)
    # the mean it was judged on is the head's: the samples' average is left as it is
    samples = denoise(noisy, refined_model, seed=0, n_samples=2, mean="samples", sampler_params={"steps": 2})
    assert samples.metadata["mean_refinement"] == "none"
    assert np.array_equal(samples.mean, denoise(noisy, demo, seed=0, n_samples=2, mean="samples",
                                                sampler_params={"steps": 2}).mean)


class _Restored:
    def __init__(self, mean):
        self.mean = mean


@pytest.mark.parametrize("head, refined", [("oversmoothing", True), ("exact", False)])
def test_adapting_on_a_series_refines_only_where_its_frames_show_it_better(monkeypatch, demo, head, refined):
    """The judge restores held-out frames as a run does and scores them against their registered neighbours:
    a head that smoothed the puncta is refined, one that restores them exactly is left as it is."""
    from napari_diffdenoise.core.run import restore

    clean, _ = bright_scene(size=128)
    frames = [np.random.default_rng([1, k]).poisson(clean).astype(np.float64) for k in range(7)]
    restored = ndimage.gaussian_filter(clean, 1.5) if head == "oversmoothing" else clean
    monkeypatch.setattr(restore, "denoise", lambda frame, model, **kw: _Restored(restored[:frame.shape[0],
                                                                                        :frame.shape[1]].copy()))
    held = [(2, (1, 3)), (5, (4, 6))]
    judged = adapt_criteria.refinement_judge(demo, frames, held, CameraNoise(1.0, 0.0))
    assert judged["quadrants"] == 8 and judged["refined"] is refined
    assert (judged["difference"] < 0) is refined


def test_the_cli_says_when_the_model_refined_the_mean(demo, tmp_path, capsys):
    import tifffile

    from napari_diffdenoise.cli import main

    _, noisy = bright_scene(size=64)
    tifffile.imwrite(tmp_path / "puncta.tif", noisy)
    save_checkpoint(dataclasses.replace(demo, mean_refinement="pilot-wiener"), tmp_path / "refined.safetensors")
    for model, says in ((str(tmp_path / "refined.safetensors"), True), ("demo", False)):
        assert main(["denoise", str(tmp_path / "puncta.tif"), "--out", str(tmp_path / model[-8:]), "--model", model,
                     "--samples", "0"]) == 0
        assert ("the [mean] refined by a Wiener filter with itself as the pilot" in capsys.readouterr().err) is says


def test_the_denoise_widget_says_when_the_model_refined_the_mean(make_napari_viewer, qtbot, monkeypatch, demo, tmp_path):
    from napari_diffdenoise._widgets import denoise as denoise_module
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    errors = []
    monkeypatch.setattr(denoise_module, "notify_error", errors.append)

    save_checkpoint(dataclasses.replace(demo, mean_refinement="pilot-wiener"), tmp_path / "refined.safetensors")
    viewer = make_napari_viewer()
    d = DenoiseWidget(viewer)
    d.image.value = viewer.add_image(bright_scene(size=64)[1], name="puncta")
    d.model_file.value = tmp_path / "refined.safetensors"
    d.n_samples.value, d.coverage.value = 0, 0.0
    d.run()
    qtbot.waitUntil(lambda: "puncta [mean]" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: d.status.value.startswith("Done"), timeout=10_000)
    assert "the [mean] refined by a Wiener filter with itself as the pilot" in d.status.value
    assert viewer.layers["puncta [mean]"].metadata["napari_diffdenoise"]["mean_refinement"] == "pilot-wiener"
    assert not errors, errors


def test_an_exported_package_says_its_forward_leaves_the_refinement_out(demo):
    from napari_diffdenoise.core.io.bioimageio_export import _documentation

    assert "Wiener" not in _documentation(demo)
    assert "`forward` gives the network's output alone" in _documentation(
        dataclasses.replace(demo, mean_refinement="pilot-wiener"))


def test_a_calibration_holds_for_the_refinement_it_was_made_with(demo):
    """The intervals are centred on the refined mean: a model's calibration made with its refinement serves its
    runs, and not a run of the same weights left unrefined (refused, as any user calibration is for settings it
    was not made for, unless calibrated on the image)."""
    from napari_diffdenoise import calibrate

    _, noisy = bright_scene(size=64)
    refined = calibrate(dataclasses.replace(demo, mean_refinement="pilot-wiener", calibrations=[]), noisy,
                        n_samples=0, std="head")
    run = denoise(noisy, refined, seed=0, n_samples=0, coverage=0.9)
    assert run.metadata["calibrated_on_this_image"] is False
    assert run.metadata["calibration_source"] == refined.calibrations[0]["source"]
    unrefined = dataclasses.replace(refined, mean_refinement="none")
    with pytest.raises(ValueError, match="has no calibration for"):
        denoise(noisy, unrefined, seed=0, n_samples=0, coverage=0.9)
    assert denoise(noisy, unrefined, seed=0, n_samples=0, coverage=0.9,
                   calibrate_on_image=True).metadata["calibrated_on_this_image"] is True


def test_a_camera_fit_without_photon_noise_is_refined_by_scaling_and_one_without_noise_not_at_all():
    """A fit's gain can be 0 (no level dependence found): the Anscombe transform would divide by it."""
    clean, _ = bright_scene(size=48)
    noisy = clean + 5.0 * np.random.default_rng(3).standard_normal(clean.shape)
    smoothed = ndimage.gaussian_filter(clean, 1.5)
    refined = refine_mean(noisy, smoothed, CameraNoise(0.0, 25.0))
    assert np.mean((refined - clean) ** 2) < np.mean((smoothed - clean) ** 2)
    assert np.array_equal(refine_mean(noisy, smoothed, CameraNoise(0.0, 0.0)), smoothed)


def test_the_filter_in_strips_of_windows_is_the_filter_on_all_windows_at_once(monkeypatch):
    """A 4096² plane's windows at once would take GBs per array: they go in strips, with the same result."""
    from napari_diffdenoise.core.imaging import pilot_wiener

    rng = np.random.default_rng(5)
    d = rng.normal(size=(75, 61))
    pilot = d * rng.uniform(0, 3, d.shape)
    monkeypatch.setattr(pilot_wiener, "WINDOW_ROWS", 10**6)
    whole = dct_wiener(d, pilot)
    monkeypatch.setattr(pilot_wiener, "WINDOW_ROWS", 3)
    np.testing.assert_allclose(dct_wiener(d, pilot), whole, rtol=0, atol=1e-12)


def test_a_refined_run_s_time_here_is_timed_apart_from_an_unrefined_one(demo):
    """What a run spends outside its network calls is timed per what it computes: the refinement is part of it."""
    from napari_diffdenoise.core.run import run_cost
    from napari_diffdenoise.core.run.restore import make_settings

    refined = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    keys = [run_cost.overhead_key(m, make_settings(m, n_samples=0, device="cpu")) for m in (demo, refined)]
    assert keys[0] != keys[1] and keys[0][:5] == keys[1][:5]  # same network timings, another overhead


@pytest.mark.parametrize("shape", [(33, 17), (5, 9), (4, 4)])
def test_a_plane_of_any_size_is_filtered_without_a_division_by_zero(shape):
    d = np.random.default_rng(0).normal(size=shape)
    with np.errstate(all="raise"):
        assert np.isfinite(dct_wiener(d, 2 * d)).all()
