"""Overlapping tiles with smooth blend weights, for planes larger than the network's tile.

Sampling state (y_t and the noise) lives on the whole plane; only the network is evaluated tile
by tile and its ε̂ blended with weights that sum to one. Every tile therefore sees the same global
noise field at every step, so stochastic samplers leave no seams, and memory for the network is
bounded by the tile size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, size) with tiles of ``tile`` pixels overlapping by ≥ ``overlap``."""
    if size <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    n = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def ramp_weights(length: int, ramp: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1D weights: 1 in the middle, a sin² ramp over ``ramp`` pixels at each tapered end."""
    w = np.ones(length, dtype=np.float64)
    if ramp > 0:
        r = np.sin(np.pi / 2 * (np.arange(ramp) + 0.5) / ramp) ** 2
        if taper_start:
            w[:ramp] = r
        if taper_end:
            w[length - ramp :] = r[::-1]
    return w


# The network's tiles may grow to this many times the tile setting a side where fewer, larger tiles
# cover a plane with less overlap: a 1024² plane in 512² tiles overlapping by 128 takes 3 × 3 tiles
# (2.25× its pixels) but 2 × 2 tiles of 576² (1.27×). A tile's memory grows by up to its square (1.56×);
# the per-pixel cost of a larger tile is the same on a CPU (docs/benchmarks/speed.md, batching table).
TILE_STRETCH = 1.25


def tile_length(size: int, tile: int, overlap: int, stretch: float = 1.0, multiple: int = 1) -> int:
    """The tile side that covers ``size`` pixels with ``overlap`` and the fewest pixels in all: n
    equal tiles just long enough to reach across, for the n that costs least, each at most
    ``stretch`` × ``tile`` and rounded up to ``multiple`` (the side the network takes anyway)."""
    if size <= tile:
        return size
    most = math.ceil((size - overlap) / (tile - overlap))  # tiles of ``tile`` itself: always fits

    def length(n):
        return min(size, -(-math.ceil((size + (n - 1) * overlap) / n) // multiple) * multiple)

    fitting = [n for n in range(1, most + 1) if overlap < length(n) <= max(stretch * tile, tile) or n == most]
    return length(min(fitting, key=lambda n: (n * length(n), n)))


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, stretch: float = 1.0,
              multiple: int = 1) -> tuple[list[int], list[int], int, int]:
    """(row starts, column starts, tile height, tile width) of the tiles :func:`make_tiles` lays over
    a (H, W) plane: every tile has the same size, the plane's side where it is below ``tile``, or
    stretched by up to ``stretch`` (:func:`tile_length`)."""
    height, width = shape
    th, tw = (tile_length(side, tile, overlap, stretch, multiple) for side in shape)
    return tile_starts(height, th, overlap), tile_starts(width, tw, overlap), min(th, height), min(tw, width)


@dataclass(frozen=True)
class Tile:
    y0: int
    x0: int
    height: int
    width: int
    weight: np.ndarray  # (height, width), already divided by the plane's total weight

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.height), slice(self.x0, self.x0 + self.width)


def make_tiles(shape: tuple[int, int], tile: int, overlap: int, stretch: float = 1.0, multiple: int = 1) -> list[Tile]:
    """Tiles covering a (H, W) plane whose normalised weights sum to exactly one at every pixel
    (``stretch``, ``multiple``: :func:`tile_length`)."""
    height, width = shape
    ys, xs, th, tw = tile_grid(shape, tile, overlap, stretch, multiple)

    def axis_weights(starts, length, size):
        out = []
        for i, s in enumerate(starts):
            ramp_before = starts[i - 1] + length - s if i > 0 else 0
            ramp_after = s + length - starts[i + 1] if i + 1 < len(starts) else 0
            w = np.ones(length)
            if ramp_before:
                w *= ramp_weights(length, ramp_before, True, False)
            if ramp_after:
                w *= ramp_weights(length, ramp_after, False, True)
            out.append(w)
        return out

    wy, wx = axis_weights(ys, th, height), axis_weights(xs, tw, width)
    total = np.zeros(shape)
    raw = []
    for iy, y0 in enumerate(ys):
        for ix, x0 in enumerate(xs):
            w = np.outer(wy[iy], wx[ix])
            total[y0 : y0 + th, x0 : x0 + tw] += w
            raw.append((y0, x0, w))
    return [
        Tile(y0, x0, th, tw, (w / total[y0 : y0 + th, x0 : x0 + tw]).astype(np.float32)) for y0, x0, w in raw
    ]
