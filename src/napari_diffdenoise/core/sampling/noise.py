"""Counter-based Gaussian noise: every value is a function of (seed, plane, sample, draw, y, x).

A sequential generator gives noise that depends on the order it is drawn in, so a plane split into
blocks, processed in another order or on another machine would get other samples. Here each value
is a hash of its key and its global pixel position (a counter-based generator in the sense of
Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3": splitmix64's finaliser, Steele et
al. 2014, applied twice), turned into a Gaussian by the Box–Muller transform. The field over a block
is exactly the crop of the field over the whole plane, whatever the tiling, the block grid, the
order or the worker.

Values are computed on the CPU in NumPy's unsigned 64-bit arithmetic (its wrap-around is defined,
unlike torch's signed integers), so a seed gives the same noise on every device.
"""
from __future__ import annotations

import numpy as np
import torch

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S32, _S40 = (np.uint64(n) for n in (30, 27, 31, 32, 40))
_LOW24 = np.uint64(0xFFFFFF)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def stream_key(*parts: int) -> np.uint64:
    """A 64-bit key for one stream of draws, e.g. (seed, plane, sample, draw); distinct tuples give
    unrelated streams (NumPy's SeedSequence hashes them)."""
    return np.uint64(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0])


def gaussian_field(key: np.uint64, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Standard normal values (float32) at the global positions origin + [0, shape) of stream ``key``.
    One hash per horizontal pair of pixels (x = 2j, 2j + 1) gives both Box–Muller outputs; its top
    and bottom 24 bits are the two uniforms (tails are cut at 5.9 σ, 1 in 3·10⁸ values)."""
    (y0, x0), (h, w) = origin, shape
    if y0 < 0 or x0 < 0 or y0 + h >= 2**31 or x0 + w >= 2**31:
        raise ValueError(f"positions must lie in [0, 2³¹); got origin {origin} and shape {shape}")
    first_pair, end_pair = x0 // 2, (x0 + w + 1) // 2
    with np.errstate(over="ignore"):
        rows = np.arange(y0, y0 + h, dtype=np.uint64)[:, None] << _S32
        counter = rows | np.arange(first_pair, end_pair, dtype=np.uint64)[None, :]
        z = _mix(_mix(counter * _GOLDEN ^ key) + key)
    u1 = ((z >> _S40).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    u2 = ((z & _LOW24).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    radius, angle = np.sqrt(np.float32(-2.0) * np.log(u1)), np.float32(2 * np.pi) * u2
    pairs = np.empty((h, 2 * (end_pair - first_pair)), dtype=np.float32)
    pairs[:, 0::2], pairs[:, 1::2] = radius * np.cos(angle), radius * np.sin(angle)
    start = x0 - 2 * first_pair
    return pairs[:, start : start + w]


class FieldNoise:
    """The ``noise_fn`` samplers call: one fresh field per call (draw 0 is the starting y_T), for K
    samples of one plane at a global ``origin``. Sample k is the same whether K samples are drawn or
    more, and the same in a block as in the whole plane."""

    def __init__(self, seed: int, plane: int, n_samples: int, device, origin: tuple[int, int] = (0, 0)):
        self.seed, self.plane, self.n_samples = int(seed), int(plane), int(n_samples)
        self.origin, self.device, self.draws = tuple(origin), device, 0

    def __call__(self, shape) -> torch.Tensor:
        if shape[0] != self.n_samples:
            raise ValueError(f"noise for {shape[0]} samples asked of a generator for {self.n_samples}")
        height, width = shape[-2:]
        if int(np.prod(shape[1:-2])) != 1:
            raise ValueError(f"noise is drawn for (K, 1, H, W) batches; got shape {tuple(shape)}")
        fields = []
        for k in range(self.n_samples):
            key = stream_key(self.seed, self.plane, k, self.draws)
            field = gaussian_field(key, self.origin, (height, width))
            fields.append(field.reshape(tuple(shape[1:])))
        self.draws += 1
        return torch.from_numpy(np.stack(fields)).to(self.device)
