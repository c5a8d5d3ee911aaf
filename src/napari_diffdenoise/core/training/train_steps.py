"""What each training step draws and learns from: its batch, noise levels and noise (keyed on the
seed and the step, so any process or a resumed run draws the same), its learning rate, and the losses
it and the validation measure.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..model.model import DiffusionModel
from ..model.schedules import sample_gammas
from .train_config import MEAN_LOSSES, PairSource, TrainConfig


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay towards ``min_lr_fraction`` of the peak over the remaining
    steps, so a run uses its whole budget at a useful rate (no plateau heuristics)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.learning_rate * (config.min_lr_fraction + (1 - config.min_lr_fraction) * cosine)


def diffusion_loss(model: DiffusionModel, noisy: torch.Tensor, clean: torch.Tensor, gammas: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """MSE of the network's target at y_t = √γ·y₀ + √(1−γ)·ε with SR3's continuous γ:
    ε for ``prediction="eps"`` (Ho et al. 2020, Eq. 14), v = √γ·ε − √(1−γ)·y₀ for ``"v"``
    (Salimans & Ho 2022). The v loss equals the ε loss divided by γ, so unlike the ε loss it does
    not neglect the noisiest levels, where few-step samplers take their first, largest steps."""
    g = gammas[:, None, None, None]
    y_t = g.sqrt() * clean + (1 - g).sqrt() * eps
    cond = noisy if model.kind == "paired" else None
    target = eps if model.prediction == "eps" else g.sqrt() * eps - (1 - g).sqrt() * clean
    return torch.mean((model.network(y_t, gammas, cond) - target) ** 2)


def draw_step(source: PairSource, schedule, config: TrainConfig, step: int):
    """Step ``step``'s (noisy, clean, γ, ε) as numpy arrays. Every step draws from its own
    generator, so a resumed run, or one fed by worker processes, sees exactly the batches, noise
    levels and noise an uninterrupted in-loop run would have seen."""
    rng = np.random.default_rng([config.seed, step])
    noisy, clean = source.batch(config.batch_size, config.patch_size, rng)
    gammas = sample_gammas(schedule, len(noisy), rng).astype(np.float32)
    eps = rng.standard_normal(clean.shape, dtype=np.float32)
    n_mean = round(config.mean_fraction * len(gammas))
    if n_mean:  # drawn after ε, so a run without it keeps the exact stream it always had
        top = schedule.n_steps - 1
        low, high = schedule.alphas_cumprod[top], schedule.alphas_cumprod_prev[top]
        g = low + (high - low) * rng.random(n_mean)
        gammas[:n_mean] = g.astype(np.float32)
        # this ε makes y_t = √γ·clean + √(1−γ)·ε exactly 0: the targets follow from it for either parametrisation
        eps[:n_mean] = (-np.sqrt(g / (1 - g))[:, None, None, None] * clean[:n_mean]).astype(np.float32)
    return noisy, clean, gammas, eps


class _StepBatches(torch.utils.data.IterableDataset):
    """Steps ``start … stop − 1`` dealt round-robin to the loader's workers; the loader collects
    them round-robin too, so they arrive in step order."""

    def __init__(self, source: PairSource, schedule, config: TrainConfig, start: int):
        self.source, self.schedule, self.config, self.start = source, schedule, config, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + worker, self.config.steps, n_workers):
            yield draw_step(self.source, self.schedule, self.config, step)


def _one_thread(_worker: int) -> None:
    """A data worker's set-up: each worker is one simulator process, where torch threads would only compete.
    A module-level function, not a lambda: macOS and Windows start workers by spawning, which pickles it."""
    torch.set_num_threads(1)


def step_batches(source: PairSource, schedule, config: TrainConfig, start: int = 0):
    """Yields :func:`draw_step` for steps ``start …`` in order, from ``config.data_workers``
    processes when that is > 0."""
    if config.data_workers <= 0:
        for step in range(start, config.steps):
            yield draw_step(source, schedule, config, step)
        return
    loader = torch.utils.data.DataLoader(
        _StepBatches(source, schedule, config, start), batch_size=None, num_workers=config.data_workers,
        prefetch_factor=4, persistent_workers=False,
        worker_init_fn=_one_thread,
    )
    for noisy, clean, gammas, eps in loader:
        yield noisy.numpy(), clean.numpy(), gammas.numpy(), eps.numpy()


def validation_loss(model: DiffusionModel, val_batch, device, schedule, n_levels: int = 8) -> float:
    """The training loss (ε- or v-MSE) on a fixed batch at fixed noise levels and noise, so values
    are comparable over time."""
    noisy, clean = (torch.from_numpy(a).to(device) for a in val_batch)
    gen = torch.Generator().manual_seed(1234)
    levels = np.quantile(schedule.alphas_cumprod, np.linspace(0.05, 0.95, n_levels))
    total = 0.0
    was_training = model.network.training
    model.network.eval()
    with torch.inference_mode():
        for g in levels:
            gammas = torch.full((len(noisy),), float(g), device=device)
            eps = torch.randn(clean.shape, generator=gen).to(device)
            total += float(diffusion_loss(model, noisy, clean, gammas, eps))
    model.network.train(was_training)
    return total / n_levels


def mean_loss(estimate: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor, kind: str = "mse",
              power: float = 1.0) -> torch.Tensor:
    """The mean head's loss against the clean images (TrainConfig.mean_loss): the batch's MSE, or
    ("relative") the mean over patches of each patch's MSE over its noisy input's MSE to ``power``
    (TrainConfig.relative_power). The weight is
    fixed by the patch's noise, which its noisy side shows, so the minimiser is still E[clean | noisy]:
    the weighting moves the network's effort, not its target."""
    if kind not in MEAN_LOSSES:
        raise ValueError(f"mean_loss must be one of {MEAN_LOSSES}; got {kind!r}")
    squared = (estimate - clean) ** 2
    if kind == "mse":
        return torch.mean(squared)
    input_error = ((noisy - clean) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-8)
    return torch.mean(squared.mean(dim=(1, 2, 3)) / input_error ** power)


def mean_validation_loss(model: DiffusionModel, val_batch, device, kind: str = "mse", power: float = 1.0) -> float:
    """The mean head's loss (:func:`mean_loss`) on a fixed batch."""
    noisy, clean = (torch.from_numpy(a).to(device) for a in val_batch)
    was_training = model.mean_network.training
    model.mean_network.eval()
    with torch.inference_mode():
        loss = float(mean_loss(model.predict_mean(noisy), noisy, clean, kind, power))
    model.mean_network.train(was_training)
    return loss
