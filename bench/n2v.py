"""Noise2Void (Krull et al. 2019), the baseline users know for noisy-only data: a blind-spot U-Net
trained on the noisy image itself. Written here because careamics cannot be installed beside this
project's torch on these machines without a second multi-GB environment; it follows N2V's recipe:
the same U-Net as our mean head (bench/care.py's), about 1.5 % of each patch's pixels replaced by a
random neighbour from their 5×5 window (never themselves), the MSE taken on those pixels only
against their original noisy values, Adam, random flips and rotations, patches from the image
minus a validation strip, the weights at the lowest validation loss kept."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from napari_diffdenoise.core.imaging.normalization import DEFAULT_PERCENTILES, IntensityMap
from napari_diffdenoise.core.model.network import UNet, UNetConfig
from napari_diffdenoise.core.run.restore import _pad_to_multiple
from napari_diffdenoise.core.training.pairs import augment

from .care import predict

MASK_FRACTION, RADIUS = 0.015, 2


def _blind_spot(patches: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(input with masked pixels replaced by a random neighbour, mask)."""
    n, h, w = patches.shape
    mask = rng.random((n, h, w)) < MASK_FRACTION
    z, y, x = np.nonzero(mask)
    dy = rng.integers(-RADIUS, RADIUS + 1, len(y))
    dx = rng.integers(-RADIUS, RADIUS + 1, len(x))
    same = (dy == 0) & (dx == 0)
    dx[same] = 1  # never the pixel itself
    inputs = patches.copy()
    inputs[z, y, x] = patches[z, np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)]
    return inputs, mask


def train_n2v(noisy: np.ndarray, minutes: float, seed: int = 0, patch: int = 64, batch: int = 8, lr: float = 4e-4):
    """A blind-spot network for one 2D plane, trained for ``minutes``; returns (network, steps)."""
    torch.manual_seed(seed)
    imap = IntensityMap.from_percentiles(noisy, DEFAULT_PERCENTILES)
    image = imap.to_model(noisy)
    split = int(image.shape[0] * 0.9)
    train, val = image[:split], image[split:]
    net = UNet(UNetConfig(cond_channels=0))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)

    def crops(source, n, r):
        ys = r.integers(0, source.shape[0] - patch + 1, n)
        xs = r.integers(0, source.shape[1] - patch + 1, n)
        return np.stack([source[y:y + patch, x:x + patch] for y, x in zip(ys, xs)])

    vrng = np.random.default_rng(seed + 1)
    v_target = crops(val if val.shape[0] >= patch else train, 32, vrng)
    v_in, v_mask = _blind_spot(v_target, vrng)
    best, step, t0 = (float("inf"), None), 0, time.perf_counter()
    while time.perf_counter() - t0 < minutes * 60:
        target = np.stack([augment(c[None], rng)[0] for c in crops(train, batch, rng)])
        inputs, mask = _blind_spot(target, rng)
        out = predict(net, torch.from_numpy(inputs[:, None]))[:, 0]
        m = torch.from_numpy(mask)
        loss = torch.mean((out[m] - torch.from_numpy(target)[m]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            with torch.inference_mode():
                out = predict(net, torch.from_numpy(v_in[:, None]))[:, 0].numpy()
            v = float(np.mean((out[v_mask] - v_target[v_mask]) ** 2))
            if v < best[0]:
                best = (v, copy.deepcopy(net.state_dict()))
    if best[1] is not None:
        net.load_state_dict(best[1])
    return net.eval(), step


def restore_n2v(net: UNet, noisy: np.ndarray) -> np.ndarray:
    imap = IntensityMap.from_percentiles(noisy, DEFAULT_PERCENTILES)
    x = torch.from_numpy(imap.to_model(noisy))[None, None]
    padded, (h, w) = _pad_to_multiple(x, net.config.size_multiple)
    with torch.inference_mode():
        return imap.to_input(predict(net, padded)[0, 0, :h, :w].numpy())
