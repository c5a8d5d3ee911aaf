"""The Denoise widget's steps, η, sampler-parameter and preset controls come from the samplers'
declarations, and its status line speaks of the settings on show (issue #20), in a real viewer
(run under Xvfb)."""
import numpy as np
import pytest
import torch

from napari_diffdenoise import load_model
from napari_diffdenoise._widgets import denoise as denoise_module
from napari_diffdenoise._widgets.denoise import CUSTOM, DenoiseWidget
from napari_diffdenoise._widgets.run_controls import follow_param
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.run.restore import make_settings
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS, STEPS


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(denoise_module, "notify_error", messages.append)
    return messages


def _preset(w, name: str) -> str:
    return next(label for label in w.preset.choices if label.startswith(name + ":"))


def test_a_box_that_follows_a_parameter_takes_its_decimals(qapp):
    """A box made for one sampler parameter and reused for another kept two decimals: the ddim-dc prior
    weight's default 0.015 became 0.01, and 0.015 could not be typed."""
    from magicgui.widgets import FloatSpinBox

    reg_weight = SAMPLERS["ddim-dc"].spec("reg_weight")
    box = FloatSpinBox(name="reg_weight")
    follow_param(box, reg_weight, NoiseSchedule("cosine", 200))
    assert box.value == 0.015
    box.value = 0.025
    assert box.value == 0.025


def test_the_ddim_dc_prior_weight_reaches_the_run_as_declared(make_napari_viewer, errors):
    w = DenoiseWidget(make_napari_viewer())
    w.model.value = "widefield"
    assert w.sampler.value == "ddim-dc"
    box = w.sampler_params["reg_weight"]
    assert box.value == SAMPLERS["ddim-dc"].spec("reg_weight").default == 0.015
    settings = w._settings(w._psf())
    assert make_settings(w._selected_model(), **settings).params["reg_weight"] == 0.015
    box.native.lineEdit().selectAll()
    box.native.lineEdit().insert("0.025")  # typed, as a user does
    box.native.interpretText()
    assert w._settings(w._psf())["sampler_params"]["reg_weight"] == 0.025
    assert not errors


def test_the_steps_box_is_the_models_from_the_start(make_napari_viewer, tiny_checkpoint, errors):
    w = DenoiseWidget(make_napari_viewer())
    assert w.model.value == "demo"  # the first model shown, nothing touched
    assert (w.steps.min, w.steps.max) == (STEPS.low, load_model("demo").schedule.n_steps)
    assert (w.steps.value, w.steps.label, w.steps.tooltip) == (STEPS.default, STEPS.label, STEPS.help)
    w.model_file.value = tiny_checkpoint  # a model of 50 steps
    assert w.steps.max == 50
    with pytest.raises(ValueError, match="outside of the allowed range"):  # a typed 1000 stops at 50
        w.steps.value = 1000
    w.sampler.value = "heun"  # a sampler with steps of its own: its declaration's default and help
    heun = SAMPLERS["heun"].spec("steps")
    assert (w.steps.value, w.steps.max, w.steps.tooltip) == (heun.default, 50, heun.help)
    assert not errors


@pytest.mark.parametrize("model", ["demo", "demo-unpaired", "widefield"])
def test_the_preset_box_shows_for_samplers_with_a_step_count_or_named_by_a_preset(make_napari_viewer, errors, model):
    from napari_diffdenoise.core.run.run_presets import preset_samplers

    w = DenoiseWidget(make_napari_viewer())
    w.model.value = model
    named = preset_samplers(w._selected_model())
    for sampler in [s for s in w.sampler.choices if s in SAMPLERS]:
        w.sampler.value = sampler
        has_steps = "steps" in {p.name for p in SAMPLERS[sampler].params}
        assert w.preset.native.isHidden() is not (has_steps or sampler in named), sampler
        assert w.steps.native.isHidden() is not has_steps, sampler
    assert not errors


def test_the_preset_box_names_the_preset_the_steps_and_samples_match(make_napari_viewer, errors):
    """Once "custom" (heun's 5 steps), the box said custom for every sampler and model after it, though
    the steps and samples were a preset's again."""
    w = DenoiseWidget(make_napari_viewer())
    assert w.preset.value == "default: 8 samples, one step each" and (w.sampler.value, w.n_samples.value) == ("one-step", 8)
    w.sampler.value = "heun"
    assert w.steps.value == 5 and w.preset.value == CUSTOM
    w.sampler.value = "ddim"
    assert w.steps.value == 10 and w.preset.value == CUSTOM  # DDIM 10 × 8: demo's presets draw with its sample head
    w.steps.value, w.n_samples.value = 20, 16  # by hand
    assert w.preset.value == _preset(w, "thorough")
    w.sampler.value, w.n_samples.value = "one-step", 4
    assert w.preset.value == CUSTOM  # the fast preset makes one pass of the heads, not the automatic count
    w.symmetries.value = 1
    assert w.preset.value == _preset(w, "fast")
    w.preset.value = _preset(w, "thorough")
    assert (w.sampler.value, w.steps.value, w.n_samples.value, w.symmetries.value) == ("ddim", 20, 16, None)
    # another model keeps the preset's steps (within its bounds), so the box still names it
    w.model.value = "widefield"
    assert w.sampler.value == "ddim-dc" and w.preset.value == _preset(w, "thorough")
    assert not errors


def test_the_status_line_speaks_of_the_settings_on_show(make_napari_viewer, qtbot, errors, tiny_checkpoint):
    """The status line kept the previous run's "Done" (or a refused run's reason) after the settings
    changed, as if it were about them."""
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = tiny_checkpoint
    w.image.value = viewer.add_image(np.random.default_rng(0).poisson(5, (24, 24)).astype(np.float32), name="c")
    w.steps.value, w.n_samples.value = 1, 2
    w.run()
    assert w.status.value == "Starting…"  # a new run replaces the last one's words at once
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert w.status.value.startswith("Done in") and w.progress.value == 1000  # its layers left it so
    w.n_samples.value = 3
    assert w.status.value == "" and w.progress.value == 0
    w.axes.value = "TYX"  # three letters for a 2D layer: refused at Run, with the reason
    w.image.value = viewer.add_image(np.zeros((2, 24, 24), np.float32), name="stack")
    w.axes.value = "QYX"
    w.run()
    assert errors and w.status.value == f"Not started: {errors[-1]}"
    w.axes.value = "ZYX"
    assert w.status.value == ""


def test_time_here_follows_the_samplers_own_parameters(make_napari_viewer, qtbot, errors):
    """The estimate followed steps and samples but not a sampler's own parameters: fb's diffusion
    depth is its number of network calls."""
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.image.value = viewer.add_image(np.zeros((32, 32), np.float32), name="c")
    w.model.value = "demo-unpaired"
    assert w.sampler.value == "fb"
    depth = w.sampler_params["start"]
    depth.value = 10
    qtbot.waitUntil(lambda: w.estimate.value.startswith("about"), timeout=60_000)
    shallow = w.estimate.tooltip
    depth.value = 100
    qtbot.waitUntil(lambda: w.estimate.value.startswith("about") and w.estimate.tooltip != shallow, timeout=20_000)
    assert not errors


def test_the_psf_width_box_and_the_cli_option_are_its_declaration(make_napari_viewer, monkeypatch, errors):
    """Bounds, step (so decimals), default, label and help of the Gaussian PSF's width come from
    run_spec.PSF_SIGMA: a changed declaration changes the form and the CLI with it."""
    import dataclasses

    from napari_diffdenoise import cli
    from napari_diffdenoise.core.imaging.physics import gaussian_psf
    from napari_diffdenoise.core.run import run_spec
    from napari_diffdenoise.core.run.methods import RICHARDSON_LUCY

    changed = dataclasses.replace(run_spec.PSF_SIGMA, default=1.25, low=0.5, high=8.0, step=0.05,
                                  label="Blur width", help="How wide the blur is")
    monkeypatch.setattr(denoise_module, "PSF_SIGMA", changed)
    monkeypatch.setattr(run_spec, "PSF_SIGMA", changed)
    w = DenoiseWidget(make_napari_viewer())
    w.model.value = RICHARDSON_LUCY.name  # a method that needs a PSF: the Gaussian and its width show
    box = w.psf_sigma
    assert not box.native.isHidden()
    assert (box.label, box.tooltip, box.value, box.min, box.max, box.step) == (
        "Blur width", "How wide the blur is", 1.25, 0.5, 8.0, 0.05)
    box.value = 2.35  # two decimals, from the step: not rounded to 2.4
    np.testing.assert_array_equal(w._psf(), gaussian_psf(2.35))
    subparsers = next(a for a in cli.build_parser()._actions if a.dest == "command")
    option = next(a for a in subparsers.choices["denoise"]._actions if "--psf-sigma" in a.option_strings)
    assert option.help == "How wide the blur is" and option.default is None  # no PSF unless asked
    assert not errors, errors


def test_the_preset_box_follows_a_model_with_a_sample_head_and_one_without(make_napari_viewer, errors, tiny_checkpoint):
    """demo draws its presets' samples with its sample head; a model without one takes DDIM's steps. Going
    from one to the other renamed the preset before the box held the new model's labels: an error."""
    from napari_diffdenoise._widgets.model_registry import REGISTRY

    viewer = make_napari_viewer()
    REGISTRY.add(tiny_checkpoint)
    fresh = DenoiseWidget(viewer)  # its first model is demo, with the heads
    assert fresh.preset.value == "default: 8 samples, one step each"
    fresh.model.value = str(tiny_checkpoint.resolve())
    assert "one-step" not in fresh.sampler.choices and fresh.sampler.value == "ddim"
    assert fresh.preset.value == "default: 10 steps × 8 samples" and (fresh.steps.value, fresh.n_samples.value) == (10, 8)
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    assert (w.sampler.value, w.n_samples.value) == ("one-step", 8) and w.steps.native.isHidden()
    w.preset.value = "thorough: 20 steps × 16 samples"
    assert (w.sampler.value, w.steps.value, w.n_samples.value) == ("ddim", 20, 16)
    w.preset.value = "fast: 4 samples, one step each, one pass of the heads"
    assert (w.sampler.value, w.n_samples.value, w.symmetries.value) == ("one-step", 4, 1)
    assert not errors


def _slow_estimates(monkeypatch):
    """Timings that take a while and count how many run at once."""
    import threading
    import time

    from napari_diffdenoise.core.run.run_cost import RunCost

    lock, state = threading.Lock(), {"running": 0, "most": 0, "shapes": []}

    def timing(model, shape, settings, calibrate, sample_plane=None, axes=None, with_second=False, stop=None):
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["shapes"].append(shape)
        time.sleep(0.5)
        with lock:
            state["running"] -= 1
        return RunCost(pixels=shape[0] * shape[1], n_samples=1, evaluations=1, seconds=float(shape[-1])), None

    monkeypatch.setattr(denoise_module, "_is_timed", lambda model, settings, calibrate=False: False)
    monkeypatch.setattr(denoise_module, "_run_estimate", timing)
    return state


def test_time_here_times_one_request_at_a_time_and_shows_the_latest(make_napari_viewer, qtbot, monkeypatch, errors):
    """Each change of layer started a timing thread of its own: side by side they slowed each other (the
    times read long) and a thread could outlive the widget. One runs; of those asked meanwhile, the
    latest is timed next and shown."""
    state = _slow_estimates(monkeypatch)
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    for width in (40, 48, 56, 64):
        w.image.value = viewer.add_image(np.zeros((32, width), np.float32), name=f"w{width}")
    qtbot.waitUntil(lambda: w._timings.worker is None and w.estimate.value.startswith("about"), timeout=20_000)
    assert state["most"] == 1
    assert state["shapes"][0][-1] in (40, 48) and state["shapes"][-1] == (32, 64)
    assert len(state["shapes"]) <= 3  # the first, maybe one started before the rest came, the latest
    assert w.estimate.value == "about 64 s"  # the fake timing: seconds = the width
    assert not errors


def test_a_timing_that_ends_after_its_widget_is_gone_writes_nothing(make_napari_viewer, qtbot, monkeypatch):
    state = _slow_estimates(monkeypatch)
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    w.image.value = viewer.add_image(np.zeros((32, 40), np.float32), name="a")
    qtbot.waitUntil(lambda: state["running"] == 1, timeout=5_000)
    w.image.value = viewer.add_image(np.zeros((32, 48), np.float32), name="b")  # waits behind the first
    w.native.deleteLater()  # its labels go with it: writing the time into one raises (pytest-qt fails the test)
    qtbot.waitUntil(lambda: w._estimate_for is None, timeout=5_000)
    qtbot.waitUntil(lambda: w._timings.worker is None, timeout=5_000)
    qtbot.wait(700)
    assert state["running"] == 0 and len(state["shapes"]) == 1  # the request behind it was dropped


def test_a_timing_stops_when_its_widget_goes(make_napari_viewer, qtbot, monkeypatch):
    """napari waits for its worker threads when it quits (superqt's await_workers asks each to quit first):
    a 'Time here' timing going when the widget closes stops at its next network call and keeps no timing,
    instead of holding napari's exit for the seconds it had left."""
    from napari_diffdenoise.core.run import run_cost

    run_cost.forget_timings()
    answers, real = [], run_cost.stoppable
    monkeypatch.setattr(run_cost, "stoppable", lambda ask: real(lambda: answers.append(ask()) or answers[-1]))
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    w.image.value = _noisy(viewer, "a", width=64)
    qtbot.waitUntil(lambda: len(answers) >= 1, timeout=10_000)
    finished = []
    w._timings.worker.finished.connect(lambda: finished.append(True))
    w.native.deleteLater()
    qtbot.waitUntil(lambda: bool(finished), timeout=20_000)
    assert answers[-1] is True and answers.count(True) == 1  # stopped at the first poll after the widget went
    assert not run_cost._OUTSIDE_NETWORK  # what follows the network calls' rates was never timed


def test_a_run_goes_in_a_thread_of_its_own_and_the_model_loads_on_one_torch_thread(make_napari_viewer, qtbot,
                                                                                   monkeypatch, errors):
    """libgomp keeps an OpenMP team per thread that ran torch, for the thread's life, and slows every team once
    they outnumber the cores (_widgets/torch_teams.py): the GUI thread loads on one torch thread (no team), and a
    run's thread ends with the run (its team with it), not living on in napari's pool."""
    import threading

    from napari_diffdenoise._widgets import torch_teams

    loads, real_load = [], torch_teams.load_model
    monkeypatch.setattr(torch_teams, "load_model", lambda name: loads.append(torch.get_num_threads()) or real_load(name))
    ran, real_job = [], denoise_module._denoise_job

    def job(*args, **kwargs):
        ran.append(threading.current_thread())
        return (yield from real_job(*args, **kwargs))

    monkeypatch.setattr(denoise_module, "_denoise_job", job)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        viewer = make_napari_viewer()
        w = DenoiseWidget(viewer)
        w.model.value = "demo"
        w.image.value = _noisy(viewer, "a")
        qtbot.waitUntil(lambda: w._timings.worker is None, timeout=30_000)
        w.run()
        qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    finally:
        torch.set_num_threads(previous)
    assert loads and set(loads) == {1}
    assert len(ran) == 1 and ran[0] is not threading.main_thread() and not ran[0].is_alive()
    assert "a [mean]" in viewer.layers and not errors


def _gated_runs(monkeypatch, request):
    """Runs that start only when the returned event is set (the real job then); set at the test's end
    whatever happens, so that no run is left waiting for the viewer's teardown."""
    import threading
    import time

    gate, real = threading.Event(), denoise_module._denoise_job

    def gated(*args, **kwargs):
        while not gate.is_set():
            time.sleep(0.01)
        return (yield from real(*args, **kwargs))

    monkeypatch.setattr(denoise_module, "_denoise_job", gated)
    request.addfinalizer(gate.set)
    return gate


def _noisy(viewer, name, width=40):
    return viewer.add_image(np.random.default_rng(0).poisson(20, (32, width)).astype(np.float32), name=name)


def test_time_here_is_not_timed_while_a_run_goes_on(make_napari_viewer, qtbot, monkeypatch, errors, request):
    """A timing beside a run would slow the run and read long itself: one asked for meanwhile waits
    for the run's end."""
    state, gate = _slow_estimates(monkeypatch), _gated_runs(monkeypatch, request)
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    w.image.value = _noisy(viewer, "a")
    qtbot.waitUntil(lambda: w._timings.worker is None and w.estimate.value.startswith("about"), timeout=20_000)
    w.run()
    w.image.value = _noisy(viewer, "b", width=48)  # asks for a timing: the run goes on
    qtbot.wait(1000)
    assert state["shapes"] == [(32, 40)] and w.estimate.value == "after this run"
    gate.set()
    qtbot.waitUntil(lambda: w._worker is None, timeout=30_000)
    qtbot.waitUntil(lambda: w.estimate.value == "about 48 s", timeout=20_000)
    assert state["shapes"] == [(32, 40), (32, 48)] and state["most"] == 1
    assert "a [mean]" in viewer.layers  # the run itself was made
    assert not errors


def test_a_timing_that_ran_beside_a_run_is_taken_again(make_napari_viewer, qtbot, monkeypatch, errors, request):
    """A timing already going when Run is pressed measured a shared CPU (on the bundled sample 'Time here'
    said 8 s for a run of 4.6 s, and kept saying it): once both are over, every timing is dropped
    (run_cost.forget_timings) and taken again."""
    from napari_diffdenoise.core.run import run_cost

    state, gate = _slow_estimates(monkeypatch), _gated_runs(monkeypatch, request)
    forgotten = []
    monkeypatch.setattr(run_cost, "forget_timings", lambda: forgotten.append(True))
    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model.value = "demo"
    w.image.value = _noisy(viewer, "a")
    qtbot.waitUntil(lambda: state["running"] == 1, timeout=5_000)
    w.run()  # while the timing goes on
    qtbot.waitUntil(lambda: w._timings.worker is None, timeout=5_000)  # it ended; the run waits at its gate
    assert not forgotten and len(state["shapes"]) == 1
    gate.set()
    qtbot.waitUntil(lambda: w._worker is None and len(state["shapes"]) == 2 and w._timings.worker is None,
                    timeout=30_000)
    assert forgotten == [True] and state["shapes"] == [(32, 40), (32, 40)] and w.estimate.value == "about 40 s"
    # a run with no timing beside it drops nothing
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=30_000)
    qtbot.wait(700)
    assert forgotten == [True] and len(state["shapes"]) == 2
    assert not errors


def test_forget_timings_empties_every_store_of_timings(monkeypatch):
    """The network rates, what a run spends beside them, and the calibration's: all taken again."""
    from napari_diffdenoise.core.calibration import recalibration_cost
    from napari_diffdenoise.core.run import run_cost

    for cache in (run_cost._SECONDS_PER_PIXEL, run_cost._OUTSIDE_NETWORK, recalibration_cost._CALIBRATION_OVERHEAD):
        monkeypatch.setitem(cache, "a key", 1.0)
    run_cost.forget_timings()
    assert "a key" not in run_cost._SECONDS_PER_PIXEL and "a key" not in run_cost._OUTSIDE_NETWORK
    assert "a key" not in recalibration_cost._CALIBRATION_OVERHEAD
