import dataclasses
import re

import numpy as np
import pytest

from napari_diffdenoise._widgets import calibrate as calibrate_module
from napari_diffdenoise._widgets import denoise as denoise_module
from napari_diffdenoise._widgets.calibrate import CalibrateWidget
from napari_diffdenoise._widgets.denoise import DenoiseWidget
from napari_diffdenoise._widgets.model_registry import REGISTRY
from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint
from napari_diffdenoise.core.run.restore import DEFAULT_SAMPLER_SETTINGS, make_settings
from napari_diffdenoise.core.run.run_record import recorded_value, settings_record
from napari_diffdenoise.core.run.run_spec import MEAN, N_SAMPLES, STD
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(calibrate_module, "notify_error", messages.append)
    monkeypatch.setattr(denoise_module, "notify_error", messages.append)
    return messages


@pytest.mark.computation
def test_calibrate_saves_a_new_model_that_denoise_uses_for_intervals(make_napari_viewer, qtbot, errors, tiny_checkpoint,
                                                                     tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 40, (2, 48, 48)).astype(np.float32)
    viewer.add_image(rng.poisson(truth).astype(np.uint16), name="noisy")
    viewer.add_image(truth, name="truth")
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.noisy.value, w.truth.value = viewer.layers["noisy"], viewer.layers["truth"]
    assert w.std.value == "auto" and not w.n_samples.native.isHidden()  # no std head: auto is the samples' spread
    w.steps.value, w.n_samples.value = 2, 3
    taken = tmp_path / "calibrated.safetensors"
    taken.write_bytes(b"an earlier file")
    w.output.value = taken
    w.run()
    qtbot.waitUntil(lambda: w.status.value.startswith(("Saved", "Failed")), timeout=60_000)
    assert not errors, errors
    assert taken.read_bytes() == b"an earlier file"  # never replaced
    saved = tmp_path / "calibrated-2.safetensors"
    model = load_model(saved)
    assert len(model.calibrations) == 1 and model.calibrations[0]["settings"]["params"]["steps"] == 2
    stored = model.calibrations[0]["settings"]
    assert stored["n_samples"] == 3 and recorded_value(stored, "std_estimator") == "samples"  # the K chosen
    assert "the samples' spread" in _header_tooltip(w.table, "width factor")
    assert model.calibrations[0]["source"] == "user pairs: layers 'noisy' / 'truth'"
    table = w.table.to_dict("split")
    assert len(table["data"]) == 9 and list(table["columns"][:2]) == ["nominal", "held-out"]
    assert w.figure is not None

    d = DenoiseWidget(viewer)
    d.image.value = viewer.layers["noisy"]
    d.model.value = str(saved.resolve())
    d.steps.value, d.n_samples.value, d.coverage.value = 2, 3, 0.9
    # shown with a coverage, and off: the model holds the calibration just made against the truth layer
    assert not d.self_calibrate.native.isHidden() and not d.self_calibrate.value
    d.run()
    qtbot.waitUntil(lambda: "noisy [upper]" in viewer.layers, timeout=60_000)
    mean, std, entropy = (viewer.layers[f"noisy [{n}]"].data for n in ("mean", "std", "entropy"))
    lower, upper = viewer.layers["noisy [lower]"], viewer.layers["noisy [upper]"]
    assert not lower.visible and not upper.visible
    assert lower.metadata["napari_diffdenoise"]["coverage"] == 0.9
    assert lower.metadata["napari_diffdenoise"]["calibration_source"] == "user pairs: layers 'noisy' / 'truth'"
    assert np.all(lower.data <= mean) and np.all(mean <= upper.data) and np.any(upper.data > mean)
    # the std layer holds the spread in intensity units, the entropy layer bits in [0, log2 K]
    assert std.max() > 0 and entropy.max() <= np.log2(3) + 1e-6 and not np.allclose(std, entropy)
    assert not errors, errors


def _header_tooltip(table, name: str) -> str:
    native = table.native
    return next(native.horizontalHeaderItem(i).toolTip() for i in range(native.columnCount())
                if native.horizontalHeaderItem(i).text() == name)


def _sampler_controls(w):
    return (w.sampler, w.steps, w.eta, w.n_samples)


def test_the_form_starts_at_a_runs_defaults_and_bounds_the_steps_by_the_models_schedule(make_napari_viewer, errors,
                                                                                         tiny_checkpoint):
    """The tiny model has 50 training steps and no std head; the bundled demo 200 and a std head."""
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    tiny = load_model(tiny_checkpoint)
    defaults = DEFAULT_SAMPLER_SETTINGS
    assert (w.sampler.value, w.steps.value, w.eta.value, w.n_samples.value, w.std.value) == (
        defaults["sampler"], defaults["sampler_params"]["steps"], defaults["sampler_params"]["eta"],
        defaults["n_samples"], STD.default)
    # the run the form asks for by default is the library's default run
    assert settings_record(make_settings(tiny, **w.run_settings())) == \
        settings_record(make_settings(tiny, **DEFAULT_SAMPLER_SETTINGS))
    steps = SAMPLERS["ddim"].spec("steps")
    assert w.steps.max == steps.bounds(tiny.schedule)[1] == 50
    assert (w.steps.label, w.steps.tooltip) == (steps.label, steps.help)
    assert w.std.choices == ("auto", "samples")  # no head to take the std from
    assert (w.std.label, w.std.tooltip, w.n_samples.label) == (STD.label, STD.help, N_SAMPLES.label)
    assert not any(c.native.isHidden() for c in _sampler_controls(w)) and w.head_route.native.isHidden()

    w.model.value = "demo"
    assert w.steps.max == 200 and "head" in w.std.choices
    w.std.value = "samples"
    w.steps.value = 120
    w.model.value = str(tiny_checkpoint.resolve())
    assert (w.steps.max, w.steps.value) == (50, 50)  # what the tiny model's sampler accepts, the most it takes
    assert w.std.value == "samples"
    w.sampler.value = "heun"  # its own step default and parameters; no η
    assert w.steps.value == SAMPLERS["heun"].spec("steps").default and w.eta.native.isHidden()
    assert [c.name for c in w.sampler_params] == ["churn", "rho"] and not w.sampler_params.native.isHidden()
    assert set(w.run_settings()["sampler_params"]) == {"steps", "churn", "rho"}
    assert not errors, errors


def test_a_model_with_a_std_head_is_calibrated_through_the_head_without_samples(make_napari_viewer, qtbot, errors,
                                                                               with_std, tmp_path):
    """Denoise's default run of such a model takes its std from the head, so that is what the form
    calibrates by default: no sampler settings to set, no samples drawn, a calibration that holds
    for Denoise's default run."""
    path = tmp_path / "with_std.safetensors"
    save_checkpoint(with_std, path)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(6)
    truth = rng.uniform(5, 40, (40, 40)).astype(np.float32)
    viewer.add_image(rng.poisson(truth).astype(np.float32), name="noisy")
    viewer.add_image(truth, name="truth")
    w = CalibrateWidget(viewer)
    REGISTRY.add(path)
    w.model.value = str(path.resolve())
    assert w.std.value == "auto"
    assert all(c.native.isHidden() for c in _sampler_controls(w)) and not w.head_route.native.isHidden()
    w.noisy.value, w.truth.value = viewer.layers["noisy"], viewer.layers["truth"]
    w.output.value = tmp_path / "calibrated.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert not errors, errors
    assert w.status.value.startswith("Saved") and "the std head ranks the errors" in w.status.value
    calibrated = load_model(tmp_path / "calibrated.safetensors")
    stored = calibrated.calibrations[0]["settings"]
    assert stored["std_estimator"] == "head" and stored["n_samples"] == 0 and "sampler" not in stored
    make_settings(calibrated, coverage=0.9, **DEFAULT_SAMPLER_SETTINGS)  # Denoise's default run finds it
    assert "the std head's std" in _header_tooltip(w.table, "width factor")

    w.std.value = "samples"  # the samples' spread: its sampler settings come back
    assert not any(c.native.isHidden() for c in _sampler_controls(w)) and w.head_route.native.isHidden()


def test_calibrate_refuses_the_same_layer_twice(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((32, 32)), name="a")
    w = CalibrateWidget(viewer)
    w.noisy.value = w.truth.value = viewer.layers["a"]
    w.run()
    assert errors == ["The noisy layer and the truth layer must be different layers"]


def test_calibrate_without_a_truth_layer_calibrates_on_the_noisy_ones_residuals(make_napari_viewer, qtbot, errors,
                                                                      tiny_checkpoint, tmp_path):
    from napari_diffdenoise._widgets.calibrate import NO_TRUTH

    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    viewer.add_image(rng.poisson(rng.uniform(5, 40, (48, 48))).astype(np.uint16), name="noisy")
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.noisy.value = viewer.layers["noisy"]
    viewer.add_image(np.ones((48, 48)), name="another layer")
    assert w.truth.value is None  # by default: noisy images alone calibrate at once, another layer or not
    assert NO_TRUTH in [w.truth.native.itemText(i) for i in range(w.truth.native.count())]
    w.steps.value, w.n_samples.value = 2, 3
    w.output.value = tmp_path / "self.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w.status.value.startswith(("Saved", "Failed")), timeout=60_000)
    assert not errors, errors
    assert load_model(tmp_path / "self.safetensors").calibrations[0]["source"].startswith("self-calibrated: residuals against recorrupted pairs")


def _two_acquisitions(viewer, seed: int):
    """Two layers acquiring one field ("take 1", "take 2"), and a third of another shape."""
    rng = np.random.default_rng(seed)
    field = rng.uniform(5, 40, (32, 32))
    takes = [viewer.add_image(rng.poisson(field).astype(np.float32), name=f"take {k}") for k in (1, 2)]
    viewer.add_image(rng.poisson(field[:16]).astype(np.float32), name="other shape")
    return takes


def test_calibrate_without_a_truth_calibrates_against_a_second_acquisition(make_napari_viewer, qtbot, errors,
                                                                            tiny_checkpoint, tmp_path):
    """As in Denoise: the other layers of the noisy layer's shape are offered while no truth is picked, and the
    saved calibration is the wider of the recorrupted pairs' and the second acquisition's."""
    from napari_diffdenoise._widgets.layers import NO_SECOND

    viewer = make_napari_viewer()
    take1, take2 = _two_acquisitions(viewer, 7)
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.noisy.value = take1
    assert list(w.second.choices) == [NO_SECOND, take2] and w.second.value == NO_SECOND
    assert not w.second.native.isHidden()
    w.truth.value = take2
    assert w.second.native.isHidden()  # a truth is the better witness: nothing to calibrate against besides
    w.truth.value = None
    w.second.value = take2
    w.steps.value, w.n_samples.value = 2, 3
    w.output.value = tmp_path / "two.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w.status.value.startswith(("Saved", "Failed")), timeout=60_000)
    assert not errors, errors
    source = load_model(tmp_path / "two.safetensors").calibrations[0]["source"]
    assert source.startswith("the wider of two self-calibrations at each level")
    assert "Second: self-calibrated: residuals against a second acquisition" in source


@pytest.mark.computation
def test_denoise_calibrates_against_a_second_acquisition_the_user_points_to(make_napari_viewer, qtbot, errors,
                                                                           tiny_checkpoint):
    """Two acquisitions of one field as two layers: the form offers the other layers of the image's shape
    (not the image, not a layer of another shape), only while it calibrates on the image; the run then
    calibrates against the chosen one beside the recorrupted pairs, keeping the wider interval, and its
    time estimate counts that second run."""
    from napari_diffdenoise._widgets.layers import NO_SECOND

    viewer = make_napari_viewer()
    first, second = _two_acquisitions(viewer, 5)
    d = DenoiseWidget(viewer)
    d.model_file.value = tiny_checkpoint
    d.steps.value, d.n_samples.value = 2, 3
    d.image.value = first
    assert [value for value in d.second_view.choices] == [NO_SECOND, second] and d.second_view.value == NO_SECOND
    assert not d.second_view.native.isHidden()
    d.self_calibrate.value = False
    assert d.second_view.native.isHidden()  # nothing calibrated here: nothing to calibrate against
    d.self_calibrate.value = True
    qtbot.waitUntil(lambda: "of it calibrating" in d.estimate.value, timeout=20_000)
    alone = d.estimate.tooltip  # what is restored, in pixels: rounded seconds may not show a small image's second run
    d.second_view.value = second
    qtbot.waitUntil(lambda: "Calibrating on this image" in d.estimate.tooltip and d.estimate.tooltip != alone,
                    timeout=20_000)
    d.run()
    qtbot.waitUntil(lambda: "take 1 [upper]" in viewer.layers, timeout=60_000)
    source = viewer.layers["take 1 [lower]"].metadata["napari_diffdenoise"]["calibration_source"]
    assert source.startswith("the wider of two self-calibrations at each level")
    assert "First: self-calibrated: residuals against recorrupted pairs" in source
    assert "Second: self-calibrated: residuals against a second acquisition" in source
    # one field acquired twice: nothing moved, and the status says so
    assert viewer.layers["take 1 [lower]"].metadata["napari_diffdenoise"]["second_acquisition_differs"] < 0.02
    assert "the second acquisition differs from the image beyond noise on 0 %" in d.status.value
    assert not errors, errors


def test_denoise_keeps_a_calibration_the_user_made(make_napari_viewer, qtbot, errors, tiny_model, tmp_path):
    """A model of the user's calibrated against their truth, or on their noisy images: the Denoise widget
    does not calibrate on the image again (one rule with the library and the CLI: core.calibration.on_image),
    where a bundled one — and a copy of it saved elsewhere — is calibrated on the image by default."""
    from napari_diffdenoise import calibrate, load_model
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint

    rng = np.random.default_rng(6)
    clean = rng.uniform(5, 40, (32, 32)).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32)
    settings = {"sampler": "ddim", "steps": 2, "n_samples": 3}
    save_checkpoint(calibrate(tiny_model, noisy, clean, **settings), tmp_path / "truth.safetensors")
    save_checkpoint(calibrate(tiny_model, noisy, **settings), tmp_path / "residuals.safetensors")
    save_checkpoint(load_model("demo"), tmp_path / "demo-copy.safetensors")
    assert load_model(tmp_path / "truth.safetensors").calibrations[0]["against_truth"]
    assert not load_model(tmp_path / "residuals.safetensors").calibrations[0]["against_truth"]
    viewer = make_napari_viewer()
    d = DenoiseWidget(viewer)
    d.image.value = viewer.add_image(rng.poisson(clean).astype(np.float32), name="new")
    assert d.self_calibrate.value  # the bundled model: its calibrations were made on other images
    d.model_file.value = tmp_path / "truth.safetensors"
    assert not d.self_calibrate.value and d.coverage.value == 0.9
    d.steps.value, d.n_samples.value = 2, 3
    d.run()
    qtbot.waitUntil(lambda: "new [upper]" in viewer.layers, timeout=60_000)
    assert viewer.layers["new [upper]"].metadata["napari_diffdenoise"]["calibration_source"] == "user pairs"
    assert "intervals from the model's calibration (user pairs)" in d.status.value
    d.model_file.value = tmp_path / "residuals.safetensors"
    assert not d.self_calibrate.value
    d.model_file.value = tmp_path / "demo-copy.safetensors"
    assert d.self_calibrate.value
    assert not errors, errors


@pytest.mark.computation
def test_denoise_calibrates_on_the_image_itself_when_asked(make_napari_viewer, qtbot, errors, tiny_checkpoint):
    """The tiny model has no calibration at all: with the box on, the run calibrates on the layer
    (frame 1 recorrupted, and against the mean of frames 0 and 2 of its T axis) and then gives
    intervals; with it off, it is refused."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    field = rng.uniform(5, 40, (32, 32))
    viewer.add_image(rng.poisson(np.stack([field] * 3)[:, None]).astype(np.float32), name="movie")  # T, Z=1, Y, X
    d = DenoiseWidget(viewer)
    d.image.value = viewer.layers["movie"]
    d.model_file.value = tiny_checkpoint
    d.steps.value, d.n_samples.value = 2, 3
    assert not d.self_calibrate.native.isHidden() and d.coverage.value == 0.9  # intervals by default
    d.coverage.value = 0
    assert d.self_calibrate.native.isHidden()  # no intervals, nothing to calibrate
    d.coverage.value = 0.9
    d.n_samples.value = 1  # one sample has no spread to calibrate: refused at Run, saying how to go without intervals
    d.run()
    assert d._worker is None and errors and "Samples (n_samples) must be at least 2" in errors[0]
    assert "Or set Interval coverage to 0: no intervals" in errors[0] and d.status.value.startswith("Not started")
    errors.clear()
    d.n_samples.value = 3
    d.self_calibrate.value = False
    d.run()
    assert errors and "has no calibration" in errors[0]
    errors.clear()
    d.self_calibrate.value = True
    d.run()
    qtbot.waitUntil(lambda: "movie [upper]" in viewer.layers, timeout=60_000)
    meta = viewer.layers["movie [lower]"].metadata["napari_diffdenoise"]
    # a T axis: recorrupted pairs of frame 1 and frame 1 against its neighbours, the wider interval
    assert meta["calibration_source"].startswith("the wider of two self-calibrations at each level")
    assert "First: self-calibrated: residuals against recorrupted pairs" in meta["calibration_source"]
    assert "Second: self-calibrated: residuals against the mean of frames t − 1 and t + 1 for 1 plane(s)" in \
        meta["calibration_source"]
    lower, upper = viewer.layers["movie [lower]"].data, viewer.layers["movie [upper]"].data
    assert lower.shape == (3, 1, 32, 32) and np.all(upper >= lower) and np.any(upper > lower)
    assert not errors, errors


def _noisy_only_form(viewer, w, checkpoint, seed):
    """A 40² noisy layer, the tiny model, no truth, 2 steps × 3 samples."""
    rng = np.random.default_rng(seed)
    viewer.add_image(rng.poisson(rng.uniform(5, 40, (40, 40))).astype(np.float32), name="noisy")
    REGISTRY.add(checkpoint)
    w.model.value = str(checkpoint.resolve())
    w.noisy.value, w.truth.value = viewer.layers["noisy"], None
    w.steps.value, w.n_samples.value = 2, 3


def test_each_channel_is_calibrated_on_its_own(make_napari_viewer, qtbot, errors, tiny_checkpoint, tmp_path):
    """The form pooled a layer's channels into one calibration where Denoise's 'Calibrate on this image'
    gives each its own λ; it now calibrates by the layer's axes, without a truth and against one."""
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    _noisy_only_form(viewer, w, tiny_checkpoint, seed=4)
    rng = np.random.default_rng(4)
    cells = np.stack([rng.poisson(rng.uniform(5, 40, (40, 40))), 5 * rng.poisson(rng.uniform(5, 40, (40, 40)))])
    viewer.add_image(cells.astype(np.float32), name="cells", axis_labels=("c", "y", "x"))
    w.noisy.value = viewer.layers["cells"]

    def saved_calibration(name):
        w.output.value = tmp_path / name
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
        assert w.status.value.startswith("Saved"), (w.status.value, errors)
        return load_model(tmp_path / name).calibrations[0]

    calibration = saved_calibration("calibrated.safetensors")
    assert calibration["channel_axis"] == 0 and len(calibration["channel_factors"]) == 2
    assert calibration["source"].startswith("each of 2 channels on its own")
    # against a truth too: split conformal per channel, the table's check held-out pixels
    viewer.add_image(cells.astype(np.float32), name="cells truth", axis_labels=("c", "y", "x"))
    w.truth.value = viewer.layers["cells truth"]
    calibration = saved_calibration("against truth.safetensors")
    assert len(calibration["channel_factors"]) == 2 and "Channel 1: user pairs" in calibration["source"]
    assert "held-out" in w.table.value["columns"]
    # a row per channel and level (the channels' mean hid one that fell short), each with its own λ
    table = w.table.to_dict("split")
    assert table["columns"][0] == "channel" and len(table["data"]) == 2 * len(calibrate_module.LEVELS)
    at_09 = {row[0]: row for row in table["data"] if row[1] == "0.90"}
    assert [float(at_09[k][3]) for k in "01"] == pytest.approx([f[calibrate_module.LEVELS.index(0.9)]
                                                              for f in calibration["channel_factors"]], abs=0.006)
    # the reliability diagram: a curve per channel, each its own std against its own error
    lines = {line.get_label(): line for line in w.figure.figure.axes[0].get_lines()}
    assert set(lines) == {"calibrated", "channel 0", "channel 1"}
    # channel 1 holds five times the counts of channel 0: its errors five times larger
    assert np.median(lines["channel 1"].get_ydata()) > 3 * np.median(lines["channel 0"].get_ydata())


def test_the_mean_control_is_denoises_and_the_calibration_holds_for_the_mean_chosen(make_napari_viewer, qtbot, errors,
                                                                                    tiny_checkpoint, tmp_path):
    """The mean is in a calibration's key: intervals calibrated for one "Mean from" are found by a
    run with that one, not by a run with another."""
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    _noisy_only_form(viewer, w, tiny_checkpoint, seed=3)
    assert (w.mean.label, w.mean.tooltip, w.mean.value) == (MEAN.label, MEAN.help, MEAN.default)
    assert w.mean.choices == ("auto", "x0", "samples")  # the tiny model has no mean head
    w.mean.value = "x0"
    assert w.run_settings()["mean"] == "x0"
    w.output.value = tmp_path / "calibrated.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert w.status.value.startswith("Saved"), (w.status.value, errors)
    calibrated = load_model(tmp_path / "calibrated.safetensors")
    assert recorded_value(calibrated.calibrations[0]["settings"], "mean_estimator") == "x0"
    run = {"sampler": "ddim", "sampler_params": {"steps": 2, "eta": 1.0}, "n_samples": 3, "coverage": 0.9}
    make_settings(calibrated, mean="x0", **run)  # Denoise's run with that mean finds the intervals
    with pytest.raises(ValueError, match="calibrat"):
        make_settings(calibrated, mean="samples", **run)


def test_the_mean_chosen_decides_where_the_std_can_come_from(make_napari_viewer, errors):
    """The bundled demo has a mean and a std head: the std head's std goes with the mean head's mean only."""
    w = CalibrateWidget(make_napari_viewer())
    w.model.value = "demo"
    assert "head" in w.mean.choices and "head" in w.std.choices
    assert all(c.native.isHidden() for c in _sampler_controls(w))  # auto: the heads, no samples to set
    w.mean.value = "samples"
    assert "head" not in w.std.choices and w.std.value == "auto"
    assert not any(c.native.isHidden() for c in _sampler_controls(w)) and w.head_route.native.isHidden()
    assert not errors, errors


def test_the_steps_set_stay_when_the_sampler_changes(make_napari_viewer, errors, tiny_checkpoint):
    """As in Denoise: steps and η follow one declaration shared by ddim and the DPM-Solvers, so a change
    between them keeps what was set; heun declares its own steps, which start at its default."""
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.steps.value, w.eta.value = 7, 0.4
    w.sampler.value = "dpm++2m"
    assert w.steps.value == 7 and w.eta.native.isHidden()
    w.sampler.value = "ddim"
    assert (w.steps.value, w.eta.value) == (7, 0.4)
    assert w.run_settings()["sampler_params"] == {"steps": 7, "eta": 0.4}
    w.sampler.value = "heun"
    assert w.steps.value == SAMPLERS["heun"].spec("steps").default
    assert not errors, errors


def test_the_calibrate_form_offers_only_samplers_it_can_run(make_napari_viewer, qtbot, errors, tiny_checkpoint,
                                                            tmp_path):
    """ddpm has no step count and ddim-dc needs a PSF: the form has neither control, and offered both."""
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    offered = [w.sampler.native.itemText(i) for i in range(w.sampler.native.count())]
    assert "ddim" in offered and "dpm++2m" in offered
    assert "ddpm" not in offered and "ddim-dc" not in offered
    _noisy_only_form(viewer, w, tiny_checkpoint, seed=2)
    w.output.value = tmp_path / "calibrated.safetensors"
    for name in offered:
        w.sampler.value = name
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
        assert w.status.value.startswith("Saved"), (name, w.status.value, errors)
    assert len(list(tmp_path.glob("calibrated*.safetensors"))) == len(offered)


def test_calibrate_saves_into_the_models_folder_by_default(make_napari_viewer, qtbot, errors, tiny_checkpoint,
                                                          tmp_path, monkeypatch):
    """Not into whatever folder napari was started from; the status names the whole path."""
    folder = tmp_path / "home" / "models"
    monkeypatch.setattr(calibrate_module, "USER_MODELS_DIR", folder)
    monkeypatch.chdir(tmp_path)
    viewer = make_napari_viewer()
    w = CalibrateWidget(viewer)
    _noisy_only_form(viewer, w, tiny_checkpoint, seed=5)
    before = sorted(tmp_path.iterdir())
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    saved = folder / "tiny-calibrated.safetensors"
    assert w.status.value.startswith(f"Saved {saved}"), w.status.value
    assert saved.is_file() and sorted(tmp_path.iterdir()) == sorted({*before, tmp_path / "home"})
    assert not errors, errors


def test_calibrate_reads_full_resolution_refuses_truths_it_cannot_use_and_shows_no_stale_result(
        make_napari_viewer, errors, monkeypatch):
    """A helper's session found: multiscale layers read at their smallest level (a calibration made on 8 192 of
    65 536 px; a false shape mismatch with one multiscale), constant and NaN truths taken (or a LAPACK error),
    the Second acquisition row hidden for good once a truth was picked and set back, result layers offered as
    a second acquisition, and a refused run left under the previous run's table and "Saved …" line."""
    from napari_diffdenoise.core.run.conformal import Calibration

    warnings = []
    monkeypatch.setattr(calibrate_module, "notify_warning", warnings.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 40, (128, 128)).astype(np.float32)
    noisy = rng.poisson(truth).astype(np.float32)
    viewer.add_image([noisy, noisy[::2, ::2]], multiscale=True, name="noisy")
    viewer.add_image(truth, name="truth", scale=(2, 2))
    viewer.add_image(noisy, name="noisy [mean]")
    viewer.add_image(noisy + 1, name="other acquisition")
    w = CalibrateWidget(viewer)
    w.model.value = "demo"
    w.noisy.value, w.truth.value = viewer.layers["noisy"], viewer.layers["truth"]
    _, noisy_data, clean, _, _ = w._validate()
    assert noisy_data.shape == clean.shape == (128, 128) and np.array_equal(noisy_data, noisy)
    assert warnings and "different scales or positions" in warnings[-1]
    for name, data, said in (("flat", np.full((128, 128), 7.0), "is constant (every pixel 7)"),
                             ("holed", np.where(truth > 39, np.nan, truth), "holds NaN or infinite values")):
        viewer.add_image(data, name=name)
        w.truth.value = viewer.layers[name]
        with pytest.raises(ValueError, match=re.escape(f"the truth layer '{name}' {said}")):
            w._validate()
    w.truth.value = None
    assert not w.second.native.isHidden()  # shown again once no truth is picked
    w.noisy.value = viewer.layers["other acquisition"]
    # the multiscale noisy and its [mean] are not offered; a layer of the shape that is no result is
    assert [name for name, _ in w._second_choices()] == ["none", "truth", "flat", "holed"]
    w.table.value = {"data": [["0.90", "0.90", "1.00", "2"]], "columns": ["nominal", "held-out", "width factor", "w"]}
    w.status.value = "Saved /somewhere/earlier.safetensors"
    w.truth.value = viewer.layers["flat"]
    w.run()
    assert errors and "is constant" in errors[-1]
    assert w.status.value == "" and len(w.table.to_dict("split")["data"]) == 0
    short = Calibration({}, [0.5, 0.8, 0.9, 0.95], [1, 1, 1, 1], [0.3, 0.79, 0.78, 0.94], [1, 1, 1, 1], "user pairs",
                        10)
    fine = dataclasses.replace(short, held_out_coverage=[0.5, 0.8, 0.9, 0.95])
    assert calibrate_module.short_of_nominal([("0", fine), ("1", short)]).startswith(
        ". Held out, the intervals fell short: channel 1: 0.78 at 0.90 (")
    assert calibrate_module.short_of_nominal([("", short)]) == (
        ". Held out, the intervals fell short: 0.78 at 0.90 (few pixels to calibrate on give an uncertain λ; a larger "
        "image or more planes steady it)")


class _PlanesOnly:
    """A slide scan's level 0 as a lazy layer holds it: once ``strict`` (napari's own drawing reads as it likes), read
    plane by plane, never whole (np.asarray of it, or a read of several planes at once, fails the test)."""

    def __init__(self, data):
        self._data, self.shape, self.dtype, self.ndim, self.size = data, data.shape, data.dtype, data.ndim, data.size
        self.strict, self.planes_read = False, set()

    def __getitem__(self, key):
        out = self._data[key]
        if self.strict and out.ndim > 2:
            raise AssertionError(f"read {out.shape} at once")
        if self.strict and out.ndim == 2:
            self.planes_read.add(key[0] if isinstance(key, tuple) else key)
        return out

    def __array__(self, dtype=None, copy=None):
        if self.strict:
            raise AssertionError("read whole")
        return np.asarray(self._data, dtype=dtype)


def test_calibrate_without_a_truth_reads_a_lazy_layer_plane_by_plane(make_napari_viewer, qtbot, errors,
                                                                     tiny_checkpoint, tmp_path):
    """The widget read a lazy layer's level 0 whole before calibrating on a few of its planes (every plane of a
    stack for 4 of them a channel); it hands the calibration the lazy level, which reads only its planes."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    planes = rng.poisson(rng.uniform(5, 40, (12, 48, 48))).astype(np.uint16)
    level0 = _PlanesOnly(planes)
    viewer.add_image([level0, planes[:, ::2, ::2]], multiscale=True, name="scan")
    w = CalibrateWidget(viewer)
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.noisy.value = viewer.layers["scan"]
    w.steps.value, w.n_samples.value = 2, 3
    w.output.value = tmp_path / "self.safetensors"
    level0.strict = True
    w.run()
    qtbot.waitUntil(lambda: w.status.value.startswith(("Saved", "Failed")), timeout=60_000)
    assert not errors, errors
    assert w.status.value.startswith("Saved") and 0 < len(level0.planes_read) < len(planes)
