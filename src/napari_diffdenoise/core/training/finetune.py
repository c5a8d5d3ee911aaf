"""``train(...)``: fit or fine-tune a model on a user's images, the one entry point for the
library, the command line and the Train widget. Every check on the data runs before any work."""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import torch

from ..imaging.simulate import NoiseModel
from ..io.checkpoint import load_model
from ..model.model import DiffusionModel
from ..model.network import UNetConfig
from ..model.schedules import NoiseSchedule
from ..run.driving import drive
from ..run.restore import Cancelled
from ..run.run_spec import SEED
from ..sampling.params import Param
from .datasets import ArrayPairs, CleanPatches, CleanWithSimulatedNoise
from .train_config import TrainConfig, TrainProgress, TrainResult, scaled_config
from .training import iter_train

# A fine-tuning run as the CLI's train command and the Train widget offer it, each option declared
# once (default, bounds, label, help). The defaults suit fine-tuning a bundled model for minutes on a
# CPU; TrainConfig's suit a training from scratch. The bounds are what a form offers.
STEPS = Param("steps", int, 500, 1, 1_000_000, label="Steps",
              help="How many training updates: more learns more and takes longer (the status shows the time left "
                   "once training runs)")
PATCH_SIZE = Param("patch_size", int, 64, 16, 512, step=16, label="Patch size",
                   help="Side of the square crops the model learns from, in pixels (a multiple of 16)")
BATCH_SIZE = Param("batch_size", int, 8, 1, 256, label="Batch size",
                   help="Crops per update: more gives steadier updates and needs more memory")
# the lowest rate one step: a form shows as many decimals as its step has, and would show 1e-6 as 0
LEARNING_RATE = Param("learning_rate", float, 2e-4, 1e-5, 1e-2, step=1e-5, label="Learning rate",
                      help="Peak rate; warm-up, then cosine decay over all steps")
VAL_FRACTION = Param("val_fraction", float, 0.1, 0.0, 0.45, step=0.05, label="Validation fraction",
                     help="A strip of each image held out from training, for validation: this fraction of its "
                          "rows, and at least one patch (half of a 128 px image at 64 px patches)")
EMA_DECAY = Param("ema_decay", float, 0.999, 0.0, 0.9999, label="EMA of weights",
                  help="Keep a running average of the weights (exponential moving average) with this decay: the saved "
                       "model is steadier than the last update's (0: off)")
FINE_TUNING = (STEPS, PATCH_SIZE, BATCH_SIZE, LEARNING_RATE, VAL_FRACTION, EMA_DECAY)


def prepare_training(
    noisy=None,
    clean=None,
    *,
    model: DiffusionModel | str | Path | None = "default",
    noise_model: NoiseModel | None = None,
    config: TrainConfig | None = None,
    val_fraction: float = VAL_FRACTION.default,
    kind: str = "paired",
):
    """(model, source, val_batch): validates everything and loads the starting model.

    - paired data: ``noisy`` and ``clean`` (arrays or lists of 2D/3D arrays of matching shapes);
    - clean only: ``clean`` with ``noise_model`` to synthesise the noisy side;
    - ``kind="unpaired"``: clean only, for an unconditional model guided at sampling time (Baikal);
    - ``model``: a bundled name or checkpoint path to fine-tune, a :class:`DiffusionModel`, None
      to start from scratch with the default architecture, or "default": the bundled ``demo`` for
      a paired model, ``widefield`` for paired training on clean images blurred by a simulated
      PSF (deconvolution), ``demo-unpaired`` for an unpaired one.
    """
    config = fine_tuning_config() if config is None else config
    if kind not in ("paired", "unpaired"):
        raise ValueError(f"unknown model kind {kind!r}; use 'paired' or 'unpaired'")
    # each refused by its keyword, what is accepted and the value given (the CLI puts its option beside it); the
    # validation fraction's range is the widget's and adapt's (it was [0, 0.5) here)
    STEPS.check(config.steps, None)
    BATCH_SIZE.check(config.batch_size, None)
    val_fraction = VAL_FRACTION.check(val_fraction, None)
    SEED.check(config.seed, None)  # the run's seed, checked as a run's (numpy's own message named nothing)
    if isinstance(model, str) and model == "default":
        deconvolving = noisy is None and noise_model is not None and noise_model.psf_sigma > 0
        model = default_start(kind, deconvolving)
    if isinstance(model, DiffusionModel):
        start = copy.deepcopy(model)  # training changes the weights: never the caller's model
    elif model is None:
        with torch.random.fork_rng():  # the same seed gives the same initial weights
            torch.manual_seed(config.seed)
            start = DiffusionModel.create(UNetConfig(cond_channels=int(kind == "paired")), NoiseSchedule(),
                                          kind=kind, prediction="v", name="scratch")
    else:
        start = load_model(model)
    if start.kind != kind:
        raise ValueError(f"the starting model is {start.kind}, not {kind}: pick a {kind} model or start from scratch")
    multiple = start.network.config.size_multiple
    if config.patch_size < multiple or config.patch_size % multiple:
        raise ValueError(f"patch_size must be a positive multiple of {multiple}; got {config.patch_size}")
    if kind == "unpaired":
        if clean is None or noisy is not None:
            raise ValueError("an unpaired model learns from clean images only: give clean images and no noisy ones")
        source = CleanPatches(clean, config.patch_size, val_fraction, start.percentiles)
    elif noisy is not None:
        if clean is None:
            raise ValueError("paired training needs clean images too (or give clean images only with a noise model)")
        source = ArrayPairs(noisy, clean, config.patch_size, val_fraction, start.percentiles)
    elif clean is not None:
        if noise_model is not None and noise_model.psf_sigma > 0:
            start.task = "deconvolve"  # blurred → sharp pairs: the model learns to deconvolve
        source = CleanWithSimulatedNoise(clean, config.patch_size, noise_model or NoiseModel(), val_fraction,
                                         start.percentiles, seed=config.seed)
    else:
        raise ValueError("no training images given")
    return start, source, source.validation_batch(config.patch_size)


def default_start(kind: str, deconvolving: bool) -> str:
    """The bundled model a training starts from unless told (the library's model="default", the CLI's and the Train
    widget's default): the unpaired prior for an unpaired model; for a paired one the widefield model when the
    noisy side is simulated with extra blur (it learnt to deconvolve), else demo."""
    return "demo-unpaired" if kind == "unpaired" else ("widefield" if deconvolving else "demo")


def run_prepared(
    prepared, config: TrainConfig, *, output: str | Path | None = None, resume: bool = False, device: str = "auto",
    overwrite: bool = False,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train on what :func:`prepare_training` returned (a GUI validates first, then runs this)."""
    start, source, val_batch = prepared
    parent = start.name if start.sha256 else None
    if output is not None:
        start.name = Path(output).stem
    provenance = {
        "data": {
            "mode": {ArrayPairs: "paired", CleanWithSimulatedNoise: "clean + simulated noise",
                     CleanPatches: "clean only (unpaired)"}[type(source)],
            "train_shapes": [list(p.shape[1:]) for p in source.parts],
            "validation_shapes": [list(p.shape[1:]) for p in source.val_parts],
            "noise_model": vars(source.noise) if isinstance(source, CleanWithSimulatedNoise) else None,
            # a resume on other images of the same shapes trained on a mix of both, its best validation loss
            # compared across two validation sets (core.training.run_files.check_resumable)
            "content_sha256": _content_digest([*source.parts, *source.val_parts]),
        },
        "parent": parent,
    }
    return (yield from iter_train(start, source, config, val_batch=val_batch, checkpoint_path=output, resume=resume,
                                  device=device, provenance=provenance, overwrite=overwrite))


def _content_digest(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def fine_tuning_config() -> TrainConfig:
    """The run the CLI's ``train`` and the Train widget make by default, from the parameters declared above: the
    library's :func:`train` without a config took TrainConfig's own (2000 steps of 16 patches, a recipe's), 8× the
    work for the same call."""
    return scaled_config(STEPS.default, batch_size=BATCH_SIZE.default, patch_size=PATCH_SIZE.default,
                         learning_rate=LEARNING_RATE.default, ema_decay=EMA_DECAY.default)


def iter_train_on(
    noisy=None, clean=None, *, model="default", noise_model=None, config: TrainConfig | None = None,
    val_fraction: float = VAL_FRACTION.default, output: str | Path | None = None, resume: bool = False,
    device: str = "auto", kind: str = "paired", overwrite: bool = False,
) -> Generator[TrainProgress, None, TrainResult]:
    """The generator behind :func:`train` (for workers that yield progress)."""
    config = fine_tuning_config() if config is None else config
    prepared = prepare_training(noisy, clean, model=model, noise_model=noise_model, config=config,
                                val_fraction=val_fraction, kind=kind)
    return (yield from run_prepared(prepared, config, output=output, resume=resume, device=device, overwrite=overwrite))


def train(
    noisy=None, clean=None, *, model="default", noise_model=None, config: TrainConfig | None = None,
    val_fraction: float = VAL_FRACTION.default, output: str | Path | None = None, resume: bool = False,
    device: str = "auto", kind: str = "paired", progress: Callable[[TrainProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None, overwrite: bool = False,
) -> TrainResult:
    """Fine-tune ``model`` (default: the bundled demo) on paired images, or on clean images with
    simulated noise, or (``kind="unpaired"``) an unconditional model on clean images; write
    ``output`` (last), ``<output>-best`` and a resumable state beside it; existing files there are
    refused unless ``resume`` continues that run or ``overwrite`` replaces it. ``model`` itself is
    never changed (a copy is trained); a mean head, if it has one, is trained alongside. ``config``: by default
    the CLI's and the Train widget's run (:func:`fine_tuning_config`, from the parameters STEPS, BATCH_SIZE,
    PATCH_SIZE, LEARNING_RATE and EMA_DECAY declared here). ``progress`` gets a :class:`TrainProgress` every
    step; ``cancel()`` is polled every step and stops the run, keeping the last checkpoint written, and raises
    :class:`~.restore.Cancelled`."""
    run = iter_train_on(noisy, clean, model=model, noise_model=noise_model, config=config,
                        val_fraction=val_fraction, output=output, resume=resume, device=device, kind=kind,
                        overwrite=overwrite)
    result, cancelled = drive(run, progress, cancel)
    if cancelled:
        raise Cancelled("training was cancelled")
    return result
