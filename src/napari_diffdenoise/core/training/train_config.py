"""What a training run is asked for (:class:`TrainConfig`, and :func:`scaled_config` for a run asked
for by its length) and what it reports (:class:`TrainProgress`, :class:`TrainResult`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..model.model import DiffusionModel


class PairSource(Protocol):
    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


MEAN_LOSSES = ("mse", "relative")  # TrainConfig.mean_loss; train_steps.mean_loss computes them


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 16
    patch_size: int = 64
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_fraction: float = 0.05  # cosine decays to this fraction of the peak, over all steps
    ema_decay: float = 0.999  # 0 disables EMA
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    validate_every: int = 50
    seed: int = 0
    # processes simulating batches ahead of the network; 0 draws them in the training loop. On a
    # GPU the simulator, not the network, limits the step rate unless several processes feed it.
    data_workers: int = 0
    # seconds to spend: when set, ``steps`` is fixed during the warm-up from the measured step rate,
    # so the cosine decay ends with the budget on whatever hardware runs it
    time_budget_s: float | None = None
    # fraction of each batch that trains the one-evaluation posterior mean: at the noisiest level,
    # γ ∈ (ᾱ_{T−1}, ᾱ_{T−2}), with y_t = 0 instead of noise, the v- (x̂₀-) loss is the MSE of x̂₀ to the
    # clean image, so x̂₀(0, γ, noisy) learns E[clean | noisy] (restore.MEAN_ESTIMATORS, "x0"). A zero
    # input is far from any noise the sampler feeds, so the network tells the two tasks apart.
    mean_fraction: float = 0.0
    # "diffusion": the diffusion network (and a mean head alongside, if the model has one); "mean": the
    # mean head alone on the MSE to the clean image, the diffusion network left as it is — the CARE
    # baseline (bench/care.py) trains this way, through this loop and into the same checkpoint format
    objective: str = "diffusion"
    # the mean head's loss (MEAN_LOSSES): "mse" over the batch, or "relative": each patch's MSE divided by
    # its noisy input's, so a patch at 2000 photons weighs as much as one at 2 (with plain MSE its
    # error is ~10³× smaller in model units and hardly moves the gradient)
    mean_loss: str = "mse"
    # with mean_loss="relative": the input MSE's power in the divisor; 1 weighs every photon level alike,
    # below 1 leans toward the dim patches (0 is plain MSE, dominated by them)
    relative_power: float = 1.0


def scaled_config(steps: int, *, batch_size: int, patch_size: int, learning_rate: float, ema_decay: float,
                  seed: int = 0) -> TrainConfig:
    """The TrainConfig of a run asked for by its length (the CLI's and the Train widget's): the warm-up,
    the checkpoints and the validation scale with the steps, so a short run still warms up, saves and
    validates, and a long one does not spend its time on them."""
    return TrainConfig(steps=steps, batch_size=batch_size, patch_size=patch_size, learning_rate=learning_rate,
                       warmup_steps=min(100, max(1, steps // 10)), checkpoint_every=max(10, steps // 20),
                       validate_every=max(5, steps // 50), ema_decay=ema_decay, seed=seed)


@dataclass
class TrainProgress:
    step: int  # steps done
    total_steps: int
    train_loss: float
    val_loss: float | None  # the latest validation loss, if any yet
    lr: float
    seconds: float  # since the start of this run (a resumed run counts from its resume)
    eta_seconds: float


@dataclass
class TrainResult:
    model: DiffusionModel
    history: list[dict] = field(default_factory=list)
    best_val_loss: float | None = None


def check_config(config: TrainConfig) -> None:
    """Settings that would train silently wrong: a negative EMA decay turned EMA off, a NaN rate."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if config.mean_loss not in MEAN_LOSSES:
        raise ValueError(f"mean_loss must be one of {MEAN_LOSSES}; got {config.mean_loss!r}")
    if not (number(config.relative_power) and 0 <= config.relative_power <= 1):
        raise ValueError(f"relative_power must be a number from 0 to 1; got {config.relative_power!r}")
    if not (number(config.ema_decay) and 0 <= config.ema_decay < 1):
        raise ValueError(f"ema_decay must be a number from 0 (no EMA) to below 1; got {config.ema_decay!r}")
    if not (number(config.learning_rate) and config.learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number; got {config.learning_rate!r}")
