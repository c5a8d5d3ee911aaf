"""Noise2Noise pairs (Lehtinen et al. 2018) of a series' own frames, which adaptation (core.training.adapt)
fine-tunes the mean head on where the planes are repeated views of one field: frame t as the input, its
training neighbours t ± 1 registered onto it as the target (adapt_criteria.registered_target), the loss
taken only where that target holds. The target's noise is the camera's real noise, independent of frame
t's, so no fitted noise model enters the loss — the Recorrupted-to-Recorrupted pairs of single images are
only as right as the fitted variance, and on the real 8-bit time-lapse they kept the bundled head (+0.00 dB)
where these pairs gave +0.16 / +0.31 / +0.50 dB against the registered truth (docs/performance.md,
2026-12-06, seventeenth session)."""
from __future__ import annotations

import numpy as np
import torch

from ..imaging.camera_noise import CameraNoise
from .adapt_criteria import registered_target
from .pairs import augment

# px² registered before training, at most: with 256² windows, 32 of them (5–18 s on one CPU thread for
# 23 frames of 256² in the seventeenth session's runs), whatever the series' size
REGISTERED_PIXELS = 2**21
# the side of a registered window, at most (or the patch's, if larger): each training patch is drawn inside one
WINDOW = 256


def series_sources(training: list[int], pairs) -> list[tuple[int, tuple[int, ...]]]:
    """(t, its neighbours) for each training frame t with a training neighbour in the series (``pairs``:
    consecutive planes that are repeated views, adapt_criteria.series_pairs): held-out frames are
    neither inputs nor targets."""
    kept = set(training)
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs:
        if a in kept and b in kept:
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
    return [(t, tuple(sorted(others))) for t, others in sorted(neighbours.items())]


def iter_series_windows(planes, maps, sources, patch_size: int, noise: CameraNoise, rng):
    """Registered windows [(input, target, where the target holds)], model units (the input plane's map
    for both): windows of side ≤ WINDOW spread over the source frames, REGISTERED_PIXELS in all at most,
    each frame at least once while the budget lasts. Yields (windows done, to do) after each; returns them."""
    sides = [min(max(WINDOW, patch_size), *planes[t].shape) for t, _ in sources]
    per_frame = [max(1, (planes[t].shape[0] * planes[t].shape[1]) // (s * s)) for (t, _), s in zip(sources, sides)]
    order = [k for n in range(max(per_frame, default=0)) for k in range(len(sources)) if n < per_frame[k]]
    todo, spent = [], 0
    for k in order:
        if spent + sides[k] ** 2 > REGISTERED_PIXELS and todo:
            break
        todo.append(k)
        spent += sides[k] ** 2
    windows = []
    for done, k in enumerate(todo, 1):
        t, others = sources[k]
        side, (h, w) = sides[k], planes[t].shape
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        win = (slice(y0, y0 + side), slice(x0, x0 + side))
        target, holds = registered_target(planes[t][win], [planes[o][win] for o in others], noise)
        if holds.mean() * side * side >= patch_size:  # a window the sample left entirely teaches nothing
            windows.append((maps[t].to_model(planes[t][win]), maps[t].to_model(target.astype(np.float32)),
                            holds.astype(np.float32)))
        yield done, len(todo)
    return windows


def series_batch(windows, patch_size: int, batch_size: int, rng, device):
    """A training batch (inputs, targets, masks), (n, 1, h, w) on ``device``: patches of the registered
    windows, augmented alike."""
    stacks = []
    for _ in range(batch_size):
        u, target, holds = windows[int(rng.integers(len(windows)))]
        y0 = rng.integers(0, u.shape[0] - patch_size + 1)
        x0 = rng.integers(0, u.shape[1] - patch_size + 1)
        win = (slice(y0, y0 + patch_size), slice(x0, x0 + patch_size))
        stacks.append(augment(np.stack([u[win], target[win], holds[win]]), rng))
    batch = np.ascontiguousarray(np.stack(stacks), dtype=np.float32)  # (n, 3, h, w)
    return tuple(torch.from_numpy(np.ascontiguousarray(batch[:, c:c + 1])).to(device) for c in range(3))
