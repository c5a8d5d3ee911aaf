"""A one-pass network estimate averaged over symmetries of the square (test-time self-ensembling).

The heads were trained on patches flipped and turned at random (core.training.pairs.augment), so an
image and its mirror image are equally familiar to them, yet their outputs on the two differ by what
each pass got wrong: averaging the passes over the transformed inputs, each turned back, keeps what
they agree on. On the real camera frames and held-out low-light images of
docs/benchmarks/symmetries.md this lifts the [mean]'s PSNR and costs one more head pass per symmetry.

The transforms are ordered so that the first 1, 2, 4 and 8 form groups (the average then treats every
orientation alike): identity; the mirror along x; both mirrors and the half turn (all four keep a
tile's shape); then the four that swap its axes (quarter turns, transposes).
"""
from __future__ import annotations

import torch

# (quarter turns, mirrored along x afterwards), in the order the counts below take them
_TRANSFORMS = ((0, False), (0, True), (2, True), (2, False), (1, False), (1, True), (3, False), (3, True))
SYMMETRY_COUNTS = (1, 2, 4, 8)  # the prefixes of _TRANSFORMS that are groups


def transformed(x: torch.Tensor, index: int) -> torch.Tensor:
    """Symmetry ``index`` of _TRANSFORMS applied to the last two axes."""
    turns, mirrored = _TRANSFORMS[index]
    x = torch.rot90(x, turns, dims=(-2, -1)) if turns else x  # rot90 by 0 would copy it
    return torch.flip(x, (-1,)) if mirrored else x


def restored(x: torch.Tensor, index: int) -> torch.Tensor:
    """The inverse of :func:`transformed`: ``restored(transformed(x, i), i)`` is x."""
    turns, mirrored = _TRANSFORMS[index]
    x = torch.flip(x, (-1,)) if mirrored else x
    return torch.rot90(x, -turns, dims=(-2, -1)) if turns else x


class SymmetryAverage:
    """A network adapter in core.model.tiled_network.TiledEpsilon's clothes (``predict_eps(y, gammas,
    cond)``) whose output is the average of ``inner``'s over the first ``count`` symmetries: its inputs
    transformed, its output turned back. One pass per symmetry, one after the other, so that a batch
    takes no more memory than without."""

    def __init__(self, inner, count: int):
        if count not in SYMMETRY_COUNTS:
            raise ValueError(f"symmetries must be one of {SYMMETRY_COUNTS}; got {count!r}")
        self.inner, self.count = inner, count
        self.network = inner.network

    def predict_eps(self, y, gammas, cond):
        total = None
        for index in range(self.count):
            out = restored(self.inner.predict_eps(transformed(y, index), gammas,
                                                  None if cond is None else transformed(cond, index)), index)
            total = out if total is None else total + out
        return total / self.count
