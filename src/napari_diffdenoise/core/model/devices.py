"""Device choice, the same code path for CPU, CUDA and Apple MPS."""
from __future__ import annotations

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
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and torch.cuda.is_available():  # torch's own spelling of the current GPU
        return torch.device("cuda")
    if device not in available_devices():
        raise ValueError(f"device {device!r} is not available here; choose from {available_devices()}")
    return torch.device(device)


def default_batch_pixels(device: torch.device) -> int:
    """How many pixels to push through the network at once. On this 2-core CPU, batching the K
    samples pays only for small tiles (see docs/performance.md); on a GPU it always pays."""
    if device.type == "cpu":
        return 128 * 128 * 4
    return 512 * 512 * 16
