"""The view's camera noise where it is not independent from pixel to pixel: its lag-1 correlation
read off one image, and its covariance read off a noise probe made from frames."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .error_scale import pair_moments, shifted_pair


def noise_lag1_correlation(planes: np.ndarray) -> tuple[float, float]:
    """(ρ₁, its standard error): the camera noise's correlation between neighbouring pixels, from
    second differences d_i = y_{i−1} − 2·y_i + y_{i+1} along rows and columns (a smooth signal
    cancels in them): for noise with lag correlations ρ₁ (and none beyond), corr(d_i, d_{i+1}) =
    (7ρ₁ − 4)/(6 − 8ρ₁), −2/3 for white noise. Taken per 16² block and the median over blocks, so
    that edges do not count."""
    ratios = []
    for p in np.asarray(planes, dtype=np.float64).reshape(-1, *np.shape(planes)[-2:]):
        for d in (np.diff(p, 2, axis=1), np.diff(p, 2, axis=0).T):
            h, w = (d.shape[0] // 16) * 16, ((d.shape[1] - 1) // 16) * 16
            if h == 0 or w == 0:
                continue
            a, b = d[:h, :w], d[:h, 1:w + 1]
            blocks = lambda x: x.reshape(h // 16, 16, w // 16, 16).sum(axis=(1, 3))  # noqa: E731
            ratios.append((blocks(a * b) / np.maximum(blocks(a * a), 1e-30)).ravel())
    if not ratios:
        return 0.0, math.inf
    ratios = np.concatenate(ratios)
    r1 = float(np.median(ratios))
    # the median's standard error (1.2533·s/√n for a near-Gaussian spread), carried through dρ/dr = 10/(7 + 8r)²
    se = 1.2533 * float(ratios.std()) / math.sqrt(len(ratios)) * 10 / (7 + 8 * r1) ** 2
    return (6 * r1 + 4) / (7 + 8 * r1), se


@dataclass
class CorrelatedNoise:
    """The view's camera noise as a correlation per offset times the local noise std. A probe made
    from frame differences holds that noise and also whatever moved between the frames, which is
    not in the view; at short lags the lysosome camera's noise moments are as large as the error's,
    so motion taken for noise would swallow much of the error. So the probe's 16² blocks whose energy
    stands out from the rest (:func:`correlated_noise`) are set aside, and the correlation — the
    camera's, the same over the field — and the std per image level are read off the others."""

    std: np.ndarray  # the view's noise std per pixel, / u
    normalised: np.ndarray  # the probe / its std
    quiet: np.ndarray  # bool: pixels of the blocks where nothing moved

    def correlation(self, dy: int, dx: int) -> float:
        a, b = shifted_pair(self.normalised, dy, dx)
        qa, qb = shifted_pair(self.quiet, dy, dx)
        both = qa & qb
        if not both.any():
            return 0.0
        return float((a * b)[both].sum() / math.sqrt((a * a)[both].sum() * (b * b)[both].sum() + 1e-30))

    def moments(self, first, other, offsets) -> np.ndarray:
        """E[n_i·n_j] per offset and direction (as :func:`pair_moments` orders them), with its weights."""
        rho = np.repeat([self.correlation(dy, dx) for dy, dx in offsets], 2)
        return rho * pair_moments(self.std, first, other, offsets)[1]


# px: the probe's part smoother than this is the scene's slow change, not noise (:func:`correlated_noise`)
DRIFT_SMOOTHING = 4.0
QUIET_MADS = 4.0  # a block whose probe energy is this many (robust) spreads above the median holds motion


def _noise_std(probe: np.ndarray, level: np.ndarray, use: np.ndarray, bins: int = 16) -> np.ndarray:
    """The probe's std per pixel as a function of the image ``level``: its mean square per level
    bin over the pixels in ``use``, interpolated."""
    p2 = probe ** 2
    edges = np.unique(np.quantile(level[use], np.linspace(0, 1, bins + 1)))
    edges = np.repeat(edges, 2) if len(edges) == 1 else edges  # a flat image: one bin
    centres, variances = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = use & (level >= lo) & (level <= hi)
        if sel.any():
            centres.append(float(np.median(level[sel])))
            variances.append(float(np.mean(p2[sel])))
    return np.sqrt(np.maximum(np.interp(level, centres, variances), 1e-30))


def correlated_noise(probe: np.ndarray, level: np.ndarray, unit: np.ndarray) -> CorrelatedNoise:
    """The view's noise covariance from a noise probe (input units) over images of ``level``: the
    probe's 16² blocks whose mean (probe/std)² lies QUIET_MADS robust spreads above the median
    are set aside as moving (the std first from all pixels, then again from the quiet ones).

    The probe's smooth part (a Gaussian of DRIFT_SMOOTHING px) is taken off first. A probe made from
    frames is a difference in time, so it holds the scene's slow change between them (a fading or
    brightening field, a slow drift), which the view — the neighbours' mean, or the next frame, where
    that change counts as error — does not hold as noise; being smooth, it correlates at every lag,
    and taken off as noise it made V come out below 0 on the 8-bit time-lapse of
    docs/benchmarks/real_calibration.md (−0.035, for a truth near 0.05 per the truth's own V). Camera
    noise that is white keeps all but 3/(4π·σ²) of its variance (1.5 %), and a correlation over a few
    pixels is kept at the lags used."""
    probe = np.asarray(probe, dtype=np.float64).reshape(-1, *np.shape(probe)[-2:])
    probe = probe - ndimage.gaussian_filter(probe, (0, DRIFT_SMOOTHING, DRIFT_SMOOTHING))
    level = np.asarray(level, dtype=np.float64).reshape(probe.shape)
    quiet = np.ones(probe.shape, dtype=bool)
    h, w = (probe.shape[-2] // 16) * 16, (probe.shape[-1] // 16) * 16
    for _ in range(2):
        std = _noise_std(probe, level, quiet)
        if h == 0 or w == 0:
            break
        energy = ((probe / std)[:, :h, :w] ** 2).reshape(len(probe), h // 16, 16, w // 16, 16).mean(axis=(2, 4))
        med = np.median(energy)
        spread = 1.4826 * np.median(np.abs(energy - med))
        blocks = energy <= med + QUIET_MADS * spread
        quiet = np.zeros(probe.shape, dtype=bool)
        quiet[:, :h, :w] = np.kron(blocks, np.ones((16, 16), dtype=bool))
    unit = np.asarray(unit, dtype=np.float64).reshape(probe.shape)
    return CorrelatedNoise(std / unit, probe / std, quiet)
