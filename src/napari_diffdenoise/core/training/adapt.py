"""Adapt a model to a user's own data from noisy images alone: no clean image needed.

The method, and why:
1. **The camera's noise model from the image itself** (Foi et al. 2008, "Practical
   Poissonian-Gaussian noise modeling and fitting for single-image raw-data"): var(y) = a·E[y] + b,
   fitted to the local means and noise variances of the image's flattest blocks
   (:func:`~.camera_noise.estimate_noise`). It says how much noise each pixel carries, in the image's own units.
2. **Recorrupted-to-Recorrupted** (Pang et al. 2021): from one noisy image y and fresh noise s,
   y_in = y + α·s and y_target = y − s/α are a Noise2Noise pair whose noises are independent,
   so the MSE trains a network towards E[clean | y_in] without ever seeing a clean image; s has
   the fitted variance at each pixel's (smoothed) level and the camera's third moment over α
   (core.imaging.recorruption: with Gaussian s the pair is independent only for Gaussian noise).
   The model's **mean head** (the one-step network behind the [mean] layer) is fine-tuned this
   way, starting from its bundled weights. **A series of repeated views** (a time-lapse of a slow
   sample) has pairs that need no noise model at all, used by default where it is long enough to hold out
   blocks of five frames (``frame_pairs``): each training frame against its neighbouring training frames
   registered onto it (Noise2Noise, Lehtinen et al. 2018; core.training.series_targets), the loss taken where the
   registered target holds. The camera's real noise is in both, with whatever gain, clipping and correlation it
   has: on the real 8-bit time-lapse the heads they trained scored +0.16 … +0.46 dB against a registered truth,
   where recorrupted pairs' scored 0 … +0.01 (docs/performance.md, nineteenth session).
3. **No confirmation bias**: targets are the user's own noisy pixels, never the model's outputs.
4. **Stopping and keeping without ground truth, and without the fitted noise**: the recorrupted
   loss cannot judge the result — built from the same fitted noise, it rewards passing noise
   through wherever the fitted variance is too low (the two recorrupted noises are then positively
   correlated): on real 8-bit widefield frames it fell the whole way while the restoration lost
   2–7 dB. Held-out data, never trained on, is scored by a criterion with no fitted noise in it:
   where the planes are repeated views of one field (a time-lapse), frames are held out whole and
   frame t's restoration is scored by its MSE to frames t ± 1, t ± 2 (t ± 1 on a short series) registered onto
   frame t and averaged, all held out with it (core.imaging.registration; their noise is independent of t's, so
   E|f(y_t) − ȳ|² = E|f(y_t) − x|² + var(noise)/4 + what the registration misses, and only the first term depends on
   f, up to a cross term with the registration's miss; pixels where it failed are left out); on single images,
   the cells tiling a validation strip of every plane, each once, are sub-sampled into neighbouring pixels of each
   2×2 cell (Neighbor2Neighbor, Huang et al. 2021) and scored alike, a neighbour standing in for the next frame,
   and by a blind-spot MSE (Noise2Self: masked pixels against their noisy values); each of the two is fooled where the
   other is not (:func:`iter_adapt`), so both must agree. Half the patches pick the step; the
   other half decide: the adapted head is kept only when it is better there by three standard
   errors (adapt_criteria.KEEP_MARGIN_SE), and the bundled head is returned otherwise — with what was kept and the figures in the
   result, the provenance and the last progress message.

The diffusion network that draws the samples is left as it is: its targets would have to be clean
images, and recorrupted targets would teach it to draw noise. Its spread is re-calibrated instead
(``recalibrate=True``): against the adapted model's real error on the same image, read off the
residuals of recorrupted pairs of it (core.calibration.self_calibration; the calibration's source says so).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Generator

import numpy as np
import torch

from .._version import __version__
from ..calibration.calibration import iter_calibrate
from ..calibration.self_calibration import iter_calibrate_on_data
from ..calibration.view_noise import noise_correlation
from ..imaging.axes import as_planes, check_axes
from ..imaging.camera_noise import CameraNoise, estimate_noise
from ..imaging.normalization import IntensityMap
from ..imaging.pilot_wiener import ALWAYS, BRIGHT_PHOTONS, IF_BRIGHT, refines
from ..imaging.recorruption import RecorruptionNoise
from ..io.checkpoint import load_model
from ..model.devices import resolve_device
from ..model.model import DiffusionModel
from ..run.bright_pass import without_hot_pixels
from ..run.cpu_share import free_threads, same_bits, torch_threads
from ..run.driving import drive, relay
from ..run.restore import DEFAULT_SAMPLER_SETTINGS, Cancelled, calibration_settings
from ..run.run_spec import SEED
from .adapt_criteria import (
    KEEP_MARGIN_SE,
    LEAST_DECIDING_CELLS,
    compare_heads,
    criterion_count,
    criterion_scores,
    held_out_frames,
    iter_criterion_patches,
    iter_refinement_judge,
    judged_by_blocks,
    judges_refinement,
    series_pairs,
    shown_better,
    strip_cells,
    target_frames,
)
from .adapt_spec import (
    ALPHA,
    FRAME_PAIRS,
    LEARNING_RATE,
    MINUTES,
    AdaptProgress,
    AdaptResult,
    check_adapt,
    validation_splits,
)
from .finetune import BATCH_SIZE, PATCH_SIZE, VAL_FRACTION
from .recorrupted_pairs import recorrupted_batch, recorrupted_validation, train_step
from .series_targets import iter_series_windows, series_batch, series_sources

# what gives a single image's judge more cells (adapt_criteria.strip_cells), in the words its messages use
MORE_CELLS = "a larger image, more planes or a smaller patch size give more cells"
RECORRUPTED_METHOD = ("mean head fine-tuned by Recorrupted-to-Recorrupted (Pang et al. 2021) with a Poisson-Gaussian "
                      "noise model fitted to the images (Foi et al. 2008)")
SERIES_METHOD = ("mean head fine-tuned by Noise2Noise (Lehtinen et al. 2018) on the series' own frames, each against "
                 "its neighbours registered onto it")


def iter_adapt(
    model: DiffusionModel,
    noisy,
    *,
    minutes: float | None = MINUTES.default,
    steps: int | None = None,
    seed: int = 0,
    alpha: float = ALPHA,
    patch_size: int = PATCH_SIZE.default,
    batch_size: int = BATCH_SIZE.default,
    learning_rate: float = LEARNING_RATE,
    val_fraction: float = VAL_FRACTION.default,
    validate_every: int = 25,
    device: str = "auto",
    snapshots: tuple[float, ...] = (),
    time_series: bool | None = None,
    frame_pairs: bool = FRAME_PAIRS,
    noise: CameraNoise | None = None,
) -> Generator[AdaptProgress, None, AdaptResult]:
    """The generator behind :func:`adapt`: yields after every step, returns an :class:`AdaptResult`.
    ``snapshots``: seconds at which the best head so far is also kept (AdaptResult.snapshots), so
    that one long run shows what shorter budgets would have given (the learning rate is constant).
    ``frame_pairs`` (on by default, adapt_spec.FRAME_PAIRS): on a series long enough to hold out blocks of five
    frames (adapt_criteria.BLOCK_SPACING), train on each of the other frames against its neighbours registered onto
    it (Noise2Noise; core.training.series_targets) instead of recorrupted pairs; single images and shorter series
    train on recorrupted pairs whatever it says (``decision["training_pairs"]`` tells which). Judged on such blocks,
    the heads it trained on the 13 real series scored −0.01 … +0.46 dB against the truth of a frame never seen;
    judged against frames t ± 1 alone, a lysosome head the judge kept scored −1.03 dB (docs/performance.md,
    eighteenth and nineteenth sessions).

    **Keep or drop.** The recorrupted loss cannot judge the adapted head: it is built from the same
    fitted noise, and where that variance is too low the two recorrupted noises are positively
    correlated and the loss rewards passing noise through (it fell all the way while a real frame
    lost 7 dB). Held-out patches are judged by a criterion with no fitted noise in it, half of them
    to pick the step (``val_loss``), the other half to decide:

    - ``series``, where the planes are repeated views (``time_series``; see :func:`~.adapt_criteria.series_pairs`):
      blocks of frames t − 2 … t + 2 (one every eight frames; on a series shorter than that, every sixth triplet
      t − 1, t, t + 1) are held out of training whole, and
      windows of frame t are scored by the MSE of the head's restoration of it to the mean of
      the block's other frames (of a two-frame series: to frame t+1, on validation strips, with no
      frame left to hold out whole), registered onto frame t first
      (:func:`~.adapt_criteria.registered_target`, :func:`~.adapt_criteria.held_out_frames`). Their noise is
      independent of frame t's and of every frame trained on, so E|f(y_t) − ȳ|² = E|f(y_t) − x_t|² + var(noise)/n +
      E|x_t − x̄|² + a cross term (n frames): only the first term and the cross term depend on the head, and the registration leaves
      x̄ − x_t small where it holds (the pixels where the warped frames disagree are left out),
      which leaves the cross term small. It ranks two heads as their true error would, over the
      whole field of view (top halves pick, bottom halves decide). ``still``: the same on the pixels where
      those frames agree as they are, whose target has no registration in it — a head trained towards
      registered frames could have learnt the registration's misses, which ``series`` shares (on one
      time-lapse field such a head read +0.31 dB against a registered truth and −0.13 dB on the pixels
      that held still); both must agree. (With frame t+1 alone as the
      target, the 8-bit time-lapse, whose nuclei move a few pixels a frame, scored restorations
      mostly by motion; with the plain mean of frames t ± 1, moving lysosomes blurred the target
      and a head 4 % better against frame t's registered scene was dropped);
    - on single images, the cells (half a patch a side) tiling the validation strips, each once and restored with
      the pixels around them (:func:`~.adapt_criteria.strip_cells`; at least
      adapt_criteria.LEAST_DECIDING_CELLS deciding ones, or the bundled head is kept), judged two ways, each
      biased in its own direction, and both must agree: ``neighbours`` (:func:`~.adapt_criteria.neighbour_pairs`:
      sub-sampled into half-size images of neighbouring pixels, the MSE of the head's restoration of one to its
      neighbour — the head sees structure at half its size) and ``blind-spot``
      (:func:`~.adapt_criteria.blind_spot`: the MSE at masked pixels to their noisy values — the head sees masked
      inputs, each masked pixel a random neighbour's value; the deciding cells on every pixel). On the DSB image
      the blind-spot MSE (then with the mean of the neighbours in the blind spot) preferred a head 0.18 dB worse
      than the bundled one and the neighbour MSE did not; on the tests' small blobs the neighbour MSE preferred a
      head that passed noise through and the blind-spot MSE did not.

    The step picked is the one where the largest relative change of any criterion on the picking
    patches is lowest (step 0, the bundled head, scores 0); a series trained on its own frames takes its last
    step, and every patch decides (its Noise2Noise loss has no fitted noise to be wrong about). The adapted head is
    kept only when every criterion on the deciding patches is below the bundled head's by KEEP_MARGIN_SE
    standard errors of the paired per-patch difference; otherwise the bundled head is returned.
    AdaptResult.kept / .decision / .message and the provenance say which
    and give the figures. ``noise``: a camera model to use instead of fitting one (for tests)."""
    SEED.check(seed, None)
    planes, splits, fitted = check_adapt(model, noisy, minutes=minutes, steps=steps, alpha=alpha,
                                         patch_size=patch_size, val_fraction=val_fraction)
    noise = fitted if noise is None else noise
    held, held_frames, training, strips_only, pairs = held_out_frames(noisy, planes, time_series, patch_size)
    maps = [IntensityMap.from_percentiles(p, model.percentiles) for p in planes]
    planes = [without_hot_pixels(p, m, model)[0] for p, m in zip(planes, maps)]  # trained on as the run sees them
    # frames of a series held out whole in blocks: with frame_pairs, the others train the head on their neighbours
    # (Noise2Noise); a shorter series, judged against frames t ± 1 alone, trains on recorrupted pairs
    sources = series_sources(training, pairs) if frame_pairs and judged_by_blocks(held) and not strips_only else []
    # correlated camera noise: the draws are given its correlation, as the self-calibration's are
    draws_correlation = noise_correlation(planes).for_draws()
    laws = [RecorruptionNoise.of(noise, p, alpha, draws_correlation) for p in planes]
    dev = resolve_device(device)
    adapted = copy.deepcopy(model)
    head = adapted.mean_network.to(dev).train()
    opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=1e-4)

    val_in, val_target = recorrupted_validation(planes, laws, maps, splits, training, patch_size, alpha,
                                                max(16, 8 * batch_size), val_fraction,
                                                np.random.default_rng([seed, 10**6]))

    def free_cores():
        """torch's threads on the cores other work leaves free, inside (core.run.cpu_share)."""
        return torch_threads(free_threads(torch.get_num_threads()) if dev.type == "cpu" else None)

    def val_loss():
        if not val_in:
            return None
        head.eval()
        with torch.inference_mode(), free_cores():
            x = torch.from_numpy(np.stack(val_in)[:, None].astype(np.float32)).to(dev)
            t = torch.from_numpy(np.stack(val_target)[:, None].astype(np.float32)).to(dev)
            loss = float(torch.mean((adapted.predict_mean(x) - t) ** 2))
        head.train()
        return loss

    # the judge's targets are registered before the budget's clock starts: counted in it, they took the whole of a
    # one-minute budget on the real 8-bit time-lapse's 30 whole frames (0 steps); shown as a phase instead
    targets_started = time.perf_counter()
    building = iter_criterion_patches(planes, splits, maps, held, strips_only, patch_size,
                                      model.mean_network.config.size_multiple,
                                      criterion_count(planes, held, strips_only, patch_size, batch_size, splits)
                                      if (val_fraction > 0 or held) else 0,
                                      np.random.default_rng([seed, 2 * 10**6]), noise)
    if held and not strips_only:  # each window registered: seconds in all on large frames, shown
        patches = yield from relay(building, lambda done: AdaptProgress(
            0, steps, float("nan"), None, round(time.perf_counter() - targets_started, 2), judge_targets=done))
    else:
        patches = drive(building)[0]
    criteria = list(patches)
    checked = bool(patches[criteria[0]][0])

    def scores(net, which=slice(None)) -> dict:
        with free_cores():  # the bundled head's and the last step's too: beside a busy process as slow as a step
            return criterion_scores(adapted, net, patches, dev, which)

    bundled_head = copy.deepcopy(model.mean_network).to(dev)
    # the budget counts the heads' scores on the held-out patches too: the bundled head's now, and after the steps the
    # picked and the last step's heads' on the deciding ones (a single image's are scored on every pixel: seconds), as
    # long as the bundled head's together or less
    t0 = time.perf_counter()
    bundled = scores(bundled_head) if checked else {}
    reserve = 2 * (time.perf_counter() - t0)

    def selection_loss():
        """(the first criterion's mean, the largest relative change of any criterion against the
        bundled head: below 0 only where every criterion is better) on the picking patches."""
        if not checked:
            return None, None
        now = scores(head, select)
        change = max(float(np.mean(now[c]) / np.mean(bundled[c][select]) - 1) for c in criteria)
        return float(np.mean(now[criteria[0]])), change

    torch.manual_seed(seed)
    windows = []  # the budget counts the registration of the series' training frames too
    if sources:
        windows = yield from relay(
            iter_series_windows(planes, maps, sources, patch_size, noise, np.random.default_rng([seed, 3 * 10**6])),
            lambda done: AdaptProgress(0, steps, float("nan"), None, round(time.perf_counter() - t0, 2),
                                       registered=done))
    # recorrupted pairs are only as right as the fitted noise: half the patches pick the step where the criteria
    # were best. A series' Noise2Noise pairs hold the camera's own noise, unbiased: their last step is taken, and
    # every patch decides (on 256² crops of the real 8-bit time-lapse half of them left a head the truth scores
    # +0.16 dB better at 3.4 and 2.7 standard errors, docs/performance.md, eighteenth session)
    picks = not windows
    select, decide = (slice(0, None, 2), slice(1, None, 2)) if picks else (slice(None), slice(None))
    history, step = [], 0
    best = (0.0 if checked else None, 0, copy.deepcopy(head.state_dict()))
    last_val = float(np.mean(bundled[criteria[0]][select])) if checked else None
    history.append({"step": 0, "val_loss": last_val, "criterion_change": best[0], "r2r_val_loss": val_loss(),
                    "seconds": 0.0})
    pending, taken = sorted(snapshots), {}
    while True:
        elapsed = time.perf_counter() - t0
        while pending and elapsed >= pending[0]:
            taken[pending.pop(0)] = ((best[1], copy.deepcopy(best[2])) if picks
                                     else (step, copy.deepcopy(head.state_dict())))
        if (steps is not None and step >= steps) or (steps is None and elapsed >= minutes * 60 - reserve):
            break
        with free_cores():  # set around the step alone: between steps the caller's code keeps its own
            if windows:
                loss = train_step(adapted, opt, *series_batch(windows, patch_size, batch_size,
                                                               np.random.default_rng([seed, step]), dev))
            else:
                x, t = recorrupted_batch(planes, laws, maps, splits, training, patch_size, alpha, batch_size,
                                         np.random.default_rng([seed, step]), dev)
                loss = train_step(adapted, opt, x, t)
            step += 1
            record = {"step": step, "train_loss": float(loss.detach()), "seconds": round(time.perf_counter() - t0, 2)}
            if step % validate_every == 0:
                last_val, change = selection_loss()
                record.update(val_loss=last_val, criterion_change=change, r2r_val_loss=val_loss())
                if picks and change is not None and change < best[0]:
                    best = (change, step, copy.deepcopy(head.state_dict()))
        history.append(record)
        yield AdaptProgress(step, steps, record["train_loss"], last_val, record["seconds"])
    final = selection_loss()[1]
    last_scores = scores(head, decide) if checked else {}  # the last step's head, whatever was picked
    if final is not None and (final < best[0] or not picks):
        best = (final, step, copy.deepcopy(head.state_dict()))
    if checked:
        head.load_state_dict(best[2])  # the weights where every criterion improved most
    head.eval()
    kept = "adapted"
    decision = {"criterion": "+".join(criteria), "patches": len(patches[criteria[0]][0][decide]),
                "training_pairs": "series" if windows else "recorrupted"}
    if windows:
        decision["series_windows"] = len(windows)
    if held:
        decision["held_out_frames"] = [] if strips_only else sorted(held_frames)
    if checked:
        figures, parts = compare_heads(scores(head, decide), {c: bundled[c][decide] for c in criteria}, last_scores,
                                       target_frames(held))
        too_few = not held and decision["patches"] < LEAST_DECIDING_CELLS
        kept = "adapted" if best[1] > 0 and shown_better(figures) and not too_few else "bundled"
        decision.update(figures[criteria[0]], criteria=figures, margin_se=KEEP_MARGIN_SE, steps=step,
                        best_step=best[1])
        where = "cells of the validation strips" if not held else "patches"
        message = (f"kept the {kept} head (the adapted head judged: step {best[1]} of {step}); on "
                   f"{decision['patches']} held-out "
                   f"{where}, bundled → adapted: {'; '.join(parts)}. The adapted head is kept only when every "
                   f"criterion is lower by {KEEP_MARGIN_SE:g} standard errors"
                   + (f", on at least {LEAST_DECIDING_CELLS} cells ({MORE_CELLS})" if too_few else ""))
    else:
        message = "kept the adapted head unchecked (no validation strip: val_fraction = 0)"
    if step == 0 and steps is None:  # a budget spent before the first step: say so, not only "step 0 of 0"
        spent = "registering the series' frames and scoring" if sources else "scoring"
        message = (f"no step was taken: the {minutes:g} min budget ran out {spent} the bundled head on the held-out "
                   f"patches ({time.perf_counter() - t0:.0f} s in all); give it more minutes. " + message)
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
    # the bright planes' refinement (IF_BRIGHT) was measured with the bundled head: a sharper adapted head had less
    # for the filter to give back (docs/performance.md, 2026-12-06: lysosome 06's refinement read worse)
    parent_refines = model.mean_refinement == IF_BRIGHT
    unjudged = IF_BRIGHT if kept == "bundled" and parent_refines else "none"
    if kept == "adapted" and parent_refines:
        adapted.mean_refinement = "none"
    # an adapted head shown better than the bundled head may still be worse than the bundled model as it runs,
    # its bright planes refined: it is kept only where shown better than that too
    back_to_bundled = None
    if judges_refinement(adapted, held, strips_only):
        train_loss = history[-1].get("train_loss", float("nan"))
        versus = model if kept == "adapted" and parent_refines else None
        judged = yield from relay(iter_refinement_judge(adapted, planes, held, noise, seed, versus, device),
                                  lambda done: AdaptProgress(step, steps, train_loss, last_val,
                                                             round(time.perf_counter() - t0, 2), judged=done))
        adapted.mean_refinement = ALWAYS if judged["refined"] else unjudged
        if adapted.mean_refinement != model.mean_refinement:
            adapted.calibrations = []
        decision["mean_refinement"] = {**judged, "margin_se": KEEP_MARGIN_SE}
        message += "; " + refinement_message(judged, adapted.mean_refinement)
        if versus is not None and not judged["versus_parent"]["better"]:
            back_to_bundled = versus_parent_message(judged["versus_parent"])
    elif kept == "adapted" and parent_refines and any(refines(IF_BRIGHT, p, estimate_noise([p])) for p in planes):
        back_to_bundled = (f"planes at least {BRIGHT_PHOTONS:g} photons bright, where the bundled model refines its "
                           "[mean], and no judge on single images shows an adapted head better than that")
    if back_to_bundled is not None:
        rejected = copy.deepcopy(adapted)
        rejected.calibrations, rejected.sha256 = [], ""
        head.load_state_dict(bundled_head.state_dict())
        adapted.mean_refinement, adapted.calibrations = model.mean_refinement, copy.deepcopy(model.calibrations)
        kept = "bundled"
        message = f"kept the bundled model: {back_to_bundled}. Before that: {message}"
    decision["message"] = message
    adapted.sha256 = ""
    adapted.provenance = {
        **{k: v for k, v in model.provenance.items() if k != "history"},
        "adapted": {"method": SERIES_METHOD if windows else RECORRUPTED_METHOD,
                    "noise_model": dataclasses.asdict(noise), "alpha": alpha, "steps": step,
                    "draws_lag1_correlation": None if draws_correlation is None else list(draws_correlation),
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
    axes: str | None = None,
    progress: Callable[[AdaptProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **options,
) -> DiffusionModel:
    """A copy of ``model`` adapted to ``noisy`` (a 2D plane, a 3D stack or a list of them) in
    ``minutes`` of training (or exactly ``steps`` steps, which makes it deterministic under
    ``seed`` on the CPU; on a CUDA GPU cuDNN's gradient kernels sum in an order that varies, so two runs may
    differ in their last bits and a keep-or-drop verdict this close can flip), from the noisy images alone.
    See the module docstring for the method.

    The adapted mean head is kept only when a held-out criterion with no fitted noise in it shows
    it better than the bundled one; otherwise the returned copy carries the bundled head (and, without
    ``recalibrate``, its calibrations; recalibrated, a run takes the one made on ``noisy`` for the settings it was
    made for, and is refused for others rather than given one it came with: core.run.conformal.find_calibration).
    ``provenance["adapted"]["kept"]`` ("adapted" or "bundled") and ``["decision"]``
    say which and why; ``progress`` gets the message with the last report.

    ``recalibrate``: calibrate the adapted model's intervals for the default settings on ``noisy``
    itself (:func:`iter_recalibrate`; a time series against its frames too). ``axes``: those of ``noisy``
    (one image), where they are known: the recalibration then takes each channel of a C axis on its own and
    a T axis's frames, as the Denoise widget and the CLI calibrate. ``options`` go to
    :func:`iter_adapt` (alpha, patch_size, batch_size, learning_rate, val_fraction, device,
    time_series).
    Raises :class:`~.restore.Cancelled` when ``cancel()`` returned True.
    """
    if axes is not None:  # a wrong one refused before minutes of training
        axes = recalibration_axes(noisy, axes=axes)
    if isinstance(model, str):
        model = load_model(model)
    # a step count promises the same bits, a wall-clock budget does not: torch's own threads, whatever the load
    with same_bits() if steps is not None else contextlib.nullcontext():
        result, cancelled = drive(iter_adapt(model, noisy, minutes=minutes, steps=steps, seed=seed, **options),
                                  progress, cancel)
        if cancelled:
            raise Cancelled("adaptation was cancelled")
        adapted = result.model
        if recalibrate:  # a calibration restores a budget of the image: it can take minutes, and stops like the rest
            adapted, cancelled = drive(iter_recalibrate(adapted, noisy, seed, options.get("time_series"), axes,
                                                         options.get("device", "auto")), cancel=cancel)
            if cancelled:
                raise Cancelled("adaptation was cancelled while recalibrating; nothing was returned")
    return adapted


def judge_shortfall(noisy, *, patch_size: int = PATCH_SIZE.default,
                    val_fraction: float = VAL_FRACTION.default) -> str | None:
    """Why adapting to ``noisy`` can only return the bundled head, said before its minutes are spent (the Train
    widget's notification, the CLI's note): images whose validation strips hold fewer than LEAST_DECIDING_CELLS
    deciding cells (adapt_criteria.strip_cells), as iter_adapt counts them. None where there are enough, where there
    is no strip (val_fraction 0: the head is kept unchecked), and for data adapt refuses. A series whose frames adapt
    holds out needs no word here: two planes of at least two patches a side already hold 8 deciding cells."""
    try:
        planes = as_planes(noisy, "noisy")
        splits = validation_splits(planes, val_fraction, patch_size)
    except (ValueError, TypeError):  # what adapt refuses, its own checks name (the CLI asks this before them)
        return None
    cells = len(strip_cells(planes, splits, patch_size)) // 2
    if cells == 0 or cells >= LEAST_DECIDING_CELLS:
        return None
    return (f"its validation strips hold {cells} cells to judge an adapted head by, fewer than the "
            f"{LEAST_DECIDING_CELLS} it needs: adapting will keep the bundled head whatever it gains ({MORE_CELLS})")


def versus_parent_message(versus: dict) -> str:
    """Why an adapted head went back to the bundled model that refines its bright planes, with the series judge's
    figures (:func:`~.adapt_criteria.iter_refinement_judge`'s ``versus_parent``)."""
    figures = ("" if "difference" not in versus else
               f" ({100 * versus['difference']:+.2f} % ± {100 * versus['standard_error']:.2f} % of its MSE to the "
               "registered neighbours" + ("" if "still" not in versus else
                                          f"; {100 * versus['still']['difference']:+.2f} % ± "
                                          f"{100 * versus['still']['standard_error']:.2f} % where they needed no "
                                          "registration") + ")")
    return (f"the adapted [mean] was not shown better than the bundled model's as it runs, its bright planes refined"
            f"{figures}; an adapted head is kept only when lower by {KEEP_MARGIN_SE:g} standard errors")


def refinement_message(judged: dict, rule: str = "none") -> str:
    """What :func:`~.adapt_criteria.refinement_judge` decided, with its figures, for the result's message;
    ``rule``: the returned model's ``mean_refinement``, which, where the judge did not refine every plane, may
    still refine the bright ones as the bundled model does."""
    otherwise = (f"; its bright planes (at least {BRIGHT_PHOTONS:g} photons) are refined still, as the bundled "
                 "model's are" if rule == IF_BRIGHT else "")
    if "difference" not in judged:
        return ("the [mean] not refined on every plane (too few registered pixels in the held-out frames to judge a "
                f"refinement){otherwise}")
    figures = (f"on {judged['quadrants']} quadrants of {judged['frames']} held-out frames, MSE to their registered "
               f"neighbours {100 * judged['difference']:+.2f} % ± {100 * judged['standard_error']:.2f} %")
    if judged["refined"]:
        return f"the [mean] refined by a Wiener filter with itself as the pilot on every plane ({figures})"
    return (f"the [mean] not refined on every plane ({figures}; a Wiener refinement is kept only when lower by "
            f"{KEEP_MARGIN_SE:g} standard errors){otherwise}")


def recalibration_axes(noisy, time_series: bool | None = None, axes: str | None = None) -> str | None:
    """The axes :func:`iter_recalibrate` calibrates ``noisy`` by (core.calibration.self_calibration.
    iter_calibrate_on_data): ``axes`` where given (checked against one image's shape), else "TYX" for
    one stack of repeated views (adapt_criteria.series_pairs), else None (recorrupted pairs of every
    plane pooled); recalibration_cost takes the same to price it."""
    if axes is not None:
        if not isinstance(noisy, np.ndarray):
            raise ValueError("axes: give them for one image (an array), not for a list of images")
        return check_axes(axes, noisy.shape)
    if isinstance(noisy, np.ndarray) and noisy.ndim == 3 and series_pairs(noisy, time_series):
        return "TYX"
    return None


def iter_recalibrate(model: DiffusionModel, noisy, seed: int = 0, time_series: bool | None = None,
                     axes: str | None = None, device: str = "auto"):
    """Calibrate ``model``'s default settings on ``noisy`` alone, against its real error there: the
    residuals of recorrupted pairs of ``noisy`` (calibration's ``without_truth="residuals"``,
    core.calibration.self_calibration, which fits the camera noise to ``noisy`` itself). Where
    ``noisy`` is one stack of repeated views (``time_series``, as :func:`iter_adapt` takes it:
    adapt_criteria.series_pairs), also against its neighbouring frames, the wider interval taken at
    each level — what the Denoise widget and the CLI do with a T axis
    (self_calibration.iter_calibrate_on_data); given ``axes`` (:func:`recalibration_axes`), by those.
    ``device``: where it restores (adapt's own). A generator yielding the restoration's progress; returns the
    calibrated model."""
    settings = calibration_settings(model, {**DEFAULT_SAMPLER_SETTINGS, "device": device})
    axes = recalibration_axes(noisy, time_series, axes)
    if axes is not None:
        run = yield from iter_calibrate_on_data(model, noisy, axes, seed=seed, split_seed=seed, **settings)
        return run.model
    run = yield from iter_calibrate(model, noisy, None, without_truth="residuals", split_seed=seed, seed=seed,
                                    **settings)
    return run.model
