"""What adaptation (core.training.adapt) is asked for and what it reports: its time budget, declared
once for the library, the CLI and the Train widget; every check of its inputs, made before any
training; its progress and its result."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..imaging.axes import as_planes
from ..imaging.camera_noise import CameraNoise, estimate_noise
from ..model.model import DiffusionModel
from ..sampling.params import Param
from .adapt_criteria import SMOOTHING
from .datasets import Split
from .finetune import PATCH_SIZE, VAL_FRACTION

# the time budget, as the library, the CLI's adapt command and the Train widget take it
MINUTES = Param("minutes", float, 5.0, 0.1, 600.0, step=0.5, label="Adapt for (min)",
                help="How long to adapt, in minutes; the weights with the lowest validation loss are kept. The "
                     "intervals are then recalibrated on the image")

# a series with frames left to train on beside its held-out blocks trains on its own frames (Noise2Noise), not on
# recorrupted pairs: on the 13 real series of docs/benchmarks/series_adapt.md the heads it trained scored −0.01 …
# +0.46 dB against the registered truth of a frame never seen, the recorrupted pairs' −0.06 … +0.00 on the seven
# held-out lysosome series (docs/performance.md, nineteenth session)
FRAME_PAIRS = True

# Recorrupted-to-Recorrupted's α (ŷ = y + α·s, ȳ = y − s/α) and the mean head's fine-tuning rate
ALPHA = 0.5
LEARNING_RATE = 5e-5

# a σ = SMOOTHING Gaussian leaves white noise with 1/(2√π·σ) of its std: a smoothed image whose std is
# not 20 % above that holds no structure to learn from
MIN_STRUCTURE = 1.2


def validation_splits(planes, val_fraction: float, patch_size: int) -> list[Split]:
    """Each plane's validation strip, which adapt never trains on and judges its heads by."""
    return [Split.of(p.shape, val_fraction, patch_size, "noisy") for p in planes]


def check_adapt(model, noisy, *, minutes=MINUTES.default, steps=None, alpha=ALPHA, patch_size=PATCH_SIZE.default,
                val_fraction=VAL_FRACTION.default):
    """Every reason :func:`iter_adapt` would refuse, checked before any training (a GUI calls this
    first); returns (planes, their validation splits, the fitted noise model)."""
    if not isinstance(model, DiffusionModel):
        raise TypeError(f"model must be a DiffusionModel (load_model(...)); got {type(model).__name__}")
    if model.kind != "paired" or model.mean_network is None:
        raise ValueError(f"adapt needs a paired model with a mean head, such as the bundled 'demo'; {model.name!r} "
                         "has none")
    if steps is None and minutes is None:
        raise ValueError("give a time budget (minutes) or a step count (steps)")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    if minutes is not None and steps is None and not minutes > 0:
        raise ValueError(f"minutes must be a positive number; got {minutes}")
    if not 0 < alpha <= 2:
        raise ValueError(f"alpha must be in (0, 2]; got {alpha}")
    planes = as_planes(noisy, "noisy")
    if not planes:
        raise ValueError("no noisy images given")
    patch_size, val_fraction = PATCH_SIZE.check(patch_size, None), VAL_FRACTION.check(val_fraction, None)
    multiple = model.network.config.size_multiple
    if patch_size < multiple or patch_size % multiple:
        raise ValueError(f"patch_size must be a positive multiple of {multiple}; got {patch_size}")
    splits = validation_splits(planes, val_fraction, patch_size)
    noise = estimate_noise(planes)
    structure = float(np.mean([ndimage.gaussian_filter(p, SMOOTHING).std() for p in planes]))
    noise_left = float(np.sqrt(np.mean([noise.variance(p.mean()) for p in planes]))) / (2 * np.sqrt(np.pi) * SMOOTHING)
    if structure < MIN_STRUCTURE * noise_left:
        raise ValueError(f"the images are too flat to learn from: smoothed, they vary by {structure:.3g}, about what "
                         f"their noise alone gives ({noise_left:.3g}); adapt on images with visible objects")
    return planes, splits, noise


@dataclass
class AdaptProgress:
    step: int
    total_steps: int | None  # None while a time budget decides
    train_loss: float
    val_loss: float | None  # the first keep-or-drop criterion on the picking patches (see :func:`iter_adapt`)
    seconds: float
    message: str | None = None  # set on the last report: which head was kept, and why
    judged: tuple[int, int] | None = None  # after the steps: (held-out frames judged, to judge) by the refined [mean]'s judge
    registered: tuple[int, int] | None = None  # before the steps: (windows of a series registered, to register)
    # before those: (held-out windows of a series whose neighbours are registered onto them for the judge, to do)
    judge_targets: tuple[int, int] | None = None

    @property
    def before_steps(self) -> tuple[int, int] | None:
        """(done, to do) of the phase before the steps this report is in, if it is: the judge's targets are registered
        first, then the training's windows."""
        return self.judge_targets or self.registered

    @property
    def phase(self) -> str | None:
        """What adapt does before or after its steps, for the progress line (None during the steps)."""
        if self.judge_targets is not None:
            return (f"registering the held-out frames' neighbours onto them, for the judge: {self.judge_targets[0]} of "
                    f"{self.judge_targets[1]}")
        if self.registered is not None:
            return f"registering the series' frames onto their neighbours: {self.registered[0]} of {self.registered[1]}"
        if self.judged is None:
            return None
        return f"judging the refined [mean] on held-out frames: {self.judged[0]} of {self.judged[1]}"


@dataclass
class AdaptResult:
    model: DiffusionModel | None
    noise: CameraNoise
    history: list = field(default_factory=list)
    best_step: int = 0  # the returned head's step: 0 when the bundled head was kept (decision["best_step"]: picked)
    snapshots: dict = field(default_factory=dict)  # seconds → (step, the best head's weights so far)
    kept: str = "adapted"  # or "bundled": the criterion did not show the adapted head better
    decision: dict = field(default_factory=dict)  # the criterion's figures (see :func:`iter_adapt`)
    message: str = ""
    rejected: DiffusionModel | None = None  # the adapted model that was not kept (kept == "bundled")
