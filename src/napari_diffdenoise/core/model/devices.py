"""Device choice, the same code path for CPU, CUDA and Apple MPS."""
from __future__ import annotations

import contextlib

import torch


def available_devices() -> list[str]:
    """'auto' first, then every device torch can use here."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device a run takes; the current GPU by its index ("cuda:0", not "cuda"): models copied to a device are
    kept per device name (core.run.plane_sampling.device_model), and "cuda" would name whichever GPU is current."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and torch.cuda.is_available():  # torch's own spelling of the current GPU
        return torch.device("cuda", torch.cuda.current_device())
    if device not in available_devices():
        raise ValueError(f"device {device!r} is not available here; choose from {available_devices()}")
    return torch.device(device)


def bfloat16_autocast(device: torch.device, enabled: bool):
    """Autocast to bfloat16 on ``device`` where ``enabled``, else nothing: torch before 2.5 refuses an MPS
    autocast even when disabled ("unsupported autocast device_type 'mps'"), which would stop every float32
    run on a Mac whose torch is older (Intel Macs get at most 2.2)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def default_batch_pixels(device: torch.device) -> int:
    """How many pixels to push through the network at once. On this 2-core CPU, batching the K
    samples pays only for small tiles (see docs/performance.md); on a GPU it always pays."""
    if device.type == "cpu":
        return 128 * 128 * 4
    return 512 * 512 * 16
