"""The restoration's error scale from residuals against an independent noisy view, in units of
the model's own spread: V = E[(e/u)²] per bin of u, and the interval factor λ it implies.

At low light E[n²] is tens to hundreds of times E[e²], so any statistic that subtracts a fitted
noise variance is ruled by that fit's error. Products of residuals at *different* pixels are not:
for noise that is independent from pixel to pixel, E[r_i·r_j] = E[e_i·e_j] for i ≠ j, whatever the
noise variance. The restoration's error is spatially correlated (its bias on structure spans many
pixels), so the cross-moments at small lags, extrapolated to lag 0 (a Gaussian fall-off fitted
to the lags 1 … 3 in all directions), estimate E[e²] with no noise model at all. Done on the
standardised residual v = r / u (u: the interval unit, core.run.conformal.interval_unit) and per bin
of u, they give the error's scale in units of the model's own spread, V_b = E[(e/u)²] in bin b.

The interval factor λ for a coverage c then solves Σ_b w_b·P(|E_b| ≤ λ) = c, E_b the error in bin b:
a generalised Gaussian of variance V_b and shape ERROR_SHAPE per bin, a mixture over bins. The shape is
not read off the user's image (the noise hides the error's tails there as it hides its variance); it
is the model's, measured once on real images kept out of both training and validation
(bench/error_shape.py, docs/benchmarks/error_shape.md). This is a *model* of the residuals,
not split-conformal prediction: nothing guarantees the coverage; bench/real_calibration.py measures
what it reaches against truths on real images (docs/benchmarks/real_calibration.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import ndimage, special

from ..run.conformal import BLOCK

MAX_LAG = 3.0  # pixels: the cross-moments used, all offsets with 0 < |d| ≤ MAX_LAG
N_BINS = 4  # bins of the interval unit u (quantiles): the error's scale is fitted per bin
# the least V an interval is built on: an estimate near 0 may be noise in the products (the
# standard-error bound below covers that) or a bias the standard errors do not see. The spread can be
# far too wide: on the 8-bit time-lapse's dark background the truth's V is 0.01–0.06
# (docs/benchmarks/real_calibration.md), and a floor of 0.25 kept the frame pairs' intervals at 2.4× the
# oracle's width (coverage 0.86 at 0.8); 0.05 and 0.02 gave the same coverage on every other real frame
# there (a scratch comparison on the bench's cases, which chose 0.05 on them). 0.25 was kept for
# recorrupted pairs of correlated camera noise while their draws were white (their bias unseen);
# the draws now carry the camera's correlation (core.imaging.recorruption)
V_FLOOR = 0.05
L_MIN, L_MAX = 1.5, 20.0  # px: the error's correlation length allowed (so that noise cannot blow V up)
PRECISION_SMOOTHING = 12.0  # px: the window of the local noise level that weights the products
CONFIDENCE_K = 1.0  # V is taken one standard error above its estimate (a one-sided 84 % bound)
# β of the error's density ∝ exp(−|e/a|^β) within a bin of u (2: a Gaussian): the real error is more
# peaked than a Gaussian of its variance, so a Gaussian interval covers too much at 0.8 (0.827 where
# the truth gave V). The value bench/error_shape.py measures (docs/benchmarks/error_shape.md)
ERROR_SHAPE = 1.3
FOLDS = 8  # block groups whose spread gives each estimate's standard error


@runtime_checkable
class NoiseCovariance(Protocol):
    """The view's noise where it is correlated between pixels (core.calibration.view_noise.CorrelatedNoise):
    its cross-moments are taken off the residuals' instead of a noise image's own."""

    std: np.ndarray  # the noise's std per pixel, / u

    def correlations(self, offsets) -> np.ndarray: ...  # per offset and direction, as pair_moments orders them


def lag_offsets(max_lag: float = MAX_LAG) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with 0 < |d| ≤ max_lag in one half-plane (each pixel pair counted once)."""
    reach = int(max_lag)
    return [(dy, dx) for dy in range(0, reach + 1) for dx in range(-reach, reach + 1)
            if (dy > 0 or dx > 0) and dy * dy + dx * dx <= max_lag ** 2]


def _halves(lags, moments, totals):
    """(short-lag mean, its mean lag, long-lag mean, its mean lag) of the cross-moments: the lags
    split at their median length; noise in the products averages out within each half."""
    ok = np.isfinite(moments) & (totals > 0)
    lags, moments, totals = lags[ok], moments[ok], totals[ok]
    if len(lags) == 0:
        return 0.0, 1.0, 0.0, 2.0
    split = np.median(np.unique(lags))
    short, long_ = lags <= split, lags > split
    c_short = float(np.average(moments[short], weights=totals[short]))
    r_short = float(np.average(lags[short], weights=totals[short]))
    if not long_.any():
        return c_short, r_short, c_short, r_short + 1.0
    return (c_short, r_short, float(np.average(moments[long_], weights=totals[long_])),
            float(np.average(lags[long_], weights=totals[long_])))


def correlation_length(lags, moments, totals) -> float:
    """ℓ: the error's correlation falls as exp(−r²/2ℓ²) with distance r (a Gaussian through the
    short- and the long-lag means: the error is the difference of smooth images, so its correlation
    is flat at 0, and an exponential would overshoot there), bounded below by L_MIN so that noise in
    the long lags cannot blow V up, and at most L_MAX."""
    c_short, r_short, c_long, r_long = _halves(lags, moments, totals)
    if c_short <= 0 or c_long <= 0 or c_long >= c_short:
        return L_MAX if c_short > 0 and c_long >= c_short else L_MIN
    ell = math.sqrt((r_long ** 2 - r_short ** 2) / (2 * math.log(c_short / c_long)))
    return min(max(ell, L_MIN), L_MAX)


def extrapolate_to_zero(lags: np.ndarray, moments: np.ndarray, totals: np.ndarray, ell: float | None = None) -> float:
    """E[v²] of the spatially correlated part, C(0) = C(r)·exp(r²/2ℓ²) from the short lags' mean
    (ℓ from :func:`correlation_length` unless given). Linear in the moments for a given ℓ, so that
    noise in them averages out rather than inflating V; negative when noise made the short lags
    negative (left so: clipping here would hide that noise from the standard errors)."""
    ell = correlation_length(lags, moments, totals) if ell is None else ell
    c_short, r_short, _, _ = _halves(lags, moments, totals)
    return c_short * math.exp(r_short ** 2 / (2 * ell ** 2))


@dataclass
class ErrorScale:
    """The restoration's error in units of its own spread: V = E[(e/u)²] per bin of u."""

    edges: list[float]  # bin edges of u (input units), N_BINS + 1 of them
    weights: list[float]  # the fraction of pixels per bin
    variances: list[float]  # V per bin, after the floor
    raw_variances: list[float]  # V per bin as measured (before shrinkage and the floor; for the record)
    lags_used: list[float]  # the lag lengths that entered the fit
    pooled: float = math.nan  # V over all bins (precision-weighted)
    pooled_se: float = math.nan  # its standard error
    standard_errors: list[float] = dataclasses.field(default_factory=list)  # per bin
    shape: float = ERROR_SHAPE  # β of each bin's generalised Gaussian (2: Gaussian)

    def factor(self, coverage: float) -> float:
        """λ with Σ_b w_b·P(|E_b| ≤ λ) = coverage (bisection on the mixture's CDF)."""
        lo, hi = 0.0, 1.0
        while self.coverage_of(hi) < coverage:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.coverage_of(mid) < coverage else (lo, mid)
        return hi

    def coverage_of(self, factor: float) -> float:
        """Σ_b w_b·P(|E_b| ≤ factor), E_b generalised Gaussian of variance V_b and shape β."""
        return float(np.sum(np.asarray(self.weights) * generalised_gaussian_coverage(factor, self.variances, self.shape)))


def generalised_gaussian_coverage(half_width: float, variances, shape: float) -> np.ndarray:
    """P(|E| ≤ half_width) for E with density ∝ exp(−|e/a|^β) and variance V = a²·Γ(3/β)/Γ(1/β),
    per V: the regularised incomplete gamma P(1/β, (half_width/a)^β) (β = 2: erf(half_width/√(2V)))."""
    scale = np.sqrt(np.asarray(variances, dtype=np.float64) * special.gamma(1 / shape) / special.gamma(3 / shape))
    return special.gammainc(1 / shape, (half_width / scale) ** shape)


def precision_weights(v: np.ndarray, noise=None) -> np.ndarray:
    """1 / (the local mean of v²) per pixel: v's noise varies over the image (with the level and
    with u), and products of its noisiest pixels would swamp the rest. The noise dominates v², so
    these weights hardly depend on the error they help to measure. With a noise probe, the mean of
    v² and the probe's² — weights drawn from v alone would favour pairs whose correlated noise came
    out small, and the probe's moments, taken with the same weights, would then be too large."""
    energy = np.asarray(v, dtype=np.float64) ** 2
    if noise is not None:
        noise = noise.std if isinstance(noise, NoiseCovariance) else noise
        energy = (energy + np.asarray(noise, dtype=np.float64) ** 2) / 2
    local = ndimage.gaussian_filter(energy, sigma=(0,) * (v.ndim - 2) + (PRECISION_SMOOTHING,) * 2)
    return 1 / np.maximum(local, 1e-12)


def label_moments(v, labels, n_labels, partner_ok, precision, offsets, noise=None, groups=None):
    """(lags, moments, totals) per label: the precision-weighted cross-moments of v over the pairs
    whose first pixel carries that label (≥ 0) and whose partner is ``partner_ok`` — one pass over
    the image per offset for every label at once (a label is a bin of u, or a bin within a fold of
    blocks: its first pixel's fold, pairs across folds counted for none). With ``noise`` (a
    noise-only image with the view's noise covariance, in v's units, or a NoiseCovariance) its same
    moments are taken off: camera noise correlated between pixels then cancels instead of passing
    for error. moments[label, k] is NaN where the label has no pair at offset k."""
    weighted = np.where(partner_ok, precision, 0.0)
    std = noise.std if isinstance(noise, NoiseCovariance) else noise
    rho = noise.correlations(offsets) if isinstance(noise, NoiseCovariance) else None
    lags, sums, totals = [], [], []
    for dy, dx in offsets:
        # both directions of each offset, so that a pixel in the bin pairs with neighbours on every side
        for sy, sx in ((dy, dx), (-dy, -dx)):
            a, b = shifted_pair(v, sy, sx)
            pa, wb = shifted_pair(precision, sy, sx)[0], shifted_pair(weighted, sy, sx)[1]
            la = shifted_pair(labels, sy, sx)[0]
            keep = la >= 0
            if groups is not None:
                ga, gb = shifted_pair(groups, sy, sx)
                keep &= ga == gb
            w = (pa * wb)[keep]
            product = (a * b)[keep]
            if std is not None:
                na, nb = shifted_pair(std, sy, sx)
                product = product - (rho[len(lags)] if rho is not None else 1.0) * (na * nb)[keep]
            lab = la[keep]
            sums.append(np.bincount(lab, weights=product * w, minlength=n_labels))
            totals.append(np.bincount(lab, weights=w, minlength=n_labels))
            lags.append(math.hypot(dy, dx))
    sums, totals = np.array(sums).T, np.array(totals).T
    with np.errstate(invalid="ignore", divide="ignore"):
        moments = np.where(totals > 0, sums / np.where(totals > 0, totals, 1.0), np.nan)
    return np.array(lags), moments, totals


def bin_labels(unit, mask, edges) -> np.ndarray:
    """Each pixel's bin of ``unit`` (edges[i] ≤ u < edges[i + 1]), −1 outside ``mask``."""
    index = np.searchsorted(np.asarray(edges), unit, side="right") - 1
    return np.where(mask & (index >= 0) & (index < len(edges) - 1), index, -1)


def _bin_estimates(v, unit, mask, offsets, edges, ell: float, precision, noise, groups,
                   folds: int) -> tuple[list[float], list[float], np.ndarray]:
    """(pixels, extrapolated E[v²]) per bin of ``unit`` over the pixels in ``mask``, for a correlation
    length ℓ and the products' ``precision`` weights, and the same per fold of blocks (``groups``: each
    pixel's fold; a (folds, bins) array, pairs within a fold only). A pair counts for the bin of its
    first pixel, whichever bin its partner is in."""
    n_bins = len(edges) - 1
    bins = bin_labels(unit, mask, edges)
    counts = [float(np.sum(bins == b)) for b in range(n_bins)]
    lags, moments, totals = label_moments(v, bins, n_bins, mask, precision, offsets, noise)
    values = [extrapolate_to_zero(lags, moments[b], totals[b], ell) for b in range(n_bins)]
    # one pass for all folds: a label per (fold, bin), pairs whose partner is in the same fold only
    labels = np.where(bins >= 0, groups * n_bins + bins, -1)
    lags, moments, totals = label_moments(v, labels, folds * n_bins, mask, precision, offsets, noise, groups)
    per_fold = np.array([extrapolate_to_zero(lags, moments[i], totals[i], ell)
                         for i in range(folds * n_bins)]).reshape(folds, n_bins)
    return counts, values, per_fold


def error_scale(v: np.ndarray, unit: np.ndarray, mask: np.ndarray, offsets, edges=None, folds: int = FOLDS,
                seed: int = 0, noise: np.ndarray | NoiseCovariance | None = None, draws: int = 1,
                ell: float | None = None, floor: float = V_FLOOR) -> ErrorScale:
    """V per bin of ``unit`` from the standardised residual ``v`` over the pixels in ``mask``, at least
    ``floor``.

    At low light the noise in the products dwarfs the error, so each bin's estimate is uncertain:
    its standard error comes from ``folds`` disjoint groups of BLOCK² blocks (the spread of their
    estimates / √folds), and each bin is shrunk towards the precision-weighted pooled value by
    that uncertainty (empirical Bayes), so that noise in one bin does not pass for a heavy tail:
    where the bins' scatter is no larger than their noise, every bin gets the pooled value. The V
    used is then CONFIDENCE_K standard errors above the shrunk estimate. With ``draws`` > 1 the
    planes are that many recorrupted copies of the same crops, one after the other: a block and its
    copies fall in one group, as they hold the same error. ``ell``: the error's correlation
    length, when known better than the residuals' own products can tell it."""
    if edges is None:
        edges = np.quantile(unit[mask], np.linspace(0, 1, N_BINS + 1))
        edges[0], edges[-1] = -np.inf, np.inf
    edges = np.asarray(edges, dtype=np.float64)
    # one correlation length for all bins, from all pixels: one per bin would be far noisier
    precision = precision_weights(v, noise)
    if ell is None:  # from the residuals themselves: noisy, see core.calibration.residuals.response_length
        lags, moments, totals = label_moments(v, np.where(mask, 0, -1), 1, mask, precision, offsets, noise)
        ell = correlation_length(lags, moments[0], totals[0])
    groups = _fold_labels(v.shape, folds, seed, draws)
    counts, raw, per_fold = _bin_estimates(v, unit, mask, offsets, edges, ell, precision, noise, groups, folds)
    se2 = np.maximum(per_fold.var(axis=0, ddof=1) / folds, 1e-12)
    raw_arr = np.asarray(raw)
    filled = np.asarray(counts) > 0
    pooled = float(np.average(raw_arr[filled], weights=1 / se2[filled])) if filled.any() else 0.0
    pooled_se = float(np.sqrt(1 / np.sum(1 / se2[filled]))) if filled.any() else math.inf
    # empirical Bayes: the bins' true spread about the pooled value is what their scatter holds beyond
    # their own noise; each bin keeps the share of its deviation that this spread explains
    between = max(float(np.mean((raw_arr[filled] - pooled) ** 2 - se2[filled])), 0.0) if filled.any() else 0.0
    keep = between / (between + se2)
    shrunk = pooled + (raw_arr - pooled) * keep
    # an upper confidence bound, as risk-controlling intervals take (Angelopoulos et al. 2022): where the
    # products are noisy, an estimate that came out low would make every interval too narrow
    uncertainty = np.sqrt(keep * se2 + ((1 - keep) * pooled_se) ** 2)
    shrunk = shrunk + CONFIDENCE_K * uncertainty
    total = sum(counts) or 1.0
    return ErrorScale([float(e) for e in edges], [c / total for c in counts], [max(float(x), floor) for x in shrunk],
                      [float(x) for x in raw], sorted({round(math.hypot(*o), 3) for o in offsets}),
                      pooled, pooled_se, [float(x) for x in np.sqrt(se2)])


def _fold_labels(shape, folds: int, seed: int, draws: int = 1) -> np.ndarray:
    """Each BLOCK² block of every plane assigned to one of ``folds`` groups at random (the same
    group for a block's copies in each of ``draws`` stacked draws)."""
    planes = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    h, w = shape[-2:]
    by, bx = -(-h // BLOCK), -(-w // BLOCK)
    labels = np.random.default_rng([seed, 31]).integers(0, folds, (planes // draws, by, bx))
    labels = np.tile(labels, (draws, 1, 1))
    return np.kron(labels, np.ones((1, BLOCK, BLOCK), dtype=labels.dtype))[:, :h, :w].reshape(shape)


def pair_moments(v, first, other, offsets):
    lags, moments, totals = [], [], []
    for dy, dx in offsets:
        # both directions of each offset, so that a pixel in the bin pairs with neighbours on every side
        for sy, sx in ((dy, dx), (-dy, -dx)):
            a, b = shifted_pair(v, sy, sx)
            fa, _ = shifted_pair(first, sy, sx)
            _, ob = shifted_pair(other, sy, sx)
            w = fa * ob
            total = float(w.sum())
            lags.append(math.hypot(dy, dx))
            moments.append(float((a * b * w).sum() / total) if total > 0 else math.nan)
            totals.append(total)
    return np.array(lags), np.array(moments), np.array(totals)


def shifted_pair(a: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """(a at p, a at p + (dy, dx)) for offsets of any sign."""
    h, w = a.shape[-2:]
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    return a[..., ys:ye, xs:xe], a[..., ys + dy:ye + dy, xs + dx:xe + dx]
