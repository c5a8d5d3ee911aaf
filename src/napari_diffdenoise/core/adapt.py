"""Adapt a model to a user's own data from noisy images alone: no clean image needed.

The method, and why:
1. **The camera's noise model from the image itself** (Foi et al. 2008, "Practical
   Poissonian-Gaussian noise modeling and fitting for single-image raw-data"): var(y) = a·E[y] + b,
   fitted to the local means and noise variances of the image's flattest blocks
   (:func:`estimate_noise`). It says how much noise each pixel carries, in the image's own units.
2. **Recorrupted-to-Recorrupted** (Pang et al. 2021): from one noisy image y and fresh noise z,
   y_in = y + α·σ·z and y_target = y − σ·z/α are a Noise2Noise pair whose noises are independent,
   so the MSE trains a network towards E[clean | y_in] without ever seeing a clean image; σ² is
   the fitted variance at each pixel's (smoothed) level. The model's **mean head** (the one-step
   network behind the [mean] layer) is fine-tuned this way, starting from its bundled weights.
3. **No confirmation bias**: targets are the user's own noisy pixels, never the model's outputs.
4. **Stopping without ground truth**: the same recorrupted loss on a validation strip of every
   plane that training never touches (fixed noise); the weights at its minimum are kept.

The diffusion network that draws the samples is left as it is: its targets would have to be clean
images, and recorrupted targets would teach it to draw noise. Its spread is re-calibrated instead
(``recalibrate=True``): on pairs simulated from the adapted mean with the fitted noise model
(the calibration's source says so).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from .. import __version__
from .datasets import Split, as_planes
from .devices import resolve_device
from .driving import drive
from .model import DiffusionModel
from .normalization import IntensityMap
from .pairs import augment

BLOCK = 8  # pixels per side of the blocks whose statistics fit the noise model
# a σ = 2 Gaussian leaves white noise with 1/(2√π·2) of its std: a smoothed image whose std is not 20 %
# above that holds no structure to learn from
SMOOTHING, MIN_STRUCTURE = 2.0, 1.2


@dataclass(frozen=True)
class CameraNoise:
    """var(y) = gain·E[y] + floor, in the image's units (Poisson–Gaussian: gain = photon → unit
    conversion, floor = read noise² minus gain × offset)."""

    gain: float
    floor: float

    def variance(self, level: np.ndarray) -> np.ndarray:
        # a floor of a hundredth of the smallest level's variance keeps σ > 0 where the fit dips
        var = self.gain * np.asarray(level, dtype=np.float64) + self.floor
        return np.maximum(var, 1e-2 * max(abs(self.floor), self.gain, 1e-12))


def estimate_noise(planes: list[np.ndarray]) -> CameraNoise:
    """Fit var(y) = a·E[y] + b from BLOCK² blocks (after Foi et al. 2008): a block's level is its
    mean; its noise variance comes from second differences along rows and columns,
    d = y_{i−1} − 2·y_i + y_{i+1} (var d = 6·var y, and a linear ramp of the signal cancels),
    estimated by the median absolute deviation (1.4826·MAD, robust to the few triples that
    straddle an edge). Per level bin the median block
    variance is taken, and a line weighted by the blocks per bin is fitted through them."""
    means, variances = [], []
    for plane in planes:
        p = np.asarray(plane, dtype=np.float64)
        h, w = (p.shape[0] // BLOCK) * BLOCK, (p.shape[1] // BLOCK) * BLOCK
        blocks = p[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
        d = np.concatenate([np.diff(blocks, 2, axis=2).reshape(len(blocks), -1),
                            np.diff(blocks, 2, axis=1).reshape(len(blocks), -1)], axis=1)
        mad = np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
        means.append(blocks.mean(axis=(1, 2)))
        variances.append((1.4826 * mad) ** 2 / 6)
    m, v = np.concatenate(means), np.concatenate(variances)
    edges = np.unique(np.quantile(m, np.linspace(0, 1, 17)))
    xs, ys, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() < 4:
            continue
        xs.append(np.median(m[sel]))
        ys.append(np.median(v[sel]))
        ws.append(np.sqrt(sel.sum()))
    if len(xs) < 2:
        return CameraNoise(0.0, float(np.median(v)))
    gain, floor = np.polyfit(xs, ys, 1, w=ws)
    if gain < 0:  # no signal dependence to be seen: Gaussian noise
        gain, floor = 0.0, float(np.median(ys))
    return CameraNoise(float(gain), float(floor))


@dataclass
class AdaptProgress:
    step: int
    total_steps: int | None  # None while a time budget decides
    train_loss: float
    val_loss: float | None
    seconds: float


@dataclass
class AdaptResult:
    model: DiffusionModel | None
    noise: CameraNoise
    history: list = field(default_factory=list)
    best_step: int = 0
    snapshots: dict = field(default_factory=dict)  # seconds → (step, the best head's weights so far)


def _recorrupt(y: np.ndarray, sigma: np.ndarray, alpha: float, rng) -> tuple[np.ndarray, np.ndarray]:
    z = rng.standard_normal(y.shape)
    return y + alpha * sigma * z, y - sigma * z / alpha


def _sigma(y: np.ndarray, noise: CameraNoise) -> np.ndarray:
    """σ at each pixel from its smoothed level (the noisy value itself would correlate σ with z's pixel)."""
    return np.sqrt(noise.variance(ndimage.gaussian_filter(y, 1.5)))


def check_adapt(model, noisy, *, minutes=5.0, steps=None, alpha=0.5, patch_size=64, val_fraction=0.1):
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
        raise ValueError(f"minutes must be positive; got {minutes}")
    if not 0 < alpha <= 2:
        raise ValueError(f"alpha must be in (0, 2]; got {alpha}")
    planes = as_planes(noisy, "noisy")
    if not planes:
        raise ValueError("no noisy images given")
    multiple = model.network.config.size_multiple
    if patch_size < multiple or patch_size % multiple:
        raise ValueError(f"patch_size must be a positive multiple of {multiple}; got {patch_size}")
    splits = [Split.of(p.shape, val_fraction, patch_size, "noisy") for p in planes]
    noise = estimate_noise(planes)
    structure = float(np.mean([ndimage.gaussian_filter(p, SMOOTHING).std() for p in planes]))
    noise_left = float(np.sqrt(np.mean([noise.variance(p.mean()) for p in planes]))) / (2 * np.sqrt(np.pi) * SMOOTHING)
    if structure < MIN_STRUCTURE * noise_left:
        raise ValueError(f"the images are too flat to learn from: smoothed, they vary by {structure:.3g}, about what "
                         f"their noise alone gives ({noise_left:.3g}); adapt on images with visible objects")
    return planes, splits, noise


def iter_adapt(
    model: DiffusionModel,
    noisy,
    *,
    minutes: float | None = 5.0,
    steps: int | None = None,
    seed: int = 0,
    alpha: float = 0.5,
    patch_size: int = 64,
    batch_size: int = 8,
    learning_rate: float = 5e-5,
    val_fraction: float = 0.1,
    validate_every: int = 25,
    device: str = "auto",
    snapshots: tuple[float, ...] = (),
) -> Generator[AdaptProgress, None, AdaptResult]:
    """The generator behind :func:`adapt`: yields after every step, returns an :class:`AdaptResult`.
    ``snapshots``: seconds at which the best head so far is also kept (AdaptResult.snapshots), so
    that one long run shows what shorter budgets would have given (the learning rate is constant)."""
    planes, splits, noise = check_adapt(model, noisy, minutes=minutes, steps=steps, alpha=alpha,
                                        patch_size=patch_size, val_fraction=val_fraction)
    maps = [IntensityMap.from_percentiles(p, model.percentiles) for p in planes]
    sigmas = [_sigma(p, noise) for p in planes]
    dev = resolve_device(device)
    adapted = copy.deepcopy(model)
    head = adapted.mean_network.to(dev).train()
    opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=1e-4)

    def crop(i, part, rng):
        p, s = part(planes[i]), part(sigmas[i])
        y0 = rng.integers(0, p.shape[0] - patch_size + 1)
        x0 = rng.integers(0, p.shape[1] - patch_size + 1)
        win = (slice(y0, y0 + patch_size), slice(x0, x0 + patch_size))
        return p[win], s[win]

    # a fixed validation batch: strips no training patch touches, recorrupted once with fixed noise
    val_rng = np.random.default_rng([seed, 10**6])
    val_in, val_target = [], []
    for _ in range(max(16, 8 * batch_size)):  # many patches: the targets' own noise dominates the loss
        i = int(val_rng.integers(len(planes)))
        if val_fraction <= 0:
            break
        y, s = crop(i, splits[i].val_part, val_rng)
        a, b = _recorrupt(y, s, alpha, val_rng)
        val_in.append(maps[i].to_model(a))
        val_target.append(maps[i].to_model(b))

    def batch(step):
        rng = np.random.default_rng([seed, step])
        inputs, targets = [], []
        for _ in range(batch_size):
            i = int(rng.integers(len(planes)))
            y, s = crop(i, splits[i].train_part, rng)
            a, b = _recorrupt(y, s, alpha, rng)
            pair = augment(np.stack([maps[i].to_model(a), maps[i].to_model(b)]), rng)
            inputs.append(pair[0])
            targets.append(pair[1])
        return (torch.from_numpy(np.ascontiguousarray(np.stack(inputs)[:, None], dtype=np.float32)).to(dev),
                torch.from_numpy(np.ascontiguousarray(np.stack(targets)[:, None], dtype=np.float32)).to(dev))

    def val_loss():
        if not val_in:
            return None
        head.eval()
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(val_in)[:, None].astype(np.float32)).to(dev)
            t = torch.from_numpy(np.stack(val_target)[:, None].astype(np.float32)).to(dev)
            loss = float(torch.mean((adapted.predict_mean(x) - t) ** 2))
        head.train()
        return loss

    torch.manual_seed(seed)
    history, t0, step = [], time.perf_counter(), 0
    best = (val_loss(), 0, copy.deepcopy(head.state_dict()))
    history.append({"step": 0, "val_loss": best[0], "seconds": 0.0})
    last_val = best[0]
    pending, taken = sorted(snapshots), {}
    while True:
        elapsed = time.perf_counter() - t0
        while pending and elapsed >= pending[0]:
            taken[pending.pop(0)] = (best[1], copy.deepcopy(best[2]))
        if (steps is not None and step >= steps) or (steps is None and elapsed >= minutes * 60):
            break
        x, t = batch(step)
        loss = torch.mean((adapted.predict_mean(x) - t) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        record = {"step": step, "train_loss": float(loss.detach()), "seconds": round(time.perf_counter() - t0, 2)}
        if step % validate_every == 0:
            last_val = record["val_loss"] = val_loss()
            if last_val is not None and (best[0] is None or last_val < best[0]):
                best = (last_val, step, copy.deepcopy(head.state_dict()))
        history.append(record)
        yield AdaptProgress(step, steps, record["train_loss"], last_val, record["seconds"])
    final = val_loss()
    if final is not None and (best[0] is None or final < best[0]):
        best = (final, step, copy.deepcopy(head.state_dict()))
    if val_in:
        head.load_state_dict(best[2])  # the weights at the validation minimum
    head.eval()
    adapted.mean_network = head.cpu()
    adapted.calibrations = []  # the spread around a new mean needs a new calibration
    adapted.sha256 = ""
    adapted.provenance = {
        **{k: v for k, v in model.provenance.items() if k != "history"},
        "adapted": {"method": "mean head fine-tuned by Recorrupted-to-Recorrupted (Pang et al. 2021) with a "
                              "Poisson-Gaussian noise model fitted to the images (Foi et al. 2008)",
                    "noise_model": dataclasses.asdict(noise), "alpha": alpha, "steps": step, "best_step": best[1],
                    "seed": seed, "images": [list(p.shape) for p in planes], "parent": model.name,
                    "parent_sha256": model.sha256 or None, "package_version": __version__},
    }
    return AdaptResult(adapted, noise, history, best[1], taken)


def simulate_like(clean: np.ndarray, noise: CameraNoise, rng: np.random.Generator) -> np.ndarray:
    """A noisy image from ``clean`` with the fitted noise model (Gaussian with the fitted variance:
    the Poisson-Gaussian's normal approximation, fine above a few photons)."""
    return (clean + np.sqrt(noise.variance(np.maximum(clean, 0))) * rng.standard_normal(clean.shape)).astype(np.float32)


def adapt(
    model: DiffusionModel | str,
    noisy,
    *,
    minutes: float | None = 5.0,
    steps: int | None = None,
    seed: int = 0,
    recalibrate: bool = True,
    progress: Callable[[AdaptProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **options,
) -> DiffusionModel:
    """A copy of ``model`` adapted to ``noisy`` (a 2D plane, a 3D stack or a list of them) in
    ``minutes`` of training (or exactly ``steps`` steps, which makes it deterministic under
    ``seed``), from the noisy images alone. See the module docstring for the method.

    ``recalibrate``: calibrate the adapted model's intervals for the default settings on pairs
    simulated from its own mean of ``noisy`` with the fitted noise model. ``options`` go to
    :func:`iter_adapt` (alpha, patch_size, batch_size, learning_rate, val_fraction, device).
    Raises :class:`~.restore.Cancelled` when ``cancel()`` returned True.
    """
    from .checkpoint import load_model
    from .restore import Cancelled

    if isinstance(model, str):
        model = load_model(model)
    result, cancelled = drive(iter_adapt(model, noisy, minutes=minutes, steps=steps, seed=seed, **options),
                              progress, cancel)
    if cancelled:
        raise Cancelled("adaptation was cancelled")
    adapted = result.model
    if recalibrate:
        adapted = recalibrate_simulated(adapted, noisy, result.noise, seed)
    return adapted


def iter_recalibrate(model: DiffusionModel, noisy, noise: CameraNoise | None = None, seed: int = 0):
    """Calibrate ``model``'s default settings on pairs simulated from its own mean of ``noisy`` with
    the camera model fitted to it (calibration.self_simulated_pairs; ``noise`` is refitted there).
    A generator yielding the restoration's progress; returns the calibrated model."""
    from .calibration import iter_calibrate
    from .restore import DEFAULT_SAMPLER_SETTINGS

    run = yield from iter_calibrate(model, noisy, None, split_seed=seed, seed=seed, **DEFAULT_SAMPLER_SETTINGS)
    return run.model


def recalibrate_simulated(model: DiffusionModel, noisy, noise: CameraNoise, seed: int = 0) -> DiffusionModel:
    """:func:`iter_recalibrate` to the end."""
    return drive(iter_recalibrate(model, noisy, noise, seed))[0]
