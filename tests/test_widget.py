"""The Denoise widget in a real napari viewer (run under Xvfb: napari's canvas needs OpenGL)."""
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_diffdenoise._widgets import denoise as denoise_module
from napari_diffdenoise._widgets.denoise import DenoiseWidget


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(denoise_module, "notify_error", messages.append)
    return messages


@pytest.fixture
def widget(make_napari_viewer, tiny_checkpoint):
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = tiny_checkpoint  # "Load from file…"
    w.n_samples.value, w.steps.value, w.seed.value = 2, 3, 5
    return viewer, w


def test_run_adds_mean_std_entropy_layers_with_geometry_and_metadata(widget, noisy_stack, qtbot, errors, tiny_checkpoint):
    viewer, w = widget
    viewer.add_image(noisy_stack, name="nuclei", scale=(2.0, 0.5, 0.5), translate=(0, 10, 20))
    w.image.value = viewer.layers["nuclei"]
    assert w.model.value == str(tiny_checkpoint.resolve())
    assert w.coverage.value == 0.9 and w.self_calibrate.value and not w.self_calibrate.native.isHidden()
    w.run()
    qtbot.waitUntil(lambda: len(viewer.layers) == 6, timeout=60_000)
    # intervals by default, calibrated on the image itself: the test model has no stored calibration
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei [mean]", "nuclei [std]", "nuclei [entropy]",
                                                      "nuclei [lower]", "nuclei [upper]"]
    lower, mean, upper = (viewer.layers[f"nuclei [{n}]"].data for n in ("lower", "mean", "upper"))
    assert np.all(lower <= mean) and np.all(mean <= upper) and np.mean(upper - lower) > 0
    assert viewer.layers["nuclei [lower]"].metadata["napari_diffdenoise"]["calibration_source"].startswith(
        "self-calibrated")
    for layer in list(viewer.layers)[1:]:
        assert layer.data.shape == noisy_stack.shape and layer.data.dtype == np.float32
        np.testing.assert_array_equal(layer.scale, [2.0, 0.5, 0.5])
        np.testing.assert_array_equal(layer.translate, [0, 10, 20])
        meta = layer.metadata["napari_diffdenoise"]
        assert meta["model_sha256"] and meta["sampler"] == "ddim" and meta["steps"] == 3
        assert meta["n_samples"] == 2 and meta["seed"] == 5 and meta["package_version"]
    assert viewer.layers["nuclei [std]"].blending == "additive"
    assert viewer.layers["nuclei [entropy]"].colormap.name == "viridis"
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=10_000)
    assert w.progress.value == 1000 and not errors
    assert "s of it calibrating on this image)" in w.status.value


def test_the_maps_lie_over_a_rotated_registered_layer_and_keep_its_axes_for_the_next_run(widget, noisy_stack, qtbot,
                                                                                            errors):
    """A rotated or registered tile's maps were drawn unrotated (only scale and translate were copied), and a map
    that lost the layer's axis labels was read as TYX, not CYX, when it went back into the widget."""
    from napari_diffdenoise._widgets.layer_axes import named_axes

    viewer, w = widget
    w.coverage.value = 0
    affine = np.array([[1, 0, 0, 0], [0, 1, 0.2, 5], [0, 0, 1, 7], [0, 0, 0, 1]])
    viewer.add_image(noisy_stack, name="cells", rotate=30, affine=affine, scale=(1, 0.5, 0.5),
                     axis_labels=("c", "y", "x"), units=("pixel", "micrometer", "micrometer"))
    source = viewer.layers["cells"]
    w.image.value = source
    w.run()
    qtbot.waitUntil(lambda: len(viewer.layers) == 4, timeout=60_000)
    point = np.array([1.0, 12.0, 30.0])
    for layer in list(viewer.layers)[1:]:
        np.testing.assert_allclose(layer.data_to_world(point), source.data_to_world(point))
        assert tuple(layer.axis_labels) == ("c", "y", "x") and str(layer.units[1]) == "micrometer"
        assert named_axes(layer) == "CYX"
    assert not errors


def test_cancel_adds_no_layers(widget, noisy_stack, qtbot, errors):
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells")
    w.image.value = viewer.layers["cells"]
    w.steps.value = 50  # all the tiny model has: the run would take many steps
    steps_seen = []

    def cancel_on_first_step(info):
        steps_seen.append(info.step)
        if len(steps_seen) == 1:
            w.cancel()

    w.run()
    w._worker.yielded.connect(cancel_on_first_step)
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert len(viewer.layers) == 1 and "Cancelled" in w.status.value
    assert w.progress.value == 0  # not left at the share done, as if the run were there
    assert len(steps_seen) < 50  # stopped early: not after 2 planes × 50 steps (queued yields may still arrive)
    assert w.run_button.enabled and not errors


def test_closing_the_dock_stops_its_run_and_adds_nothing(widget, noisy_stack, qtbot, errors):
    """napari's close button takes the widget out of its dock without deleting it: the run went on for its
    minutes with no Cancel left, then added its layers to the viewer."""
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells")
    dock = viewer.window.add_dock_widget(w, name="Denoise")
    w.image.value = viewer.layers["cells"]
    w.steps.value = 50
    steps = []
    w.run()
    w._worker.yielded.connect(lambda info: steps.append(info))
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=60_000)
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["cells"] and not errors
    assert len(steps) < 50


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (np.zeros((2, 1, 2, 1, 16, 16)), {}, "6 dimensions"),
        (np.zeros((16, 16, 3), np.uint8), {"rgb": True}, "RGB"),
    ],
)
def test_bad_layers_are_refused_with_a_message(widget, data, kwargs, message, errors):
    viewer, w = widget
    viewer.add_image(data, name="bad", **kwargs)
    w.image.value = viewer.layers["bad"]
    assert w.estimate.value == "—"  # no time said for a run Run refuses
    w.run()
    assert w._worker is None and len(viewer.layers) == 1
    assert len(errors) == 1 and message in errors[0]


def test_no_image_is_refused(widget, errors):
    _, w = widget
    w.run()
    assert errors and "image layer" in errors[0]


def test_a_bad_model_file_is_reported_and_not_listed(widget, tmp_path, errors):
    _, w = widget
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    before = list(w.model.choices)
    w.model_file.value = junk
    assert errors and "Could not load the model" in errors[0]
    assert list(w.model.choices) == before


def test_image_choices_follow_the_layer_list(widget):
    viewer, w = widget
    viewer.add_image(np.zeros((16, 16)), name="a")
    viewer.add_points(np.zeros((1, 2)), name="p")
    assert [layer.name for layer in w.image.choices] == ["a"]
    viewer.layers.remove("a")
    assert list(w.image.choices) == []


@pytest.mark.computation
def test_plugin_contributes_the_widget_and_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-diffdenoise", "Denoise")
    assert isinstance(widget, DenoiseWidget)
    viewer.open_sample("napari-diffdenoise", "low_light_stack")
    names = [layer.name for layer in viewer.layers]
    assert names == ["low-light stack", "low-light stack [truth]"]
    assert viewer.layers[0].data.shape == (4, 256, 256)
    assert [layer.name for layer in widget.image.choices] == names


def test_an_unpaired_model_offers_only_guided_samplers_with_their_parameters(make_napari_viewer, tmp_path, qtbot,
                                                                             errors):
    import torch

    from napari_diffdenoise import save_checkpoint
    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    torch.manual_seed(0)
    prior = DiffusionModel.create(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2)),
                                  NoiseSchedule("cosine", 50), kind="unpaired", tile=64)
    save_checkpoint(prior, tmp_path / "prior.safetensors")
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).poisson(5, (40, 40)).astype(np.float32), name="img")
    w = DenoiseWidget(viewer)
    w.model_file.value = tmp_path / "prior.safetensors"
    assert list(w.sampler.choices) == ["fb", "mixing", "repaint", "repaint-baikal"]
    w.sampler.value = "repaint"
    names = [p.name for p in w.sampler_params]
    assert names == ["start", "block", "repeats", "mix_weight", "mix_stop", "renoise"]
    w.sampler.value = "fb"
    w.sampler_params["start"].value = 3
    w.n_samples.value = 2
    w.run()
    qtbot.waitUntil(lambda: len(viewer.layers) == 6, timeout=60_000)  # with intervals calibrated on the image
    meta = viewer.layers["img [mean]"].metadata["napari_diffdenoise"]
    assert meta["sampler"] == "fb" and meta["start"] == 3 and not errors


def test_richardson_lucy_is_a_method_that_adds_a_mean_layer(widget, qtbot, errors):
    from napari_diffdenoise.core.run.methods import RICHARDSON_LUCY
    from napari_diffdenoise.core.imaging.physics import gaussian_psf
    from napari_diffdenoise.core.run.deconvolution import richardson_lucy
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

    viewer, w = widget
    _, blurred = simulate_pair("puncta", (64, 64), Acquisition(psf_sigma=2.0), seed=2)
    stack = np.stack([blurred, blurred[::-1]])
    viewer.add_image(stack, name="wide", scale=(3, 1, 1))
    w.image.value = viewer.layers["wide"]
    w.coverage.value = 0.9
    w.model.value = RICHARDSON_LUCY.name
    iterations = w.method_params["iterations"]
    assert w.sampler.native.isHidden() and not iterations.native.isHidden()
    # what only a diffusion model uses is hidden too (Preview then errored), as the method declares
    for control in (w.preset, w.estimate, w.mean_estimator, w.coverage, w.self_calibrate, w.entropy, w.preview_button,
                    w.sampling, w.layers_section):
        assert control.native.isHidden(), control
    w.model.value = "demo"
    assert not any(c.native.isHidden() for c in (w.preset, w.mean_estimator, w.coverage, w.self_calibrate,
                                                 w.preview_button))
    assert iterations.native.isHidden()
    w.model.value = RICHARDSON_LUCY.name
    w.psf_sigma.value, iterations.value = 2.0, 10
    w.preview()  # refused with a message, not a traceback
    assert errors == ["Richardson–Lucy (classical, no model) has no preview: it is as quick to run in full"]
    errors.clear()
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["wide", "wide [mean]"]
    result = viewer.layers["wide [mean]"]
    # the same deconvolution as the library's, plane by plane
    np.testing.assert_array_equal(result.data, richardson_lucy(stack, gaussian_psf(2.0), iterations=10))
    meta = result.metadata["napari_diffdenoise"]
    assert meta["method"] == "richardson-lucy" and meta["iterations"] == 10 and meta["map"] == "mean"
    assert meta["psf_source"] == "gaussian" and meta["psf_sigma_px"] == 2.0
    assert meta["psf_shape"] == list(gaussian_psf(2.0).shape) and meta["n_samples"] == 0
    assert meta["source_layer"] == "wide" and list(result.scale) == [3, 1, 1]
    assert w.status.value.startswith("Done") and not errors


def test_richardson_lucy_takes_the_psf_from_a_layer_and_a_bad_one_is_a_notification(widget, qtbot, errors):
    from napari_diffdenoise.core.imaging.physics import gaussian_psf
    from napari_diffdenoise.core.run.deconvolution import richardson_lucy

    viewer, w = widget
    image = np.random.default_rng(3).poisson(20, (40, 40)).astype(np.float32)
    viewer.add_image(image, name="img")
    viewer.add_image(gaussian_psf(1.5) * 7, name="bead psf")  # any scale: normalised to sum 1
    viewer.add_image(np.zeros((9, 9), np.float32), name="empty psf")
    w.image.value = viewer.layers["img"]
    w.model.value = "richardson-lucy"
    w.method_params["iterations"].value = 3
    w.psf_source.value = viewer.layers["empty psf"]
    w.run()
    assert errors and "PSF" in errors[0] and len(viewer.layers) == 3 and w._worker is None
    errors.clear()
    w.psf_source.value = viewer.layers["bead psf"]
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    result = viewer.layers["img [mean]"]
    np.testing.assert_allclose(result.data, richardson_lucy(image, gaussian_psf(1.5), iterations=3), rtol=1e-5)
    assert result.metadata["napari_diffdenoise"]["psf_source"] == "layer bead psf" and not errors


def test_psf_guided_sampling_takes_the_psf_from_an_image_layer(widget, qtbot, errors):
    from napari_diffdenoise.core.imaging.physics import gaussian_psf

    viewer, w = widget
    viewer.add_image(np.random.default_rng(1).poisson(5, (40, 40)).astype(np.float32), name="wide")
    viewer.add_image(gaussian_psf(1.5), name="bead psf")
    w.image.value = viewer.layers["wide"]
    assert w.psf_source.native.isHidden()  # plain DDIM needs no PSF
    w.sampler.value = "ddim-dc"
    assert not w.psf_source.native.isHidden() and not w.steps.native.isHidden()
    assert [p.name for p in w.sampler_params] == ["guidance", "regulariser", "reg_weight"]
    w.psf_source.value = viewer.layers["bead psf"]
    assert w.psf_sigma.native.isHidden()
    w.sampler_params["regulariser"].value = "l1"
    assert not w.self_calibrate.value  # a run that deconvolves takes a stored calibration (the tiny model has none)
    w.self_calibrate.value = True  # asked to, it calibrates on the image
    w.run()
    qtbot.waitUntil(lambda: "wide [mean]" in viewer.layers, timeout=60_000)
    meta = viewer.layers["wide [mean]"].metadata["napari_diffdenoise"]
    assert meta["sampler"] == "ddim-dc" and meta["regulariser"] == "l1" and meta["psf_shape"] == [13, 13]
    assert not errors


def test_a_psf_layer_that_is_not_a_psf_is_refused_with_a_message(widget, errors):
    viewer, w = widget
    viewer.add_image(np.ones((40, 40), np.float32), name="wide")
    viewer.add_image(np.zeros((3, 9, 9), np.float32), name="stack")
    viewer.add_image(np.zeros((9, 9), np.float32), name="blank")
    w.image.value = viewer.layers["wide"]
    w.sampler.value = "ddim-dc"
    # a stack is not offered as a PSF at all; a blank 2D layer is, and is refused at Run
    assert viewer.layers["stack"] not in w.psf_source.choices
    w.psf_source.value = viewer.layers["blank"]
    w.run()
    assert w._worker is None and len(viewer.layers) == 3
    assert errors and "PSF" in errors[0]


def test_preview_is_one_sample_of_the_plane_on_view_and_is_replaced(widget, noisy_stack, qtbot, errors):
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells")
    w.image.value = viewer.layers["cells"]
    w.steps.value = 8
    viewer.dims.set_current_step(0, 1)
    w.preview()
    qtbot.waitUntil(lambda: "cells [preview z=1]" in viewer.layers and w._worker is None, timeout=60_000)
    preview = viewer.layers["cells [preview z=1]"]
    meta = preview.metadata["napari_diffdenoise"]
    # one plane, placed at z = 1 of the stack (it does not lie over the other planes)
    assert preview.data.shape == (1,) + noisy_stack.shape[1:] and meta["plane"] == 1
    assert preview.translate[0] == 1 * viewer.layers["cells"].scale[0]
    assert meta["n_samples"] == 1 and meta["steps"] == denoise_module.PREVIEW_STEPS
    first = preview.data.copy()
    w.seed.value = 6
    viewer.dims.set_current_step(0, 0)
    w.preview()
    qtbot.waitUntil(lambda: w._worker is None and "cells [preview z=0]" in viewer.layers, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["cells", "cells [preview z=0]"]  # replaced, not added
    assert not np.array_equal(viewer.layers["cells [preview z=0]"].data, first) and not errors


@pytest.mark.computation
def test_preview_of_a_model_with_a_mean_head_is_one_pass_and_ddpm_previews_with_ddim(make_napari_viewer, qtbot,
                                                                                     errors, monkeypatch):
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    image = np.random.default_rng(0).poisson(8, (64, 64)).astype(np.uint16)
    viewer.add_image(image, name="plane")
    w.image.value = viewer.layers["plane"]
    w.model.value = "demo"
    w.sampler.value = "ddpm"
    w.preview()
    qtbot.waitUntil(lambda: "plane [preview]" in viewer.layers and w._worker is None, timeout=60_000)
    meta = viewer.layers["plane [preview]"].metadata["napari_diffdenoise"]
    assert meta["n_samples"] == 0 and meta["mean_estimator"] == "head" and meta["network_evaluations"] == 2
    assert w.status.value.startswith("Preview of the one-pass mean and std") and "plane [preview std]" in viewer.layers
    # a model without a head: one sample; ddpm (200 steps) is previewed with 5 DDIM steps
    w.model.value = "widefield"
    w.sampler.value = "ddpm"
    settings = w._settings(None, preview=True)
    assert settings["sampler"] == "ddim" and settings["sampler_params"]["steps"] == denoise_module.PREVIEW_STEPS
    assert settings["n_samples"] == 1


def test_choosing_the_deconvolving_model_selects_psf_guided_sampling(make_napari_viewer):
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "widefield"
    assert w.sampler.value == "ddim-dc" and not w.psf_source.native.isHidden()
    w.model.value = "demo-unpaired"
    assert w.sampler.value in ("fb", "mixing", "repaint", "repaint-baikal") and w.psf_source.native.isHidden()


def test_calibrate_on_this_image_follows_the_librarys_rule_for_a_run_that_deconvolves(make_napari_viewer):
    """demo with ddim-dc and a PSF was calibrated on the blurred image here (the box stayed ticked) where the library
    and the CLI refuse such a run without a stored calibration; the box follows whether the sampler takes a PSF, and
    a tick of the user's stays while that does not change."""
    w = DenoiseWidget(make_napari_viewer())
    w.model.value = "widefield"
    assert w.sampler.value == "ddim-dc" and not w.self_calibrate.value
    w.model.value = "demo"
    assert w.self_calibrate.value
    w.sampler.value = "ddim-dc"
    assert not w.self_calibrate.value
    w.sampler.value = "ddim"
    assert w.self_calibrate.value
    w.self_calibrate.value = False  # the user's choice
    w.sampler.value = "heun"
    assert not w.self_calibrate.value


def test_run_twice_starts_one_worker_and_edits_during_a_run_do_not_leak_in(widget, noisy_stack, qtbot, errors):
    viewer, w = widget
    layer = viewer.add_image(noisy_stack.astype(np.float32), name="cells")
    w.image.value = layer
    original = noisy_stack.astype(np.float32).copy()
    w.run()
    first = w._worker
    w.run()  # a second click while the first run goes on
    assert w._worker is first
    layer.data[:] = 0  # the user edits the layer during the run
    qtbot.waitUntil(lambda: "cells [mean]" in viewer.layers, timeout=60_000)
    assert [n for n in (l.name for l in viewer.layers) if n.startswith("cells [mean]")] == ["cells [mean]"]
    from napari_diffdenoise import denoise

    # the mean does not depend on the intervals, which the widget calibrated on the image first
    expected = denoise(original, w._selected_model(), **{**w._settings(None), "coverage": None})
    np.testing.assert_allclose(viewer.layers["cells [mean]"].data, expected.mean, rtol=1e-5, atol=1e-4)


def test_an_unpaired_models_samplers_survive_layer_changes(make_napari_viewer, qtbot, errors):
    """napari resets a dock widget's choices on every layer change: the unpaired samplers and their
    settings must stay (they used to fall back to ddim, ddpm, ddim-dc)."""
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo-unpaired"
    w.sampler.value = "repaint"
    start = next(p for p in w.sampler_params if p.name == "start")
    start.value = 7
    viewer.add_image(np.zeros((16, 16)), name="new layer")
    w.reset_choices()  # what napari does on a layer change
    viewer.layers.remove("new layer")
    w.reset_choices()
    assert list(w.sampler.choices) == ["fb", "mixing", "repaint", "repaint-baikal"]
    assert w.sampler.value == "repaint" and next(p for p in w.sampler_params if p.name == "start").value == 7


def test_presets_set_steps_and_samples_and_progress_reaches_napari(widget, noisy_stack, qtbot, errors, monkeypatch):
    viewer, w = widget
    w.preset.value = next(p for p in w.preset.choices if p.startswith("fast"))
    assert (w.steps.value, w.n_samples.value, w.eta.value) == (3, 4, 1.0)
    w.n_samples.value = 5
    assert w.preset.value == denoise_module.CUSTOM  # a hand edit leaves the preset
    reports = []
    from napari_diffdenoise._widgets import _worker

    real = _worker.WorkerControls._report
    monkeypatch.setattr(_worker.WorkerControls, "_report",
                        lambda self, f, t: (reports.append((f, t, self._activity is not None)), real(self, f, t)))
    viewer.add_image(noisy_stack[0], name="plane")
    w.image.value = viewer.layers["plane"]
    w.n_samples.value, w.steps.value = 2, 2
    w.run()
    qtbot.waitUntil(lambda: "plane [mean]" in viewer.layers and w._worker is None, timeout=60_000)
    assert reports and all(active for _, _, active in reports)  # napari's activity panel had a bar
    assert reports[-1][0] == 1.0 and w._activity is None  # closed when done


@pytest.mark.computation
def test_the_widefield_sample_prefills_its_psf_and_image(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-diffdenoise", "widefield_stack")
    viewer.add_image(np.zeros((4, 64, 64)), name="widefield stack [mean]")
    w = DenoiseWidget(viewer)
    w.image.value = viewer.layers["widefield PSF"]  # the last layer the user clicked
    w.model.value = "widefield"
    assert w.sampler.value == "ddim-dc" and w.psf_source.value is viewer.layers["widefield PSF"]
    assert w.image.value is not viewer.layers["widefield PSF"]
    offered = [c for c in w.psf_source.choices if not isinstance(c, str)]
    names = {layer.name for layer in offered}
    assert names == {"widefield PSF"}  # not the stacks, not the results


def test_a_tzyx_layer_and_a_lazy_multiscale_layer_keep_every_dim(widget, qtbot, errors):
    import dask.array as da

    viewer, w = widget
    data = np.random.default_rng(0).poisson(5, (2, 3, 24, 32)).astype(np.uint16)
    viewer.add_image(data, name="movie", scale=(60.0, 2.0, 0.5, 0.5))
    w.image.value = viewer.layers["movie"]
    w.run()
    qtbot.waitUntil(lambda: "movie [entropy]" in viewer.layers, timeout=60_000)
    mean = viewer.layers["movie [mean]"]
    assert mean.data.shape == data.shape and list(mean.scale) == [60.0, 2.0, 0.5, 0.5]
    assert mean.metadata["napari_diffdenoise"]["axes"] == "TZYX"
    from napari_diffdenoise.core.run.driving import drive
    from napari_diffdenoise.core.run.restore import iter_denoise as expected  # the same run, plane for plane

    library, _ = drive(expected(data, w._selected_model(), **{**w._settings(None), "coverage": None}))
    np.testing.assert_array_equal(mean.data, library.mean)
    # a lazy multiscale layer: level 0 is restored, read one plane at a time
    qtbot.waitUntil(lambda: w._worker is None, timeout=10_000)
    pyramid = [da.from_array(data, chunks=(1, 1, 24, 32)), da.from_array(data[..., ::2, ::2], chunks=(1, 1, 12, 16))]
    viewer.add_image(pyramid, name="pyramid", multiscale=True)
    w.image.value = viewer.layers["pyramid"]
    w.run()
    qtbot.waitUntil(lambda: "pyramid [mean]" in viewer.layers, timeout=60_000)
    np.testing.assert_array_equal(viewer.layers["pyramid [mean]"].data, library.mean)
    assert not errors


def test_preview_of_a_tzyx_layer_is_the_plane_on_view_placed_at_its_t_and_z(widget, qtbot, errors):
    viewer, w = widget
    data = np.random.default_rng(0).poisson(5, (2, 3, 24, 32)).astype(np.uint16)
    viewer.add_image(data, name="movie", scale=(60.0, 2.0, 0.5, 0.5))
    w.image.value = viewer.layers["movie"]
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    w.preview()
    qtbot.waitUntil(lambda: "movie [preview t=1 z=2]" in viewer.layers and w._worker is None, timeout=60_000)
    preview = viewer.layers["movie [preview t=1 z=2]"]
    assert preview.data.shape == (1, 1, 24, 32) and list(preview.translate[:2]) == [60.0, 4.0]
    assert preview.metadata["napari_diffdenoise"]["plane"] == [1, 2] and not errors


def test_progress_moves_per_tile_and_cancel_lands_between_tiles(widget, qtbot, errors, monkeypatch):
    monkeypatch.setattr(denoise_module.TileReporter, "min_interval", 0.0)  # every tile reported
    viewer, w = widget
    viewer.add_image(np.random.default_rng(0).poisson(5, (160, 160)).astype(np.uint16), name="big")
    w.image.value = viewer.layers["big"]
    w.steps.value = 40
    w.coverage.value = 0  # the run's own tiles: a calibration on the image would report its own progress first
    seen = []

    def record(info):
        if info is not None:
            seen.append(info)
            if info.tile >= 2:
                w.cancel()

    launch = DenoiseWidget._launch

    def launch_recorded(self, worker, *args):  # connected before the worker starts, so no early tile goes unseen
        worker.yielded.connect(record)
        launch(self, worker, *args)

    monkeypatch.setattr(DenoiseWidget, "_launch", launch_recorded)  # on the class: a form's attributes are its rows
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    tiled = [p for p in seen if p.tile]
    # 160² in 64² tiles: inside the first step, which its tiles advance by ninths
    assert tiled and tiled[0].n_tiles == 9 and tiled[0].step == pytest.approx(tiled[0].tile / 9)
    assert "Cancelled" in w.status.value and len(viewer.layers) == 1
    assert max(p.step for p in seen) <= 1 and not errors  # stopped within the first step, not after 40


def test_every_widget_links_to_its_documentation_page(make_napari_viewer):
    from napari_diffdenoise._widgets.calibrate import CalibrateWidget
    from napari_diffdenoise._widgets.compare import CompareWidget
    from napari_diffdenoise._widgets.help import LINK_COLOUR, docs_address
    from napari_diffdenoise._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    for cls, page in ((DenoiseWidget, "denoise"), (TrainWidget, "train"), (CompareWidget, "compare"),
                      (CalibrateWidget, "calibrate")):
        widget = cls(viewer)
        link = widget.help
        assert widget[0] is link and f'href="{docs_address()}/widgets/{page}' in link.value
        assert link.native.openExternalLinks()
        assert f"color: {LINK_COLOUR}" in link.value  # Qt's default link blue is unreadable on napari's dark grey
    assert (Path(__file__).resolve().parents[1] / "docs" / "widgets" / "denoise.md").is_file()  # the page exists


def test_every_sampler_parameter_default_survives_its_form_control(qapp):
    """The ddim-dc prior weight's default 0.015 became 0.01 in a box with two decimals."""
    from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS
    from napari_diffdenoise.core.model.schedules import NoiseSchedule
    from napari_diffdenoise._widgets.run_controls import param_widget

    schedule = NoiseSchedule("cosine", 200)
    checked = 0
    for sampler in SAMPLERS.values():
        for spec in sampler.params:
            widget = param_widget(spec, schedule)
            assert widget.value == spec.default_for(schedule), (sampler.name, spec.name)
            checked += 1
    assert checked > 10
    reg = next(p for p in SAMPLERS["ddim-dc"].params if p.name == "reg_weight")
    box = param_widget(reg, schedule)
    box.value = 0.025
    assert box.value == 0.025


def test_the_samples_as_a_hidden_layer_to_flip_through(widget, noisy_stack, qtbot, errors):
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells", scale=(2.0, 0.5, 0.5), rotate=30, translate=(1, 2, 3))
    w.image.value = viewer.layers["cells"]
    w.keep_samples.value = True
    w.run()
    qtbot.waitUntil(lambda: "cells [samples]" in viewer.layers, timeout=60_000)
    samples = viewer.layers["cells [samples]"]
    assert samples.data.shape == (2, *noisy_stack.shape) and not samples.visible
    np.testing.assert_array_equal(samples.scale, [1.0, 2.0, 0.5, 0.5])
    point = np.array([1.0, 12.0, 30.0])  # each sample lies over the layer, rotated as it is
    np.testing.assert_allclose(samples.data_to_world(np.r_[1.0, point]),
                               [1.0, *viewer.layers["cells"].data_to_world(point)])
    assert not np.array_equal(samples.data[0], samples.data[1])  # two different restorations
    assert "sample 1 … 2" in samples.metadata["napari_diffdenoise"]["axis_0"]
    assert "cells [samples]" not in [c.name for c in w.psf_source.choices if hasattr(c, "name")]  # never a PSF
    assert not errors


def test_keeping_the_samples_of_an_image_too_big_for_memory_is_refused(monkeypatch):
    from napari_diffdenoise.core.run import plane_input

    monkeypatch.setattr(plane_input.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 256}[name])
    with pytest.raises(MemoryError, match=r"keep_samples=True with n_samples = 8 .* keeps 0.0 GiB"):
        plane_input.check_kept_samples(np.zeros((64, 64, 64), np.float32), 8)
    plane_input.check_kept_samples(np.zeros((8, 8), np.float32), 8)  # 2 KiB: fine


def test_a_fresh_widget_bounds_the_steps_by_its_first_model(make_napari_viewer):
    """It accepted 1000 steps for a model of 200 until the model was chosen again."""
    from napari_diffdenoise import load_model

    w = DenoiseWidget(make_napari_viewer())
    assert w.model.value == "demo"
    assert w.steps.max == load_model("demo").schedule.n_steps


def test_the_user_says_which_axis_is_which(widget, qtbot, errors):
    """A CZYX layer of two channels was taken as two time points (TZYX) with no way to say otherwise."""
    viewer, w = widget
    rng = np.random.default_rng(6)
    viewer.add_image(rng.poisson(10, (2, 3, 32, 32)).astype(np.float32), name="cells")
    w.image.value = viewer.layers["cells"]
    assert not w.axes.native.isHidden() and w.axes.native.placeholderText() == "TZYX"
    w.axes.value = "czyx"
    w.run()
    qtbot.waitUntil(lambda: "cells [mean]" in viewer.layers, timeout=60_000)
    assert viewer.layers["cells [mean]"].metadata["napari_diffdenoise"]["axes"] == "CZYX"
    qtbot.waitUntil(lambda: w._worker is None, timeout=10_000)
    w.axes.value = "CZY"
    w.run()
    assert errors and errors[-1].startswith("Axes: axes must name each of")
    viewer.add_image(np.zeros((16, 16), np.float32), name="flat")
    w.image.value = viewer.layers["flat"]
    assert w.axes.native.isHidden()


def test_the_axes_a_tiff_names_are_read_when_napari_opens_it_as_one_layer(widget, tmp_path):
    """napari's own TIFF reader opens a ZCYX file as one 4D layer with no axis labels: the widget read it
    as TZYX (Z as time, channels as Z) and calibrated it so. It now takes the file's axes."""
    import tifffile

    viewer, w = widget
    rng = np.random.default_rng(3)
    tifffile.imwrite(tmp_path / "cells.tif", rng.poisson(10, (3, 2, 24, 24)).astype(np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    tifffile.imwrite(tmp_path / "plain.tif", rng.poisson(10, (3, 2, 24, 24)).astype(np.uint16))  # names no axes
    cells, = viewer.open(tmp_path / "cells.tif", plugin="napari")
    plain, = viewer.open(tmp_path / "plain.tif", plugin="napari")
    assert cells.data.shape == plain.data.shape == (3, 2, 24, 24)
    w.image.value = cells
    assert w.axes.native.placeholderText() == "ZCYX" and w._axes_of(cells) == "ZCYX"
    w.image.value = plain
    assert w.axes.native.placeholderText() == "TZYX"
    w.axes.value = "czyx"  # what the user types still decides
    assert w._axes_of(plain) == "CZYX"


def test_a_refused_run_does_not_leave_the_previous_runs_status(widget, noisy_stack, qtbot, errors):
    """The status line kept saying "Done in …" of the previous run when the next was refused."""
    viewer, w = widget
    viewer.add_image(noisy_stack[:, :32, :32], name="cells")
    w.image.value = viewer.layers["cells"]
    w.steps.value = 1
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert w.status.value.startswith("Done in") and w.progress.value == 1000
    w.axes.value = "TZYX"  # four letters for a 3D layer
    w.run()
    assert errors and errors[-1].startswith("Axes:")
    assert w.status.value == f"Not started: {errors[-1]}" and w.progress.value == 0


def test_the_preset_box_shows_only_for_samplers_with_a_step_count(make_napari_viewer):
    """With ddpm (no steps) or a guided sampler the preset box stayed and said "custom"."""
    w = DenoiseWidget(make_napari_viewer())
    assert not w.preset.native.isHidden()
    w.sampler.value = "ddpm"
    assert w.preset.native.isHidden() and w.steps.native.isHidden()
    w.sampler.value = "dpm++2m"
    assert not w.preset.native.isHidden()
    w.model.value = "demo-unpaired"
    assert w.sampler.value == "fb" and w.preset.native.isHidden()


def test_the_self_calibration_box_states_the_budget_it_restores(widget):
    """The box's cost is what the calibration restores at most (a recorrupted small image is drawn
    several times, so a plane count would understate it)."""
    from napari_diffdenoise.core.calibration.residuals import MAX_PIXELS

    _, w = widget
    said = f"up to {int(MAX_PIXELS ** 0.5)}² px a channel first (a small image several times over)"
    assert said in w.self_calibrate.tooltip and w.self_calibrate.text == "Calibrate on this image"


def test_a_hot_pixel_is_said_in_the_status_and_the_form_offers_to_replace_it(widget, qtbot, errors):
    viewer, w = widget
    plane = np.random.default_rng(0).poisson(13, (64, 64)).astype(np.uint16)
    plane[30, 30] = 60000
    viewer.add_image(plane, name="hot")
    w.image.value = viewer.layers["hot"]
    assert w.hot_pixels.value == "pass"
    w.hot_pixels.value = "replace"
    w.run()
    qtbot.waitUntil(lambda: "Done in" in w.status.value, timeout=60_000)
    assert "; 1 hot pixel (single pixels far above everything near them" in w.status.value
    assert "the mean holds their neighbours' median" in w.status.value
    assert viewer.layers["hot [mean]"].data[30, 30] < 1000 and not errors


def test_the_axes_field_asks_whether_a_stack_naming_no_axes_is_a_time_series_before_the_run(widget):
    """A time series read as Z was said so only in the status after the run, its calibration done without the frame
    pairs: the greyed Axes field now asks, for a layer naming no axes whose planes look like frames of one field
    (a multiscale layer too, read at full resolution), and for nothing else."""
    viewer, w = widget
    rng = np.random.default_rng(0)
    field = 20 + 200 * np.exp(-((np.arange(48)[:, None] - 24) ** 2 + (np.arange(48)[None] - 20) ** 2) / 50.0)
    movie = rng.poisson(np.stack([field] * 3)).astype(np.uint16)
    viewer.add_image(movie, name="movie")
    viewer.add_image(rng.poisson(np.stack([field, field.T[::-1], field[::-1]])).astype(np.uint16), name="stack")
    viewer.add_image(movie, name="labelled", axis_labels=("t", "y", "x"))
    viewer.add_image([np.repeat(np.repeat(movie, 2, 1), 2, 2), movie], name="pyramid", multiscale=True)
    w.image.value = viewer.layers["movie"]
    assert w.axes.native.placeholderText() == "ZYX (a time series? type TYX)"
    w.image.value = viewer.layers["stack"]
    assert w.axes.native.placeholderText() == "ZYX"
    w.image.value = viewer.layers["labelled"]
    assert w.axes.native.placeholderText() == "TYX"
    w.image.value = viewer.layers["pyramid"]
    assert w.axes.native.placeholderText() == "ZYX (a time series? type TYX)"
    # a Z stack whose planes differ in their fine structure (correlating 0.4 at full resolution) but alike once
    # averaged 8× (0.97): read at its smallest level, it was taken for a series
    y, x = np.mgrid[:256, :256]
    blob = 30 * np.exp(-((y - 128) ** 2 + (x - 110) ** 2) / 3000.0)
    planes = np.stack([blob + ndimage.gaussian_filter(rng.normal(0, 60, (256, 256)), 1.0) for _ in range(3)])
    viewer.add_image([planes, planes.reshape(3, 32, 8, 32, 8).mean((2, 4))], multiscale=True, name="z pyramid")
    w.image.value = viewer.layers["z pyramid"]
    assert w.axes.native.placeholderText() == "ZYX"


@pytest.mark.computation
def test_a_stack_whose_axes_are_guessed_is_said_so_after_a_calibration_on_it(widget, qtbot, errors):
    """A 3D layer without axis labels is read as ZYX, so the calibration cannot pair a time series'
    frames: where its planes look like views of one field the status says so and what to type, and
    says nothing once Axes names T, nor for planes of different fields."""
    viewer, w = widget
    rng = np.random.default_rng(0)
    field = 20 + 200 * np.exp(-((np.arange(48)[:, None] - 24) ** 2 + (np.arange(48)[None] - 20) ** 2) / 50.0)
    viewer.add_image(rng.poisson(np.stack([field] * 3)).astype(np.uint16), name="movie")  # one field, three frames
    viewer.add_image(rng.poisson(np.stack([field, field.T[::-1], field[::-1]])).astype(np.uint16), name="stack")
    w.image.value = viewer.layers["stack"]  # planes of different fields: a Z stack, nothing to say
    w.model.value = "demo"
    w.coverage.value = 0.9
    w.run()
    qtbot.waitUntil(lambda: "Done in" in w.status.value, timeout=120_000)
    assert "axes read as" not in w.status.value
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=10_000)
    w.image.value = viewer.layers["movie"]
    w.model.value = "demo"
    w.coverage.value = 0.9
    assert w.self_calibrate.value
    w.run()
    qtbot.waitUntil(lambda: "Done in" in w.status.value, timeout=120_000)
    assert "axes read as ZYX (the layer names none): for a time series type TYX in Axes" in w.status.value
    w.axes.value = "TYX"
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=10_000)
    w.run()
    qtbot.waitUntil(lambda: "Done in" in w.status.value, timeout=120_000)
    assert "axes read as" not in w.status.value and not errors


def test_presets_keep_their_order_and_a_setting_no_calibration_covers_says_what_to_do_here(make_napari_viewer,
                                                                                            errors):
    """After the widefield model (no std head: no 'heads only'), magicgui appended the demo's labels it lacked
    at the end ('thorough' first). And its 'fast' preset, which its stored calibration does not cover (a
    deconvolving model is not calibrated on the image), was refused with a library call as the remedy."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-diffdenoise", "widefield_stack")
    w = DenoiseWidget(viewer)
    demo_order = list(w.preset.choices)
    assert demo_order[0].startswith("heads only") and demo_order[-1] == "custom"
    w.model.value = "widefield"
    assert [c.split(":")[0] for c in w.preset.choices] == ["fast", "default", "thorough", "custom"]
    w.model.value = "demo"
    assert list(w.preset.choices) == demo_order
    w.model.value = "widefield"
    w.image.value = viewer.layers["widefield stack"]
    w.preset.value = next(c for c in w.preset.choices if c.startswith("fast"))
    w.run()
    assert w._worker is None and len(viewer.layers) == 3
    assert errors and "has no calibration for sampler 'ddim-dc'" in errors[-1]
    assert errors[-1].endswith("Here: choose the settings it is calibrated for (its preset), set Interval coverage "
                               "to 0 for no intervals, or make a calibration for these settings in the Calibrate "
                               "widget")


def test_one_progress_bar_runs_over_the_calibration_on_the_image_and_the_run(widget, noisy_stack, qtbot, errors):
    """The bar filled to the end while calibrating, then started again at 0 for the run, and the time left read
    off the first phase's pace said minutes for a run of seconds."""
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells")
    w.image.value = viewer.layers["cells"]
    assert w.self_calibrate.value and w.coverage.value == 0.9
    seen = []
    launch = DenoiseWidget._launch

    def launch_recorded(self, worker, *args):
        worker.yielded.connect(lambda info: info is not None and seen.append((info.unit, self.progress.value)))
        launch(self, worker, *args)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(DenoiseWidget, "_launch", launch_recorded)
    try:
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    finally:
        monkeypatch.undo()
    units = [unit for unit, _ in seen]
    assert "plane" in units and units[0] != "plane" and not errors
    values = [value for _, value in seen]
    assert values == sorted(values) and 0 < values[units.index("plane")] < 1000


def test_a_second_run_on_a_layer_adds_its_own_named_set_beside_the_first(widget, noisy_stack, qtbot, errors):
    """napari named each clash 'cells [mean] [1]', which reads as one more map tag and says nothing of which run
    made which layer."""
    viewer, w = widget
    viewer.add_image(noisy_stack, name="cells")
    w.image.value = viewer.layers["cells"]
    w.coverage.value = 0
    for _ in range(2):
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == [
        "cells", "cells [mean]", "cells [std]", "cells [entropy]",
        "cells (run 2) [mean]", "cells (run 2) [std]", "cells (run 2) [entropy]"]
    assert "as 'cells (run 2) […]' beside the earlier results" in w.status.value and not errors
    first = viewer.layers["cells [mean]"].metadata["napari_diffdenoise"]
    assert first["source_layer"] == "cells" and "seconds" in first


def test_refusals_name_the_layer_and_the_forms_controls(widget, qtbot, errors):
    """The library's words reached the form: 'noisy: planes must be at least 8×8' (after the worker had
    started), 'noisy image 0 contains NaN', 'n_samples must be at least 2'."""
    viewer, w = widget
    viewer.add_image(np.ones((3, 3), np.float32), name="tiny")
    w.image.value = viewer.layers["tiny"]
    w.run()
    assert w._worker is None and errors[-1] == "'tiny': planes must be at least 8×8 pixels, got (3, 3)"
    spotted = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    spotted[3, 4] = np.nan
    viewer.add_image(spotted, name="spotted")
    w.image.value = viewer.layers["spotted"]
    for coverage in (0.9, 0):  # calibrating on the image first, and not
        w.coverage.value = coverage
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
        assert errors[-1] == "Denoising failed: 'spotted' contains NaN or infinite values"
    assert [layer.name for layer in viewer.layers] == ["tiny", "spotted"]
    from napari_diffdenoise._widgets.denoise import in_the_forms_words

    assert in_the_forms_words("n_samples must be at least 2 to calibrate", "cells") == (
        "Samples (n_samples) must be at least 2 to calibrate")
