"""Training: ε-MSE with continuous noise levels (SR3), AdamW, warm-up + cosine LR, EMA, clipping.

The loop is a generator (:func:`iter_train`) yielding a :class:`TrainProgress` after every step so
that a napari worker can show it and stop within one step; :func:`run_training` (and finetune's
``train``) drives it with callbacks. What a run is asked for is core.training.train_config; what each
step draws and its losses, core.training.train_steps; the run's files, core.training.run_files.
Checkpoints are written atomically; the *last* and the *best* (by validation loss) are kept, and
a ``.state.safetensors`` file beside the last one holds what resuming needs. The best is written
only with a checkpoint, so a run stopped before its first checkpoint leaves no file at all.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..io.checkpoint import read_checkpoint, save_checkpoint
from ..model.devices import resolve_device
from ..model.model import DiffusionModel
from ..run.cpu_share import free_threads, torch_threads, usable_threads
from ..run.driving import drive
from ..run.restore import Cancelled
from . import distributed
from .run_files import (
    best_path,
    check_resumable,
    check_same_architecture,
    check_writable,
    load_optimizer,
    optimizer_tensors,
    remove_stale_temporaries,
    state_path,
)
from .train_config import PairSource, TrainConfig, TrainProgress, TrainResult, check_config
from .train_steps import (
    diffusion_loss,
    lr_at,
    mean_loss,
    mean_validation_loss,
    step_batches,
    validation_loss,
)


class StepBudget:
    """Turns a time budget into a step count: the step rate is measured from step 5 (after the
    one-off costs of the allocator and the loader) to the end of the calibration, which lies inside
    the warm-up, so the cosine decay that follows is the one a run of that many steps would have."""

    def __init__(self, seconds: float, warmup_steps: int):
        self.seconds = seconds
        self.calibration_end = min(warmup_steps, 60)
        if self.calibration_end < 10:
            raise ValueError("a time budget needs at least 10 warm-up steps to measure the step rate")
        self.started = time.perf_counter()
        self.timing_start = None

    def steps(self, done: int) -> int | None:
        """Call after each step; returns the run's step count once, at the end of the calibration."""
        if done == 5:
            self.timing_start = time.perf_counter()
        if done != self.calibration_end:
            return None
        per_step = (time.perf_counter() - self.timing_start) / (done - 5)
        left = self.seconds - (time.perf_counter() - self.started)
        # 5 % kept for validation and checkpoints, which the rate above hardly includes
        return max(done + 1, done + int(0.95 * left / per_step))


class _Ema:
    """Exponential moving average of the weights (Polyak averaging), kept in float32."""

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(network).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, network: torch.nn.Module, step: int):
        # warm-up of the decay so that early averages are not dominated by the random init
        d = min(self.decay, (1 + step) / (10 + step))
        # one fused call instead of a kernel per tensor: on a GPU the per-tensor loop cost more than the step
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in network.parameters()], 1 - d)
        for s, b in zip(self.shadow.buffers(), network.buffers()):
            s.copy_(b)


class _Replicated:
    """What the losses read of a model, with its networks wrapped for DDP (whose forward passes
    synchronise the gradients across ranks)."""

    predict_mean = DiffusionModel.predict_mean

    def __init__(self, model: DiffusionModel, network, mean_network):
        self.name, self.kind, self.prediction = model.name, model.kind, model.prediction
        self.mean_head_gamma = model.mean_head_gamma
        self.network, self.mean_network = network, mean_network


def iter_train(
    model: DiffusionModel,
    source: PairSource,
    config: TrainConfig = TrainConfig(),
    *,
    val_batch: tuple[np.ndarray, np.ndarray] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    device: str = "auto",
    provenance: dict | None = None,
    overwrite: bool = False,
) -> Generator[TrainProgress, None, TrainResult]:
    """Train ``model`` in place; yields after every step; returns the EMA model (or the raw one).
    An existing checkpoint (or its best or state file) at ``checkpoint_path`` is refused unless
    ``resume`` continues it or ``overwrite`` replaces it.

    Under torch.distributed (``torchrun``, :mod:`.distributed`) each rank trains on its slice of every
    global batch of ``config.batch_size`` with DDP, and only rank 0 writes checkpoints."""
    dev = resolve_device(device)
    rank, world_size = distributed.world()
    main = rank == 0
    share = distributed.rank_slice(config.batch_size, rank, world_size)
    budgeted = config.time_budget_s is not None
    if budgeted and resume:
        raise ValueError("a time-budgeted run cannot be resumed; resume it with the step count it recorded")
    budget = StepBudget(config.time_budget_s, config.warmup_steps) if budgeted else None
    config = replace(config, steps=10**9) if budgeted else config  # until the budget fixes it
    check_config(config)
    if config.objective not in ("diffusion", "mean"):
        raise ValueError(f"objective must be 'diffusion' or 'mean'; got {config.objective!r}")
    mean_only = config.objective == "mean"
    if mean_only and model.mean_network is None:
        raise ValueError("objective='mean' trains the mean head, and this model has none")
    net = model.network.to(dev).train()
    # a mean head (a one-step MSE network, DiffusionModel.mean_network) learns in the same loop from
    # the same batches, so a fine-tuned model's [mean] layer follows its data too
    head = model.mean_network.to(dev).train() if model.mean_network is not None else None
    params = (list(net.parameters()) if not mean_only else []) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = _Ema(net, config.ema_decay) if config.ema_decay > 0 else None
    head_ema = _Ema(head, config.ema_decay) if config.ema_decay > 0 and head is not None else None
    start, history, best = 0, [], None
    path = Path(checkpoint_path) if checkpoint_path else None
    if resume and (path is None or not state_path(path).is_file()):
        raise ValueError(f"nothing to resume: no state file {state_path(path).name if path else ''} beside the output")
    if not resume and path is not None:
        existing = [p.name for p in (path, best_path(path), state_path(path)) if p.exists()]
        if existing and not overwrite:  # every rank refuses alike, so none waits for the others in vain
            raise ValueError(f"{', '.join(existing)} already exist(s) in {path.parent}: choose another output, resume "
                             "that run, or allow overwriting (overwrite=True, --overwrite)")
        if main:
            check_writable(path)
    # a fresh run must not leave an older run's best file looking like its own, nor its state: both are replaced at
    # this run's first checkpoint, not before it (a run killed or failed before then, at step 3 say, left neither the
    # older run's set nor a new one)
    older_best = main and path is not None and not resume and best_path(path).exists()
    if main and path is not None:
        remove_stale_temporaries(path)
    if resume:
        if main:
            check_writable(path)
        meta, tensors = read_checkpoint(state_path(path))
        name = state_path(path).name
        check_resumable(meta["provenance"], config, provenance or {}, name)
        check_same_architecture(meta, model, name)
        try:
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("raw.")})
            if head is not None:
                head.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("rawmean.")})
            if ema is not None:
                ema.shadow.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
            if head_ema is not None:
                head_ema.shadow.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("mean.")})
        except RuntimeError as err:  # torch's own message lists every key: say what it means first
            raise ValueError(f"{name} holds weights of another network than the model given (a mean head, "
                             f"EMA or raw weights missing or of other shapes); resume with the model that run "
                             f"started from ({str(err).splitlines()[0]})") from err
        load_optimizer(opt, tensors)
        start, history = meta["provenance"]["step"], meta["provenance"].get("history", [])
        if config.steps < start:
            raise ValueError(f"{name} has already trained {start} steps; resume with steps (--steps) of at least "
                             f"{start} (got {config.steps}), or use its checkpoint as it is")
        best = meta["provenance"].get("best_val_loss")
    distributed.barrier()  # no rank starts before rank 0 has cleared the output
    trained = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        trained = _Replicated(model, net if mean_only else DDP(net, device_ids=ids),
                              DDP(head, device_ids=ids) if head is not None else None)
    base_provenance = {
        "package_version": __version__,
        "training": asdict(config),
        "parent_sha256": model.sha256 or None,
        **({"processes": world_size} if world_size > 1 else {}),
        **(provenance or {}),
    }

    def snapshot(step: int) -> DiffusionModel:
        network = ema.shadow if ema is not None else net
        mean_network = head_ema.shadow if head_ema is not None else head
        # calibrations are not carried over: training changes the spread they were measured for
        return DiffusionModel(
            network=network, schedule=model.schedule, kind=model.kind, percentiles=model.percentiles,
            tile=model.tile, name=model.name, prediction=model.prediction, value_range=model.value_range,
            provenance={**base_provenance, "step": step, "history": history, "best_val_loss": best},
            mean_estimator=model.mean_estimator, mean_network=mean_network, mean_head_gamma=model.mean_head_gamma,
            task=model.task,
            mean_provenance={**model.mean_provenance, "fine_tuned_with": "the diffusion network, same batches"}
            if mean_network is not None and model.mean_provenance else model.mean_provenance,
            # kept as it was: its error map was learnt for the head before this training; its scale is
            # what a calibration (dropped here, redone on the user's image) corrects
            std_network=model.std_network,
            std_provenance={**model.std_provenance, "learnt_for": "the mean head before this fine-tuning"}
            if model.std_network is not None else {},
            # kept too: it draws like the sampler before this fine-tuning, about the fine-tuned mean head
            sample_network=model.sample_network,
            sample_provenance={**model.sample_provenance, "learnt_for": "the sampler before this fine-tuning"}
            if model.sample_network is not None else {},
        )

    best_snapshot = None  # the weights of the lowest validation loss since the last checkpoint, unwritten

    def write(step: int):
        nonlocal best_snapshot, older_best
        if path is None or not main:
            return
        snap = snapshot(step)
        # copies: without EMA the snapshot's weights are these very tensors, and safetensors refuses
        # a file holding one tensor under two names
        raw = {f"raw.{k}": v.detach().clone() for k, v in net.state_dict().items()}
        if head is not None:
            raw.update({f"rawmean.{k}": v.detach().clone() for k, v in head.state_dict().items()})
        # the best weights first, the state that records their loss last: a state written before them (a disk that
        # filled, a kill) named a best whose weights were never written, or an earlier step's under its loss
        if best_snapshot is not None:
            save_checkpoint(best_snapshot, best_path(path))
            best_snapshot = None
        elif older_best:
            best_path(path).unlink(missing_ok=True)
        older_best = False
        save_checkpoint(snap, path)
        save_checkpoint(snap, state_path(path), {**raw, **optimizer_tensors(opt)})

    t0 = time.perf_counter()
    seconds_before = history[-1].get("seconds", 0.0) if history else 0.0  # a resumed run's earlier time
    val_loss = history[-1].get("val_loss") if history else None
    batches = step_batches(source, model.schedule, config, start)
    step = start
    while step < config.steps:
        # a time budget sets the step count from the pace, so the steps take the cores other work leaves free;
        # a step count promises the same bits (and a resume the same curve): torch's own threads, within the
        # CPUs the process may use
        threads = None if dev.type != "cpu" else (free_threads if budget is not None else usable_threads)(
            torch.get_num_threads())
        with torch_threads(threads):
            noisy_t, clean_t, gammas, eps = (torch.from_numpy(a[share]).to(dev) for a in next(batches))
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config)
            loss = diffusion_loss(trained, noisy_t, clean_t, gammas, eps) if not mean_only else 0.0
            if head is not None:
                loss = loss + mean_loss(trained.predict_mean(noisy_t), noisy_t, clean_t, config.mean_loss,
                                        config.relative_power)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            if ema is not None and not mean_only:
                ema.update(net, step)
            if head_ema is not None:
                head_ema.update(head, step)
            done = step + 1
            record = {"step": done, "train_loss": distributed.mean_over_ranks(loss.item())}
            fixed_steps = budget.steps(done) if budget is not None else None
            if budget is not None and done == budget.calibration_end:  # every rank must stop at the same step
                fixed_steps = distributed.from_main(fixed_steps)
            if fixed_steps is not None:
                config = replace(config, steps=fixed_steps)
                base_provenance["training"] = asdict(config)
            if val_batch is not None and (done % config.validate_every == 0 or done == config.steps):
                val_loss = (mean_validation_loss(snapshot(done), val_batch, dev, config.mean_loss, config.relative_power)
                            if mean_only else validation_loss(snapshot(done), val_batch, dev, model.schedule))
                record["val_loss"] = val_loss
                if best is None or val_loss < best:
                    best = val_loss
                    if path is not None and main:  # a copy: the networks go on training until the checkpoint
                        best_snapshot = copy.deepcopy(snapshot(done))
            record["seconds"] = round(seconds_before + time.perf_counter() - t0, 2)
            history.append(record)
        if path is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            write(done)
        elapsed = time.perf_counter() - t0
        eta = elapsed / (done - start) * (config.steps - done)
        yield TrainProgress(done, config.steps, record["train_loss"], val_loss, lr_at(step, config), elapsed, eta)
        step = done
    net.eval()
    if head is not None:
        head.eval()
    return TrainResult(snapshot(config.steps), history, best)


def run_training(
    model: DiffusionModel,
    source: PairSource,
    config: TrainConfig = TrainConfig(),
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    **kwargs,
) -> TrainResult:
    """Run :func:`iter_train` to the end; ``cancel()`` is polled every step and, when it returns True,
    stops the run and raises :class:`~.restore.Cancelled`, as denoise, calibrate and adapt do."""
    result, cancelled = drive(iter_train(model, source, config, **kwargs), progress, cancel)
    if cancelled:
        raise Cancelled("training was cancelled")
    return result
