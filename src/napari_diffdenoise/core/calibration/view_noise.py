"""The view's camera noise where it is not independent from pixel to pixel: its lag-1 correlation
read off one image's spectrum, and its covariance read off a noise probe made from frames."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..imaging.recorruption import kernel_tap
from .error_scale import shifted_pair

# the band where the spectrum holds the camera noise alone: |f| ≥ NOISE_BAND cycles/px along both axes.
# The real lysosome frames' spectrum falls to the noise's by about 0.3: what is left of their structure
# at 0.25 reads as a correlation of 0.04–0.10 on 25 frames (bench/noise_correlation.py; 0.00–0.06 from
# 0.3 on, a scratch comparison), while from 0.3 on the standard errors double (±0.06 on 256² of white
# noise): 0.25 keeps both below CORRELATED_NOISE
NOISE_BAND = 0.25
NOISE_TILE = 32  # px: the spectrum is read per tile; the tiles' spread gives the standard errors
# the camera noise's lag-1 correlation along either axis (and 3 standard errors) above which
# recorrupting draws are given it (:meth:`NoiseCorrelation.for_draws`): on real images re-acquired with white
# noise it reads 0 ± 0.05 (256² px; none of 15 above), with noise of lag-1 correlation 0.22 along x
# 0.22 ± 0.02 (all 15 above), on the lysosome frames 0.04–0.10 over 25 frames and 2 single frames of 10
# above (0.16, 0.18; bench/noise_correlation.py); 0.15 sits between
CORRELATED_NOISE = 0.15


@dataclass(frozen=True)
class NoiseCorrelation:
    """The camera noise's lag-1 correlation along y and along x, with standard errors."""

    lag1: tuple[float, float]
    standard_errors: tuple[float, float]

    def seen(self, least: float = 0.0) -> bool:
        """Whether an axis's correlation is both 3 standard errors from 0 and larger than ``least``."""
        return any(abs(r) > max(3 * se, least) for r, se in zip(self.lag1, self.standard_errors))

    def at(self, dy: int, dx: int) -> float:
        """The noise's correlation at offset (dy, dx) under the model the draws are made with: [a, 1, a]
        along each axis (core.imaging.recorruption), lag-1 correlation 2a / (1 + 2a²), lag-2 a² / (1 + 2a²),
        none beyond; the two axes' factors multiplied."""
        out = 1.0
        for lag, rho in zip((abs(dy), abs(dx)), self.lag1):
            a = kernel_tap(rho)
            out *= (1.0, 2 * a / (1 + 2 * a * a), a * a / (1 + 2 * a * a), 0.0)[min(lag, 3)]
        return out

    def for_draws(self) -> tuple[float, float] | None:
        """The lag-1 correlations recorrupting draws are given (core.imaging.recorruption), or None
        (white draws) where neither axis's is seen to exceed CORRELATED_NOISE: a correlation read off
        noise alone scatters by a few hundredths, and white draws on white noise carry no bias."""
        return self.lag1 if self.seen(CORRELATED_NOISE) else None

    def describe(self) -> str:
        parts = [f"at least {r:.3f} along {a}" if r >= MOST_LAG1 - 1e-9 else f"{r:.3f} ± {se:.3f} along {a}"
                 for a, r, se in zip("yx", self.lag1, self.standard_errors)]
        if max(self.lag1) >= MOST_LAG1 - 1e-9:  # its jackknife then reads ± 0: every tile hit the bound
            parts.append(f"beyond the {MOST_LAG1:.3f} that the recorrupting draws' kernel can carry: recorrupted "
                         "pairs share the rest of the camera's correlation, which reads as no error, so intervals "
                         "calibrated on them run narrow")
        return ", ".join(parts)


def _tiles(planes, tile: int):
    """``tile``² tiles of each plane (a stack, or a list of planes of any sizes)."""
    stack = planes if isinstance(planes, (list, tuple)) else np.reshape(planes, (-1, *np.shape(planes)[-2:]))
    for p in stack:
        p = np.asarray(p, dtype=np.float64)
        for y in range(0, p.shape[0] - tile + 1, tile):
            for x in range(0, p.shape[1] - tile + 1, tile):
                yield p[y:y + tile, x:x + tile]


def _lag1_of_band_slope(r: float) -> float:
    """ρ₁ of noise through a kernel [a, 1, a] whose spectrum's slope against cos 2πf over the band
    gives ``r``: that spectrum, 1 + 2ρ₁·cos 2πf + 2ρ₂·cos 4πf (ρ₂ = a² / (1 + 2a²)), has cos 4πf ≈
    −1 − 2·cos 2πf over 0.25…0.5, so the slope reads ρ₁ − 2ρ₂ = (2a − 2a²) / (1 + 2a²); solved for a
    (at most BAND_SLOPE_PEAK, that reading's peak). The kernel is the recorrupting draws'
    (core.imaging.recorruption), so that their spectrum matches the noise's over the band."""
    r = min(r, BAND_SLOPE_PEAK)
    a = (1 - math.sqrt(max(1 - 2 * r * (1 + r), 0.0))) / (2 * (1 + r))
    return 2 * a / (1 + 2 * a * a)


BAND_SLOPE_PEAK = 0.366  # the most the band's slope reads for noise through a kernel [a, 1, a]
MOST_LAG1 = _lag1_of_band_slope(BAND_SLOPE_PEAK)  # 0.574: a stronger correlation reads as this


def noise_correlation(planes, band: float = NOISE_BAND, tile: int = NOISE_TILE) -> NoiseCorrelation:
    """The camera noise's correlation between neighbouring pixels, along y and x, read off the power
    spectrum where the image holds noise alone: fluorescence images are band-limited by the optics,
    so at spatial frequencies |f_y|, |f_x| ≥ ``band`` the spectrum is the noise's. Noise with lag-1
    correlation ρ along an axis has the spectrum 1 + 2ρ·cos(2πf) along it, so ρ ≈ slope / (2·intercept)
    of the periodogram regressed on cos(2πf) over that band (the other axis averages out: the band
    is a rectangle), corrected for the lag-2 part of a 3-tap kernel's spectrum
    (:func:`_lag1_of_band_slope`). Per ``tile``² tile (Hann-windowed, each normalised to its mean there, so that
    noise that varies with the level weighs each tile alike), pooled; the standard errors are the
    tiles' jackknife. Differences of the image in space cannot do this: structure outweighs the
    noise in them (second differences read 0.41–0.60 on the lysosome frames, whose noise is white
    beyond 0.25 cycles/px). Fewer than two tiles: (0, 0) with infinite standard errors."""
    freqs = np.abs(np.fft.fftfreq(tile))
    fy, fx = np.meshgrid(freqs, np.abs(np.fft.rfftfreq(tile)), indexing="ij")
    in_band = (fy >= band) & (fx >= band)
    regressors = [np.stack([np.ones(in_band.sum()), np.cos(2 * np.pi * f[in_band])], 1) for f in (fy, fx)]
    window = np.outer(np.hanning(tile), np.hanning(tile))
    sums = []  # per tile and axis: the normal equations (AᵀA, AᵀP)
    for t in _tiles(planes, tile):
        power = (np.abs(np.fft.rfft2((t - t.mean()) * window)) ** 2)[in_band]
        if power.mean() <= 0:
            continue
        power = power / power.mean()
        sums.append([(a.T @ a, a.T @ power) for a in regressors])
    n = len(sums)
    if n < 2:
        return NoiseCorrelation((0.0, 0.0), (math.inf, math.inf))

    totals = [(sum(s[axis][0] for s in sums), sum(s[axis][1] for s in sums)) for axis in (0, 1)]

    def rho(left_out=None):
        """ρ₁ per axis from all tiles, or all but tile ``left_out`` (the jackknife's)."""
        out = []
        for axis, (aa, ap) in enumerate(totals):
            if left_out is not None:
                aa, ap = aa - sums[left_out][axis][0], ap - sums[left_out][axis][1]
            coef = np.linalg.solve(aa, ap)
            out.append(_lag1_of_band_slope(coef[1] / (2 * coef[0])))
        return np.array(out)

    full = rho()
    jack = np.array([rho(i) for i in range(n)])
    se = np.sqrt((n - 1) / n * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
    return NoiseCorrelation((float(full[0]), float(full[1])), (float(se[0]), float(se[1])))


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

    def correlations(self, offsets) -> np.ndarray:
        """The noise's correlation per offset and direction (as :func:`pair_moments` orders them)."""
        return np.repeat([self.correlation(dy, dx) for dy, dx in offsets], 2)


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
