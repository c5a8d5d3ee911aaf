import numpy as np
import pytest

from napari_diffdenoise._widgets import calibrate as calibrate_module
from napari_diffdenoise._widgets import denoise as denoise_module
from napari_diffdenoise._widgets.calibrate import CalibrateWidget
from napari_diffdenoise._widgets.denoise import DenoiseWidget
from napari_diffdenoise._widgets.model_registry import REGISTRY
from napari_diffdenoise.core.checkpoint import load_model


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(calibrate_module, "notify_error", messages.append)
    monkeypatch.setattr(denoise_module, "notify_error", messages.append)
    return messages


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
    assert model.calibrations[0]["source"] == "user pairs: layers 'noisy' / 'truth'"
    table = w.table.to_dict("split")
    assert len(table["data"]) == 9 and list(table["columns"][:2]) == ["nominal", "held-out"]
    assert w.figure is not None

    d = DenoiseWidget(viewer)
    d.image.value = viewer.layers["noisy"]
    d.model.value = str(saved.resolve())
    d.steps.value, d.n_samples.value, d.coverage.value = 2, 3, 0.9
    assert not d.self_calibrate.native.isHidden() and d.self_calibrate.value  # shown with a coverage, on by default
    d.self_calibrate.value = False  # the calibration just made, from the truth layer
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
    w.truth.value = None
    assert NO_TRUTH in [w.truth.native.itemText(i) for i in range(w.truth.native.count())]
    w.steps.value, w.n_samples.value = 2, 3
    w.output.value = tmp_path / "self.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w.status.value.startswith(("Saved", "Failed")), timeout=60_000)
    assert not errors, errors
    assert load_model(tmp_path / "self.safetensors").calibrations[0]["source"].startswith("self-calibrated: residuals against recorrupted pairs")


def test_denoise_calibrates_on_the_image_itself_when_asked(make_napari_viewer, qtbot, errors, tiny_checkpoint):
    """The tiny model has no calibration at all: with the box on, the run calibrates on the layer
    (frame 1 against the mean of frames 0 and 2 of its T axis) and then gives intervals; with it
    off, it is refused."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    field = rng.uniform(5, 40, (32, 32))
    viewer.add_image(rng.poisson(np.stack([field] * 3)[:, None]).astype(np.float32), name="movie")  # T, Z=1, Y, X
    d = DenoiseWidget(viewer)
    d.image.value = viewer.layers["movie"]
    d.model_file.value = tiny_checkpoint
    d.steps.value, d.n_samples.value = 2, 3
    assert d.self_calibrate.native.isHidden()  # no coverage, nothing to calibrate
    d.coverage.value = 0.9
    d.self_calibrate.value = False
    d.run()
    assert errors and "has no calibration" in errors[0]
    errors.clear()
    d.self_calibrate.value = True
    d.run()
    qtbot.waitUntil(lambda: "movie [upper]" in viewer.layers, timeout=60_000)
    meta = viewer.layers["movie [lower]"].metadata["napari_diffdenoise"]
    assert meta["calibration_source"].startswith(
        "self-calibrated: residuals against the mean of frames t − 1 and t + 1 for 1 plane(s)")
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
