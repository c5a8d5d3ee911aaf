"""Training: ε-MSE with continuous noise levels (SR3), AdamW, warm-up + cosine LR, EMA, clipping.

The loop is a generator (:func:`iter_train`) yielding a :class:`TrainProgress` after every step so
that a napari worker can show it and stop within one step; :func:`train` drives it with callbacks.
Checkpoints are written atomically; the *last* and the *best* (by validation loss) are kept, and
a ``.state.safetensors`` file beside the last one holds what resuming needs. The best is written
only with a checkpoint, so a run stopped before its first checkpoint leaves no file at all.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .._version import __version__
from ..io.checkpoint import read_checkpoint, save_checkpoint
from ..model.devices import resolve_device
from ..model.model import DiffusionModel
from ..model.schedules import sample_gammas
from ..run.driving import drive
from ..run.restore import Cancelled
from . import distributed


class PairSource(Protocol):
    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


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
        # each worker is one simulator process; torch threads in it would only compete
        worker_init_fn=lambda _: torch.set_num_threads(1),
    )
    for noisy, clean, gammas, eps in loader:
        yield noisy.numpy(), clean.numpy(), gammas.numpy(), eps.numpy()


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


def _state_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", "") + ".state.safetensors")


def best_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", "") + "-best.safetensors")


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" else v
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
    sd["state"] = state
    opt.load_state_dict(sd)


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
    _check_config(config)
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
    if resume and (path is None or not _state_path(path).is_file()):
        raise ValueError(f"nothing to resume: no state file {_state_path(path).name if path else ''} beside the output")
    if not resume and path is not None:
        existing = [p.name for p in (path, best_path(path), _state_path(path)) if p.exists()]
        if existing and not overwrite:  # every rank refuses alike, so none waits for the others in vain
            raise ValueError(f"{', '.join(existing)} already exist(s) in {path.parent}: choose another output, resume "
                             "that run, or allow overwriting (overwrite=True, --overwrite)")
        if main:
            _check_writable(path)
        if main:  # a fresh run must not leave an older run's best or state file looking like its own
            best_path(path).unlink(missing_ok=True)
            _state_path(path).unlink(missing_ok=True)
    if resume:
        if main:
            _check_writable(path)
        meta, tensors = read_checkpoint(_state_path(path))
        name = _state_path(path).name
        _check_resumable(meta["provenance"], config, provenance or {}, name)
        _check_same_architecture(meta, model, name)
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
        _load_optimizer(opt, tensors)
        start, history = meta["provenance"]["step"], meta["provenance"].get("history", [])
        if config.steps < start:
            raise ValueError(f"{name} has already trained {start} steps; resume with steps of at least {start} "
                             f"(got {config.steps}), or use its checkpoint as it is")
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
            mean_estimator=model.mean_estimator, mean_network=mean_network, task=model.task,
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
        nonlocal best_snapshot
        if path is None or not main:
            return
        snap = snapshot(step)
        # copies: without EMA the snapshot's weights are these very tensors, and safetensors refuses
        # a file holding one tensor under two names
        raw = {f"raw.{k}": v.detach().clone() for k, v in net.state_dict().items()}
        if head is not None:
            raw.update({f"rawmean.{k}": v.detach().clone() for k, v in head.state_dict().items()})
        save_checkpoint(snap, _state_path(path), {**raw, **_optimizer_tensors(opt)})
        save_checkpoint(snap, path)
        if best_snapshot is not None:
            save_checkpoint(best_snapshot, best_path(path))
            best_snapshot = None

    t0 = time.perf_counter()
    seconds_before = history[-1].get("seconds", 0.0) if history else 0.0  # a resumed run's earlier time
    val_loss = history[-1].get("val_loss") if history else None
    batches = step_batches(source, model.schedule, config, start)
    step = start
    while step < config.steps:
        noisy_t, clean_t, gammas, eps = (torch.from_numpy(a[share]).to(dev) for a in next(batches))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        loss = diffusion_loss(trained, noisy_t, clean_t, gammas, eps) if not mean_only else 0.0
        if head is not None:
            loss = loss + torch.mean((trained.predict_mean(noisy_t) - clean_t) ** 2)
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
            val_loss = (mean_validation_loss(snapshot(done), val_batch, dev) if mean_only
                        else validation_loss(snapshot(done), val_batch, dev, model.schedule))
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


# what a resumed run must share with the run it continues: otherwise its steps see other batches and
# its best-validation comparisons mix different validation sets
# nor the optimisation: a resumed run with another learning rate would record that rate for the whole
# run in its provenance. A longer run (more steps, hence another warm-up from the CLI) may continue one.
RESUME_KEYS = ("batch_size", "patch_size", "seed", "learning_rate", "weight_decay", "min_lr_fraction", "ema_decay",
               "grad_clip", "mean_fraction", "objective")


def _check_config(config: TrainConfig) -> None:
    """Settings that would train silently wrong: a negative EMA decay turned EMA off, a NaN rate."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not (number(config.ema_decay) and 0 <= config.ema_decay < 1):
        raise ValueError(f"ema_decay must be a number from 0 (no EMA) to below 1; got {config.ema_decay!r}")
    if not (number(config.learning_rate) and config.learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number; got {config.learning_rate!r}")


def _check_writable(path: Path) -> None:
    """Fail before the work, not at the first checkpoint after it: the output folder must take files."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        why = "a file of that name is in the way" if path.parent.is_file() else (err.strerror or str(err))
        raise OSError(f"cannot write the checkpoints to {path.parent} ({why}); choose another output folder") from err


def _check_same_architecture(meta: dict, model: DiffusionModel, name: str) -> None:
    def config(arch) -> dict:
        arch = dict(arch or {})
        arch.pop("name", None)
        return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in arch.items()}

    ours = model.metadata()
    theirs, given = config(meta.get("architecture")), config(ours.get("architecture"))
    if theirs != given:
        changed = "; ".join(f"{k} {theirs.get(k)!r} → {given.get(k)!r}" for k in sorted(set(theirs) | set(given))
                            if theirs.get(k) != given.get(k))
        raise ValueError(f"{name} was written for another architecture than the model given ({changed}); resume "
                         "with the model that run started from, or start a new run (another output, or overwrite)")
    if (meta.get("mean_head") is None) != (model.mean_network is None):
        raise ValueError(f"{name} was written for a model {'with' if meta.get('mean_head') else 'without'} a mean "
                         "head, and the model given differs; resume with the model that run started from")


def _check_resumable(earlier: dict, config: TrainConfig, provenance: dict, name: str) -> None:
    trained = earlier.get("training", {})
    changed = [f"{k} {trained[k]!r} → {getattr(config, k)!r}" for k in RESUME_KEYS
               if k in trained and trained[k] != getattr(config, k)]
    if "data" in earlier and "data" in provenance and earlier["data"] != provenance["data"]:
        changed.append("the training images (their shapes or mode differ)")
    if changed:
        raise ValueError(f"{name} was written by a run with other settings ({'; '.join(changed)}); resume with "
                         "the same data and settings, or start a new run (another output, or overwrite)")


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


def mean_validation_loss(model: DiffusionModel, val_batch, device) -> float:
    """The mean head's MSE to the clean images of a fixed batch."""
    noisy, clean = (torch.from_numpy(a).to(device) for a in val_batch)
    was_training = model.mean_network.training
    model.mean_network.eval()
    with torch.inference_mode():
        loss = float(torch.mean((model.predict_mean(noisy) - clean) ** 2))
    model.mean_network.train(was_training)
    return loss


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
