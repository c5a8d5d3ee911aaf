"""A training run's files: the last checkpoint, the best beside it and the state file that resuming
needs (the optimiser's tensors); the checks made before a run writes them or resumes from them."""
from __future__ import annotations

import glob
from pathlib import Path

import torch

from ..model.model import DiffusionModel
from .train_config import TrainConfig


def state_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", "") + ".state.safetensors")


def best_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".safetensors", "") + "-best.safetensors")


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v).reshape(-1) if k == "step" else v
    return out


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
    sd["state"] = state
    opt.load_state_dict(sd)


# what a resumed run must share with the run it continues: otherwise its steps see other batches and
# its best-validation comparisons mix different validation sets
# nor the optimisation: a resumed run with another learning rate would record that rate for the whole
# run in its provenance. A longer run (more steps, hence another warm-up from the CLI) may continue one.
RESUME_KEYS = ("batch_size", "patch_size", "seed", "learning_rate", "weight_decay", "min_lr_fraction", "ema_decay",
               "grad_clip", "mean_fraction", "objective")


def remove_stale_temporaries(path: Path) -> None:
    """The hidden temporary files an earlier run into ``path`` left when it was killed while writing a checkpoint
    (core.io.checkpoint.save_checkpoint: ``.<name>.<random>.tmp``, up to 100 MB each), removed when a run into
    that output starts: nothing reads them, and the docs promise nothing else is kept."""
    for written in (path, best_path(path), state_path(path)):
        for stale in path.parent.glob(f".{glob.escape(written.name)}.*.tmp"):
            stale.unlink(missing_ok=True)


def check_writable(path: Path) -> None:
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


def check_same_architecture(meta: dict, model: DiffusionModel, name: str) -> None:
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


def check_resumable(earlier: dict, config: TrainConfig, provenance: dict, name: str) -> None:
    trained = earlier.get("training", {})
    changed = [f"{k} {trained[k]!r} → {getattr(config, k)!r}" for k in RESUME_KEYS
               if k in trained and trained[k] != getattr(config, k)]
    before, now = earlier.get("data") or {}, provenance.get("data") or {}
    differs = sorted(k for k in set(before) & set(now) if before[k] != now[k])  # a run before the digest: shapes only
    if differs == ["content_sha256"]:
        changed.append("the training images (the same shapes, other pixels)")
    elif differs:
        changed.append("the training images (their shapes or mode differ)")
    if changed:
        raise ValueError(f"{name} was written by a run with other settings ({'; '.join(changed)}); resume with "
                         "the same data and settings, or start a new run (another output, or overwrite)")
