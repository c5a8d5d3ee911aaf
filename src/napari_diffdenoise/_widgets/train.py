"""The Train dock widget: fine-tune a model on layers the user selects, then use it right away.

Everything about the data is checked (by :func:`prepare_training`) before the worker starts; the
worker yields once per step, so Cancel lands within a step and keeps the last checkpoint written.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)

from ..core.imaging.simulate import NoiseModel
from ..core.run.run_cost import duration
from ..core.training.adapt_cost import BeyondBudget, beyond_budget_cost
from ..core.training.adapt_spec import MINUTES
from ..core.training.finetune import (
    BATCH_SIZE,
    EMA_DECAY,
    LEARNING_RATE,
    PATCH_SIZE,
    STEPS,
    VAL_FRACTION,
    default_start,
    prepare_training,
    run_prepared,
)
from ..core.training.run_files import best_path
from ..core.training.train_config import TrainConfig, scaled_config
from ._worker import WorkerControls, when_closed
from .timings import OneTiming
from .torch_teams import load_here, torch_worker
from .calibrate import free_path
from .denoise import _Failure, _image_choices, layer_data, notify_error
from .help import help_link
from .layer_axes import named_axes
from .layers import first_plane, follow_layers
from .model_registry import REGISTRY, USER_MODELS_DIR
from .run_controls import param_widget
from .sections import Section, extend_form

PAIRED = "paired: noisy + clean layers"
CLEAN_ONLY = "clean layer + simulated noise"
NOISY_ONLY = "noisy layer only: adapt (no clean image)"
# what of the form a resumed run must be given as it was (core.training.run_files.RESUME_KEYS: the rest is fixed here)
RESUMED = "the same patch and batch sizes, learning rate and EMA"
SCRATCH = "from scratch"
DEFAULT_DIR = USER_MODELS_DIR


def show_info(message: str) -> None:
    from napari.utils.notifications import show_info as napari_info

    napari_info(message)


def _estimate(start: str, data, plane=None, axes=None, patch_size=PATCH_SIZE.default,
              stop=None) -> BeyondBudget | None:
    """For the form, in a worker thread: None when the model cannot be adapted (the Train button says why),
    and for a timing stopped (``stop()``, polled between what it times: the worker's abort_requested).
    ``plane``: the layer's first plane (layers.first_plane), whose bright boxes each restored crop runs again;
    ``axes``: the layer's where it names them (layer_axes.named_axes: a C axis is recalibrated per channel);
    ``patch_size``: the form's (which frames of a series adapt holds out, and so judges)."""
    from ..core.io.checkpoint import load_model
    from ..core.run.restore import Cancelled
    from ..core.run.run_cost import stoppable
    from ..core.training.adapt import recalibration_axes

    try:
        model = load_model(start)
        if model.mean_network is None:
            return None
        data = np.asarray(data)
        with stoppable(stop or (lambda: False)):
            return beyond_budget_cost(model, data, recalibration_axes(data, axes=axes), plane, patch_size=patch_size)
    except (ValueError, OSError, RuntimeError, Cancelled):
        return None


RECALIBRATING = "Adapting done; recalibrating the intervals on this image"


def _adapt_job(model, noisy, options, output, axes=None, plan=None):
    """Adapt, recalibrate the intervals on the image itself (by ``axes``, the layer's where it names them),
    save; errors a user can act on come back as a :class:`_Failure`. ``plan``: the form's BeyondBudget for this
    layer, model and patch size, where it has one (else priced here)."""
    from ..core.io.checkpoint import save_checkpoint
    from ..core.training.adapt import iter_adapt, iter_recalibrate, recalibration_axes

    try:
        axes = recalibration_axes(noisy, options.get("time_series"), axes)
        # the plan: the progress bar spans the steps and what follows them
        yield plan or beyond_budget_cost(model, noisy, axes, noisy[(0,) * (noisy.ndim - 2)],
                                         options.get("time_series"), options["patch_size"])
        result = yield from iter_adapt(model, noisy, **options)
        yield RECALIBRATING
        adapted = yield from iter_recalibrate(result.model, noisy, time_series=options.get("time_series"), axes=axes,
                                              device=options.get("device", "auto"))
        adapted.name = output.stem
        save_checkpoint(adapted, output)
        return None
    except (ValueError, OSError, MemoryError, RuntimeError) as err:
        return _Failure(str(err))


def _train_job(prepared, config, output, resume=False):
    """The worker's generator; errors a user can act on (an unwritable folder, out of memory) come
    back as a :class:`_Failure` for a notification instead of a traceback."""
    try:
        return (yield from run_prepared(prepared, config, output=output, resume=resume))
    except (ValueError, OSError, MemoryError, RuntimeError) as err:
        return _Failure(str(err))


class TrainWidget(WorkerControls, Container):
    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._last_redraw = 0.0
        self.kind = ComboBox(label="Model kind", choices=["paired", "unpaired"], value="paired",
                             tooltip="paired: learns noisy → clean (the Denoise default).\n"
                                     "unpaired: learns clean images only; denoising is guided by the noisy image")
        self.mode = ComboBox(label="Data", choices=[PAIRED, CLEAN_ONLY, NOISY_ONLY], value=PAIRED,
                             tooltip="Noisy layer only: adapt a model with a mean head (the bundled demo) to your "
                                     "data from the noisy images alone; the noise model is read off the image")
        self.minutes = param_widget(MINUTES, None)
        self.minutes.visible = False  # shown for the noisy-only mode
        self.minutes.tooltip += " (the line below: how long)"
        self.beyond_budget = Label(label="Beyond the budget", value="", visible=False,
                                   tooltip="Outside the minutes above: on a series, registering the held-out frames "
                                           "for the judge before the steps and judging the refined [mean] after "
                                           "them; then the intervals recalibrated on this image (one restoration of "
                                           "crops of it at the default settings)")
        self.noisy = ComboBox(label="Noisy layer", choices=self._images, tooltip="Low-light acquisition")
        self.clean = ComboBox(label="Clean layer", choices=self._images, tooltip="High-light acquisition of the same field")
        simulated = NoiseModel()  # the library's defaults for the simulated noisy side
        self.photons_low = FloatSpinBox(label="Photons at peak, from", value=simulated.photons[0], min=0.1, max=1e5,
                                        tooltip="Simulated low-light range (log-uniform) for the noisy side")
        self.photons_high = FloatSpinBox(label="… to", value=simulated.photons[1], min=0.1, max=1e5)
        self.psf_sigma = FloatSpinBox(label="Extra blur σ (px)", value=simulated.psf_sigma, min=0.0, max=10.0,
                                      tooltip="Blur only the simulated noisy side by a Gaussian PSF: the model learns to "
                                              "deconvolve (restore with the ddim-dc sampler); 0: denoise only")
        self.start_model = ComboBox(label="Start from", choices=self._start_choices,
                                    tooltip="Fine-tune a model, or train one from scratch (needs many more steps)")
        self.steps = param_widget(STEPS, None)
        self.patch_size = param_widget(PATCH_SIZE, None)
        self.batch_size = param_widget(BATCH_SIZE, None)
        self.learning_rate = param_widget(LEARNING_RATE, None)
        self.val_fraction = param_widget(VAL_FRACTION, None)
        self.ema = CheckBox(label=EMA_DECAY.label, value=EMA_DECAY.default > 0,
                            tooltip="Keep a running average of the weights (exponential moving average): the saved "
                                    "model is steadier than the last update's")
        self.output = FileEdit(label="Output file", mode="w", filter="*.safetensors",
                               value=DEFAULT_DIR / "my-model.safetensors",
                               tooltip=f"Where the model is saved (the folder is created if needed; default {DEFAULT_DIR}). "
                                       "An existing file is never replaced: a new name is chosen")
        self.resume = CheckBox(label="Resume", value=False,
                               tooltip="Continue the run saved at Output file where it stopped (cancelled, or with more "
                                       "Steps than it had), from its last checkpoint: with that run's data and "
                                       f"{RESUMED}, which a reopened panel does not remember")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.start_button = self.train_button
        self.progress = ProgressBar(label="Progress", min=0, max=1000, value=0)
        self.status = Label(value="")
        self.help = help_link("train", "Train")
        self.advanced = Section("Advanced settings", [self.patch_size, self.batch_size, self.learning_rate,
                                                      self.val_fraction, self.ema])
        self.plot_section = Section("Loss plot", [], tooltip="The training and validation losses, step by step "
                                                              "(unfolds when a run starts)")
        extend_form(self, [self.help, self.kind, self.mode, self.noisy, self.clean, self.photons_low, self.photons_high, self.psf_sigma,
                     self.start_model, self.steps, self.minutes, self.beyond_budget, self.advanced, self.output,
                     self.resume, self.train_button, self.cancel_button, self.progress, self.status,
                     self.plot_section])
        self.status.native.setWordWrap(True)  # a whole path, never cut at the dock's edge
        from .loss_plot import LossPlot

        self.plot = LossPlot()
        self.plot_section.body.native.layout().addWidget(self.plot)
        self._estimate_for, self._estimate = None, None  # (model, layer shape, its data, patch size) → BeyondBudget
        # a timing going when a run starts measured a shared CPU and reads long: taken again when the run ends
        # (the Denoise widget's 'Time here' likewise)
        self._timing_beside_run = False
        self._timings = OneTiming(lambda: self._worker is None)  # a run's end (_on_finished) asks again
        self._closed, self._stepped = False, False
        when_closed(self.native, self._on_closed)
        self._plan = None

        self.mode.changed.connect(self._on_mode)
        self.kind.changed.connect(self._on_kind)
        self.psf_sigma.changed.connect(self._start_by_default)
        for control in (self.noisy, self.start_model, self.minutes, self.patch_size):
            control.changed.connect(self._refresh_estimate)
        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        REGISTRY.subscribe(self.start_model)
        follow_layers(napari_viewer, self.noisy, self.clean)
        self._on_mode(self.mode.value)
        self.reset_choices()
        self._distinct_layers()
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._distinct_layers)

    def _distinct_layers(self, _event=None):
        """Noisy and Clean on different layers when there are two: the same layer twice is never a pair.
        A layer named like a truth (clean, truth, gt, high) goes to Clean."""
        layers = [layer for _, layer in self._images()]
        if len(layers) < 2 or self.noisy.value is not self.clean.value:
            return
        hints = ("clean", "truth", "gt", "high")
        clean = next((layer for layer in layers if any(h in layer.name.lower() for h in hints)), None)
        if clean is None or clean is self.noisy.value:
            clean = next(layer for layer in layers if layer is not self.noisy.value)
        self.clean.value = clean
        if self.noisy.value is clean:
            self.noisy.value = next(layer for layer in layers if layer is not clean)

    def _images(self, _widget=None):
        return _image_choices(self._viewer)

    def _start_choices(self, _widget=None):
        return [choice for choice in REGISTRY.choices()] + [(SCRATCH, SCRATCH)]

    def _on_kind(self, kind):
        self.mode.visible = kind != "unpaired"
        self._start_by_default(whatever_was_picked=True)  # a model of the other kind cannot start this one
        self._on_mode(self.mode.value)

    def _start_by_default(self, _value=None, whatever_was_picked: bool = False) -> None:
        """Start from the bundled model the library and the CLI take for these settings (finetune.default_start),
        unless the user picked a model of their own; the widefield model where clean images get extra blur (it
        learnt to deconvolve, demo did not: the widget trained from demo where the CLI took widefield)."""
        deconvolving = self.mode.value == CLEAN_ONLY and self.psf_sigma.value > 0
        preferred = default_start(self.kind.value, deconvolving)
        bundled = {default_start(kind, blur) for kind in ("paired", "unpaired") for blur in (False, True)}
        if whatever_was_picked or self.start_model.value in (*bundled, None):
            self.start_model.value = preferred if preferred in self.start_model.choices else SCRATCH

    def _on_mode(self, mode):
        unpaired = self.kind.value == "unpaired"
        simulated = mode == CLEAN_ONLY
        adapting = mode == NOISY_ONLY and not unpaired
        self.noisy.visible = not simulated and not unpaired
        self.clean.visible = not adapting
        for w in (self.photons_low, self.photons_high, self.psf_sigma):
            w.visible = simulated and not unpaired
        self.minutes.visible = self.beyond_budget.visible = adapting
        self._start_by_default()
        # adapting has its own time budget, optimiser and no resumable state
        for w in (self.steps, self.ema, self.learning_rate, self.resume):
            w.visible = not adapting
        self._refresh_estimate()

    def _refused(self, err: Exception) -> None:
        """A start refused before any work: said as a notification, and in the status line, which still told of
        the run before."""
        notify_error(str(err))
        self.status.value = f"Not started: {err}"

    def _on_closed(self) -> None:
        """The panel is closed (_worker.when_closed): its timing and its training stop, as Cancel stops them, the
        last checkpoint kept for Resume (a training that went on for its minutes with no Cancel and no status
        left would hold the CPU with no one to see it)."""
        self._closed = True
        self._stop_timings()
        self._quit_when_closed()

    def _stop_timings(self) -> None:
        """The widget is gone: its timing stops at its next network call (napari waits for it when it quits),
        and none waiting starts."""
        self._estimate_for = None
        self._timings.stop()

    def _adapting(self) -> bool:
        return self.mode.value == NOISY_ONLY and self.kind.value == "paired"

    def _estimate_key(self) -> tuple:
        """What the form's estimate holds for: a time series is recalibrated on its frames too, and its held-out
        frames (which the patch size sets) judged."""
        layer = self.noisy.value
        data = layer.data[0] if layer.multiscale else layer.data  # what a run trains on: full resolution
        return self.start_model.value, tuple(data.shape), id(data), self.patch_size.value

    def _refresh_estimate(self, _value=None):
        """Say how long the recalibration after adapting takes for this layer and model (measured
        in a worker thread: the first time for a model it times one network call)."""
        layer, start = self.noisy.value, self.start_model.value
        if not self._adapting() or layer is None or start in (None, SCRATCH):
            self.beyond_budget.value = "—"
            return
        if self._worker is not None:  # a run shares the CPU: timed when it ends (_on_finished)
            self._estimate_for, self._estimate = None, None
            self.beyond_budget.value = "timed when this run ends"
            return
        key = self._estimate_key()
        if key == self._estimate_for:
            if self._estimate is not None:  # else still timing, or no estimate to give
                self._show_estimate(key, self._estimate)
            return
        self._estimate_for, self._estimate = key, None
        self.beyond_budget.value = "timing it on this machine…"
        self._timings.ask(_estimate, start, layer.data[0] if layer.multiscale else layer.data, first_plane(layer),
                          named_axes(layer), self.patch_size.value,
                          on_result=lambda cost: self._show_estimate(key, cost))

    def _launch(self, worker, description: str = "napari-diffdenoise") -> None:
        self._timing_beside_run = self._estimate_for is not None and self._estimate is None
        super()._launch(worker, description)

    def _on_finished(self) -> None:
        super()._on_finished()
        if self._timing_beside_run:  # its rates were measured on a shared CPU: no widget may keep them
            from ..core.run.run_cost import forget_timings

            self._timing_beside_run = False
            forget_timings()
            self._estimate_for = None
        if self._closed:  # nothing to time for a panel that is gone (its controls may be too)
            return
        if self._estimate_for is None:
            self._refresh_estimate()

    def _show_estimate(self, key, cost: BeyondBudget | None):
        if key != self._estimate_for:
            return  # an answer for an earlier layer or model
        self._estimate = cost
        if cost is None:
            self.beyond_budget.value = "—"
            return
        total = self.minutes.value * 60 + cost.seconds
        self.beyond_budget.value = f"about {duration(cost.seconds)}; {duration(total)} in all"
        self.beyond_budget.tooltip = f"Besides the steps: {cost.describe()} (timed on this machine)"

    def _config(self) -> TrainConfig:
        return scaled_config(self.steps.value, batch_size=self.batch_size.value, patch_size=self.patch_size.value,
                             learning_rate=self.learning_rate.value, ema_decay=EMA_DECAY.default if self.ema.value else 0.0)

    def _prepare(self, config: TrainConfig):
        clean = self.clean.value
        if clean is None:
            raise ValueError("Select a clean image layer")
        noisy = None
        if self.mode.value == PAIRED and self.kind.value == "paired":
            noisy = self.noisy.value
            if noisy is None:
                raise ValueError("Select a noisy image layer")
            if noisy is clean:
                raise ValueError("The noisy and the clean layer are the same layer")
            noisy = np.asarray(layer_data(noisy))
        if not str(self.output.value).endswith(".safetensors"):
            raise ValueError("The output file must end in .safetensors")
        noise = NoiseModel(photons=(self.photons_low.value, self.photons_high.value), psf_sigma=self.psf_sigma.value)
        start = None if self.start_model.value == SCRATCH else self.start_model.value
        # full resolution: level 0 of a multiscale layer, as Denoise reads it (np.asarray took the smallest level: two
        # 256² pyramids trained on 128² in silence)
        return prepare_training(noisy, np.asarray(layer_data(clean)), model=start, noise_model=noise, config=config,
                                val_fraction=self.val_fraction.value, kind=self.kind.value)

    def _adapt_start(self):
        """Noisy-only mode: adapt the chosen model to the noisy layer (core.training.adapt) in a worker."""
        layer = self.noisy.value
        if layer is None:
            raise ValueError("Select the noisy image layer to adapt to")
        if self.start_model.value in (None, SCRATCH):
            raise ValueError("Adapting starts from a model with a mean head, such as the bundled demo")
        if not str(self.output.value).endswith(".safetensors"):
            raise ValueError("The output file must end in .safetensors")
        model = load_here(self.start_model.value)
        noisy = np.asarray(layer_data(layer), dtype=np.float32)  # level 0 of a multiscale layer, a copy
        options = dict(minutes=self.minutes.value, patch_size=self.patch_size.value, batch_size=self.batch_size.value,
                       val_fraction=self.val_fraction.value)
        from ..core.training.adapt_spec import check_adapt

        check_adapt(model, noisy, minutes=options["minutes"], patch_size=options["patch_size"],
                    val_fraction=options["val_fraction"])  # refuse bad data before the worker starts
        from ..core.training.adapt import judge_shortfall

        shortfall = judge_shortfall(noisy, patch_size=options["patch_size"], val_fraction=options["val_fraction"])
        if shortfall is not None:  # said before the minutes are spent, not only in the verdict after them
            show_info(f"{layer.name}: {shortfall}")
        asked = Path(self.output.value)
        output = free_path(asked)  # an earlier model is never replaced: said, as the paired runs say it
        if output != asked:
            self.output.value = output
            show_info(f"{asked.name} exists already: this run writes {output.name}")
        plan = self._estimate if self._estimate_for == self._estimate_key() else None  # priced once
        self._worker = torch_worker(_adapt_job, model, noisy, options, output, named_axes(layer), plan,
                                     _start_thread=False)
        self._worker.yielded.connect(self._on_adapt_progress)
        self._worker.returned.connect(lambda result: self._on_done(output, cancelled=False, failure=result))
        self._worker.aborted.connect(lambda: self._on_done(output, cancelled=True))
        self._plan = None
        self._show_plot()
        self._launch(self._worker, f"Adapting {model.name} to {layer.name}")

    def _on_adapt_progress(self, info):
        if self._closed:  # its controls may be gone with its window
            return
        budget = self.minutes.value * 60
        if isinstance(info, BeyondBudget):  # the plan, before any step
            self._plan = info
            return
        registering = self._plan.registering if self._plan is not None else 0.0
        judging = self._plan.judging.seconds if self._plan is not None else 0.0
        recalibrating = self._plan.recalibrating.seconds if self._plan is not None else 0.0
        whole = registering + budget + judging + recalibrating
        if isinstance(info, str):  # the recalibration after training begins
            self._adapted_at = time.monotonic() - self._started
            done = self._adapted_at / (self._adapted_at + recalibrating)
            self._report(done, info)
            return
        if not hasattr(info, "train_loss"):  # the recalibration's restoration progress
            if info.fraction > 0.02:  # its own pace, once seen, says how long it takes better than the estimate
                recalibrating = (time.monotonic() - self._started - self._adapted_at) / info.fraction
            share = self._adapted_at / (self._adapted_at + recalibrating)
            self._report(share + (1 - share) * info.fraction, "recalibrating the intervals on this image")
            return
        if getattr(info, "message", None):  # the last report: which head was kept, and the criterion's figures
            self._adapt_message = info.message
            show_info(f"Adapt: {info.message}")
            return
        if info.before_steps:  # before the steps: the judge's targets (before the budget), then the training's frames
            # the judge's targets have their own share of the bar, priced apart: the budget's clock starts after them
            spent = (min(info.seconds, registering) if info.judge_targets
                     else registering + min(info.seconds, budget))
            self._report(spent / whole, f"{info.phase}; then adapting and recalibrating")
            return
        if info.judged:  # after the steps: the refined [mean]'s judge, frame by frame
            done, total = info.judged
            self._report((registering + budget + judging * done / total) / whole, f"{info.phase}; then recalibrating")
            return
        val = f", validation {info.val_loss:.5f}" if info.val_loss is not None else ""
        # the last step may end past the budget: adapting is then done, not more than done
        self._report((registering + min(info.seconds, budget)) / whole,
                     f"adapting: step {info.step}, loss {info.train_loss:.5f}{val}; then recalibrating")
        self.plot.add(info.step, info.train_loss, info.val_loss)
        now = time.monotonic()
        if now - self._last_redraw > 0.5:
            self._last_redraw = now
            self.plot.redraw()

    def start(self):
        """Check the selection, then train in a worker thread."""
        if self.mode.value == NOISY_ONLY and self.kind.value == "paired":
            if self._worker is not None:
                return
            try:
                self._adapt_start()
            except Exception as err:
                self._refused(err)
            return
        config = self._config()
        try:
            prepared = self._prepare(config)
        except Exception as err:
            self._refused(err)
            return
        if self._worker is not None:
            return  # one run at a time
        asked = Path(self.output.value)
        resume = bool(self.resume.value)
        if resume:
            output = asked  # the run to continue; iter_train refuses when it has no state file
        else:
            output = free_path(asked)  # an earlier run's model, best and state files are never replaced
            if output != asked:
                self.output.value = output
                show_info(f"{asked.name} exists already: this run writes {output.name}")
        self._worker = torch_worker(_train_job, prepared, config, output, resume, _start_thread=False)
        self._worker.yielded.connect(self._on_progress)
        self._worker.returned.connect(lambda result: self._on_done(output, cancelled=False, failure=result))
        self._worker.aborted.connect(lambda: self._on_done(output, cancelled=True))
        self._show_plot()
        self._stepped = False  # a resume refused before its first step is not continued by ticking Resume again
        self._launch(self._worker, f"Training {output.name}")

    def _show_plot(self):
        self.plot.clear_data()
        self.plot_section.collapsed = False

    def _on_progress(self, info):
        if self._closed:  # its controls may be gone with its window
            return
        self._stepped = True
        val = f", validation {info.val_loss:.4f}" if info.val_loss is not None else ""
        self._report(info.step / info.total_steps, f"step {info.step}/{info.total_steps}, loss {info.train_loss:.4f}{val}")
        self.plot.add(info.step, info.train_loss, info.val_loss)
        now = time.monotonic()
        if now - self._last_redraw > 0.5 or info.step == info.total_steps:
            self._last_redraw = now
            self.plot.redraw()

    def _on_done(self, output: Path, cancelled: bool, failure=None):
        if not self._closed:  # its controls may be gone with its window: only notifications then
            self.plot.redraw()
        if isinstance(failure, _Failure):
            notify_error(f"Training failed: {failure}")
        if output.is_file():
            REGISTRY.add(output)  # the Denoise widget lists it at once; its -best file stays beside it, unlisted
        best = best_path(output)
        beside = (f"; the weights with the lowest validation loss are beside it as {best.name}" if best.is_file()
                  else "")
        if cancelled or isinstance(failure, _Failure):
            # a refused resume is not continued by ticking Resume again (the notification says why); a reopened
            # panel starts at the default output and settings, which a resume must be given back
            resume = (f" (open Train, set Output file to it and the run's data and settings — steps at least as "
                      f"many, {RESUMED}, as before — tick Resume and Train to continue)" if self._closed
                      else "" if failure is not None and self.resume.value and not self._stepped
                      else " (tick Resume and Train to continue)")
            kept = (f"; the last checkpoint is kept at {output}{beside}{resume}"
                    if output.is_file() else "; no checkpoint was written yet, and nothing is left on disk")
            if self._closed:  # no status line left to read: the notification says it
                show_info(f"Training {'stopped: its Train panel was closed' if cancelled else 'failed'}" + kept)
                return
            self.status.value = ("Cancelled" if cancelled else "Failed") + kept
            if cancelled:
                self.progress.value = 0  # as Denoise's: a bar left at the share done reads as a run still there
            return
        if self._closed:
            show_info(f"Training done: {output} is in the Denoise widget's model list{beside}")
            return
        self.progress.value = 1000
        decided = getattr(self, "_adapt_message", "")
        self._adapt_message = ""
        self.status.value = f"Done: {output} is in the Denoise widget's model list{beside}" + (
            f"; {decided}" if decided else "")
