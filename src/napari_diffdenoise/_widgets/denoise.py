"""The Denoise dock widget: a thin form over :func:`napari_diffdenoise.core.calibration.on_image.iter_denoise`.

The work runs in a napari generator worker one network step at a time, so the viewer stays
responsive and Cancel lands within one step; layers are added only when a run completes.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)

from .. import __version__
from ..core.model.devices import available_devices
from ..core.io.maps import MAPS, layer_kwargs, layer_metadata
from ..core.run.methods import METHODS, find_method, method_settings
from ..core.run.restore import Cancelled, calibration_settings, make_settings
from ..core.run.conformal import NoCalibration, source_headline
from ..core.imaging.hot_pixels import said as hot_pixels_said
from ..core.imaging.pilot_wiener import said as refinement_said
from ..core.run.run_cost import duration
from ..core.run.run_presets import DEFAULT_PRESET, PRESETS, Preset, preset_samplers
from ..core.run.run_spec import (COVERAGE, DEVICE, ENTROPY, HOT_PIXELS, KEEP_SAMPLES, LOW_FREQUENCIES, MEAN, N_SAMPLES,
                                 PRECISION, PSF_SIGMA, SAMPLER, SEED, STD, SYMMETRIES)
from ..core.sampling.sampler_registry import ETA, SAMPLERS, STEPS, samplers_for, samplers_for_model
from ..core.calibration.residuals import MAX_PIXELS
from ._worker import WorkerControls, when_closed
from .timings import OneTiming
from .torch_teams import load_here, torch_worker
from .help import help_link
from .layer_axes import layer_axes, named_axes
from .layers import (NO_SECOND, first_plane, follow_layers, image_choices, is_result, placed_like, result_tags,
                     second_acquisition_choices)
from .model_registry import REGISTRY
from .run_controls import control_for, control_value, follow_shared_param, param_widget
from .sections import Section, extend_form

if TYPE_CHECKING:
    import napari.viewer

LOAD_FROM_FILE = "Load from file…"
GAUSSIAN_PSF = "gaussian"  # the PSF choice that is not an image layer
# the labels name the work, not a time: a time measured on one machine is wrong on the next (the
# status line shows the time left, measured on this machine, from the first tile on); the presets
# themselves are core.run.run_presets'
CUSTOM = "custom"
# for a model with a mean and a std head: mean, std and intervals with no samples (no entropy), what
# the Preview shows, over the whole image (docs/benchmarks/speed.md: its time against one BM3D call on a 512² plane)
CALIBRATE_HERE = "Calibrate on this image"  # the checkbox, as the widget's messages name it
ONE_PASS = "heads only: mean and std, no samples"  # each head one pass per symmetry averaged (core.model.symmetries)
PREVIEW_STEPS = 5  # a 512² plane in under 5 s on a 2-core CPU (docs/benchmarks/speed.md)
MAIN_FORM_PARAMS = ("steps", "eta")  # sampler parameters with their own widgets (the presets set them)


def _could_be_psf(layer) -> bool:
    shape = [n for n in layer.data.shape if n > 1]
    return (not layer.rgb and len(shape) == 2 and max(shape) <= 255
            and not is_result(layer))


def in_the_forms_words(message: str, layer_name: str | None = None) -> str:
    """A library message in the form's words: a setting named by its keyword ("n_samples must be …") with the
    label of its control ("Samples (n_samples) must be …"), and the image the library calls ``noisy`` or "the
    image" by the layer's name (the CLI's cli.in_the_clis_words names its options so: run_spec.named_as)."""
    from ..core.run.run_spec import RUN_SETTINGS, named_as

    message = named_as(message, {setting.name: setting.label for setting in RUN_SETTINGS if setting.label})
    if layer_name is not None:
        message = re.sub(r"^(?:noisy(?: image 0)?|the image)(:)? ", lambda m: f"'{layer_name}'{m.group(1) or ''} ",
                         message)
    return message


def notify_error(message: str) -> None:
    """A napari error notification: the user sees the message, not a traceback."""
    from napari.utils.notifications import show_error

    show_error(message)


_image_choices = image_choices  # the other widgets import it from here

class _Failure(str):
    """A message for the user, returned instead of raised: a worker that raises shows a traceback."""


class TileReporter:
    """Per-tile progress from inside a network step, through the worker's own ``yielded`` signal (a
    queued, thread-safe route to the widget); at most ten reports a second. A cancel request is
    honoured between tiles, so a 2048² plane stops within a tile, not a whole step."""

    min_interval = 0.1  # seconds between two reports

    def __init__(self):
        self.worker, self._last, self.latest = None, 0.0, None

    def __call__(self, info) -> None:
        import time

        self.latest = info
        worker = self.worker
        if worker is None:
            return
        if worker.abort_requested:
            raise Cancelled("cancelled")
        now = time.monotonic()
        if now - self._last >= self.min_interval:
            self._last = now
            worker.yielded.emit(info)


def _denoise_job(data, model, settings, axes=None, on_tile=None, self_calibrate=False, second=None):
    """The worker's generator. Errors a user can act on (bad values, out of memory) come back as
    a :class:`_Failure` and are shown as a notification; anything else is a bug and propagates.
    ``self_calibrate``: first calibrate the intervals on a few planes of ``data`` itself (and against
    ``second``, another acquisition of its field, where given): core.calibration.on_image."""
    try:
        from ..core.calibration.on_image import iter_denoise

        return (yield from iter_denoise(data, model, settings, axes, on_tile, calibrate_on_image=bool(self_calibrate), second=second))
    except Cancelled:
        yield on_tile.latest  # the worker sees its abort request at this yield and ends with `aborted`
    except (ValueError, TypeError, MemoryError, RuntimeError) as err:
        return _Failure(str(err))


def _is_timed(model, settings, calibrate: bool = False) -> bool:
    from ..core.calibration.recalibration_cost import calibration_is_timed
    from ..core.run.run_cost import is_timed

    try:
        return is_timed(model, **{**settings, "coverage": None}) and (
            not calibrate or calibration_is_timed(model, **settings))
    except (ValueError, TypeError, RuntimeError):
        return False


def _run_estimate(model, shape, settings, calibrate, sample_plane=None, axes=None, with_second=False, stop=None):
    """(the run's RunCost, the self-calibration's or None), or None for settings the run refuses and for a
    timing stopped: ``stop()`` is polled between the network calls and restorations it times (the worker's
    abort_requested: the widget closing, napari quitting);
    ``sample_plane``: a plane of the image, whose bright structure's second pass is then counted (in the
    run and in the calibration's crops);
    ``axes``: the image's (a T axis adds the frame pairs' calibration, as ``with_second`` a second acquisition's)."""
    from ..core.calibration.recalibration_cost import recalibration_cost
    from ..core.run.restore import Cancelled
    from ..core.run.run_cost import restoration_cost, stoppable

    try:
        with stoppable(stop or (lambda: False)):
            # a calibration made on the image comes first: the run needs no stored one (as _validate checks it)
            run = {**settings, "coverage": None} if calibrate else settings
            return (restoration_cost(model, shape, sample_plane, **run),
                    recalibration_cost(model, shape, axes=axes, sample_plane=sample_plane, with_second=with_second,
                                       **settings) if calibrate else None)
    except (ValueError, TypeError, RuntimeError, Cancelled):
        return None


SERIES_LOOK_SIDE = 512  # px: the centre of each plane that _looks_like_a_series reads (it runs as a layer is picked)


def _looks_like_a_series(layer) -> bool:
    """Whether the layer's first planes along its leading axis are views of one field (smoothed, they
    correlate as adapt takes a series' frames to: core.training.adapt_criteria.SERIES_MIN_CORRELATION) —
    a time series read as Z; a Z stack with fine steps passes too, hence 'for a time series' where it is said.
    Cheap enough for picking a layer: at most SERIES_LOOK_SIDE² px of each plane's centre at full resolution (a
    smaller level, smoothed too, made a Z stack's planes correlating 0.40 read 0.87), and a lazy layer's only where
    it is a pyramid (whose level 0 is chunked for reading parts of it; else False)."""
    from scipy import ndimage

    from ..core.io.image_source import is_lazy
    from ..core.training.adapt_criteria import SERIES_MIN_CORRELATION, SMOOTHING

    data = layer.data[0] if layer.multiscale else layer.data
    if data.ndim < 3 or data.shape[0] < 2 or (is_lazy(data) and not layer.multiscale):
        return False
    h, w = data.shape[-2:]
    y0, x0 = max(0, (h - SERIES_LOOK_SIDE) // 2), max(0, (w - SERIES_LOOK_SIDE) // 2)
    centre = (slice(y0, y0 + SERIES_LOOK_SIDE), slice(x0, x0 + SERIES_LOOK_SIDE))
    first = [ndimage.gaussian_filter(np.asarray(data[(k,) + (0,) * (data.ndim - 3) + centre], np.float64), SMOOTHING)
             for k in range(min(3, data.shape[0]))]
    return all(np.corrcoef(a.ravel(), b.ravel())[0, 1] >= SERIES_MIN_CORRELATION for a, b in itertools.pairwise(first))


def layer_data(layer):
    """The full-resolution data: level 0 of a multiscale layer; a lazy array stays lazy (read one
    plane at a time), an in-memory one is copied so that edits during a run do not leak in."""
    from ..core.io.image_source import is_lazy

    data = layer.data[0] if layer.multiscale else layer.data
    return data if is_lazy(data) else np.array(data, copy=True)


class DenoiseWidget(WorkerControls, Container):
    _calibration_box_for = None  # (model, takes a PSF) the Calibrate-on-this-image box was last set for

    def __init__(self, napari_viewer):
        # napari injects the viewer by this parameter name
        super().__init__(labels=True)
        self._viewer = viewer = napari_viewer
        self._models: dict[str, object] = {}  # name-or-path → loaded DiffusionModel (cache)

        self.image = ComboBox(label="Image", choices=self._image_choices,
                              tooltip="An image layer of 2 to 5 dims (T, C, Z, Y, X; a lazy or multiscale layer is read "
                                      "one plane at a time at full resolution). Each plane is restored on its own")
        self.axes = LineEdit(label="Axes", value="",
                             tooltip="Which axis is which, as letters from T, C, Z, Y, X ending in YX: e.g. CZYX for a "
                                     "stack of two channels. Empty: napari's axis labels when they name them, else "
                                     "those the layer's file names (a TIFF's ImageJ or OME axes), else what the "
                                     "number of dimensions implies (shown greyed)")
        self.model = ComboBox(label="Model", choices=self._model_choices, tooltip="A bundled model or a checkpoint")
        self.model_file = FileEdit(label=LOAD_FROM_FILE, filter="*.safetensors *.zip",
                                   tooltip="A napari-diffdenoise checkpoint, or a bioimage.io package it exported")
        # a callable, not a list: napari resets every dock widget's choices when layers change, and a
        # fixed list would put the paired samplers back under an unpaired model
        self.sampler = ComboBox(label=SAMPLER.label, choices=self._sampler_choices, value="ddim",
                                tooltip=SAMPLER.help + "\n\n" + "\n".join(f"{s.name}: {s.description}"
                                                                           for s in SAMPLERS.values()))
        self.preset = ComboBox(label="Speed / quality", choices=self._preset_choices,
                               tooltip="Sets the sampler, steps and samples for you: heads only (models with a std "
                                       "head: mean, std and intervals, no entropy); fast and default (with a sample "
                                       "head, one network evaluation per sample); thorough, the full DDIM sampler, "
                                       "for the steadiest entropy maps. Heads only, default and thorough give the same "
                                       "mean; "
                                       "fast, one pass of the heads, one 0.01 dB lower on real frames (0.06 dB at low "
                                       "light; docs/widgets/denoise.md). The cost grows "
                                       "with steps × samples: 'Time here' below says what it costs on this machine "
                                       "before the run, the status line the time left during it")
        self.estimate = Label(label="Time here", value="—",
                              tooltip="How long the run takes on this machine: the run's network calls, from the "
                                      "settings and the image's size, times one call's cost timed here")
        # steps and η follow the chosen sampler's declaration for the chosen model (follow_param); hidden
        # until a model's sampler declares them, so no bound of T is offered before a model gives it
        self.steps, self.eta = param_widget(STEPS, None), param_widget(ETA, None)
        self.steps.visible = self.eta.visible = False
        self._followed: dict[str, object] = {}  # the declaration each of steps and η follows now
        self.n_samples = control_for(N_SAMPLES)
        self.mean_estimator = control_for(MEAN)
        self.std_estimator = control_for(STD)
        self.coverage = control_for(COVERAGE)
        self.self_calibrate = CheckBox(
            # the cost in the tooltip: as the box's text it set the dock's least width to 1136 px
            text=CALIBRATE_HERE,
            value=True,
            visible=self.coverage.value > 0,
            # "+1 run" read as the image's own run: a small image is recorrupted up to the budget, 4–8× its run
            tooltip=f"Costs: it restores up to {math.isqrt(MAX_PIXELS)}² px a channel first (a small image several "
                    "times over), twice that with a T axis or a second acquisition; Time here counts it. "
                    "Before the run, measure the model's real error on this image (residuals against a recorrupted "
                    "copy; with a T axis also against the neighbouring frames, one more run, keeping the wider "
                    "interval) and set the interval width from it, each channel of a C axis on its own; the time "
                    "estimate includes it. "
                    "Off: the model's stored calibration for these settings — off from the start for a model that holds "
                    "a calibration you made (against your truth or on your images: the Calibrate widget, calibrate, "
                    "adapt), which it keeps; a bundled model's were made on other data. The library's and the CLI's "
                    "rule too")
        self.second_view = ComboBox(
            label="Second acquisition", choices=self._second_choices, visible=self.coverage.value > 0,
            tooltip="Another acquisition of the same field (a layer of the image's shape, its noise independent of "
                    "the image's), if you have one: the calibration also measures the model's error against it and "
                    "keeps the wider interval at each level, as it does with a T axis's neighbouring frames. Costs "
                    "one more run of the calibration's crops")
        self.coverage.changed.connect(lambda value: self._show_calibration_rows())
        self.self_calibrate.changed.connect(lambda value: self._show_calibration_rows())
        self.entropy = control_for(ENTROPY)
        self.keep_samples = control_for(KEEP_SAMPLES)
        self.seed = control_for(SEED)
        self.device = control_for(DEVICE, choices=available_devices())
        self.precision = control_for(PRECISION)
        self.low_frequencies = control_for(LOW_FREQUENCIES)
        self.symmetries = control_for(SYMMETRIES)
        self.hot_pixels = control_for(HOT_PIXELS)
        self.psf_source = ComboBox(label="PSF", choices=self._psf_choices, visible=False,
                                   tooltip="A Gaussian PSF of the width below, or an image layer holding a measured or "
                                           "computed PSF (2D, centred, any scale)")
        self.psf_sigma = param_widget(PSF_SIGMA, None)
        self.psf_sigma.visible = False
        # every method's own parameters (core.run.methods), each shown while its method is chosen
        self.method_params = Container(labels=True, visible=False, widgets=[
            param_widget(spec, None) for spec in {p.name: p for m in METHODS.values() for p in m.params}.values()])
        # the controls made from the run's declaration, by the setting each gives
        self.run_controls = {"n_samples": self.n_samples, "mean": self.mean_estimator, "std": self.std_estimator,
                             "coverage": self.coverage, "entropy": self.entropy, "keep_samples": self.keep_samples,
                             "seed": self.seed, "device": self.device, "precision": self.precision,
                             "low_frequencies": self.low_frequencies, "symmetries": self.symmetries,
                             "hot_pixels": self.hot_pixels}
        self.run_button = PushButton(text="Run")
        self.preview_button = PushButton(
            text="Preview", tooltip="A quick look at the plane on view before the full run: the model's one-pass "
                                    "mean (its mean head) and, for a model with a std head, its std; one sample of at "
                                    f"most {PREVIEW_STEPS} steps for a model without a mean head")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.start_button = self.run_button
        self.progress = ProgressBar(label="Progress", min=0, max=1000, value=0)
        self.status = Label(value="")
        # wrapped: one long line (a run's record, a refinement said) widened the dock past the window, and the image
        # was left 180 px
        self.status.native.setWordWrap(True)
        # parameters of the guided (unpaired) samplers, rebuilt from their defaults when the sampler changes
        self.sampler_params = Container(labels=True)
        self.help = help_link("denoise", "Denoise")
        # what a biologist rarely changes folds away (the presets set steps and samples): the form fits a
        # laptop's screen with the other widgets docked under it
        self.sampling = Section("Sampling settings", [self.steps, self.eta, self.sampler_params, self.n_samples,
                                                      self.mean_estimator, self.symmetries, self.low_frequencies,
                                                      self.hot_pixels, self.std_estimator, self.seed, self.device, self.precision],
                                tooltip="Steps, randomness and the sampler's own parameters, the number of samples, "
                                        "how the mean is made, the seed, the device and the number format")
        self.layers_section = Section("Result layers: intervals, entropy, samples",
                                      [self.coverage, self.self_calibrate, self.second_view, self.entropy,
                                       self.keep_samples],
                                      tooltip="Interval layers, which entropy map, and the samples as a layer "
                                              "(mean, std and entropy are always added)")
        extend_form(self, [self.help, self.image, self.axes, self.model, self.model_file, self.preset, self.estimate,
                           self.sampler,
                           self.psf_source, self.psf_sigma, self.method_params, self.sampling, self.layers_section,
                           self.run_button, self.preview_button, self.cancel_button, self.progress, self.status])
        # the sampler's own parameters read as rows of the section, not as a block indented by an empty label
        for rows in (self.sampler_params, self.method_params):
            rows.margins = (0, 0, 0, 0)
            rows._labeled_widget()._label_widget.hide()

        self.model.changed.connect(self._on_model)
        self.image.changed.connect(self._on_image)
        self.model_file.changed.connect(self._on_model_file)
        self.sampler.changed.connect(self._on_sampler)
        self.preset.changed.connect(self._on_preset)
        self.steps.changed.connect(self._name_preset)
        self.n_samples.changed.connect(self._name_preset)
        self.symmetries.changed.connect(self._name_preset)
        self.preset.value = next(label for label, p in self._presets().items() if p.name == DEFAULT_PRESET)
        self.psf_source.changed.connect(self._show_psf_widgets)
        self._estimate_for = None  # the (model, layer, shape, settings) whose time 'Time here' shows or is timing
        # (key, the calibration's share of its time) as 'Time here' said it: one progress bar across both
        self._calibrating_share = (None, 0.0)
        self._calibration_weight = 0.0  # that share for the run under way (0: it calibrates nothing first)
        self._estimate_counts_bright = False  # whether that time counts the bright pass (a plane was read for it)
        self._timings = OneTiming(self._may_time)
        # one timing already going when a run starts measured a shared CPU: its figures are dropped and taken
        # again once both are over
        self._timing_beside_run = False
        when_closed(self.native, self._on_closed)
        for control in self._run_inputs():
            control.changed.connect(self._refresh_estimate)
            control.changed.connect(self._forget_last_run)
        self.run_button.clicked.connect(self.run)
        self.preview_button.clicked.connect(self.preview)
        self.cancel_button.clicked.connect(self.cancel)
        REGISTRY.subscribe(self.model)
        follow_layers(viewer, self.image, self.psf_source, self.second_view)
        self.image.changed.connect(self.second_view.reset_choices)
        self.reset_choices()
        self._on_model(self.model.value)  # the first model's bounds (steps ≤ its schedule) from the start
        self._on_image(self.image.value)
        self._refresh_estimate()

    def _on_image(self, layer):
        """The axes a run would take, greyed in the Axes field; a 2D layer has nothing to choose. Where the layer
        names none and its planes look like frames of one field, the field asks whether it is a time series before
        the run (a T axis changes the calibration: its frames are paired too), not only in the status after it."""
        self.axes.visible = layer is not None and layer.ndim > 2
        try:
            guess = layer_axes(layer) if layer is not None else ""
        except ValueError:  # more than 5 dims: refused with a message at Run
            guess = ""
        if "Z" in guess and "T" not in guess and named_axes(layer) is None and _looks_like_a_series(layer):
            guess += f" (a time series? type {guess.replace('Z', 'T', 1)})"
        self.axes.native.setPlaceholderText(guess)

    def _axes_of(self, layer) -> str:
        typed = self.axes.value.strip()
        if not typed or layer.ndim == 2:
            return layer_axes(layer)
        from ..core.imaging.axes import check_axes

        try:
            return check_axes(typed.upper(), layer.data[0].shape if layer.multiscale else layer.data.shape)
        except ValueError as err:
            raise ValueError(f"Axes: {err}") from None

    # choices ---------------------------------------------------------------------------------
    def _image_choices(self, _widget=None):
        return _image_choices(self._viewer)

    def _second_choices(self, _widget=None):
        return second_acquisition_choices(self._viewer, self.image.value)

    def _show_calibration_rows(self):
        # (a control's own `visible` reads False until the form is shown: not read back here)
        calibrating = self._method() is None and self.coverage.value > 0
        self.self_calibrate.visible = calibrating
        self.second_view.visible = calibrating and self.self_calibrate.value

    def _psf_choices(self, _widget=None):
        """The Gaussian, and the layers that can be a PSF: one 2D plane of at most 255² pixels, not a
        result of this plugin."""
        return [("Gaussian (width below)", GAUSSIAN_PSF)] + [(f"layer: {name}", layer) for name, layer in
                                                        _image_choices(self._viewer) if _could_be_psf(layer)]

    def _prefill_psf(self):
        """A deconvolving model with a PSF-looking layer in the viewer: use that layer, and keep the
        Image box off it."""
        candidates = [layer for _, layer in _image_choices(self._viewer) if _could_be_psf(layer)]
        named = [layer for layer in candidates if "psf" in layer.name.lower()]
        if named:
            self.psf_source.value = named[0]
            if self.image.value is named[0]:
                others = [layer for _, layer in _image_choices(self._viewer) if layer not in candidates]
                if others:
                    self.image.value = others[0]

    def _form_model(self):
        """The chosen model, or None before one is chosen or when it cannot be read."""
        if not self._is_model():
            return None
        try:
            return self._selected_model()
        except (ValueError, OSError):
            return None

    def _presets(self) -> dict[str, Preset]:
        """{label: preset} of core.run.run_presets for the chosen model (its labels say its work); for a
        model they cannot run (an unpaired one, whose samplers take no steps: the box is hidden) and
        before a model is chosen, the labels of a model without heads."""
        model = self._form_model()
        return {p.label(model if model is not None and p.fits(model) else None): p for p in PRESETS}

    def _preset_choices(self, _widget=None) -> list[str]:
        """The presets; one pass only for a model whose heads give mean and std without samples."""
        try:
            heads = self._is_model() and self._selected_model().std_network is not None
        except (ValueError, OSError, AttributeError):
            heads = False
        return [*([ONE_PASS] if heads else []), *self._presets(), CUSTOM]

    def _reset_presets(self) -> None:
        """The presets for the model now chosen, in their order: magicgui keeps the labels that stay where they
        were and adds new ones at the end (after a model whose labels differ, 'thorough' came first). Called
        while a preset is being applied or named, so that emptying the box applies none."""
        kept = self.preset.value
        self.preset.native.clear()
        self.preset.reset_choices()
        if kept in self.preset.choices:
            self.preset.value = kept

    def _on_preset(self, name):
        presets = self._presets()
        if getattr(self, "_applying_preset", False) or (name not in presets and name != ONE_PASS):
            return
        self._applying_preset = True
        try:
            if name == ONE_PASS:
                self.n_samples.value = 0
            else:
                model = self._form_model()
                fits = model is not None and presets[name].fits(model)
                option = presets[name].option(model) if fits else dict(presets[name].options[-1])
                if "sampler" in option and self.sampler.value != option["sampler"]:
                    self.sampler.value = option["sampler"]
                elif "sampler" not in option and not self._sampler_declares("steps"):
                    self.sampler.value = presets[name].settings(model)["sampler"] if fits else "ddim"
                if "steps" in option:
                    self.steps.value = min(option["steps"], self.steps.max)
                self.n_samples.value = option["n_samples"]
                self.symmetries.value = option.get("symmetries")  # None: automatic
            self.eta.value = 1.0
        finally:
            self._applying_preset = False

    def _name_preset(self, _value=None):
        """The box names the preset the sampler, steps and samples are, whoever set them, else 'custom'."""
        if getattr(self, "_applying_preset", False):
            return
        self._applying_preset = True  # naming a preset must not apply it
        try:
            label = self._preset_of()
            if label not in self.preset.choices:  # named for a model whose labels the box does not show yet
                self._reset_presets()
            self.preset.value = label
        finally:
            self._applying_preset = False

    def _preset_of(self) -> str:
        if self.n_samples.value == 0 and ONE_PASS in self.preset.choices:
            return ONE_PASS
        model = self._form_model()
        steps = self.steps.value if self._sampler_declares("steps") else None
        for label, preset in self._presets().items():
            if preset.matches(model, self.sampler.value, steps, self.n_samples.value, self.symmetries.value):
                return label
        return CUSTOM

    def _sampler_declares(self, param: str) -> bool:
        info = SAMPLERS.get(self.sampler.value)
        return info is not None and param in {p.name for p in info.params}

    def _sampler_choices(self, _widget=None):
        """The samplers that can run with the chosen model: its kind and the heads it carries (paired
        ones that need no head before a model is chosen)."""
        plain = [name for name in samplers_for("paired") if SAMPLERS[name].head is None]
        if not self._is_model():
            return plain
        try:
            return samplers_for_model(self._selected_model())
        except (ValueError, OSError):
            return plain

    def _model_choices(self, _widget=None):
        return REGISTRY.choices() + [(method.label, method.name) for method in METHODS.values()]

    def _on_model_file(self, path):
        if not path or not str(path).strip() or str(path) == ".":
            return
        try:
            load_here(path)  # refuse a bad file here, before it enters the model list
        except (ValueError, OSError) as err:
            notify_error(f"Could not load the model: {err}")
            return
        REGISTRY.add(path)
        self.model.value = str(Path(path).resolve())  # the registry lists user models by resolved path

    def _on_model(self, key):
        """Offer only the samplers and step counts that fit the chosen model."""
        if key is None:
            return
        self._show_what_applies()
        if not self._is_model():
            return
        try:
            model = self._selected_model()
        except (ValueError, OSError) as err:
            notify_error(f"Could not load the model: {err}")
            return
        self.sampler.reset_choices()
        self._applying_preset = True  # a preset that went with the std head is not applied on its way out
        try:
            self._reset_presets()  # one pass comes and goes with the model's std head
        finally:
            self._applying_preset = False
        self.sampler.value = model.default_sampler  # one rule with the library's
        self._calibration_box_for = None  # set anew for this model (_default_calibration_box)
        if model.task == "deconvolve":
            self._prefill_psf()
        self._on_sampler(self.sampler.value)  # the same sampler too: its bounds are the new model's

    def _method(self):
        """The chosen method (core.run.methods), or None for a diffusion model."""
        return find_method(getattr(getattr(self, "model", None), "value", None))

    def _is_model(self) -> bool:
        return getattr(getattr(self, "model", None), "value", None) is not None and self._method() is None

    def _show_what_applies(self) -> None:
        """The rows the chosen entry uses, from its declaration: a diffusion model samples (sampler,
        presets, sampling settings, time estimate, Preview, the intervals, entropy and samples layers);
        a method (core.run.methods) shows its own parameters, the PSF when it needs one, and Preview only
        when it declares one. The sections go with their controls."""
        method = self._method()
        sampled = method is None
        for widget in self._sampling_controls():
            widget.visible = sampled
        self.preview_button.visible = sampled or method.previewable
        self._show_calibration_rows()
        own = set() if sampled else {p.name for p in method.params}
        for control in self.method_params:
            control.visible = control.name in own
        self.method_params.visible = bool(own)
        if not sampled:
            self.steps.visible = self.eta.visible = False
            self.sampler_params.clear()
        self._show_psf_widgets()

    def _sampling_controls(self):
        """What only sampling uses (the steps, η and the sampler's own rows follow the sampler)."""
        return (self.preset, self.estimate, self.sampler, self.n_samples, self.mean_estimator, self.std_estimator,
                self.coverage, self.entropy, self.keep_samples, self.seed, self.device, self.precision, self.symmetries,
                self.sampling, self.layers_section)

    def _uses_psf(self) -> bool:
        method = self._method()
        if method is not None:
            return method.needs_psf
        info = SAMPLERS.get(self.sampler.value)
        return info is not None and info.needs_psf

    def _show_psf_widgets(self, _value=None):
        uses_psf = self._uses_psf()
        self.psf_source.visible = uses_psf
        self.psf_sigma.visible = uses_psf and self.psf_source.value == GAUSSIAN_PSF

    def _default_calibration_box(self) -> None:
        """*Calibrate on this image* ticked as the library's and the CLI's rule has it for the model and whether the
        sampler takes a PSF (core.calibration.on_image.calibrates_on_image): off for a model holding a calibration the
        user made, which it keeps, and for a run that deconvolves, whose residuals against the blurred image count
        the blur as error (demo with ddim-dc and a PSF was calibrated on the image here, refused there). Set again
        only when the model or that changes: a tick of the user's stays otherwise."""
        from ..core.calibration.on_image import deconvolves, holds_own_calibration

        model = self._form_model()
        if model is None:
            return
        key = (id(model), self._uses_psf())
        if key == self._calibration_box_for:
            return
        self._calibration_box_for = key
        self.self_calibrate.value = not (holds_own_calibration(model) or
                                         deconvolves(model, {"psf": "given" if key[1] else None}))

    def _on_sampler(self, name):
        """The chosen sampler's parameters as it declares them for the chosen model (follow_param). Steps
        and η, which the presets set, keep their value (within the new bounds) while the sampler declares
        the same parameter as the one they followed, so another model or a sampler sharing ddim's keeps
        the preset; a parameter declared anew (heun's steps) starts at its default. The sampler's own
        parameters start at their defaults for the model, which may scale with its step count."""
        self.sampler_params.clear()
        self._show_psf_widgets()
        self._default_calibration_box()
        info = SAMPLERS.get(name) if self._is_model() else None
        names = {p.name for p in info.params} if info is not None else set()
        self.steps.visible, self.eta.visible = "steps" in names, "eta" in names
        # a preset sets steps and samples, or names its sampler: under another it could only say "custom"
        model = self._form_model()
        self.preset.visible = "steps" in names or (model is not None and name in preset_samplers(model))
        self.sampler_params.visible = False
        if info is None:
            return
        schedule = self._selected_model().schedule
        for control, stepping in ((self.steps, STEPS), (self.eta, ETA)):
            # hidden under a sampler without it (one-step), the box still follows DDIM's declaration for
            # this model, so that the steps a preset or a sampler change shows are already in bounds
            spec = info.spec(control.name) if control.name in names else stepping
            follow_shared_param(control, spec, schedule, self._followed)
        self.sampler_params.extend([param_widget(spec, schedule) for spec in info.params
                                    if spec.name not in MAIN_FORM_PARAMS])
        self.sampler_params.visible = len(self.sampler_params) > 0
        self._name_preset()

    def _run_inputs(self):
        """Every control a run reads (a container stands for the rows it holds, added later included)."""
        return (self.image, self.axes, self.model, self.sampler, self.steps, self.eta, self.sampler_params,
                self.n_samples, self.mean_estimator, self.std_estimator, self.seed, self.device, self.precision,
                self.symmetries, self.hot_pixels, self.psf_source,
                self.psf_sigma, self.method_params, self.coverage, self.self_calibrate, self.second_view, self.entropy,
                self.keep_samples)

    def _forget_last_run(self, _value=None):
        """A change to the settings leaves the last run's words ("Done", or why it was not started): they
        would read as being about the settings now on show. A run going on keeps its progress."""
        if self._worker is None and (self.status.value or self.progress.value):
            self.progress.value, self.status.value = 0, ""

    def _refresh_estimate(self, _value=None):
        """Say how long the run takes here, for this layer, model and settings (timed in a worker
        thread: the first time for a model and device it times a few network calls)."""
        layer = self.image.value
        if self._worker is not None:
            # nothing is timed while a run goes on (docs/widgets/denoise.md): its end estimates anew. A timing started
            # here when the Image box fell to another layer (the input removed mid-run) ran beside the run, and a
            # shown viewer then died in its OpenGL draw (2 of 2 tries under Xvfb)
            self._estimate_for = None
            self._timings.drop_waiting()
            self.estimate.value = "after this run"
            return
        try:
            if layer is None or not self._is_model() or layer.rgb:  # an RGB layer: Run refuses it
                raise ValueError("nothing to estimate")
            model, settings = self._selected_model(), self._settings(self._psf())
            axes = self._axes_of(layer)
        except (ValueError, TypeError, OSError, RuntimeError):
            self._estimate_for = None
            self._timings.drop_waiting()
            self.estimate.value = "—"
            return
        shape = tuple((layer.data[0] if layer.multiscale else layer.data).shape)
        plane = first_plane(layer)
        calibrate = self._calibrates_here(settings)
        with_second = calibrate and self._second_layer() is not None
        key = (model.sha256 or model.name, id(layer), shape, repr(sorted(settings.items(), key=lambda kv: kv[0])),
               calibrate, axes, with_second)
        if key == self._estimate_for:
            return
        self._estimate_for = key
        self._estimate_counts_bright = plane is not None
        if _is_timed(model, settings, calibrate):  # arithmetic and one plane's bright boxes left: no thread to outlive the widget
            self._timings.drop_waiting()
            self._show_estimate(key, _run_estimate(model, shape, settings, calibrate, plane, axes, with_second))
            return
        self.estimate.value = "timing it on this machine…"
        self._timings.ask(_run_estimate, model, shape, settings, calibrate, plane, axes, with_second,
                          on_result=lambda costs: self._show_estimate(key, costs))

    def _may_time(self) -> bool:
        if self._worker is not None:
            return False  # a run goes on: its end (_on_finished) starts what waits
        if self._timing_beside_run:
            self._retime()  # asks anew, which starts
            return False
        return True

    def _retime(self):
        """Take every timing again (core.run.run_cost.forget_timings), for what 'Time here' shows now: the
        last ones ran beside a run and read long."""
        from ..core.run.run_cost import forget_timings

        self._timing_beside_run = False
        forget_timings()
        self._estimate_for = None
        self._refresh_estimate()

    def _on_finished(self) -> None:
        super()._on_finished()
        if self._closed:  # nothing to time for a panel that is gone (its controls may be too)
            return
        if self._estimate_for is None:  # settings changed during the run were not estimated then
            self._refresh_estimate()
        self._timings.next()  # what waits (with a timing running, its own end starts it)

    def _on_closed(self) -> None:
        """The panel is closed (_worker.when_closed): its timing and its run stop."""
        self._forget_estimates()
        self._quit_when_closed()

    def _forget_estimates(self) -> None:
        """The widget is gone: a timing still running must not write into it, nor start the next one, and
        stops at its next network call."""
        self._estimate_for = None
        self._timing_beside_run = False
        self._timings.stop()

    def _show_estimate(self, key, costs):
        if key != self._estimate_for:
            return  # an answer for earlier settings
        if costs is None:
            self.estimate.value = "—"
            return
        run, calibration = costs
        total = run.seconds + (calibration.seconds if calibration else 0)
        self._calibrating_share = (key, calibration.seconds / total if calibration and total > 0 else 0.0)
        self.estimate.value = f"about {duration(total)}" + (
            f" ({duration(calibration.seconds)} of it calibrating)" if calibration else "")
        self.estimate.tooltip = ("Timed on this machine. The run: " + run.describe()
                                 + (f". Calibrating on this image first: {calibration.describe()}" if calibration else "")
                                 + ". Planes with very bright structure take a second pass over boxes around it: "
                                   + ("counted from the first plane" if self._estimate_counts_bright
                                      else "not counted for an image read lazily"))

    def _settings(self, psf, preview: bool = False) -> dict:
        """The run's keywords for make_settings/iter_denoise; the main form's steps and η go in only
        for samplers that declare them. A preview is the one-pass mean alone when the model has one
        (one network evaluation), else one sample of at most PREVIEW_STEPS steps (a sampler
        without a step count, such as ddpm, is previewed with ddim); never intervals. A method
        (core.run.methods) takes the PSF and its own parameters alone."""
        method = self._method()
        if method is not None:
            return {"psf": psf, **{p.name: self.method_params[p.name].value for p in method.params}}
        sampler = self.sampler.value
        if preview and sampler in SAMPLERS and self._selected_model().kind == "paired" and \
                "steps" not in {p.name for p in SAMPLERS[sampler].params}:
            sampler = "ddim"
        names = {p.name for p in SAMPLERS[sampler].params} if sampler in SAMPLERS else set()
        params = self._guided_params() if sampler == self.sampler.value else {}
        if "steps" in names:
            params["steps"] = min(self.steps.value, PREVIEW_STEPS) if preview else self.steps.value
        if "eta" in names:
            params["eta"] = self.eta.value
        coverage = None if preview else control_value(COVERAGE, self.coverage.value)
        n_samples = self.n_samples.value
        if preview:
            one_pass = make_settings(self._selected_model(), sampler=sampler, n_samples=1, sampler_params=params,
                                     psf=psf, mean=self.mean_estimator.value).mean_estimator != "samples"
            n_samples = 0 if one_pass else 1
        # a preview is a quick look: one pass of the heads, not one per symmetry
        symmetries = 1 if preview else self.symmetries.value
        return dict(sampler=sampler, n_samples=n_samples, seed=self.seed.value, device=self.device.value,
                    precision=self.precision.value, low_frequencies=self.low_frequencies.value, symmetries=symmetries,
                    hot_pixels=self.hot_pixels.value,
                    sampler_params=params, psf=psf, mean=self.mean_estimator.value, std=self.std_estimator.value,
                    coverage=coverage,
                    keep_samples=self.keep_samples.value and not preview and n_samples > 0, entropy=self.entropy.value)

    def _guided_params(self) -> dict:
        return {w.name: w.value for w in self.sampler_params}

    def _psf(self):
        """The chosen PSF as an array, or None when the run needs none."""
        import numpy as np

        from ..core.imaging.physics import check_psf, gaussian_psf

        if not self._uses_psf():
            return None
        source = self.psf_source.value
        if source is None or source == GAUSSIAN_PSF:
            return gaussian_psf(self.psf_sigma.value)
        psf = np.squeeze(np.asarray(source.data, dtype=np.float64))
        if psf.ndim != 2:
            raise ValueError(f"the PSF layer '{source.name}' has shape {psf.shape}; a 2D PSF image is needed")
        if max(psf.shape) > 255:
            raise ValueError(f"the PSF layer '{source.name}' is {psf.shape[0]}×{psf.shape[1]} pixels; crop it to the "
                             "PSF itself (at most 255×255, centred)")
        try:
            return check_psf(psf)
        except ValueError as err:  # named by the layer the user chose
            raise ValueError(f"the PSF layer '{source.name}': {err}") from err

    def _psf_source_record(self, metadata: dict) -> dict:
        """Where a run's PSF came from (the record has its shape and hash, not what it was made from)."""
        if "psf_shape" not in metadata:
            return {}
        source = self.psf_source.value
        if source in (None, GAUSSIAN_PSF):
            return {"psf_source": "gaussian", "psf_sigma_px": self.psf_sigma.value}
        return {"psf_source": f"layer {source.name}"}

    def _selected_model(self):
        name = self.model.value
        path = Path(name)
        # a checkpoint rewritten by a later training run must be loaded again
        key = (name, path.stat().st_mtime_ns if path.is_file() else None)
        if key not in self._models:
            self._models[key] = load_here(name)
        return self._models[key]

    # running ---------------------------------------------------------------------------------
    def _validate(self):
        layer = self.image.value
        if layer is None:
            raise ValueError("Open or select an image layer first")
        if layer.rgb:
            raise ValueError(f"'{layer.name}' is an RGB image; split it into channels first")
        if not 2 <= layer.ndim <= 5:
            raise ValueError(f"'{layer.name}' has {layer.ndim} dimensions; the plugin takes 2 to 5 (T, C, Z, Y, X)")
        if self.model.value is None:
            raise ValueError("No model available: load a checkpoint from file")
        psf = self._psf()
        self._axes_of(layer)  # a mistyped Axes field is refused before anything runs
        from ..core.run.plane_input import check_plane_size

        check_plane_size((layer.data[0] if layer.multiscale else layer.data).shape, f"'{layer.name}'")
        settings = self._settings(psf)
        method = self._method()
        if method is not None:
            method_settings(method, **settings)
            return layer, method.name, psf
        model = self._selected_model()
        if not self._calibrates_here(settings):
            try:
                make_settings(model, **settings)
            except NoCalibration as err:  # the library's remedy is a call: say the widget's
                from ..core.calibration.on_image import deconvolves

                # residuals against the blurred image count the blur as error: not offered for a deconvolution
                tick = "" if deconvolves(model, settings) else f"tick '{CALIBRATE_HERE}', "
                raise ValueError(f"{err.what}. Here: {tick}choose the settings it is calibrated for (its preset), set "
                                 f"{COVERAGE.label} to 0 for no intervals, or make a calibration for these settings "
                                 "in the Calibrate widget") from None
            return layer, model, psf
        # a calibration made on the image itself comes before the run: the stored ones need not fit, but
        # the settings must be ones a calibration can measure (intervals are on by default: say how to leave them out)
        make_settings(model, **{**settings, "coverage": None})
        from ..core.calibration.calibration_run import calibration_request
        from ..core.calibration.on_image import check_coverage_on_image

        try:
            check_coverage_on_image(settings["coverage"], model.schedule)
            calibration_request(model, settings["coverage"], calibration_settings(model, settings))
        except ValueError as err:
            raise ValueError(f"{err}. Or set {COVERAGE.label} to 0: no intervals") from None
        return layer, model, psf

    def _calibrates_here(self, settings: dict) -> bool:
        return settings.get("coverage") is not None and self.self_calibrate.value

    def _second_layer(self):
        """The second acquisition the calibration is also made against, or None."""
        return None if self.second_view.value == NO_SECOND else self.second_view.value

    def _plane_on_view(self, layer) -> tuple[int, ...]:
        """The index over the layer's leading dims of the plane on view (() for a 2D layer)."""
        if layer.ndim == 2:
            return ()
        shape = layer.data[0].shape if layer.multiscale else layer.data.shape
        point = layer.world_to_data(self._viewer.dims.point[-layer.ndim:])
        return tuple(int(min(max(round(float(v)), 0), n - 1)) for v, n in zip(point[:-2], shape[:-2]))

    def preview(self):
        """One quick sample of the plane on view, into a '[preview]' layer (replaced on each preview)."""
        method = self._method()
        if method is not None and not method.previewable:
            notify_error(f"{method.label} has no preview: it is as quick to run in full")
            return
        self.run(preview=True)

    def run(self, preview: bool = False):
        """Start denoising the selected layer in a worker thread (``preview``: one sample of the
        plane on view, at most PREVIEW_STEPS steps)."""
        if self._worker is not None:
            return  # one run at a time: Run again while a run goes on does nothing
        try:
            layer, model, psf = self._validate()
        except Exception as err:
            err = in_the_forms_words(str(err), getattr(self.image.value, "name", None))
            notify_error(err)
            # the previous run's "Done" or progress would read as this run's
            self.progress.value, self.status.value = 0, f"Not started: {err}"
            return
        settings = self._settings(psf, preview)
        data, axes = layer_data(layer), self._axes_of(layer)
        tiles = TileReporter()
        if preview:
            self._calibration_weight = 0.0
            z = self._plane_on_view(layer)
            data = np.array(data[z], copy=True)
            self._worker = torch_worker(_denoise_job, data, model, settings, "YX", tiles, _start_thread=False)
            self._worker.yielded.connect(self._on_progress)
            self._worker.returned.connect(lambda result: self._on_preview(layer, z, result))
        else:
            calibrate = self._calibrates_here(settings)
            second = self._second_layer() if calibrate else None
            # the bar runs once over the calibration and the run, each its share of the time 'Time here' said
            # (half each where it said none for these settings): it filled for the calibration, then restarted
            key, share = self._calibrating_share
            self._calibration_weight = (share if key is not None and key == self._estimate_for else 0.5) if calibrate \
                else 0.0
            self._worker = torch_worker(_denoise_job, data, model, settings, axes, tiles, self_calibrate=calibrate,
                                         second=None if second is None else layer_data(second), _start_thread=False)
            self._worker.yielded.connect(self._on_progress)
            self._worker.returned.connect(lambda result: self._on_returned(layer, result))
        tiles.worker = self._worker
        self._worker.aborted.connect(lambda: self._cancelled("Cancelled; no layers added"))
        self.preview_button.enabled = False
        self._worker.finished.connect(lambda: setattr(self.preview_button, "enabled", True))
        self._timing_beside_run = self._timing_beside_run or self._timings.worker is not None
        self._launch(self._worker, f"Denoising {layer.name}")

    def _on_preview(self, layer, z, result):
        if isinstance(result, _Failure):
            notify_error(f"Preview failed: {result}")
            self.status.value = "Failed"
            return
        name = f"{layer.name} [preview]"
        plane = list(z) if len(z) > 1 else (z[0] if z else 0)
        meta = {"napari_diffdenoise": {**result.metadata, "source_layer": layer.name, "plane": plane}}
        placed = placed_like(layer)
        translate = placed["translate"] = np.array(layer.translate, dtype=float)
        # one plane, placed where it lies in the stack: it shows there only, not over every plane
        data = result.mean.reshape((1,) * len(z) + result.mean.shape)
        for axis, index in enumerate(z):
            translate[axis] += index * layer.scale[axis]
        for old in [lay for lay in self._viewer.layers if lay.name.startswith(f"{layer.name} [preview")]:
            self._viewer.layers.remove(old)
        where = " ".join(f"{a.lower()}={i}" for a, i in zip(self._axes_of(layer), z))
        label = f"{name[:-1]} {where}]" if z else name
        self._viewer.add_image(data, name=label, **placed, metadata=meta, colormap=layer.colormap.name)
        if result.metadata.get("std_estimator") == "head":  # the std head's map comes with the same pass
            std_label = f"{layer.name} [preview std {where}]" if z else f"{layer.name} [preview std]"
            self._viewer.add_image(result.std.reshape(data.shape), name=std_label, **placed,
                                   metadata={"napari_diffdenoise": {**meta["napari_diffdenoise"], "map": "std"}},
                                   **layer_kwargs("std", result.metadata))
        self.progress.value = 1000
        where = f"plane {where}, " if z else ""
        what = "the one-pass mean" if result.metadata["n_samples"] == 0 else f"1 sample of {result.metadata['sampler']}"
        if result.metadata.get("std_estimator") == "head":
            what += " and std"
        self.status.value = f"Preview of {where}{what} in {result.metadata['seconds']:.1f} s"

    def _on_progress(self, info):
        if info is None:  # the last yield of a cancelled run
            return
        weight = self._calibration_weight
        calibrating = info.unit != "plane"  # the self-calibration's crops come first
        self._report(weight * info.fraction if calibrating else weight + (1 - weight) * info.fraction, info.where)

    def _on_returned(self, layer, result):
        if self._closed:  # a run that ended as its panel closed adds nothing (_quit_when_closed)
            return
        if isinstance(result, _Failure):
            notify_error(f"Denoising failed: {in_the_forms_words(str(result), layer.name)}")
            self.status.value = "Failed; no layers added"
        else:
            self._add_layers(layer, result)

    def _results_stem(self, layer) -> str:
        """The result layers' names before their map's tag: the layer's name, and from a second run on it the
        run's number ('cells (run 2) [mean]'), so that each set reads as one run's. Earlier results are kept
        (their settings differ, and a user compares them); napari would have named each clash 'cells [mean]
        [1]', which reads as one more tag."""
        taken = {other.name for other in self._viewer.layers}
        stem, number = layer.name, 1
        while any(f"{stem} {tag}" in taken for tag in result_tags()):
            number += 1
            stem = f"{layer.name} (run {number})"
        return stem

    def _add_layers(self, layer, result):
        meta = {"napari_diffdenoise": {**result.metadata, **self._psf_source_record(result.metadata),
                                       "source_layer": layer.name, "package_version": __version__}}
        stem = self._results_stem(layer)
        for name, data in result.maps.items():  # each map as core.io.maps declares it
            self._viewer.add_image(
                data, name=f"{stem} [{name}]", **placed_like(layer),
                metadata={"napari_diffdenoise": {**meta["napari_diffdenoise"], **layer_metadata(name, result.metadata)}},
                **layer_kwargs(name, result.metadata, layer.colormap.name))
        if result.samples is not None:
            k = len(result.samples)
            self._viewer.add_image(
                result.samples, name=f"{stem} [samples]", visible=False, colormap=layer.colormap.name,
                **placed_like(layer, leading="sample"),
                metadata={"napari_diffdenoise": {**meta["napari_diffdenoise"],
                                                 "axis_0": f"sample 1 … {k} of the K = {k} restorations"}})
        self.progress.value = 1000
        said = [refinement_said(result.metadata), hot_pixels_said(result.metadata)]
        if "second_acquisition_differs" in result.metadata:
            from ..core.calibration.self_calibration import said_of_second

            said.append(said_of_second(result.metadata["second_acquisition_differs"]))
        axes = result.metadata.get("axes", "")
        calibrated_here = bool(result.metadata.get("calibrated_on_this_image"))
        if result.metadata.get("calibrated_on_this_image") is False:  # say whose: the box may have been left off
            said.append(f"intervals from the model's calibration ({source_headline(result.metadata['calibration_source'])})")
        if calibrated_here and len(axes) > 2 and "T" not in axes and not self.axes.value.strip() and \
                named_axes(layer) is None and _looks_like_a_series(layer):  # as the CLI says of a file naming none
            said.append(f"axes read as {axes} (the layer names none): for a time series type "
                        f"{axes.replace('Z', 'T', 1)} in Axes, and the calibration pairs its frames too")
        calibrating = result.metadata.get("self_calibration_seconds")
        done = (f"Done in {result.metadata['seconds'] + calibrating:.1f} s ({calibrating:.1f} s of it calibrating "
                "on this image)" if calibrating is not None else f"Done in {result.metadata['seconds']:.1f} s")
        if stem != layer.name:
            said.insert(0, f"as '{stem} […]' beside the earlier results")
        self.status.value = "; ".join([done, *filter(None, said)])


def denoise_layer(viewer: napari.viewer.Viewer) -> DenoiseWidget:
    """Right-click ▸ Denoise with DiffDenoise…: the Denoise widget, docked, with the selected image
    layer chosen (napari injects the viewer)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-diffdenoise", "Denoise")
    active = viewer.layers.selection.active
    if active is not None and active in [c for c in widget.image.choices if c is not None]:
        widget.image.value = active
    return widget
