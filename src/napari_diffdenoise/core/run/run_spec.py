"""A run's settings (the keywords of :func:`.run_settings.make_settings` and of ``denoise``), each declared once.

Each :class:`RunParam` holds what the library checks (type, bounds, choices) and what people read
(label, help, CLI flag), so that the keywords of :func:`.run_settings.make_settings` and ``denoise``
(their signatures too), the CLI's run options and the Denoise widget's controls are derived from one
place and cannot drift apart (tests/test_run_spec.py). Settings whose accepted values depend on the
model or on other settings (tile, overlap, the sampler's steps…) are declared here too, with
``checked=False``: a named rule in core.run.run_settings checks them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..imaging.physics import MOST_PSF_SIGMA
from ..io.maps import DEFAULT_ENTROPY, ENTROPY_KINDS
from ..model.model import MODEL_MEAN_ESTIMATORS
from ..model.schedules import NoiseSchedule
from ..model.symmetries import SYMMETRY_COUNTS
from ..sampling.guidance import GUIDES
from ..sampling.params import Param
from ..sampling.sampler_registry import ETA, SAMPLERS, STEPS
from .low_frequency import SMOOTHING

# How the [mean] layer is estimated. "head": the model's mean head, a one-step network trained on
# the MSE to the clean image (DiffusionModel.mean_network), one evaluation. "x0": x̂₀ at the noisiest level with a zero input, one network
# evaluation of E[clean | noisy] for a model trained for it (TrainConfig.mean_fraction). "samples": the average of the K samples (DDPM-avg,
# Osuna-Vargas et al.). "auto": what the model declares (DiffusionModel.mean_estimator).
MEAN_ESTIMATORS = ("auto", *MODEL_MEAN_ESTIMATORS)
# how the std map (and the intervals' unit) is made: the spread of the K samples, or in one pass by the
# model's std head (core.model.std_head); "auto" takes the head when the model has one
STD_ESTIMATORS = ("auto", "head", "samples")
# the number format the networks compute in: bfloat16 (autocast) roughly halves a forward on CPUs and GPUs
# with bf16 arithmetic and moves the maps by under 1 % of their range (docs/benchmarks/speed.md); on a CPU
# without it, emulation may be slower, so float32 stays the default
PRECISIONS = ("float32", "bfloat16")
# A plane is sampled whole (the K samples' state covers it) unless a side exceeds DEFAULT_BLOCK: then in
# overlapping blocks whose maps blend like tiles. Blocks draw the plane's own noise at their global
# positions (core.sampling.noise), so in an overlap both see the same noise and condition and their samples
# agree, which keeps the blend free of seams (tests/test_bigdata.py).
DEFAULT_BLOCK, DEFAULT_BLOCK_OVERLAP = 4096, 128


@dataclass(frozen=True)
class RunParam(Param):
    """A run setting: a :class:`Param` (type, default, bounds, label, help) and what the CLI and
    forms need besides. ``choices`` may be a function, for enumerations that grow at run time (a
    sampler or an entropy kind registered later)."""

    flag: str = ""  # the CLI option; "" for a setting the CLI does not offer
    optional: bool = False  # None is accepted: "off" (coverage, guidance) or "worked out for the model"
    checked: bool = True  # False: accepted values depend on the model or other settings (a rule checks it)
    most_offered: float | None = None  # a form's upper end, where the bound is far beyond sensible use
    choice_labels: tuple[str, ...] = ()  # plain words for the choices in a form, in their order
    # a form's starting value where it differs from the library's default: a biologist at the form expects
    # what a script must ask for (the intervals)
    form_default: object = None

    def options(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def labelled_options(self) -> list[tuple[str, object]]:
        """(form label, value) per choice; the value itself where no label is declared."""
        labels = dict(zip(self.options(), self.choice_labels))
        return [(labels.get(value, value), value) for value in self.options()]

    def accepted(self, schedule: NoiseSchedule) -> str:
        # a tuple, as make_settings has always named them ("entropy must be one of ('negentropy', …)")
        return f"one of {self.options()}" if self.type is str or self.options() else super().accepted(schedule)

    def check(self, value, schedule: NoiseSchedule):
        if self.optional and value is None:
            return None
        if self.type is str:
            if isinstance(value, str) and value in self.options():
                return value
            raise ValueError(f"{self.name} must be {self.accepted(schedule)}; got {value!r}")
        value, given = super().check(value, schedule), value
        if self.options() and value not in self.options():  # a number from a list (symmetries)
            raise ValueError(f"{self.name} must be {self.accepted(schedule)}; got {given!r}")
        return value


def _entropy_help() -> str:
    return "What the entropy map shows, in bits: " + "; ".join(
        f"{name} = {kind.definition}" for name, kind in ENTROPY_KINDS.items())


SAMPLER = RunParam(
    "sampler", str, None, choices=lambda: tuple(SAMPLERS), optional=True, checked=False, flag="--sampler",
    label="Sampler",
    help="How the restorations are drawn (default: the model's own: one-step for a model with a sample head, such as "
         "demo, one network evaluation per sample; else ddim; ddim-dc for a deconvolving model given a PSF; fb for an "
         "unpaired one; steps, η or guidance given without a sampler take ddim); ddim-dc needs a PSF; fb, mixing, "
         "repaint(-baikal) are for unpaired models")
# steps and η belong to the samplers that declare them (their Param checks them); here only the
# shorthand that sets them for whichever sampler runs
STEPS_SETTING = RunParam(
    "steps", int, None, STEPS.low, STEPS.high, optional=True, checked=False, flag="--steps", label=STEPS.label,
    help=STEPS.help + " (default: the sampler's own; a shorthand for its steps parameter)")
ETA_SETTING = RunParam(
    "eta", float, None, ETA.low, ETA.high, optional=True, checked=False, flag="--eta", label=ETA.label, step=ETA.step,
    help=ETA.help + " (default: the sampler's own; a shorthand for its eta parameter)")
N_SAMPLES = RunParam(
    "n_samples", int, 8, 0, 4096, flag="--samples", label="Samples", most_offered=64,
    help="How many restorations are drawn (K): the entropy map comes from their spread, and so do the std and the "
         "intervals unless the model's std head gives them; more gives steadier maps and is slower. 0: the "
         "one-pass mean alone (with the std head's std and intervals, for a model that has one)")
SEED = RunParam("seed", int, 0, 0, flag="--seed", label="Seed", most_offered=2**31 - 1,
                help="The same seed gives the same result on the same device")
DEVICE = RunParam("device", str, "auto", checked=False, flag="--device", label="Device",
                  help="Where the network runs: auto takes a GPU (CUDA or Apple) when there is one, else the CPU; "
                       "or name one (cpu, cuda:0, mps)")
MEAN = RunParam(
    "mean", str, "auto", choices=MEAN_ESTIMATORS, flag="--mean", label="Mean from",
    choice_labels=("model's choice", "one pass (mean head)", "one pass (posterior mean)", "average of the samples"),
    help="How the mean map is made: head = the model's mean head (one network call, trained for the best mean), "
         "x0 = the network's one-evaluation estimate of the clean image, samples = the average of the K samples (the "
         "seed paper's DDPM-avg); auto = the head when the model has one, else what the model was trained for")
STD = RunParam(
    "std", str, "auto", choices=STD_ESTIMATORS, flag="--std", label="Std from",
    choice_labels=("model's choice", "one pass (std head)", "spread of the samples"),
    help="How the std map and the intervals' width are made: head = the model's std head, the expected error of "
         "the head's mean in one network call (ranks the real error better on held-out real images: "
         "docs/benchmarks/std_head.md), so 0 samples still give std and intervals; samples = the spread of the K "
         "samples; auto = the head when the model has one. The entropy map always comes from the samples")
COVERAGE = RunParam(
    "coverage", float, None, 0.01, 0.999, optional=True, flag="--coverage", label="Interval coverage", step=0.05,
    most_offered=0.99, form_default=0.9,
    help="Also make lower and upper bounds that hold the true intensity in this fraction of pixels (e.g. 0.9), "
         "calibrated on the image itself first unless the model holds a calibration you made, which is then used "
         "(docs/method.md, 'Intervals'). Left out, no intervals are made.")
ENTROPY = RunParam("entropy", str, DEFAULT_ENTROPY, choices=lambda: tuple(ENTROPY_KINDS), flag="--entropy",
                   label="Entropy layer", help=_entropy_help())
GUIDANCE = RunParam(
    "guidance", str, None, choices=tuple(GUIDES), optional=True, flag="--guidance", label="Guidance",
    help="dc: pull any sampler's clean estimate towards consistency with the PSF (a PSF is needed) at every "
         "network call")
GUIDANCE_WEIGHT = RunParam("guidance_weight", float, 1.0, 0, 100, flag="--guidance-weight", label="Guidance strength",
                           step=0.1, help="The step size of the guidance, with guidance given")
KEEP_SAMPLES = RunParam(
    "keep_samples", bool, False, label="Keep the samples as a layer",
    help="Also keep the K restorations themselves, along a new first axis (a hidden [samples] layer in napari): "
         "flipping through them shows what the model is unsure of more directly than any map. Costs K times the "
         "image's memory (refused when that exceeds half of this machine's)")
# the running sampler's own parameters by name, each checked by that sampler's declaration
# (core.sampling.sampler_registry); the CLI takes them as --sampler-param name=value, the forms one control each
SAMPLER_PARAMS = RunParam(
    "sampler_params", dict, None, optional=True, checked=False, label="Sampler parameters",
    help="The sampler's own parameters by name, e.g. {'steps': 10, 'eta': 1.0} (default: the sampler's own); each is "
         "checked against what the sampler declares")
TILE = RunParam("tile", int, None, optional=True, checked=False, label="Tile",
                help="The network sees the plane in tiles of about this many pixels a side (default: the model's tile): as "
                     "few equal tiles as cover the plane, each up to a quarter longer where that saves overlap "
                     "(core.imaging.tiling.TILE_STRETCH)")
OVERLAP = RunParam("overlap", int, None, 0, optional=True, checked=False, label="Tile overlap",
                   help="Pixels shared by neighbouring tiles, blended so no seam shows (default: a quarter of the tile)")
BLOCK = RunParam("block", int, DEFAULT_BLOCK, 64, 2**30, optional=True, label="Block",
                 help="Planes with a side over this many pixels are sampled in overlapping blocks of this size, which "
                      "bounds the memory a run takes")
BLOCK_OVERLAP = RunParam("block_overlap", int, DEFAULT_BLOCK_OVERLAP, 0, optional=True, checked=False,
                         label="Block overlap", help="Pixels shared by neighbouring blocks, below half the block")
BATCH_PIXELS = RunParam("batch_pixels", int, None, 1, optional=True, label="Pixels per batch",
                        help="How many pixels go through the network at once (default: what suits the device)")
PERCENTILES = RunParam("percentiles", tuple, None, optional=True, checked=False, label="Normalisation percentiles",
                       help="Each plane's (low, high) percentiles that the model's intensity range is fitted to "
                            "(default: those the model was trained with)")
# how much slower emulated bfloat16 ran than float32 on this project's 2-core CPUs without bf16 arithmetic (the presets
# and the Preview: docs/benchmarks/speed.md, 2026-12-07; 4.5× on the default of 2026-12-05, docs/performance.md)
EMULATED_BFLOAT16_SLOWDOWN = "4.5–9×"
PRECISION = RunParam(
    "precision", str, "float32", choices=PRECISIONS, flag="--precision", label="Precision",
    choice_labels=("float32 (exact)", "bfloat16 (faster only with bf16 hardware; maps within 1 %)"),
    help="The number format the networks compute in: bfloat16 is faster only on CPUs and GPUs with bf16 arithmetic "
         "(AVX-512 BF16 or AMX CPUs, recent GPUs; 1.3–1.8× faster than float32 on such a 2-core CPU, "
         f"docs/performance.md); on a CPU without it, it is emulated: {EMULATED_BFLOAT16_SLOWDOWN} slower than float32 "
         "(docs/benchmarks/speed.md; a warning says so, and 'Time here' shows it). It "
         "moves the maps by under 1 % of their range; float32 gives the reference maps. The calibration of the "
         "intervals holds for both")
# how many symmetries of the square the heads' one pass is averaged over (core.model.symmetries); None: 4 where the
# run takes the mean head (most of eight's gain in PSNR for half its cost, docs/benchmarks/symmetries.md), 1 where it
# takes none (the samples are not averaged)
DEFAULT_SYMMETRIES = 4
SYMMETRIES = RunParam(
    "symmetries", int, None, min(SYMMETRY_COUNTS), max(SYMMETRY_COUNTS), choices=(None, *SYMMETRY_COUNTS),
    optional=True, flag="--symmetries", label="Symmetries averaged",
    choice_labels=(f"automatic ({DEFAULT_SYMMETRIES} with the mean head)", "1 (one pass)", "2", "4", "8"),
    help="The mean head's and the std head's pass is made on the image and on its mirror images and turns, each "
         f"turned back, and averaged: one of {SYMMETRY_COUNTS} (1: one pass). More gives a better mean "
         "(docs/benchmarks/symmetries.md) at one more pass of each head per symmetry. Default: "
         f"{DEFAULT_SYMMETRIES} where the run takes the mean head, else 1 (the samples are not averaged)")
# single pixels far above everything around them, which no optics makes (core.imaging.hot_pixels): always
# restored around as if absent (a blob otherwise); the mean keeps what the camera recorded there, or their
# neighbours' median
HOT_PIXEL_HANDLING = ("pass", "replace")
HOT_PIXELS = RunParam(
    "hot_pixels", str, "pass", choices=HOT_PIXEL_HANDLING, flag="--hot-pixels", label="Hot pixels",
    choice_labels=("left as recorded, restored around", "replaced by their neighbours' median"),
    help="Single pixels far above everything around them (a camera's hot pixels, noise spikes: no optics makes "
         "them, core.imaging.hot_pixels) are restored around as if absent: restored as data, each became a blob "
         "several pixels wide with a confident interval. pass: the mean keeps the value the camera recorded "
         "there (a hot pixel is in every frame, and in any average of frames); replace: the mean holds their "
         "neighbours' median. The run's record counts them")
# the mean's smooth part: held to the data's where the two depart beyond the noise (core.run.low_frequency), or
# the network's as it is
LOW_FREQUENCY_SOURCES = ("data", "model")
LOW_FREQUENCIES = RunParam(
    "low_frequencies", str, "data", choices=LOW_FREQUENCY_SOURCES, flag="--low-frequencies",
    label="Smooth part of the mean",
    choice_labels=("held to the data where it departs", "the network's as it is"),
    help=f"data: where the mean (and each sample) smoothed over {SMOOTHING:g} px departs from the noisy image smoothed alike by "
         "more than the noise explains, the departure is taken off (a bias of the network on this camera: an earlier "
         "head lifted the dark background of real 8-bit frames by 0.7–1.0 counts, docs/method.md); next to "
         "nothing moves on images the model fits. model: the network's mean as it is")
PSF = RunParam("psf", object, None, optional=True, checked=False, label="PSF",
               help="The point spread function the image was blurred with (a 2D image, any scale), for ddim-dc or "
                    "guidance")
# A Gaussian PSF given by its width (physics.gaussian_psf), where a form or the CLI makes the PSF
# instead of reading one; not a run setting: the run takes the PSF itself. The bounds are what a form
# offers (a σ under 0.3 px is a single pixel; over 20 px no longer an in-focus lateral profile);
# gaussian_psf takes any positive width.
PSF_SIGMA = Param(
    "psf_sigma", float, 1.5, 0.3, MOST_PSF_SIGMA, step=0.1, label="PSF width (px)",
    help="The Gaussian PSF's standard deviation σ in pixels; ≈ 0.21·λ/NA / pixel size for a widefield microscope "
         "(λ: the emission wavelength)")

RUN_SETTINGS: tuple[RunParam, ...] = (
    SAMPLER, N_SAMPLES, STEPS_SETTING, ETA_SETTING, SEED, DEVICE, TILE, OVERLAP, PERCENTILES, BATCH_PIXELS,
    KEEP_SAMPLES, SAMPLER_PARAMS, PSF, MEAN, COVERAGE, BLOCK, BLOCK_OVERLAP, GUIDANCE, GUIDANCE_WEIGHT, ENTROPY, STD, PRECISION,
    LOW_FREQUENCIES, SYMMETRIES, HOT_PIXELS)


def run_setting(name: str) -> RunParam:
    for setting in RUN_SETTINGS:
        if setting.name == name:
            return setting
    raise KeyError(name)


def named_as(message: str, names: dict[str, str]) -> str:
    """A library message that opens with a setting's keyword ("n_samples must be …"), with the name a front end
    shows that setting by beside it (``names``: keyword → that name): "--samples (n_samples) must be …" on the
    command line, "Samples (n_samples) must be …" in a form."""
    for keyword, shown in names.items():
        if message.startswith(f"{keyword} must be"):
            return f"{shown} ({keyword}){message[len(keyword):]}"
    return message


def cli_settings() -> tuple[RunParam, ...]:
    """The settings the CLI offers as options of their own."""
    return tuple(s for s in RUN_SETTINGS if s.flag)

