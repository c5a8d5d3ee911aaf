"""A diffusion model as the rest of the package sees it: network + schedule + its metadata."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .network import UNet, UNetConfig
from .normalization import DEFAULT_PERCENTILES
from .schedules import NoiseSchedule

MODEL_KINDS = ("paired", "unpaired")


@dataclass
class DiffusionModel:
    network: UNet
    schedule: NoiseSchedule
    kind: str = "paired"  # "paired" (conditioned on the noisy image) or "unpaired" (unconditional)
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES  # normalisation used in training
    tile: int = 256  # the tile the network was trained for and runs fastest on a CPU
    name: str = "untitled"
    sha256: str = ""  # of the checkpoint file it came from; empty for an unsaved model
    provenance: dict = field(default_factory=dict)  # how it was trained

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; use one of {MODEL_KINDS}")
        expected = 1 if self.kind == "paired" else 0
        if self.network.config.cond_channels != expected:
            raise ValueError(f"a {self.kind} model needs cond_channels={expected}")

    @classmethod
    def create(cls, config: UNetConfig | None = None, schedule: NoiseSchedule | None = None, kind: str = "paired", **kw):
        config = config or UNetConfig(cond_channels=1 if kind == "paired" else 0)
        return cls(UNet(config), schedule or NoiseSchedule(), kind=kind, **kw)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def metadata(self) -> dict:
        return {
            "format": "napari-diffdenoise/1",
            "kind": self.kind,
            "architecture": {"name": "unet", **self.network.config.to_dict()},
            "schedule": self.schedule.to_dict(),
            "normalization": {"method": "percentile", "percentiles": list(self.percentiles), "range": [-1, 1]},
            "tile": self.tile,
            "name": self.name,
            "provenance": self.provenance,
        }
