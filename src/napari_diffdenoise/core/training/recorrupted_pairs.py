"""Recorrupted-to-Recorrupted pairs (Pang et al. 2021) of a user's noisy planes, which adaptation
(core.training.adapt) fine-tunes the mean head on: y + α·s as input, y − s/α as target, s drawn with
the fitted camera's variance and third moment at each pixel (core.imaging.recorruption: with Gaussian
s the pair's noises are not independent under photon noise, and the head learns its curvature term)."""
from __future__ import annotations

import numpy as np
import torch

from ..imaging.recorruption import RecorruptionNoise
from .pairs import augment


def _crop(plane: np.ndarray, law: RecorruptionNoise, patch_size: int, rng) -> tuple[np.ndarray, RecorruptionNoise]:
    y0 = rng.integers(0, plane.shape[0] - patch_size + 1)
    x0 = rng.integers(0, plane.shape[1] - patch_size + 1)
    win = (slice(y0, y0 + patch_size), slice(x0, x0 + patch_size))
    return plane[win], law[win]


def recorrupted_validation(planes, laws, maps, splits, training: list[int], patch_size: int, alpha: float,
                           count: int, val_fraction: float, rng) -> tuple[list, list]:
    """A fixed validation batch (inputs, targets), model units: strips no training patch touches,
    recorrupted once with fixed noise."""
    val_in, val_target = [], []
    for _ in range(count):  # many patches: the targets' own noise dominates the loss
        i = training[int(rng.integers(len(training)))]
        if val_fraction <= 0:
            break
        y, law = _crop(splits[i].val_part(planes[i]), splits[i].val_part(laws[i]), patch_size, rng)
        a, b = law.recorrupt(y, alpha, rng)
        val_in.append(maps[i].to_model(a))
        val_target.append(maps[i].to_model(b))
    return val_in, val_target


def recorrupted_batch(planes, laws, maps, splits, training: list[int], patch_size: int, alpha: float,
                      batch_size: int, rng, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch (inputs, targets), (n, 1, h, w) on ``device``: patches of the planes' training
    parts, recorrupted and augmented."""
    inputs, targets = [], []
    for _ in range(batch_size):
        i = training[int(rng.integers(len(training)))]
        y, law = _crop(splits[i].train_part(planes[i]), splits[i].train_part(laws[i]), patch_size, rng)
        a, b = law.recorrupt(y, alpha, rng)
        pair = augment(np.stack([maps[i].to_model(a), maps[i].to_model(b)]), rng)
        inputs.append(pair[0])
        targets.append(pair[1])
    return (torch.from_numpy(np.ascontiguousarray(np.stack(inputs)[:, None], dtype=np.float32)).to(device),
            torch.from_numpy(np.ascontiguousarray(np.stack(targets)[:, None], dtype=np.float32)).to(device))


def train_step(model, optimiser, inputs: torch.Tensor, targets: torch.Tensor,
               masks: torch.Tensor | None = None) -> torch.Tensor:
    """One step of the mean head on a batch of pairs: the MSE of its restorations of ``inputs`` to
    ``targets`` (where ``masks`` is 1, if given), gradients clipped to norm 1. Returns the loss."""
    squared = (model.predict_mean(inputs) - targets) ** 2
    loss = torch.mean(squared) if masks is None else torch.sum(masks * squared) / torch.clamp(masks.sum(), min=1)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.mean_network.parameters(), 1.0)
    optimiser.step()
    return loss
