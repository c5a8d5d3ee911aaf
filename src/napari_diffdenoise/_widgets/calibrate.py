"""The Calibrate dock widget: conformal intervals for a model, from a noisy layer and its truth.

The run goes through :func:`napari_diffdenoise.core.calibration.calibration.iter_calibrate` in a worker; when
it ends, the calibrated model is saved to a new file (never over an existing one), joins every
model list, and the widget shows the held-out coverage per level and the reliability diagram
(RMSE of the error against the RMS predicted std, in bins of std, as CAREamics draws it).

Its run settings are the run's declarations (core.run.run_spec, the samplers' own parameters), offered
only as far as a calibration here can run them, and the run goes through restore.calibration_settings
as the CLI's does: a model whose std comes from its std head is calibrated without samples, and the
form hides the sampler settings, which such a calibration does not depend on.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton, SpinBox, Table
from qtpy.QtWidgets import QLineEdit

from ..core.calibration.calibration_run import MIN_CALIBRATION_SAMPLES
from ..core.imaging.metrics import reliability
from ..core.io.checkpoint import save_checkpoint
from ..core.run.restore import DEFAULT_SAMPLER_SETTINGS, calibration_settings, make_settings
from ..core.run.run_record import recorded_value
from ..core.run.run_spec import ETA_SETTING, MEAN, N_SAMPLES, STD
from ..core.sampling.sampler_registry import SAMPLERS, list_samplers
from ._worker import WorkerControls
from .torch_teams import load_here, torch_worker
from .compare import fit_table, formatted, notify_warning
from .denoise import _Failure, _image_choices, layer_data, notify_error
from .help import help_link
from .layer_axes import layer_axes
from .layers import NO_SECOND, follow_layers, second_acquisition_choices
from .model_registry import REGISTRY, USER_MODELS_DIR
from .run_controls import control_for, follow_param, follow_shared_param, param_widget
from .sections import Section, extend_form

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
NO_TRUTH = "none: from the noisy layer's own residuals"
RANKING = ("How well the std ranks the errors: the Spearman rank correlation ρ between the std map and the "
           "error |mean − truth|, pixel by pixel (1: the most uncertain pixels are the most wrong; 0: no relation)")
# the interval's unit u, by where the std comes from (run_spec.STD_ESTIMATORS once "auto" is resolved)
# the unit's floor (core.run.conformal.interval_unit), said where λ is read: on a dark background it sets the width,
# and λ then is no multiple of the [std] layer (u was a median 11× the head's std on a 5-photon nuclei image)
UNIT_FLOOR_SAID = ("with a floor of 0.5 % of the image's intensity range, which sets u where the std is smaller, "
                   "as on a dark background")
UNIT = {"samples": f"the samples' spread (their std, {UNIT_FLOOR_SAID})",
        "head": f"the std head's std (its estimate of the mean's error, in one network pass, {UNIT_FLOOR_SAID})"}
RANKER = {"samples": "the spread", "head": "the std head"}
OWN_CONTROLS = ("steps", "eta")  # sampler parameters most samplers share: one control each, whichever sampler
HEAD_ROUTE = ("The std head gives the intervals' width in one pass: calibrating it draws no samples, and the "
              "calibration holds whatever sampler, steps and samples Denoise runs with")


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation (1,234 · 12.3 · 0.0123)."""
    if not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    return f"{value:,.{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f}"


def result_columns(with_truth: bool, std: str = "samples", channels: int = 0) -> dict[str, str]:
    """The result table's columns and what each means (their headers' tooltips), for a calibration
    whose interval unit came from ``std`` ("samples" or "head"), made on each of ``channels`` on its own
    (a row per channel and level: the channels' mean hid a channel that fell short)."""
    each = {"channel": f"The channel the row is of: each of the {channels} was calibrated on its own, and a run "
                       "takes each channel's own λ"} if channels else {}
    return {
        **each,
        "nominal": "The coverage asked for: the fraction of pixels whose truth should lie inside the interval",
        ("held-out" if with_truth else "split-half check"): (
            "The fraction of held-out pixels (never used to calibrate) whose truth lies inside the interval"
            if with_truth else "The coverage the intervals from one half of the image reach under the error "
            "measured on the other half (modelled, not measured against a truth)"),
        "width factor": f"λ: the interval is mean ± λ·u, u {UNIT[std]}; from split conformal prediction with a "
                        "truth (Angelopoulos et al. 2022), from a model of the residuals without one "
                        "(docs/method.md). Above 1: u alone was too narrow",
        "mean width\n(intensity)": "The interval's mean width (upper − lower), in the image's intensity units, on held-out pixels",
    }


def result_rows(run) -> list[tuple[str, object]]:
    """(what a row's channel cell says, or "" with none; the Calibration it reads) per calibration a run made:
    each channel's own where it calibrated them each on its own (core.calibration.self_calibration.per_channel)."""
    if run.channels:
        return [(str(k), channel.calibration) for k, channel in enumerate(run.channels)]
    return [("", run.calibration)]


SHORT_BY = 0.05  # a held-out coverage this far under its nominal level is said in the status line


def short_of_nominal(rows: list[tuple[str, object]]) -> str:
    """What the status line adds where the held-out check falls short of the levels asked for most (0.8–0.95):
    a calibration made on a small image (a 96² crop has nine 32² blocks) was saved with 0.78 at 0.9 unsaid.
    ``rows``: (channel, its Calibration) as :func:`result_rows` gives them, the channel named where there is one."""
    said = []
    for channel, calibration in rows:
        short = [f"{h:.2f} at {n:.2f}" for n, h in zip(calibration.coverages, calibration.held_out_coverage)
                 if 0.8 <= n <= 0.95 and math.isfinite(h) and h < n - SHORT_BY]
        if short:
            said.append((f"channel {channel}: " if channel else "") + ", ".join(short))
    if not said:
        return ""
    return (f". Held out, the intervals fell short: {'; '.join(said)} (few pixels to calibrate on give an uncertain "
            "λ; a larger image or more planes steady it)")


NUMBERED = re.compile(r"(.+)-([2-9]|[1-9][0-9]{1,2})")  # a name free_path numbered: "b-2" … "b-999"


def free_path(path: Path) -> Path:
    """``path``, or ``name-2``, ``name-3`` … beside it: a new file never replaces an old one (for a
    checkpoint, neither its -best nor its .state companion). A name it numbered goes on counting: the Output box
    keeps the name a run took, and the next runs were "b-2-2", "b-2-2-2"."""
    from ..core.training.run_files import best_path, state_path

    def taken(p: Path) -> bool:
        return p.exists() or best_path(p).exists() or state_path(p).exists()

    numbered = NUMBERED.fullmatch(path.stem)
    stem, n = (numbered.group(1), int(numbered.group(2))) if numbered else (path.stem, 1)
    candidate = path
    while taken(candidate):
        n += 1
        candidate = path.with_name(f"{stem}-{n}{path.suffix}")
    return candidate


def calibratable_samplers() -> list[str]:
    """The paired samplers this form can run: a step count (its Steps box) and no PSF (it has no PSF
    control; a PSF-guided model is calibrated with the library's calibrate(..., psf=...))."""
    return [name for name in list_samplers("paired")
            if "steps" in {p.name for p in SAMPLERS[name].params} and not SAMPLERS[name].needs_psf]


def _calibrate_job(model, noisy, truth, settings, source, axes=None, second=None):
    """``axes``: the noisy layer's: each channel is calibrated on its own, and with no truth as the Denoise
    widget's *Calibrate on this image* does (a T axis's frames too, or ``second``, another acquisition of
    the noisy layer's field)."""
    from ..core.calibration.calibration import iter_calibrate

    try:
        extra = {"source": source} if source is not None else {}
        return (yield from iter_calibrate(model, noisy, truth, LEVELS, axes=axes, second=second, **extra, **settings))
    except (ValueError, TypeError, MemoryError, RuntimeError) as err:
        return _Failure(str(err))


class CalibrateWidget(WorkerControls, Container):
    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self.model = ComboBox(label="Model", choices=lambda _widget=None: REGISTRY.choices(), tooltip="The model whose intervals to calibrate")
        self.noisy = ComboBox(label="Noisy layer", choices=self._images, tooltip="A low-light image of a field…")
        self.truth = ComboBox(label="Truth layer", choices=self._truths,
                              tooltip="…and its truth: a long average or a high-light image of the same field "
                                      "(fitted to the result by a scale and an offset first). Without one, the model's "
                                      "real error on the noisy layer is read off residuals against a recorrupted "
                                      "copy of it (a model of the residuals, not conformal: see the documentation), "
                                      "each channel on its own and a time series against its frames too, as "
                                      "Denoise's 'Calibrate on this image' does")
        self.second = ComboBox(
            label="Second acquisition", choices=self._second_choices, visible=False,
            tooltip="Without a truth: another acquisition of the same field (a layer of the noisy layer's shape, its "
                    "noise independent of it), if you have one: the model's error is also measured against it and "
                    "the wider interval kept at each level, as Denoise's 'Second acquisition' does")
        self._models = {}  # the chosen model, loaded once: the form's bounds and choices follow it
        defaults = DEFAULT_SAMPLER_SETTINGS  # what a run takes unless told otherwise
        # the mean is in a calibration's key (core.run.run_record): intervals hold for the "Mean from" they were
        # calibrated with, so the form offers Denoise's, as far as the chosen model can run it
        self.mean = control_for(MEAN, choices=self._mean_choices)
        # where the std comes from decides the rest: the std head's calibration needs no sampler settings
        self.std = control_for(STD, choices=self._std_choices)
        self.head_route = Label(value=HEAD_ROUTE, visible=False)
        self.head_route.native.setWordWrap(True)
        self.sampler = ComboBox(label="Sampler", choices=calibratable_samplers(), value=defaults["sampler"],
                                tooltip="How the samples whose spread is calibrated are drawn: the samplers with a "
                                        "step count and no PSF (a PSF-guided model is calibrated with the library's "
                                        "calibrate(..., psf=...))\n\n" + "\n".join(
                                            f"{name}: {SAMPLERS[name].description}" for name in calibratable_samplers()))
        # label, help and bounds are the chosen sampler's declaration for the chosen model (follow_param)
        self.steps = SpinBox(name="steps", value=defaults["sampler_params"]["steps"], min=1, max=10**6)
        self.eta = FloatSpinBox(name="eta", value=defaults["sampler_params"]["eta"], step=ETA_SETTING.step)
        self._followed: dict[str, object] = {}  # the declaration each of steps and η follows now
        # the chosen sampler's other parameters (heun's churn and ρ), rebuilt from its declaration
        self.sampler_params = Container(labels=True)
        self.n_samples = control_for(
            N_SAMPLES, value=defaults["n_samples"], min=MIN_CALIBRATION_SAMPLES,
            tooltip=f"How many restorations are drawn (K): the intervals' width comes from their spread; at least "
                    f"{MIN_CALIBRATION_SAMPLES} (one sample has no spread). More gives steadier maps and is slower")
        self.settings = Section("Run settings (use the same in Denoise)",
                                [self.mean, self.std, self.head_route, self.sampler, self.steps, self.eta,
                                 self.sampler_params, self.n_samples],
                                tooltip="The intervals hold for the settings calibrated here: where the mean and "
                                        "the std come from and, for the samples' spread, the sampler, steps and "
                                        "samples")
        self.output = FileEdit(label="Save as", mode="w", filter="*.safetensors",
                               tooltip="The calibrated copy of the model; a new name is chosen if this file exists. "
                                       f"Empty: <model>-calibrated.safetensors in {USER_MODELS_DIR}")
        # where an empty box saves, shown whole in the box itself
        self.output.native.findChild(QLineEdit).setPlaceholderText(str(USER_MODELS_DIR / "<model>-calibrated.safetensors"))
        self.run_button = PushButton(text="Calibrate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.start_button = self.run_button
        self.progress = ProgressBar(label="Progress", min=0, max=1000, value=0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # the saved file's whole path, never cut at the dock's edge
        self.table = Table()
        self.table.native.verticalHeader().setVisible(False)  # the nominal column says which row is which
        # unfolded when a calibration ends: an empty table only takes room before that
        self.results = Section("Results: coverage per level", [self.table], labels=False)
        self.help = help_link("calibrate", "Calibrate")
        extend_form(self, [self.help, self.model, self.noisy, self.truth, self.second, self.settings, self.output,
                     self.run_button, self.cancel_button, self.progress, self.status, self.results])
        # the sampler's own parameters read as rows of the section, not as a block behind an empty label
        self.sampler_params.margins = (0, 0, 0, 0)
        self.sampler_params._labeled_widget()._label_widget.hide()
        self.figure = None
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.model.changed.connect(self._on_model)
        self.sampler.changed.connect(self._on_sampler)
        self.mean.changed.connect(self._on_mean)
        self.std.changed.connect(self._show_route)
        REGISTRY.subscribe(self.model)
        follow_layers(napari_viewer, self.noisy, self.truth, self.second)
        self.noisy.changed.connect(self.second.reset_choices)
        # magicgui does not emit `changed` when the value becomes None: the row stayed hidden with no truth picked
        self.truth.native.currentIndexChanged.connect(
            lambda _index: setattr(self.second, "visible", self.truth.value is None))
        self.reset_choices()
        # no truth unless one is picked: the first image layer, the noisy one's default too, was refused as its own truth
        self.truth.value = None
        self.second.visible = True
        self._on_model()  # the first model's bounds (steps ≤ its schedule) and std route from the start

    def _chosen_model(self):
        """The chosen model (None before one is chosen), loaded again only when its file changes."""
        name = self.model.value
        if name is None:
            return None
        path = Path(name)
        key = (name, path.stat().st_mtime_ns if path.is_file() else None)
        if key not in self._models:
            self._models = {key: load_here(name)}
        return self._models[key]

    def _quiet_model(self):
        """The chosen model, or None where it cannot be loaded (_on_model says why)."""
        try:
            return self._chosen_model()
        except (ValueError, OSError):
            return None

    def _mean_choices(self, _widget=None):
        """Where the mean can come from for the chosen model: a head only for a model that has one."""
        model = self._quiet_model() if hasattr(self, "_models") else None
        return [(label, value) for label, value in MEAN.labelled_options()
                if model is None or self._runs(model, mean=value)]

    def _std_choices(self, _widget=None):
        """Where the std can come from for the chosen model and mean: the head only for a model that
        has one, with the mean head's mean."""
        model = self._quiet_model() if hasattr(self, "_models") else None
        return [(label, value) for label, value in STD.labelled_options()
                if model is None or self._std_route(model, value) is not None]

    @staticmethod
    def _runs(model, **settings) -> bool:
        try:
            make_settings(model, **settings)
        except ValueError:
            return False
        return True

    def _std_route(self, model, std: str) -> str | None:
        """Where a run of ``model`` with this "Std from" and the chosen "Mean from" takes its std
        ("head" or "samples"; "auto" resolved as restore does), None where the model cannot run it."""
        mean = self.mean.value if hasattr(self, "mean") else MEAN.default
        try:
            return make_settings(model, mean=mean, std=std).std_estimator
        except ValueError:
            return None

    def _on_mean(self, _value=None):
        self.std.reset_choices()  # the std head goes with the mean head's mean only
        self._show_route()

    def _on_model(self, _key=None):
        try:
            model = self._chosen_model()
        except (ValueError, OSError) as err:
            notify_error(f"Could not load the model: {err}")
            return
        if model is None:
            return
        self.mean.reset_choices()  # the heads come and go with the model
        self.std.reset_choices()
        self._follow_sampler(keep=True)

    def _on_sampler(self, _name=None):
        self._follow_sampler(keep=False)

    def _follow_sampler(self, keep: bool):
        """The chosen sampler's parameters as it declares them for the chosen model's schedule. Steps
        and η keep the value set (within the new bounds) while the sampler declares the same parameter,
        as in Denoise (follow_shared_param); the sampler's other parameters keep theirs when the model
        changes and start at the sampler's defaults when the sampler does."""
        model = self._quiet_model()
        if model is not None and self.sampler.value in SAMPLERS:
            info, schedule = SAMPLERS[self.sampler.value], model.schedule
            for control in (self.steps, self.eta):
                if control.name in {p.name for p in info.params}:
                    follow_shared_param(control, info.spec(control.name), schedule, self._followed)
            others = [spec for spec in info.params if spec.name not in OWN_CONTROLS]
            if [control.name for control in self.sampler_params] != [spec.name for spec in others]:
                self.sampler_params.clear()
                self.sampler_params.extend([param_widget(spec, schedule) for spec in others])
            else:
                for control in self.sampler_params:
                    follow_param(control, info.spec(control.name), schedule, control.value if keep else None)
        self._show_route()

    def _show_route(self, _value=None):
        """The sampler settings only where the calibration draws samples: the std head's needs none."""
        model = self._quiet_model()
        head = model is not None and model.kind == "paired" and self._std_route(model, self.std.value) == "head"
        info = SAMPLERS.get(self.sampler.value)
        names = {p.name for p in info.params} if info is not None else set()
        self.head_route.visible = head
        self.sampler.visible = self.n_samples.visible = not head
        self.steps.visible = not head and "steps" in names
        self.eta.visible = not head and "eta" in names
        self.sampler_params.visible = not head and len(self.sampler_params) > 0

    def run_settings(self) -> dict:
        """The run these intervals are for, as Denoise and the CLI give it (restore.make_settings's
        keywords); restore.calibration_settings turns it into what the calibration restores with."""
        names = {p.name for p in SAMPLERS[self.sampler.value].params}
        params = {c.name: c.value for c in (self.steps, self.eta, *self.sampler_params) if c.name in names}
        return dict(sampler=self.sampler.value, n_samples=self.n_samples.value, mean=self.mean.value,
                    std=self.std.value, sampler_params=params)

    def _images(self, _widget=None):
        return _image_choices(self._viewer)

    def _second_choices(self, _widget=None):
        return second_acquisition_choices(self._viewer, self.noisy.value)

    def _truths(self, _widget=None):
        return [*_image_choices(self._viewer), (NO_TRUTH, None)]

    def _validate(self):
        noisy, truth = self.noisy.value, self.truth.value
        if noisy is None:
            raise ValueError("Select a noisy layer")
        if noisy is truth:
            raise ValueError("The noisy layer and the truth layer must be different layers")
        # full resolution: level 0 of a multiscale layer, as Denoise reads it (np.asarray took the last level); without
        # a truth a lazy layer stays lazy: the calibration reads its few planes (all of a stack's were read)
        noisy_data = layer_data(noisy) if truth is None else np.asarray(layer_data(noisy))
        clean = None if truth is None else np.asarray(layer_data(truth))
        if clean is not None and noisy_data.shape != clean.shape:
            raise ValueError(f"'{noisy.name}' {noisy_data.shape} and '{truth.name}' {clean.shape} differ in shape")
        if clean is not None and not np.all(np.isfinite(clean)):
            raise ValueError(f"the truth layer '{truth.name}' holds NaN or infinite values")
        if clean is not None and clean.min() == clean.max():
            raise ValueError(f"the truth layer '{truth.name}' is constant (every pixel {clean.flat[0]:g}): there is "
                             "no error to calibrate against")
        if self.model.value is None:
            raise ValueError("Choose a model")
        model = self._chosen_model()
        if model.kind != "paired":
            raise ValueError(f"'{model.name}' is an unpaired model; calibrate a paired one")
        out = Path(str(self.output.value)) if str(self.output.value) not in ("", ".") else None
        if out is None or out.is_dir():
            folder = out if out is not None else USER_MODELS_DIR  # the Train widget's folder, not wherever napari started
            out = folder / f"{model.name}-calibrated.safetensors"
        second = self.second.value if truth is None and self.second.value != NO_SECOND else None
        second_data = None if second is None else layer_data(second)
        if second is not None and tuple(second_data.shape) != tuple(noisy_data.shape):  # a layer changed since
            raise ValueError(f"Second acquisition '{second.name}' {tuple(second_data.shape)} and '{noisy.name}' "
                             f"{tuple(noisy_data.shape)} differ in shape")
        if truth is not None and (not np.allclose(noisy.scale, truth.scale)
                                  or not np.allclose(noisy.translate, truth.translate)):
            notify_warning(f"'{noisy.name}' and '{truth.name}' have different scales or positions in the viewer; "
                           "they are calibrated against each other pixel by pixel")
        return model, noisy_data, clean, free_path(out), second_data

    def _clear_results(self) -> None:
        """No earlier run's table, diagram or "Saved …" line under this run's status (they read as its result)."""
        self.table.value = {"data": [], "columns": []}
        self.status.value = ""
        if self.figure is not None:
            self.figure.figure.clear()
            self.figure.draw_idle()

    def run(self):
        if self._worker is not None:
            return  # one run at a time
        self._clear_results()
        try:
            model, noisy, truth, out, second = self._validate()
            settings = calibration_settings(model, self.run_settings())  # the CLI's and the library's route
            axes = layer_axes(self.noisy.value)
        except (ValueError, OSError) as err:
            notify_error(str(err))
            return
        source = (f"user pairs: layers '{self.noisy.value.name}' / '{self.truth.value.name}'" if truth is not None
                  else None)
        self._worker = torch_worker(_calibrate_job, model, noisy, truth, settings, source, axes, second,
                                     _start_thread=False)
        self._worker.yielded.connect(self._on_progress)
        self._worker.returned.connect(lambda run: self._on_returned(run, out))
        self._worker.aborted.connect(lambda: self._cancelled("Cancelled; nothing saved"))
        self._launch(self._worker, f"Calibrating {model.name}")

    def _on_progress(self, info):
        self._report(info.fraction, info.where)

    def _on_returned(self, run, out: Path):
        if isinstance(run, _Failure):
            notify_error(f"Calibration failed: {run}")
            self.status.value = "Failed; nothing saved"
            return
        try:
            if out.parent == USER_MODELS_DIR:  # our own default folder; any other must exist already
                out.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(run.model, out)
        except OSError as err:
            notify_error(f"Could not save the calibrated model to {out}: {err}")
            self.status.value = "Calibrated, but not saved"
            return
        REGISTRY.add(out)
        c = run.calibration
        std = recorded_value(c.settings, "std_estimator")
        columns = result_columns(run.truth is not None, std, len(run.channels))
        rows = [([k] if k else []) + [formatted(n, "{:.2f}"), formatted(h, "{:.2f}"), formatted(f, "{:.2f}"),
                                      significant(w)]
                for k, cal in result_rows(run)
                for n, h, f, w in zip(cal.coverages, cal.held_out_coverage, cal.factors, cal.held_out_width)]
        self.table.value = {"data": rows, "index": [" · ".join(row[:-3]) for row in rows], "columns": list(columns)}
        fit_table(self.table, columns)
        self.results.collapsed = False
        self._show_reliability(run)
        self.progress.value = 1000
        ranking = (f"; {RANKER[std]} ranks the errors at {c.spearman:.2f} (1: perfectly, 0: not at all)"
                   if c.spearman is not None else "")
        self.status.tooltip = RANKING if ranking else ""
        self.status.value = f"Saved {out}{ranking}{short_of_nominal(result_rows(run))}"

    def _show_reliability(self, run):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        if run.truth is None:  # calibrated without a truth: no per-pixel error to draw
            if self.figure is not None:
                self.figure.figure.clear()
                self.figure.draw_idle()
            return

        # a per-channel calibration: a curve per channel, each its own std against its own error
        curves = ([(f"channel {k}", reliability(r.restoration.std, r.restoration.mean - r.truth))
                   for k, r in enumerate(run.channels)] if run.channels else
                  [("this model", reliability(run.restoration.std, run.restoration.mean - run.truth))])
        if self.figure is None:
            self.figure = FigureCanvasQTAgg(Figure(figsize=(3.5, 2.6), tight_layout=True))
            self.figure.setMinimumHeight(220)
            self.results.body.native.layout().addWidget(self.figure)
        from .loss_plot import FOREGROUND, dark_axes

        fig = self.figure.figure
        fig.clear()
        ax = dark_axes(fig)
        top = float(max(max(rmv.max(), rmse.max()) for _, (rmv, rmse) in curves))
        ax.plot([0, top], [0, top], "--", color=FOREGROUND, lw=1, label="calibrated")
        for label, (rmv, rmse) in curves:
            ax.plot(rmv, rmse, "o-", ms=3, label=label)
        # logarithmic: one bright bin set a linear scale, and a std 2–3× off in the other nine read as calibrated
        if all(np.all(rmv > 0) and np.all(rmse > 0) for _, (rmv, rmse) in curves):
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("RMS predicted std (intensity)")
        ax.set_ylabel("RMSE of the mean (intensity)")
        ax.legend(fontsize="small")
        self.figure.draw_idle()
