"""The std head (core.model.std_head): a std map and interval unit in one pass, stored, calibrated and run."""
import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise
from napari_diffdenoise.core.calibration.calibration import calibrate
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint
from napari_diffdenoise.core.model.std_head import log_variance
from napari_diffdenoise.core.run.run_spec import DEFAULT_SYMMETRIES


@pytest.fixture
def plane():
    return np.random.default_rng(0).poisson(np.tile(np.linspace(2, 40, 64), (64, 1))).astype(np.uint16)


def test_one_pass_gives_mean_std_and_unit_from_the_heads(with_std, plane):
    result = denoise(plane, with_std, n_samples=0, symmetries=1)  # one pass of each head, as computed below
    assert result.metadata["std_estimator"] == "head" and result.metadata["network_evaluations"] == 2
    assert result.entropy is None and list(result.maps) == ["mean", "std"]
    # the std map is the head's, computed here by hand on the one 64² tile
    imap = IntensityMap.from_percentiles(plane)
    x = torch.from_numpy(imap.to_model(plane))[None, None]
    with torch.no_grad():
        mean = with_std.predict_mean(x).clamp(*with_std.value_range)
        expected = imap.scale_to_input(torch.exp(0.5 * log_variance(with_std.std_network, x, mean))[0, 0].numpy())
    np.testing.assert_allclose(result.std, expected, rtol=1e-4)
    assert result.std.std() > 0 and result.interval_unit.min() >= result.std.min()


def test_with_samples_the_std_is_still_the_heads_and_the_entropy_the_samples(with_std, plane):
    headed = denoise(plane, with_std, n_samples=2, steps=2, seed=0)
    one_pass = denoise(plane, with_std, n_samples=0)
    sampled = denoise(plane, with_std, n_samples=2, steps=2, seed=0, std="samples")
    np.testing.assert_array_equal(headed.std, one_pass.std)
    np.testing.assert_array_equal(headed.entropy, sampled.entropy)
    assert not np.allclose(headed.std, sampled.std) and sampled.metadata["std_estimator"] == "samples"
    # the std head's pass, once per symmetry the heads are averaged over (core.model.symmetries)
    assert headed.metadata["network_evaluations"] == sampled.metadata["network_evaluations"] + DEFAULT_SYMMETRIES


def test_std_settings_are_refused_with_what_is_accepted(headed, with_std, plane):
    with pytest.raises(ValueError, match="std must be one of"):
        denoise(plane, with_std, std="spread")
    with pytest.raises(ValueError, match="std='head' gives the error of the mean head's"):
        denoise(plane, with_std, std="head", mean="samples", n_samples=2, steps=2)
    headed.std_network = None
    with pytest.raises(ValueError, match="needs a model with a std head"):
        denoise(plane, headed, std="head")
    assert denoise(plane, headed, n_samples=2, steps=2).metadata["std_estimator"] == "samples"


def test_the_std_head_is_saved_and_loaded(with_std, tmp_path, plane):
    path = tmp_path / "m.safetensors"
    save_checkpoint(with_std, path)
    loaded = load_model(path)
    assert loaded.std_provenance == {"recipe": "test"}
    for a, b in zip(with_std.std_network.state_dict().values(), loaded.std_network.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(denoise(plane, loaded, n_samples=0).std, denoise(plane, with_std, n_samples=0).std)


def test_a_std_head_calibration_holds_whatever_the_sampler(with_std):
    rng = np.random.default_rng(1)
    clean = np.tile(np.linspace(5, 60, 96), (96, 1))
    noisy = rng.poisson(clean).astype(np.float32)
    calibrated = calibrate(with_std, noisy, clean, n_samples=0)
    assert calibrated.calibrations[-1]["settings"]["std_estimator"] == "head"
    one_pass = denoise(noisy, calibrated, n_samples=0, coverage=0.9)
    sampled = denoise(noisy, calibrated, n_samples=2, steps=3, seed=0, coverage=0.9)
    np.testing.assert_array_equal(one_pass.lower, sampled.lower)
    assert one_pass.metadata["interval_factor"] == sampled.metadata["interval_factor"]
    with pytest.raises(ValueError, match="no calibration for sampler 'ddim'"):
        denoise(noisy, calibrated, n_samples=2, steps=3, std="samples", coverage=0.9)



def test_the_widget_previews_mean_and_std_and_offers_where_the_std_comes_from(make_napari_viewer, qtbot, with_std,
                                                                              tmp_path, plane):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    path = tmp_path / "with_std.safetensors"
    save_checkpoint(with_std, path)
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = path
    viewer.add_image(plane, name="plane")
    w.image.value = viewer.layers["plane"]
    w.preview()
    qtbot.waitUntil(lambda: "plane [preview std]" in viewer.layers and w._worker is None, timeout=60_000)
    std = viewer.layers["plane [preview std]"]
    # a preview is one pass of each head, not one per symmetry
    assert std.colormap.name == "magma" and std.metadata["napari_diffdenoise"]["network_evaluations"] == 2
    np.testing.assert_array_equal(std.data, denoise(plane, with_std, n_samples=0, symmetries=1).std)
    assert w.status.value.startswith("Preview of the one-pass mean and std")
    w.std_estimator.value = "samples"  # the samples' spread: no std in a preview
    w.preview()
    qtbot.waitUntil(lambda: "plane [preview std]" not in viewer.layers and w._worker is None, timeout=60_000)
    assert "plane [preview]" in viewer.layers


def test_self_calibration_scales_the_heads_std_without_samples(with_std):
    from napari_diffdenoise.core.calibration.self_calibration import self_calibrate

    noisy = np.random.default_rng(3).poisson(np.tile(np.linspace(5, 60, 128), (128, 1))).astype(np.float32)
    calibrated = self_calibrate(with_std, noisy, n_samples=0)
    stored = calibrated.calibrations[0]
    assert stored["settings"]["std_estimator"] == "head" and stored["settings"]["n_samples"] == 0
    result = denoise(noisy, calibrated, n_samples=0, coverage=0.9)
    assert result.metadata["interval_factor"] == pytest.approx(stored["factors"][stored["coverages"].index(0.9)])
    np.testing.assert_allclose(result.upper - result.mean, result.metadata["interval_factor"] * result.interval_unit,
                               rtol=1e-5)


def test_the_one_pass_preset_runs_the_heads_alone_and_only_where_the_model_has_them(make_napari_viewer, qtbot,
                                                                                   with_std, tmp_path, plane):
    import dataclasses

    from napari_diffdenoise._widgets.denoise import ONE_PASS, DenoiseWidget

    path, without = tmp_path / "with_std.safetensors", tmp_path / "without_std.safetensors"
    save_checkpoint(with_std, path)
    save_checkpoint(dataclasses.replace(with_std, std_network=None), without)
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = without
    assert ONE_PASS not in w.preset.choices  # no std head: no samples would mean no std
    w.model_file.value = path
    assert ONE_PASS in w.preset.choices
    viewer.add_image(plane, name="plane")
    w.image.value = viewer.layers["plane"]
    w.preset.value = ONE_PASS
    assert w.n_samples.value == 0
    w.run()
    qtbot.waitUntil(lambda: "plane [std]" in viewer.layers and w._worker is None, timeout=60_000)
    # with the intervals the form makes by default, calibrated on the image (the head's calibration draws no samples)
    assert [layer.name for layer in viewer.layers] == ["plane", "plane [mean]", "plane [std]", "plane [lower]",
                                                      "plane [upper]"]
    meta = viewer.layers["plane [std]"].metadata["napari_diffdenoise"]
    assert meta["network_evaluations"] == 2 * DEFAULT_SYMMETRIES and meta["std_estimator"] == "head"
    np.testing.assert_array_equal(viewer.layers["plane [std]"].data, denoise(plane, with_std, n_samples=0).std)
    w.n_samples.value = 2  # a hand edit leaves the preset
    assert w.preset.value == "custom"


def test_a_calibration_of_the_head_draws_no_samples_and_equals_one_that_did(with_std):
    from napari_diffdenoise.core.calibration.self_calibration import self_calibrate
    from napari_diffdenoise.core.run.restore import calibration_settings

    assert calibration_settings(with_std, {"n_samples": 8, "steps": 3, "coverage": 0.9}) == \
        {"n_samples": 0, "steps": 3, "keep_samples": False, "hot_pixels": "pass"}
    assert calibration_settings(with_std, {"n_samples": 8, "std": "samples"})["n_samples"] == 8
    noisy = np.random.default_rng(4).poisson(np.tile(np.linspace(5, 60, 96), (96, 1))).astype(np.float32)
    cheap = self_calibrate(with_std, noisy, **calibration_settings(with_std, {"n_samples": 2, "steps": 2}))
    sampled = self_calibrate(with_std, noisy, n_samples=2, steps=2)
    assert cheap.calibrations[0]["factors"] == sampled.calibrations[0]["factors"]
