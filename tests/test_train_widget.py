"""The Train widget in a real napari viewer (under Xvfb)."""
from pathlib import Path

import numpy as np
import pytest

from napari_diffdenoise._widgets import train as train_module
from napari_diffdenoise._widgets.denoise import DenoiseWidget
from napari_diffdenoise._widgets.model_registry import REGISTRY
from napari_diffdenoise._widgets.train import CLEAN_ONLY


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(train_module, "notify_error", messages.append)
    return messages


@pytest.fixture
def setup(paired_train_widget):
    viewer, w = paired_train_widget("fine")
    w.steps.value = 6
    return viewer, w


@pytest.mark.computation
def test_training_on_two_layers_adds_the_model_to_the_denoise_widget(setup, qtbot, errors, tmp_path):
    viewer, w = setup
    denoiser = DenoiseWidget(viewer)
    w.start()
    assert w._worker is not None and not errors
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    out = str((tmp_path / "fine.safetensors").resolve())
    assert out in [key for _, key in REGISTRY.choices()]
    assert out in list(denoiser.model.choices)
    assert "Done" in w.status.value and w.progress.value == 1000
    assert len(w.plot.train[0]) == 6 and w.plot.val[0]  # the live plot got every step and a validation point


def test_cancel_keeps_the_last_checkpoint(setup, qtbot, errors, tmp_path):
    viewer, w = setup
    w.steps.value = 10_000
    seen = []

    def cancel_later(info):
        seen.append(info.step)
        if info.step == 2:
            w.cancel()

    w.start()
    w._worker.yielded.connect(cancel_later)
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    # quit() lands at the worker's next step; yields already queued to the GUI may still arrive
    assert max(seen) < 1000 and "Cancelled" in w.status.value
    assert w.train_button.enabled and not errors


def test_closing_the_panel_stops_training_and_says_where_its_checkpoint_is(setup, qtbot, errors, tmp_path,
                                                                           monkeypatch):
    """napari's close button takes the widget out of its dock without deleting it: the training went on for
    its minutes with no Cancel and no status line left."""
    viewer, w = setup
    said = []
    monkeypatch.setattr(train_module, "show_info", said.append)
    w.steps.value = 1000  # a checkpoint every 50 steps
    output = tmp_path / "fine.safetensors"
    dock = viewer.window.add_dock_widget(w, name="Train")
    seen = []
    w.start()
    w._worker.yielded.connect(lambda info: seen.append(info.step))
    qtbot.waitUntil(output.is_file, timeout=120_000)
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert max(seen) < 1000 and not errors
    assert said == [(f"Training stopped: its Train panel was closed; the last checkpoint is kept at {output}; the "
                     "weights with the lowest validation loss are beside it as fine-best.safetensors (open Train, "
                     "set Output file to it and the run's data and settings — steps at least as many, the same patch "
                     "and batch sizes, learning rate and EMA, as before — tick Resume and Train to continue)")]


def test_a_run_whose_window_is_closed_while_qt_goes_on_touches_no_deleted_control(make_napari_viewer,
                                                                                  paired_train_widget, qtbot,
                                                                                  tmp_path, monkeypatch):
    """With another viewer open (or IPython), closing the window of a running Train panel deleted its controls, and
    the run's last progress, its end and the finished slot set them: three "wrapped C/C++ object … has been deleted"
    errors (PyQt aborts on them), and the notice of where the checkpoint is never came."""
    said = []
    monkeypatch.setattr(train_module, "show_info", said.append)
    other = make_napari_viewer()  # keeps Qt going, as a second window does
    viewer, w = paired_train_widget("closed")
    w.steps.value = 1000
    output = tmp_path / "closed.safetensors"
    viewer.window.add_dock_widget(w, name="Train")
    w.start()
    qtbot.waitUntil(output.is_file, timeout=120_000)
    worker = w._worker
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=120_000)
    qtbot.wait(200)  # the queued slots run (an error in one fails the test: pytest-qt)
    assert len(said) == 1 and said[0].startswith(f"Training stopped: its Train panel was closed; the last checkpoint "
                                                 f"is kept at {output}")
    assert other.layers is not None


def test_clean_only_mode_trains_without_a_noisy_layer(setup, qtbot, errors):
    viewer, w = setup
    w.mode.value = CLEAN_ONLY
    assert w.noisy.native.isHidden() and not w.photons_low.native.isHidden()
    w.steps.value = 2
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert "Done" in w.status.value and not errors


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v, w: setattr(w.clean, "value", v.layers["other"]), "must match"),
        (lambda v, w: setattr(w.clean, "value", v.layers["low"]), "same layer"),
        (lambda v, w: setattr(w.patch_size, "value", 96), "too small"),
        (lambda v, w: setattr(w.output, "value", "model.pt"), ".safetensors"),
    ],
)
def test_bad_selections_get_a_message_before_any_work(setup, errors, change, message):
    viewer, w = setup
    viewer.add_image(np.zeros((64, 50)), name="other")
    change(viewer, w)
    w.start()
    assert w._worker is None
    assert len(errors) == 1 and message in errors[0]


def test_extra_blur_starts_from_the_widefield_model_as_the_cli_does_and_a_pick_of_ones_own_stays(setup):
    from napari_diffdenoise.core.training.finetune import default_start

    _, w = setup
    w.start_model.value = "demo"
    w.mode.value = CLEAN_ONLY
    assert w.start_model.value == "demo"
    w.psf_sigma.value = 1.5
    assert w.start_model.value == "widefield" == default_start("paired", deconvolving=True)
    w.psf_sigma.value = 0
    assert w.start_model.value == "demo"
    w.start_model.value = "from scratch"  # the user's own pick is theirs
    w.psf_sigma.value = 1.0
    assert w.start_model.value == "from scratch"


def test_a_refused_start_says_so_in_the_status_line_not_the_run_before(setup, errors):
    _, w = setup
    w.status.value = "Failed; no checkpoint was written yet, and nothing is left on disk"
    w.patch_size.value = 128  # too big for the 80 px layers
    w.start()
    assert w._worker is None and len(errors) == 1
    assert w.status.value == f"Not started: {errors[0]}" and "too small for 128 px patches" in errors[0]


def test_unpaired_kind_trains_from_clean_layers_only(setup, qtbot, errors):
    viewer, w = setup
    w.kind.value = "unpaired"
    assert w.noisy.native.isHidden() and w.mode.native.isHidden() and w.start_model.value == "demo-unpaired"
    w.start_model.value = "from scratch"
    w.steps.value, w.patch_size.value = 2, 32
    w.start()
    assert not errors
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)
    assert "Done" in w.status.value
    from napari_diffdenoise import load_model

    assert load_model(w.output.value).kind == "unpaired"
    w.kind.value = "paired"
    assert w.start_model.value == "demo"


def test_a_failure_during_training_is_a_notification_not_a_traceback(setup, qtbot, errors, tmp_path):
    viewer, w = setup
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    w.output.value = blocker / "model.safetensors"  # its folder cannot be created
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert errors and "Training failed" in errors[0] and "Failed" in w.status.value


def test_a_second_run_writes_a_new_file_and_keeps_the_first(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    from napari_diffdenoise._widgets import train as train_module
    from napari_diffdenoise._widgets.train import TrainWidget

    infos = []
    monkeypatch.setattr(train_module, "show_info", infos.append)
    monkeypatch.setattr(train_module, "notify_error", infos.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 50, (64, 64)).astype(np.float32)
    viewer.add_image(rng.poisson(clean).astype(np.float32), name="noisy")
    viewer.add_image(clean, name="clean")
    w = TrainWidget(viewer)
    w.noisy.value, w.clean.value = viewer.layers["noisy"], viewer.layers["clean"]
    w.start_model.value = "from scratch"
    w.steps.value, w.batch_size.value, w.patch_size.value = 1, 2, 32
    first = tmp_path / "mine.safetensors"
    first.write_bytes(b"an earlier model")
    w.output.value = first
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert first.read_bytes() == b"an earlier model"
    assert (tmp_path / "mine-2.safetensors").is_file() and infos == ["mine.safetensors exists already: this run writes "
                                                                     "mine-2.safetensors"]
    w.start()  # the Output box kept mine-2: the next is mine-3, not mine-2-2
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert (tmp_path / "mine-3.safetensors").is_file() and infos[-1].endswith("this run writes mine-3.safetensors")


@pytest.mark.computation
def test_noisy_only_mode_adapts_a_model_and_lists_it(make_napari_viewer, tmp_path, qtbot, monkeypatch, with_std):
    from napari_diffdenoise._widgets import train as train_module
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget
    from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint

    errors = []
    monkeypatch.setattr(train_module, "notify_error", errors.append)
    start = tmp_path / "headed.safetensors"
    save_checkpoint(with_std, start)
    REGISTRY.add(start)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    truth = 5 + 40 * ((yy - 64) ** 2 + (xx - 64) ** 2 < 900)
    # two channels, labelled: the recalibration takes each on its own, as Denoise's 'Calibrate on this image'
    viewer.add_image(np.stack([rng.poisson(truth), rng.poisson(3 * truth)]).astype(np.float32), name="noisy cells",
                     axis_labels=("c", "y", "x"))
    w = TrainWidget(viewer)
    w.mode.value = NOISY_ONLY
    assert w.clean.native.isHidden() and not w.minutes.native.isHidden() and w.steps.native.isHidden()
    w.noisy.value = viewer.layers["noisy cells"]
    w.start_model.value = str(start.resolve())
    w.minutes.value, w.batch_size.value, w.patch_size.value = 0.1, 2, 32
    w.output.value = tmp_path / "adapted.safetensors"
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert not errors, errors
    model = load_model(tmp_path / "adapted.safetensors")
    assert model.provenance["adapted"]["steps"] >= 1 and model.calibrations
    assert model.calibrations[0]["channel_axis"] == 0 and len(model.calibrations[0]["channel_factors"]) == 2
    assert str((tmp_path / "adapted.safetensors").resolve()) in [v for _, v in REGISTRY.choices()]
    assert w.status.value.startswith("Done")
    assert model.provenance["adapted"]["decision"]["message"] in w.status.value  # which head was kept, and why


def test_adapting_an_image_too_small_to_judge_says_so_before_the_steps(make_napari_viewer, tmp_path, qtbot,
                                                                       monkeypatch, headed):
    """A 64² image at 32 px patches holds 4 cells to judge an adapted head by, of the 8 needed: the bundled head
    comes back whatever adapting gains, and the widget says so when Train is pressed, not only in the verdict."""
    from napari_diffdenoise._widgets import train as train_module
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint

    infos, errors = [], []
    monkeypatch.setattr(train_module, "show_info", infos.append)
    monkeypatch.setattr(train_module, "notify_error", errors.append)
    start = tmp_path / "headed.safetensors"
    save_checkpoint(headed, start)
    REGISTRY.add(start)
    viewer = make_napari_viewer()
    yy, xx = np.mgrid[:64, :64]
    truth = 5 + 40 * ((yy - 32) ** 2 + (xx - 32) ** 2 < 200)
    viewer.add_image(np.random.default_rng(0).poisson(truth).astype(np.float32), name="small crop")
    w = TrainWidget(viewer)
    w.mode.value = NOISY_ONLY
    w.noisy.value, w.start_model.value = viewer.layers["small crop"], str(start.resolve())
    w.minutes.value, w.batch_size.value, w.patch_size.value = 0.1, 2, 32
    (tmp_path / "adapted.safetensors").write_bytes(b"an earlier model")  # kept, and the new name said
    w.output.value = tmp_path / "adapted.safetensors"
    w.start()
    assert infos == [("small crop: its validation strips hold 4 cells to judge an adapted head by, fewer than the 8 "
                      "it needs: adapting will keep the bundled head whatever it gains (a larger image, more planes or "
                      "a smaller patch size give more cells)"),
                     "adapted.safetensors exists already: this run writes adapted-2.safetensors"]
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert not errors, errors
    assert "kept the bundled head" in w.status.value
    assert (tmp_path / "adapted.safetensors").read_bytes() == b"an earlier model"
    assert (tmp_path / "adapted-2.safetensors").is_file()


def test_noisy_and_clean_start_on_different_layers(make_napari_viewer):
    from napari_diffdenoise._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64)), name="low light")
    viewer.add_image(np.ones((64, 64)), name="ground truth")
    w = TrainWidget(viewer)
    assert w.noisy.value.name == "low light" and w.clean.value.name == "ground truth"
    viewer.add_image(np.ones((64, 64)), name="another")
    assert w.noisy.value is not w.clean.value


def test_resume_continues_the_run_at_the_output_file(setup, qtbot, errors, tmp_path):
    from napari_diffdenoise import load_model

    viewer, w = setup
    w.resume.value = True  # nothing to resume yet: a message, no worker
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert errors and "nothing to resume" in errors[-1]
    assert not (tmp_path / "fine.safetensors").exists()
    errors.clear()
    w.resume.value = False
    w.steps.value = 4
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert load_model(tmp_path / "fine.safetensors").provenance["step"] == 4
    w.resume.value, w.steps.value = True, 7  # a longer run picks up at step 4, in the same file
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    resumed = load_model(tmp_path / "fine.safetensors")
    assert resumed.provenance["step"] == 7 and len(resumed.provenance["history"]) == 7
    assert Path(w.output.value) == tmp_path / "fine.safetensors" and not errors
    assert sorted(p.name for p in tmp_path.glob("fine*")) == [
        "fine-best.safetensors", "fine.safetensors", "fine.state.safetensors"]


def _cli_train_config(monkeypatch, tmp_path, *options):
    """The TrainConfig ``napari-diffdenoise train --clean`` builds with ``options``, caught where training
    would start."""
    import tifffile

    import napari_diffdenoise
    from napari_diffdenoise.cli import main

    seen = {}

    def fake_train(*args, config, **kwargs):
        seen["config"] = config
        return type("Result", (), {"best_val_loss": None})()

    monkeypatch.setattr(napari_diffdenoise, "train", fake_train)
    clean = tmp_path / "clean.tif"
    tifffile.imwrite(clean, np.zeros((32, 32), np.float32))
    assert main(["train", "--clean", str(clean), "--out", str(tmp_path / "m.safetensors"), *options]) == 0
    return seen["config"]


@pytest.mark.parametrize("steps, batch, patch, lr, ema", [(6, 2, 32, 2e-4, True), (37, 5, 48, 1e-3, False),
                                                          (5000, 8, 64, 2e-4, True)])
def test_the_cli_and_the_widget_build_the_same_train_config(setup, tmp_path, monkeypatch, steps, batch, patch, lr, ema):
    """Both derive the warm-up, checkpoint and validation intervals from the steps in one place."""
    _, w = setup
    w.steps.value, w.batch_size.value, w.patch_size.value, w.learning_rate.value, w.ema.value = steps, batch, patch, lr, ema
    config = _cli_train_config(monkeypatch, tmp_path, "--steps", str(steps), "--batch-size", str(batch),
                               "--patch-size", str(patch), "--lr", str(lr), "--ema", "0.999" if ema else "0")
    assert config == w._config()


def test_the_train_config_derivation_has_one_source(setup, tmp_path, monkeypatch):
    """The CLI and the widget call core.training.train_config.scaled_config: a change there reaches both."""
    from napari_diffdenoise.core.training import train_config

    marked = train_config.TrainConfig(steps=4321, warmup_steps=7)
    monkeypatch.setattr(train_config, "scaled_config", lambda steps, **kwargs: marked)
    monkeypatch.setattr(train_module, "scaled_config", train_config.scaled_config)  # the name the widget imported
    assert _cli_train_config(monkeypatch, tmp_path) is marked and setup[1]._config() is marked


def test_the_librarys_train_without_a_config_trains_as_the_cli_does(tmp_path, monkeypatch):
    """train(noisy, clean) took TrainConfig's own defaults (2000 steps of 16 patches, a recipe's): 8× the CLI's work
    (and the widget's: test_the_cli_and_the_widget_build_the_same_train_config) for the same call."""
    from napari_diffdenoise import train
    from napari_diffdenoise.core.training import finetune

    taken = []

    def caught(prepared, config, **kwargs):
        taken.append(config)
        return None
        yield  # a generator, as run_prepared is

    cli = _cli_train_config(monkeypatch, tmp_path)
    monkeypatch.setattr(finetune, "run_prepared", caught)
    rng = np.random.default_rng(0)
    clean = rng.uniform(5, 50, (160, 96))
    train(rng.poisson(clean).astype(np.float32), clean, model=None)
    assert taken == [cli] and cli.steps == finetune.STEPS.default


def test_the_cli_and_the_widget_offer_the_declared_fine_tuning(make_napari_viewer, tmp_path, monkeypatch):
    """Left at their defaults, the CLI and the widget train alike: the options declared once
    (core.training.finetune.FINE_TUNING) and the library's simulated noise; each control is its declaration."""
    import tifffile

    import napari_diffdenoise
    from napari_diffdenoise._widgets.train import TrainWidget
    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.imaging.simulate import NoiseModel
    from napari_diffdenoise.core.training.finetune import EMA_DECAY, FINE_TUNING, PATCH_SIZE

    seen = {}
    monkeypatch.setattr(napari_diffdenoise, "train",
                        lambda *args, **kwargs: seen.update(kwargs) or type("Result", (), {"best_val_loss": None})())
    tifffile.imwrite(tmp_path / "clean.tif", np.zeros((32, 32), np.float32))
    assert main(["train", "--clean", str(tmp_path / "clean.tif"), "--out", str(tmp_path / "m.safetensors")]) == 0
    w = TrainWidget(make_napari_viewer())
    assert seen["config"] == w._config()
    assert seen["val_fraction"] == w.val_fraction.value
    assert seen["noise_model"] == NoiseModel() == NoiseModel(photons=(w.photons_low.value, w.photons_high.value),
                                                             psf_sigma=w.psf_sigma.value)
    for option in FINE_TUNING:
        if option is EMA_DECAY:  # a check box in the form: on is the declared decay
            assert w.ema.value and w._config().ema_decay == EMA_DECAY.default
            continue
        control = getattr(w, option.name)
        assert (control.value, control.min, control.max) == (option.default, option.low, option.high), option.name
        assert control.label == option.label and control.tooltip == option.help, option.name
    assert w.patch_size.step == PATCH_SIZE.step


def test_the_adapting_budget_is_declared_once(make_napari_viewer):
    """adapt(), the CLI's adapt command and the widget's noisy-only mode start from one time budget."""
    import inspect

    from napari_diffdenoise._widgets.train import TrainWidget
    from napari_diffdenoise.cli import build_parser
    from napari_diffdenoise.core.training.adapt import adapt, iter_adapt
    from napari_diffdenoise.core.training.adapt_spec import MINUTES

    w = TrainWidget(make_napari_viewer())
    assert (w.minutes.value, w.minutes.min, w.minutes.max, w.minutes.step) == \
        (MINUTES.default, MINUTES.low, MINUTES.high, MINUTES.step)
    assert not w.minutes.visible and w.minutes.tooltip.startswith(MINUTES.help)
    assert build_parser().parse_args(["adapt", "in.tif", "--out", "a.safetensors"]).minutes == MINUTES.default
    assert {inspect.signature(f).parameters["minutes"].default for f in (adapt, iter_adapt)} == {MINUTES.default}


def test_multiscale_layers_are_trained_and_adapted_at_full_resolution(setup, monkeypatch):
    """Two 256² pyramids trained on their 128² level in silence; a pyramid beside a plain layer was refused for a
    shape mismatch, and adapting one said "MultiScaleData.__array__() takes 1 positional argument"."""
    from napari_diffdenoise.core.training.train_config import TrainConfig

    viewer, w = setup
    low, high = viewer.layers["low"].data, viewer.layers["high"].data
    viewer.add_image([low, low[::2, ::2]], multiscale=True, name="low pyramid")
    viewer.add_image([high, high[::2, ::2]], multiscale=True, name="high pyramid")
    given = []
    monkeypatch.setattr(train_module, "prepare_training", lambda noisy, clean, **_: given.append((noisy, clean)))
    for noisy, clean in (("low pyramid", "high pyramid"), ("low pyramid", "high"), ("low", "high pyramid")):
        w.noisy.value, w.clean.value = viewer.layers[noisy], viewer.layers[clean]
        w._prepare(TrainConfig(steps=1, batch_size=2, patch_size=32))
        np.testing.assert_array_equal(given[-1][0], low)
        np.testing.assert_array_equal(given[-1][1], high)
    adapted = []
    monkeypatch.setattr(train_module, "torch_worker", lambda job, model, noisy, *a, **k: adapted.append(noisy) or 1 / 0)
    w.mode.value = train_module.NOISY_ONLY
    w.start_model.value = "demo"
    w.noisy.value = viewer.layers["low pyramid"]
    with pytest.raises(ZeroDivisionError):  # stopped where the worker would start: what it would adapt to is read
        w._adapt_start()
    assert adapted[0].shape == low.shape and adapted[0].dtype == np.float32
