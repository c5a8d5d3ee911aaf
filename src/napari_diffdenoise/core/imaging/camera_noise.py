"""The camera's noise: one description of it, var(y) = gain·E[y] + floor in the image's units, whether
it is known (the simulator's camera, core.imaging.simulate.Acquisition.camera_noise) or fitted to an image.

The fit: var(y) = a·E[y] + b (Poisson–Gaussian) fitted to the local means and noise variances of an image's
flattest blocks (Foi et al. 2008, "Practical Poissonian-Gaussian noise modeling and fitting for
single-image raw-data"), in the image's own units. Adaptation (core.training.adapt) recorrupts with it;
the calibrations without a clean image (core.calibration.calibration, core.calibration.self_calibration)
simulate or weigh with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 8  # pixels per side of the blocks whose statistics fit the noise model
CLIPPED_SHARE = 0.25  # blocks with this share of pixels at a clipped value are left out of the noise fit
# a bin's third moment is read on its blocks of at most this × its median variance: edges skew the rest,
# and a tighter cut biases it (the blocks whose variance came out low are those with fewer large outliers)
FLAT_FACTOR = 2.0


@dataclass(frozen=True)
class CameraNoise:
    """var(y) = gain·E[y] + floor, in the image's units (Poisson–Gaussian: gain = photon → unit
    conversion, floor = read noise² minus gain × offset). ``levels``/``variances``, when given, are
    the measured variance per level bin: :meth:`variance` follows them (interpolated, held
    constant below the first, never below the line above the last) within a factor 2 of the
    line, so that a clipped dark end or a bin the line misses is followed while a bin inflated by
    structure is not."""

    gain: float
    floor: float
    levels: tuple = ()
    variances: tuple = ()
    # the variance that carries no skew (read noise, quantisation): the rest is photon noise, whose third
    # cumulant is gain × its variance (:meth:`third_moment`)
    read_variance: float = 0.0

    @classmethod
    def poisson_gaussian(cls, read_noise: float, offset: float = 0.0, gain: float = 1.0) -> CameraNoise:
        """A camera known by its parameters: ``gain`` image units per photo-electron, ``read_noise`` in
        photo-electrons (std), ``offset`` the baseline in image units. The Poisson part's variance is
        gain·(level − offset), the read noise's (gain·read_noise)²."""
        return cls(float(gain), float((gain * read_noise) ** 2 - gain * offset),
                   read_variance=float((gain * read_noise) ** 2))

    def variance(self, level: np.ndarray) -> np.ndarray:
        level = np.asarray(level, dtype=np.float64)
        line = self.gain * level + self.floor
        # a floor of a hundredth of the smallest level's variance keeps σ > 0 where the fit dips
        least = 1e-2 * max(abs(self.floor), self.gain, 1e-12)
        if len(self.levels) >= 2:
            table = np.interp(level, self.levels, self.variances)
            least = max(least, 1e-2 * min(self.variances))
            if self.gain > 0:
                table = np.clip(table, 0.5 * line, 2.0 * np.maximum(line, least))
                # above the brightest bin the line carries on (the table would stop rising there)
                table = np.where(level > self.levels[-1], np.maximum(table, line), table)
            line = table
        return np.maximum(line, least)

    def third_moment(self, level: np.ndarray) -> np.ndarray:
        """E[(y − E y)³] at ``level``: a Poisson count's third cumulant equals its mean, so photon noise
        of variance gain²·N carries gain³·N = gain × its variance; the read noise is symmetric."""
        return self.gain * np.maximum(self.variance(level) - self.read_variance, 0.0)


def _clipped_values(p: np.ndarray) -> list[float]:
    """The image's minimum and maximum where they hold ≥ 0.1 % of the pixels: a camera or a
    conversion that clipped (an 8-bit frame at 0/1 or 255, a saturated 16-bit one). Clipped pixels
    carry less than their level's noise and would pull the fit down."""
    return [float(v) for v in (p.min(), p.max()) if np.mean(p == v) >= 1e-3]


def estimate_noise(planes: list[np.ndarray]) -> CameraNoise:
    """Fit var(y) = a·E[y] + b from BLOCK² blocks (after Foi et al. 2008): a block's level is its
    mean; its noise variance is the mean square of the second differences along rows and columns,
    d = y_{i−1} − 2·y_i + y_{i+1}, over 6 (var d = 6·var y for pixel-independent noise; a linear
    ramp of the signal cancels). Blocks a quarter of whose pixels hold a clipped value
    (:func:`_clipped_values`) are left out. Per level bin (16 bins of equal counts) the median block variance is taken: robust to the
    blocks that straddle an edge, and — unlike a median absolute deviation — not stuck to the
    steps of quantised counts (an 8-bit frame with a few counts per pixel gave 1.5 where frame
    differences measure 0.9; the quantisation's own variance, 1/12 of a step², is part of the
    noise the network must remove and is kept in). The line through the bins minimises the
    relative absolute deviation (reweighted least squares): bright bins inflated by structure
    barely move it (a least-squares line through them gave −12750 as the floor of a confocal
    series and a quarter of the measured variance where most of its pixels lie). The bin medians
    are kept in the result (:attr:`CameraNoise.levels`). The photon noise's share comes from the bins'
    third moments (:attr:`CameraNoise.read_variance`): on a simulated ramp at 6 photons with read
    noise 1.5, read variance 1.5–2.1 for 2.25; at 200 photons its noise swamps it (0 for 9), where
    photon noise is nearly symmetric anyway."""
    means, variances, skews = [], [], []
    for plane in planes:
        p = np.asarray(plane, dtype=np.float64)
        clipped = _clipped_values(p)
        h, w = (p.shape[0] // BLOCK) * BLOCK, (p.shape[1] // BLOCK) * BLOCK
        blocks = p[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
        if clipped:  # a block a quarter clipped; fewer: a natural minimum (zero counts) is no clipping
            unclipped = blocks[np.isin(blocks, clipped).mean(axis=(1, 2)) < CLIPPED_SHARE]
            blocks = unclipped if len(unclipped) >= 16 else blocks
        d = np.concatenate([np.diff(blocks, 2, axis=2).reshape(len(blocks), -1),
                            np.diff(blocks, 2, axis=1).reshape(len(blocks), -1)], axis=1)
        means.append(blocks.mean(axis=(1, 2)))
        variances.append(np.mean(d**2, axis=1) / 6)
        skews.append(-np.mean(d**3, axis=1) / 6)  # κ₃(y₋ − 2y + y₊) = (1 − 8 + 1)·κ₃(y)
    m, v, k3 = np.concatenate(means), np.concatenate(variances), np.concatenate(skews)
    edges = np.unique(np.quantile(m, np.linspace(0, 1, 17)))
    xs, ys, ws, third = [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() < 4:
            continue
        xs.append(np.median(m[sel]))
        ys.append(np.median(v[sel]))
        ws.append(np.sqrt(sel.sum()))
        third.append(float(np.mean(k3[sel & (v <= FLAT_FACTOR * ys[-1])])))
    if len(xs) < 2:
        return CameraNoise(0.0, float(np.median(v)))
    xs, ys, ws = (np.asarray(a, dtype=np.float64) for a in (xs, ys, ws))
    ys = np.maximum(ys, 1e-12 * max(ys.max(), 1e-300))
    weight = ws / ys**2
    for _ in range(30):  # IRLS for min Σ w·|y − line|/y
        gain, floor = np.polyfit(xs, ys, 1, w=np.sqrt(weight))
        weight = ws / ys**2 / np.maximum(np.abs(ys - (gain * xs + floor)) / ys, 0.02)
    if gain < 0:  # no signal dependence to be seen: Gaussian noise
        gain, floor = 0.0, float(np.median(ys))
    table = np.maximum.accumulate(ys)  # the variance does not fall as the level rises
    # what of each bin's variance is not photon noise, from its third moment (:meth:`CameraNoise.third_moment`);
    # one figure for all bins (the median), as each bin's third moment is noisy
    unskewed = ys - np.asarray(third) / gain if gain > 0 else ys
    read_variance = float(np.clip(np.median(unskewed), 0.0, ys.min()))
    return CameraNoise(float(gain), float(floor), tuple(float(x) for x in xs), tuple(float(y) for y in table),
                       read_variance)


def simulate_like(clean: np.ndarray, noise: CameraNoise, rng: np.random.Generator) -> np.ndarray:
    """A noisy image from ``clean`` with the fitted noise model (Gaussian with the fitted variance:
    the Poisson-Gaussian's normal approximation, fine above a few photons)."""
    return (clean + np.sqrt(noise.variance(np.maximum(clean, 0))) * rng.standard_normal(clean.shape)).astype(np.float32)
