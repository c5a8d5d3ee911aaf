"""Adapt a model to a user's own data from noisy images alone: no clean image needed.

The method, and why:
1. **The camera's noise model from the image itself** (Foi et al. 2008, "Practical
   Poissonian-Gaussian noise modeling and fitting for single-image raw-data"): var(y) = a·E[y] + b,
   fitted to the local means and noise variances of the image's flattest blocks
   (:func:`~.camera_noise.estimate_noise`). It says how much noise each pixel carries, in the image's own units.
2. **Recorrupted-to-Recorrupted** (Pang et al. 2021): from one noisy image y and fresh noise z,
   y_in = y + α·σ·z and y_target = y − σ·z/α are a Noise2Noise pair whose noises are independent,
   so the MSE trains a network towards E[clean | y_in] without ever seeing a clean image; σ² is
   the fitted variance at each pixel's (smoothed) level. The model's **mean head** (the one-step
   network behind the [mean] layer) is fine-tuned this way, starting from its bundled weights.
3. **No confirmation bias**: targets are the user's own noisy pixels, never the model's outputs.
4. **Stopping and keeping without ground truth, and without the fitted noise**: the recorrupted
   loss cannot judge the result — built from the same fitted noise, it rewards passing noise
   through wherever the fitted variance is too low (the two recorrupted noises are then positively
   correlated): on real 8-bit widefield frames it fell the whole way while the restoration lost
   2–7 dB. Held-out data, never trained on, is scored by a criterion with no fitted noise in it:
   where the planes are repeated views of one field (a time-lapse), frames are held out whole and
   frame t's restoration is scored by its MSE to the mean of frames t−1 and t+1 (their noise is
   independent of t's, so E|f(y_t) − ȳ|² = E|f(y_t) − x|² + var(noise)/2 + motion, and only the
   first term depends on f, up to a cross term with the motion that the mean of the two
   neighbours keeps small); on single images, windows of a validation strip of every
   plane are sub-sampled into neighbouring pixels of each 2×2 cell (Neighbor2Neighbor, Huang et
   al. 2021) and scored alike, a neighbour standing in for the next frame, and by a blind-spot MSE
   (Noise2Self: masked pixels against their noisy values); each of the two is fooled where the
   other is not (:func:`iter_adapt`), so both must agree. Half the patches pick the step; the
   other half decide: the adapted head is kept only when it is better there by two standard
   errors, and the bundled head is returned otherwise — with what was kept and the figures in the
   result, the provenance and the last progress message.

The diffusion network that draws the samples is left as it is: its targets would have to be clean
images, and recorrupted targets would teach it to draw noise. Its spread is re-calibrated instead
(``recalibrate=True``): against the adapted model's real error on the same image, read off the
residuals of recorrupted pairs of it (core.calibration.self_calibration; the calibration's source says so).
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

from .._version import __version__
from ..calibration.calibration import iter_calibrate
from ..imaging.axes import as_planes
from ..imaging.camera_noise import CameraNoise, estimate_noise
from ..imaging.normalization import IntensityMap
from ..io.checkpoint import load_model
from ..model.devices import resolve_device
from ..model.model import DiffusionModel
from ..run.driving import drive
from ..run.restore import DEFAULT_SAMPLER_SETTINGS, Cancelled, calibration_settings
from ..sampling.sampler_registry import Param
from .datasets import Split
from .finetune import BATCH_SIZE, PATCH_SIZE, VAL_FRACTION
from .pairs import augment

# the time budget, as the library, the CLI's adapt command and the Train widget take it
MINUTES = Param("minutes", float, 5.0, 0.1, 600.0, step=0.5, label="Adapt for (min)",
                help="How long to adapt, in minutes; the weights with the lowest validation loss are kept. The "
                     "intervals are then recalibrated on the image")

# a σ = 2 Gaussian leaves white noise with 1/(2√π·2) of its std: a smoothed image whose std is not 20 %
# above that holds no structure to learn from
SMOOTHING, MIN_STRUCTURE = 2.0, 1.2


@dataclass
class AdaptProgress:
    step: int
    total_steps: int | None  # None while a time budget decides
    train_loss: float
    val_loss: float | None  # the first keep-or-drop criterion on the picking patches (see :func:`iter_adapt`)
    seconds: float
    message: str | None = None  # set on the last report: which head was kept, and why


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


def _recorrupt(y: np.ndarray, sigma: np.ndarray, alpha: float, rng) -> tuple[np.ndarray, np.ndarray]:
    z = rng.standard_normal(y.shape)
    return y + alpha * sigma * z, y - sigma * z / alpha


# keep the adapted head only when its criterion is below the bundled head's by this many standard
# errors of the paired per-patch difference (on patches used neither for training nor for picking the step)
KEEP_MARGIN_SE = 2.0
SERIES_MIN_CORRELATION = 0.8  # consecutive planes this alike (smoothed) are taken as repeated views


def _series_pairs(noisy, time_series: bool | None) -> list[tuple[int, int]]:
    """(t, t+1) plane indices of consecutive planes of one stack, where they are repeated noisy views
    of one field: ``time_series`` True, or None and every consecutive pair of smoothed planes
    correlates ≥ SERIES_MIN_CORRELATION (a time-lapse of a slow sample, a repeated acquisition;
    a z-stack with fine steps passes too, and then its structure's change adds to the criterion
    alike for both heads, up to a cross term). Empty for single planes and when False."""
    if time_series is False:
        return []
    items = [noisy] if isinstance(noisy, np.ndarray) or not isinstance(noisy, (list, tuple)) else list(noisy)
    pairs, start = [], 0
    for item in items:
        array = np.asarray(item)
        n = int(np.prod(array.shape[:-2])) if array.ndim >= 3 else 1
        if array.ndim == 3 and n >= 2:
            if time_series is None:
                smooth = [ndimage.gaussian_filter(np.asarray(p, dtype=np.float64), SMOOTHING) for p in array]
                alike = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(smooth[:-1], smooth[1:])]
                if not np.all(np.nan_to_num(alike) >= SERIES_MIN_CORRELATION):
                    start += n
                    continue
            pairs += [(start + t, start + t + 1) for t in range(n - 1)]
        start += n
    return pairs


def _neighbour_pairs(u: np.ndarray, multiple: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, targets, masks), each (4, h, w): the image's 2×2 cells sub-sampled into four
    half-size images — top-left, top-right, bottom-right, bottom-left pixel of every cell — paired
    with a horizontal and a vertical neighbour, both ways round (Neighbor2Neighbor, Huang et al.
    2021). Two sub-images are noisy views of nearly the same half-size field with independent noise
    (pixel-independent noise assumed), so E|f(g₁) − g₂|² = E|f(g₁) − x₁|² + var(noise) +
    E|x₁ − x₂|² + a cross term, as for two frames of a series one pixel apart; the head sees the image's own
    noise, unmasked and unchanged. Sides are padded (reflected) to ``multiple``; masks are False
    there."""
    h, w = u.shape[0] // 2, u.shape[1] // 2
    cells = u[: 2 * h, : 2 * w].reshape(h, 2, w, 2)
    g = [cells[:, 0, :, 0], cells[:, 0, :, 1], cells[:, 1, :, 1], cells[:, 1, :, 0]]
    order = [(0, 1), (1, 0), (0, 3), (3, 0)]  # horizontal neighbours both ways, vertical both ways
    ph, pw = -h % multiple, -w % multiple
    inputs = np.stack([np.pad(g[a], ((0, ph), (0, pw)), mode="reflect") for a, _ in order]).astype(np.float32)
    targets = np.stack([np.pad(g[b], ((0, ph), (0, pw)), mode="reflect") for _, b in order]).astype(np.float32)
    masks = np.zeros(inputs.shape, dtype=bool)
    masks[:, :h, :w] = True
    return inputs, targets, masks


def _blind_spot(u: np.ndarray, rng, stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(input with a grid of pixels replaced by the mean of their 4 neighbours, the grid's mask): the
    head's output at a masked pixel does not see that pixel's noise (Noise2Self, Batson & Royer
    2019), so E[(f(u_masked) − u)²] there = E[(f_J − clean)²] + var(noise), with no noise model."""
    mask = np.zeros(u.shape, dtype=bool)
    oy, ox = rng.integers(stride, size=2)
    mask[oy::stride, ox::stride] = True
    padded = np.pad(u, 1, mode="reflect")
    neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
    return np.where(mask, neighbours, u).astype(np.float32), mask


def check_adapt(model, noisy, *, minutes=MINUTES.default, steps=None, alpha=0.5, patch_size=PATCH_SIZE.default,
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
    minutes: float | None = MINUTES.default,
    steps: int | None = None,
    seed: int = 0,
    alpha: float = 0.5,
    patch_size: int = PATCH_SIZE.default,
    batch_size: int = BATCH_SIZE.default,
    learning_rate: float = 5e-5,
    val_fraction: float = VAL_FRACTION.default,
    validate_every: int = 25,
    device: str = "auto",
    snapshots: tuple[float, ...] = (),
    time_series: bool | None = None,
    noise: CameraNoise | None = None,
) -> Generator[AdaptProgress, None, AdaptResult]:
    """The generator behind :func:`adapt`: yields after every step, returns an :class:`AdaptResult`.
    ``snapshots``: seconds at which the best head so far is also kept (AdaptResult.snapshots), so
    that one long run shows what shorter budgets would have given (the learning rate is constant).

    **Keep or drop.** The recorrupted loss cannot judge the adapted head: it is built from the same
    fitted noise, and where that variance is too low the two recorrupted noises are positively
    correlated and the loss rewards passing noise through (it fell all the way while a real frame
    lost 7 dB). Held-out patches are judged by a criterion with no fitted noise in it, half of them
    to pick the step (``val_loss``), the other half to decide:

    - ``series``, where the planes are repeated views (``time_series``; see :func:`_series_pairs`):
      every sixth triplet of consecutive frames (t−1, t, t+1) is held out of training whole, and
      windows of it are scored by the MSE of the head's restoration of frame t to the mean of
      frames t−1 and t+1 (of a two-frame series: to frame t+1, on validation strips, with no
      frame left to hold out whole). Their noise is independent of
      frame t's, so E|f(y_t) − ȳ|² = E|f(y_t) − x_t|² + var(noise)/2 + E|x_t − x̄|² + a cross term:
      only the first term and the cross term depend on the head, and the mean of the neighbours
      cancels steady motion to first order (x̄ − x_t is then second order), which leaves the cross
      term small. It ranks two heads as their true error would, over the whole field of view (top
      halves pick, bottom halves decide). (With frame t+1 alone as the target, the 8-bit
      time-lapse, whose nuclei move a few pixels a frame, scored restorations mostly by motion);
    - on single images, windows of the validation strips judged two ways, each biased in its own
      direction, and both must agree: ``neighbours`` (:func:`_neighbour_pairs`: sub-sampled into
      half-size images of neighbouring pixels, the MSE of the head's restoration of one to its
      neighbour — the head sees structure at half its size) and ``blind-spot``
      (:func:`_blind_spot`: the MSE at masked pixels to their noisy values — the head sees masked
      inputs). On the DSB image the blind-spot MSE preferred a head 0.18 dB worse than the
      bundled one and the neighbour MSE did not; on the tests' small blobs the neighbour MSE
      preferred a head that passed noise through and the blind-spot MSE did not.

    The step picked is the one where the largest relative change of any criterion on the picking
    patches is lowest (step 0, the bundled head, scores 0). The adapted head is kept only when
    every criterion on the deciding patches is below the bundled head's by KEEP_MARGIN_SE
    standard errors of the paired per-patch difference; otherwise the bundled head is returned.
    AdaptResult.kept / .decision / .message and the provenance say which
    and give the figures. ``noise``: a camera model to use instead of fitting one (for tests)."""
    planes, splits, fitted = check_adapt(model, noisy, minutes=minutes, steps=steps, alpha=alpha,
                                         patch_size=patch_size, val_fraction=val_fraction)
    noise = fitted if noise is None else noise
    pairs = [(a, b) for a, b in _series_pairs(noisy, time_series)
             if planes[a].shape == planes[b].shape and min(planes[a].shape) >= 2 * patch_size]
    # a series: frames t−1, t, t+1 (every sixth such triplet; t, t+1 of a two-frame series) are held out
    # whole — the criterion sees the whole field of view, not a strip of it — and training draws from
    # the other frames. held: (t, the frames whose mean is frame t's target)
    triplets = [(a, b, c) for (a, b), (b2, c) in zip(pairs[:-1], pairs[1:]) if b == b2]
    if triplets:
        held = [(b, (a, c)) for k, (a, b, c) in enumerate(triplets) if k % 6 == 1] or \
            [(b, (a, c)) for a, b, c in triplets[-1:]]
    else:
        held = [(a, (b,)) for a, b in pairs[-1:]]
    held_frames = {i for t, others in held for i in (t, *others)}
    training = [i for i in range(len(planes)) if i not in held_frames]
    strips_only = not training  # too few frames to hold any out whole: their validation strips instead
    if strips_only:
        training = list(range(len(planes)))
    maps = [IntensityMap.from_percentiles(p, model.percentiles) for p in planes]
    sigmas = [noise.sigma_at(p) for p in planes]
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
        i = training[int(val_rng.integers(len(training)))]
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
            i = training[int(rng.integers(len(training)))]
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

    # the criteria's patches, alternately to pick the step and to decide: on a series, windows of the
    # held-out frames, the picking ones from the top half of each frame and the deciding ones from the
    # bottom half; on single images, windows of the validation strips, judged two ways
    criteria = ["series"] if held else ["neighbours", "blind-spot"]
    multiple = model.mean_network.config.size_multiple
    crit_rng = np.random.default_rng([seed, 2 * 10**6])
    patches = {c: ([], [], []) for c in criteria}  # per patch: (n, h, w) inputs, targets, masks
    for k in range(max(32, 8 * batch_size) if (val_fraction > 0 or held) else 0):
        if held:
            i, others = held[(k // 2) % len(held)]
            rows = slice(0, planes[i].shape[0] // 2) if k % 2 == 0 else slice(planes[i].shape[0] // 2, None)
            part = splits[i].val_part if strips_only else (lambda a: a[rows])
            p, q = part(planes[i]), np.mean([part(planes[o]) for o in others], axis=0)
        else:
            i = int(crit_rng.integers(len(planes)))
            p = q = splits[i].val_part(planes[i])
        y0 = crit_rng.integers(0, p.shape[0] - patch_size + 1)
        x0 = crit_rng.integers(0, p.shape[1] - patch_size + 1)
        win = (slice(y0, y0 + patch_size), slice(x0, x0 + patch_size))
        u, target = maps[i].to_model(p[win]), maps[i].to_model(q[win])  # plane i's map for both
        items = {}
        if held:
            items["series"] = (u[None], target[None], np.ones((1,) + u.shape, dtype=bool))
        else:
            items["neighbours"] = _neighbour_pairs(u, multiple)
            masked, mask = _blind_spot(u, crit_rng)
            items["blind-spot"] = (masked[None], u[None], mask[None])
        for c, item in items.items():
            for store, value in zip(patches[c], item):
                store.append(value)
    checked = bool(patches[criteria[0]][0])

    def scores(net, which=slice(None)) -> dict:
        """Each criterion of head ``net`` on the patches ``which`` (per patch, model units)."""
        was_training, previous = net.training, adapted.mean_network
        net.eval()
        adapted.mean_network = net
        result = {}
        for c, (inputs, targets, masks) in patches.items():
            flat, out = np.concatenate(inputs[which]), []
            with torch.inference_mode():
                for k in range(0, len(flat), 16):
                    x = torch.from_numpy(flat[k:k + 16])[:, None].to(dev)
                    out.append(adapted.predict_mean(x)[:, 0].cpu().numpy())
            out, per_patch, start = np.concatenate(out), [], 0
            for t, m in zip(targets[which], masks[which]):
                per_patch.append(np.mean((out[start:start + len(t)] - t)[m] ** 2))
                start += len(t)
            result[c] = np.array(per_patch)
        adapted.mean_network = previous
        net.train(was_training)
        return result

    select, decide = slice(0, None, 2), slice(1, None, 2)
    bundled_head = copy.deepcopy(model.mean_network).to(dev)
    bundled = scores(bundled_head) if checked else {}

    def selection_loss():
        """(the first criterion's mean, the largest relative change of any criterion against the
        bundled head: below 0 only where every criterion is better) on the picking patches."""
        if not checked:
            return None, None
        now = scores(head, select)
        change = max(float(np.mean(now[c]) / np.mean(bundled[c][select]) - 1) for c in criteria)
        return float(np.mean(now[criteria[0]])), change

    torch.manual_seed(seed)
    history, t0, step = [], time.perf_counter(), 0
    best = (0.0 if checked else None, 0, copy.deepcopy(head.state_dict()))
    last_val = float(np.mean(bundled[criteria[0]][select])) if checked else None
    history.append({"step": 0, "val_loss": last_val, "criterion_change": best[0], "r2r_val_loss": val_loss(),
                    "seconds": 0.0})
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
            last_val, change = selection_loss()
            record.update(val_loss=last_val, criterion_change=change, r2r_val_loss=val_loss())
            if change is not None and change < best[0]:
                best = (change, step, copy.deepcopy(head.state_dict()))
        history.append(record)
        yield AdaptProgress(step, steps, record["train_loss"], last_val, record["seconds"])
    final = selection_loss()[1]
    last_scores = scores(head, decide) if checked else {}  # the last step's head, whatever was picked
    if final is not None and final < best[0]:
        best = (final, step, copy.deepcopy(head.state_dict()))
    if checked:
        head.load_state_dict(best[2])  # the weights where every criterion improved most
    head.eval()
    kept = "adapted"
    decision = {"criterion": "+".join(criteria), "patches": len(patches[criteria[0]][0][decide])}
    if held:
        decision["held_out_frames"] = [] if strips_only else sorted(held_frames)
    what = {"series": "MSE of the restoration of frame t to the mean of frames t−1 and t+1" if triplets else
                      "MSE of the restoration of frame t to frame t+1",
            "neighbours": "MSE of the restoration of sub-sampled pixels to their neighbours",
            "blind-spot": "blind-spot MSE of masked pixels to their noisy values"}
    if checked:
        now, figures, parts = scores(head, decide), {}, []
        for c in criteria:
            diff = now[c] - bundled[c][decide]
            se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
            base = float(np.mean(bundled[c][decide]))
            figures[c] = dict(bundled=base, adapted=float(np.mean(now[c])), difference=float(np.mean(diff)),
                              standard_error=se, last_step=float(np.mean(last_scores[c])))
            parts.append(f"{what[c]} {base:.5g} → {np.mean(now[c]):.5g} ({100 * np.mean(diff) / base:+.2f} % "
                         f"± {100 * se / base:.2f} %)")
        better = all(f["difference"] + KEEP_MARGIN_SE * f["standard_error"] < 0 for f in figures.values())
        kept = "adapted" if best[1] > 0 and better else "bundled"
        decision.update(figures[criteria[0]], criteria=figures, margin_se=KEEP_MARGIN_SE, steps=step,
                        best_step=best[1])
        message = (f"kept the {kept} head (adapted: step {best[1]} of {step}); on {decision['patches']} held-out "
                   f"patches, bundled → adapted: {'; '.join(parts)}. The adapted head is kept only when every "
                   f"criterion is lower by {KEEP_MARGIN_SE:g} standard errors")
    else:
        message = "kept the adapted head unchecked (no validation strip: val_fraction = 0)"
    decision["message"] = message
    rejected = None
    if kept == "bundled":
        rejected = copy.deepcopy(adapted)
        rejected.mean_network = copy.deepcopy(head).cpu()
        rejected.calibrations, rejected.sha256 = [], ""
        head.load_state_dict(bundled_head.state_dict())
    adapted.mean_network = head.cpu()
    if kept == "adapted":
        adapted.calibrations = []  # the spread around a new mean needs a new calibration
    adapted.sha256 = ""
    adapted.provenance = {
        **{k: v for k, v in model.provenance.items() if k != "history"},
        "adapted": {"method": "mean head fine-tuned by Recorrupted-to-Recorrupted (Pang et al. 2021) with a "
                              "Poisson-Gaussian noise model fitted to the images (Foi et al. 2008)",
                    "noise_model": dataclasses.asdict(noise), "alpha": alpha, "steps": step,
                    "best_step": best[1] if kept == "adapted" else 0,  # the returned head's step
                    "seed": seed, "images": [list(p.shape) for p in planes], "parent": model.name,
                    "parent_sha256": model.sha256 or None, "package_version": __version__,
                    "kept": kept, "decision": decision},
    }
    yield AdaptProgress(step, steps, history[-1].get("train_loss", float("nan")), last_val,
                        round(time.perf_counter() - t0, 2), message)
    if rejected is not None:
        rejected.provenance = copy.deepcopy(adapted.provenance)
    returned_step = best[1] if kept == "adapted" else 0
    return AdaptResult(adapted, noise, history, returned_step, taken, kept, decision, message, rejected)


def adapt(
    model: DiffusionModel | str,
    noisy,
    *,
    minutes: float | None = MINUTES.default,
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

    The adapted mean head is kept only when a held-out criterion with no fitted noise in it shows
    it better than the bundled one; otherwise the returned copy carries the bundled head (and its
    calibrations). ``provenance["adapted"]["kept"]`` ("adapted" or "bundled") and ``["decision"]``
    say which and why; ``progress`` gets the message with the last report.

    ``recalibrate``: calibrate the adapted model's intervals for the default settings on ``noisy``
    itself (:func:`iter_recalibrate`). ``options`` go to
    :func:`iter_adapt` (alpha, patch_size, batch_size, learning_rate, val_fraction, device,
    time_series).
    Raises :class:`~.restore.Cancelled` when ``cancel()`` returned True.
    """
    if isinstance(model, str):
        model = load_model(model)
    result, cancelled = drive(iter_adapt(model, noisy, minutes=minutes, steps=steps, seed=seed, **options),
                              progress, cancel)
    if cancelled:
        raise Cancelled("adaptation was cancelled")
    adapted = result.model
    if recalibrate:  # a calibration restores a budget of the image: it can take minutes, and stops like the rest
        adapted, cancelled = drive(iter_recalibrate(adapted, noisy, seed), cancel=cancel)
        if cancelled:
            raise Cancelled("adaptation was cancelled while recalibrating; nothing was returned")
    return adapted


def iter_recalibrate(model: DiffusionModel, noisy, seed: int = 0):
    """Calibrate ``model``'s default settings on ``noisy`` alone, against its real error there: the
    residuals of recorrupted pairs of ``noisy`` (calibration's ``without_truth="residuals"``,
    core.calibration.self_calibration, which fits the camera noise to ``noisy`` itself). A generator yielding the
    restoration's progress; returns the calibrated model."""
    run = yield from iter_calibrate(model, noisy, None, without_truth="residuals", split_seed=seed, seed=seed,
                                    **calibration_settings(model, DEFAULT_SAMPLER_SETTINGS))
    return run.model
