"""A network evaluated over a whole plane tile by tile, the tiles blended with weights that sum to
one (core.imaging.tiling): the sampler's ε̂, and the mean and std heads in its clothes, are all run this way."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..imaging.tiling import TILE_STRETCH, make_tiles
from .devices import bfloat16_autocast
from .model import DiffusionModel


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # reflect needs the pad smaller than the size; replicate covers tiny planes
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class TiledEpsilon:
    """ε̂(y, γ) on a whole plane, evaluated tile by tile and blended with weights summing to one.
    Every tile has the same size, so the (tile, sample) pairs go through the network in batches of
    ``batch_pixels`` pixels that may span several tiles: on a GPU the batch, not the tile, keeps it
    busy; on the CPU one tile of one sample is a batch of its own."""

    def __init__(self, model: DiffusionModel, cond: torch.Tensor | None, shape, tile: int, overlap: int, batch_pixels: int,
                 on_tile: Callable[[int, int], None] | None = None, precision: str = "float32"):
        self.model, self.on_tile = model, on_tile
        self.bfloat16 = precision == "bfloat16"
        self.multiple = model.network.config.size_multiple
        self.tiles = make_tiles(shape, tile, overlap, TILE_STRETCH, self.multiple)
        self.batch_pixels = batch_pixels
        device = next(model.network.parameters()).device
        self.weights = [torch.from_numpy(t.weight).to(device) for t in self.tiles]
        # conditions are cropped and padded once; they do not change over the steps
        self.conds = [None if cond is None else pad_to_multiple(cond[(...,) + t.slices], self.multiple)[0] for t in self.tiles]
        self.evaluations = 0

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, gamma: float) -> torch.Tensor:
        out = torch.zeros_like(y)
        k, n_tiles = y.shape[0], len(self.tiles)
        first = self.tiles[0]
        padded = (-(-first.height // self.multiple) * self.multiple) * (-(-first.width // self.multiple) * self.multiple)
        batch = max(1, self.batch_pixels // padded)
        pairs = [(t, sample) for t in range(n_tiles) for sample in range(k)]  # tile by tile, in order
        reported = 0
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            groups = []  # (tile, first sample, end sample) runs within the chunk
            for t, sample in chunk:
                if groups and groups[-1][0] == t:
                    groups[-1][2] = sample + 1
                else:
                    groups.append([t, sample, sample + 1])
            crops, conds = [], []
            for t, s0, s1 in groups:
                crop, (h, w) = pad_to_multiple(y[s0:s1][(...,) + self.tiles[t].slices], self.multiple)
                crops.append(crop)
                if self.conds[t] is not None:
                    conds.append(self.conds[t].expand(s1 - s0, -1, -1, -1))
            part = torch.cat(crops).contiguous(memory_format=torch.channels_last)
            c = torch.cat(conds).contiguous(memory_format=torch.channels_last) if conds else None
            gammas = torch.full((len(part),), gamma, device=y.device)
            with bfloat16_autocast(y.device, self.bfloat16):
                eps = self.model.predict_eps(part, gammas, c)[..., :h, :w]
            eps = eps.to(out.dtype)  # blended and stepped in the state's own precision
            self.evaluations += 1
            row = 0
            for t, s0, s1 in groups:
                out[s0:s1][(...,) + self.tiles[t].slices] += eps[row : row + s1 - s0] * self.weights[t]
                row += s1 - s0
            done = (start + len(chunk)) // k
            if self.on_tile is not None and done > reported:  # may raise (a cancel): the run ends between tiles
                reported = done
                self.on_tile(done, n_tiles)
        return out
