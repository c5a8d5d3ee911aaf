"""Training on several devices with torch.distributed (DDP), as launched by ``torchrun``.

Every rank draws the same global batch for a step (train_steps.draw_step is keyed on (seed, step)) and
trains on its slice; DDP averages the gradients, so the update is the one a single process makes
with the whole batch (up to the order of float sums). Only rank 0 writes files.
"""
from __future__ import annotations

import os

import torch


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "auto") -> str:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs) and return the device this
    rank trains on (its local GPU when there are GPUs). Outside torchrun: ``device`` unchanged."""
    if not launched_by_torchrun():
        return device
    import torch.distributed as dist

    if str(device).startswith("mps"):  # gloo carries CPU tensors only, and NCCL needs CUDA
        raise ValueError("device: training on several processes (torchrun) runs on CUDA GPUs or on CPUs; "
                         "on an Apple GPU (device='mps') train in one process")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda") or str(device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu" if device == "auto" else device


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The part of every global batch that ``rank`` trains on."""
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the number of processes "
                         f"({world_size}): each trains on an equal slice of the global batch")
    part = batch_size // world_size
    return slice(rank * part, (rank + 1) * part)


def collective_device(backend: str) -> torch.device:
    """Where a tensor must lie for a collective of ``backend``: NCCL reduces CUDA tensors only (a CPU
    tensor raises "No backend type associated with device type cpu"), on this rank's GPU; gloo, CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def mean_over_ranks(value: float) -> float:
    _, size = world()
    if size == 1:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=collective_device(dist.get_backend()))
    dist.all_reduce(tensor)
    return float(tensor.item()) / size


def from_main(value):
    """Rank 0's ``value`` on every rank (e.g. a step count measured on rank 0)."""
    if world()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()
