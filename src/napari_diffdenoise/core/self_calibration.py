"""Intervals calibrated on the user's own noisy image, against the restoration's real error.

Without a truth, the only witness of the restoration's error is a second, independent noisy view of
the same field: the next frame of a time series (``frames``), or a recorrupted pair made from the
image itself (after Pang et al., "Recorrupted-to-Recorrupted", CVPR 2021; Moran et al.,
"Noisier2Noise", CVPR 2020): with z drawn like the camera noise, ŷ = y + α·σ·z and ȳ = y − σ·z/α
carry independent noises, and the residual r = ȳ − f(ŷ) is the restoration's error e = x − f(ŷ)
plus a noise n that does not depend on f.

At low light E[n²] is tens to hundreds of times E[e²], so any statistic that subtracts a fitted
noise variance is ruled by that fit's error. Products of residuals at *different* pixels are not:
for noise that is independent from pixel to pixel, E[r_i·r_j] = E[e_i·e_j] for i ≠ j, whatever the
noise variance. The restoration's error is spatially correlated (its bias on structure spans many
pixels), so the cross-moments at small lags, extrapolated to lag 0 (a Gaussian fall-off fitted
to the lags 1 … 3 in all directions), estimate E[e²] with no noise model at all. Done on the
standardised residual v = r / u (u: the interval unit, core.calibration.interval_unit) and per bin
of u, they give the error's scale in units of the model's own spread, V_b = E[(e/u)²] in bin b.

The interval factor λ for a coverage c then solves Σ_b w_b·P(|N(0, V_b)| ≤ λ) = c: a Gaussian error
per bin, a mixture over bins (heavier-tailed than one Gaussian). This is a *model* of the residuals,
not split-conformal prediction: nothing guarantees the coverage; bench/real_calibration.py measures
what it reaches against truths on real images (docs/benchmarks/real_calibration.md).

Pitfalls handled: camera noise correlated between neighbouring pixels (processed or resampled data)
would pass as error at lag 1, so the noise's own lag-1 correlation is measured first (from second
differences of the image, :func:`noise_lag1_correlation`) and lag 1 is left out (lags 2 … 4 used)
when it could matter. With frames, the view's noise covariance is read off a noise probe (half the
difference of the neighbouring frames) and taken off at every lag; the probe also holds whatever
moved between the frames, which the view does not, so it is read on its quiet blocks only, as a
correlation per offset times a std per image level (:func:`correlated_noise`). At low light the
products are noisy: each bin's V carries a standard error (from disjoint groups of blocks) and is
shrunk towards the pooled value by it; a recorrupted image smaller than the budget is drawn several
times (:func:`recorrupted_draws`), and the known part of the view's noise (−σ·z/α) is taken off the
products, as its mean is 0.

Known bias: a recorrupted input is noisier than the user's (1 + α² in variance), so V is measured
on a restoration at that noise level, not at the image's own; not corrected. The Gaussian per bin
is a shape assumption; bench/real_calibration.py measures what it alone costs (the route whose V
per bin is taken from the truth). Frame pairs have no noise-level bias, but count what motion is
left as error.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from .calibration import (
    BLOCK,
    COVERAGE_GRID,
    Calibration,
    CalibrationRun,
    block_split,
    calibration_request,
    run_settings,
)
from .datasets import as_planes

MAX_LAG = 3.0  # pixels: the cross-moments used, all offsets with 0 < |d| ≤ MAX_LAG
N_BINS = 4  # bins of the interval unit u (quantiles): the error's scale is fitted per bin
# intervals at least half as wide as a calibrated Gaussian on the model's spread would be (V = 1): the
# residuals may show the spread too wide (an oracle λ on a real Golgi image implies V < 1), but an
# estimate near 0 is more likely noise in the products than an error-free restoration
V_FLOOR = 0.25
LAG1_BIAS_LIMIT = 0.1  # lag 1 is left out when correlated noise could add this fraction of V there
ALPHA = 1.0  # recorrupting: ŷ = y + α·σ·z, ȳ = y − σ·z/α (equal noises at α = 1: the least noisy products)
L_MIN, L_MAX = 1.5, 20.0  # px: the error's correlation length allowed (so that noise cannot blow V up)
PRECISION_SMOOTHING = 12.0  # px: the window of the local noise level that weights the products
CONFIDENCE_K = 1.0  # V is taken one standard error above its estimate (a one-sided 84 % bound)
FOLDS = 8  # block groups whose spread gives each estimate's standard error
CALIBRATION_PLANES = 4  # planes (or frame pairs) of the user's image the widget and CLI calibrate on
MAX_PIXELS = 2 ** 18  # what the calibration restores at most: a 512² plane's worth of crops
# recorrupted pairs of an image smaller than MAX_PIXELS are drawn this many times at most, to fill the
# budget: the products' noise falls as 1/√draws while the error they measure is the same image's
MAX_DRAWS = 8


def _offsets(max_lag: float = MAX_LAG) -> list[tuple[int, int]]:
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

    def factor(self, coverage: float) -> float:
        """λ with Σ_b w_b·P(|N(0, V_b)| ≤ λ) = coverage (bisection on the mixture's CDF)."""
        scales = np.sqrt(np.asarray(self.variances))
        weights = np.asarray(self.weights)

        def covered(lam):
            return float(np.sum(weights * special.erf(lam / (scales * math.sqrt(2)))))

        lo, hi = 0.0, 1.0
        while covered(hi) < coverage:
            hi *= 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if covered(mid) < coverage else (lo, mid)
        return hi

    def coverage_of(self, factor: float) -> float:
        scales = np.sqrt(np.asarray(self.variances))
        return float(np.sum(np.asarray(self.weights) * special.erf(factor / (scales * math.sqrt(2)))))


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
        a, b = _shifted_signed(self.normalised, dy, dx)
        qa, qb = _shifted_signed(self.quiet, dy, dx)
        both = qa & qb
        if not both.any():
            return 0.0
        return float((a * b)[both].sum() / math.sqrt((a * a)[both].sum() * (b * b)[both].sum() + 1e-30))

    def moments(self, first, other, offsets) -> np.ndarray:
        """E[n_i·n_j] per offset and direction (as :func:`_pair_moments` orders them), with its weights."""
        rho = np.repeat([self.correlation(dy, dx) for dy, dx in offsets], 2)
        return rho * _pair_moments(self.std, first, other, offsets)[1]


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
    are set aside as moving (the std first from all pixels, then again from the quiet ones)."""
    probe = np.asarray(probe, dtype=np.float64).reshape(-1, *np.shape(probe)[-2:])
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


def _precision(v: np.ndarray, noise=None) -> np.ndarray:
    """1 / (the local mean of v²) per pixel: v's noise varies over the image (with the level and
    with u), and products of its noisiest pixels would swamp the rest. The noise dominates v², so
    these weights hardly depend on the error they help to measure. With a noise probe, the mean of
    v² and the probe's² — weights drawn from v alone would favour pairs whose correlated noise came
    out small, and the probe's moments, taken with the same weights, would then be too large."""
    energy = np.asarray(v, dtype=np.float64) ** 2
    if noise is not None:
        noise = noise.std if isinstance(noise, CorrelatedNoise) else noise
        energy = (energy + np.asarray(noise, dtype=np.float64) ** 2) / 2
    local = ndimage.gaussian_filter(energy, sigma=(0,) * (v.ndim - 2) + (PRECISION_SMOOTHING,) * 2)
    return 1 / np.maximum(local, 1e-12)


def _error_moments(v, first, other, offsets, noise=None):
    """The cross-moments of v with, when ``noise`` (a noise-only image with the view's noise
    covariance, in v's units) is given, the same moments of ``noise`` taken off: camera noise that
    is correlated between pixels then cancels instead of passing for error."""
    lags, moments, totals = _pair_moments(v, first, other, offsets)
    if isinstance(noise, CorrelatedNoise):
        moments = moments - noise.moments(first, other, offsets)
    elif noise is not None:
        moments = moments - _pair_moments(noise, first, other, offsets)[1]
    return lags, moments, totals


def _bin_estimates(v, unit, mask, offsets, edges, ell: float, noise=None) -> tuple[list[float], list[float]]:
    """(pixels, extrapolated E[v²]) per bin of ``unit`` over the pixels in ``mask``, for a correlation length ℓ."""
    counts, values = [], []
    precision = _precision(v, noise)
    pair_ok = mask * precision
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = mask & (unit >= lo) & (unit < hi)
        counts.append(float(in_bin.sum()))
        # a pair counts for the bin of its first pixel, whichever bin its partner is in
        lags, moments, totals = _error_moments(v, in_bin * precision, pair_ok, offsets, noise)
        values.append(extrapolate_to_zero(lags, moments, totals, ell))
    return counts, values


def error_scale(v: np.ndarray, unit: np.ndarray, mask: np.ndarray, offsets, edges=None, folds: int = FOLDS,
                seed: int = 0, noise: np.ndarray | CorrelatedNoise | None = None, draws: int = 1,
                ell: float | None = None) -> ErrorScale:
    """V per bin of ``unit`` from the standardised residual ``v`` over the pixels in ``mask``.

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
    precision = _precision(v, noise)
    if ell is None:  # from the residuals themselves: noisy, see :func:`response_length`
        ell = correlation_length(*_error_moments(v, mask * precision, mask * precision, offsets, noise))
    counts, raw = _bin_estimates(v, unit, mask, offsets, edges, ell, noise)
    groups = _fold_labels(v.shape, folds, seed, draws)
    per_fold = np.array([_bin_estimates(v, unit, mask & (groups == k), offsets, edges, ell, noise)[1]
                         for k in range(folds)])
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
    return ErrorScale([float(e) for e in edges], [c / total for c in counts], [max(float(x), V_FLOOR) for x in shrunk],
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


def _pair_moments(v, first, other, offsets):
    lags, moments, totals = [], [], []
    for dy, dx in offsets:
        # both directions of each offset, so that a pixel in the bin pairs with neighbours on every side
        for sy, sx in ((dy, dx), (-dy, -dx)):
            a, b = _shifted_signed(v, sy, sx)
            fa, _ = _shifted_signed(first, sy, sx)
            _, ob = _shifted_signed(other, sy, sx)
            w = fa * ob
            total = float(w.sum())
            lags.append(math.hypot(dy, dx))
            moments.append(float((a * b * w).sum() / total) if total > 0 else math.nan)
            totals.append(total)
    return np.array(lags), np.array(moments), np.array(totals)


def _shifted_signed(a: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """(a at p, a at p + (dy, dx)) for offsets of any sign."""
    h, w = a.shape[-2:]
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    return a[..., ys:ye, xs:xe], a[..., ys + dy:ye + dy, xs + dx:xe + dx]


@dataclass
class Residuals:
    """Standardised residuals of restorations against an independent noisy view, per plane."""

    v: np.ndarray  # (planes, H, W): (view − restoration) / u
    unit: np.ndarray  # (planes, H, W): u of the restoration, input units
    restoration: object  # the Restoration of the restored inputs
    how: str  # for the calibration's source
    noise: CorrelatedNoise | None = None  # the view's noise covariance, read off a noise probe (None: unknown)
    # the part of the view's noise that is known (recorrupted: −σ·z/α), / u: its products have mean 0 and
    # are taken off only to make the estimate less noisy (correlated camera noise is not in it)
    known: np.ndarray | None = None
    draws: int = 1  # recorrupted copies of the same crops stacked along the planes
    restoration_mean: np.ndarray | None = None  # (planes, H, W): the restored means, input units


def _crops(planes: list[np.ndarray], max_pixels: int, *companions):
    """At most ``max_pixels`` in all: evenly spaced planes, each cropped about its centre to a
    common size (the restoration runs on one stack); each companion list (or None) likewise."""
    h = min(p.shape[0] for p in planes)
    w = min(p.shape[1] for p in planes)
    n = max(1, min(len(planes), max_pixels // (h * w)))
    if n == 1 and h * w > max_pixels:
        side = int(math.sqrt(max_pixels))
        h, w = min(h, side), min(w, max_pixels // min(h, side))
    chosen = np.unique(np.linspace(0, len(planes) - 1, n).round().astype(int))

    def crop(p):
        y0, x0 = (p.shape[0] - h) // 2, (p.shape[1] - w) // 2
        return p[y0:y0 + h, x0:x0 + w]

    def pick(items):
        return None if items is None else np.stack([crop(np.asarray(items[i])) for i in chosen])

    return (pick(planes), *(pick(c) for c in companions))


def _restore(model, stack, settings):
    from .restore import iter_denoise

    result = yield from iter_denoise(stack.astype(np.float32), model, settings)
    return result


def iter_residuals(model, planes, settings, *, alpha: float | None, seed: int, partner=None, probe=None,
                   view_name: str = "a second acquisition", max_pixels=MAX_PIXELS):
    """Residuals against independent views (``partner[i]`` one of ``planes[i]``, described by
    ``view_name``; ``probe[i]`` noise with the same covariance as that view's, if known) or, with
    ``alpha``, against recorrupted pairs of ``planes`` themselves. Yields the restoration's Progress."""
    from .adapt import _sigma, estimate_noise

    known, draws = None, 1
    if partner is not None:
        inputs, views, probes = _crops(planes, max_pixels, partner, probe)
        how = f"{view_name} for {len(inputs)} plane(s) as an independent noisy view"
        restored_input = inputs
    else:
        (inputs, draws), views, probes = recorrupted_crops(planes, max_pixels), None, None
        noise = estimate_noise(list(inputs))
        rng = np.random.default_rng([seed, 23])
        sigma = np.tile(np.stack([_sigma(p.astype(np.float64), noise) for p in inputs]), (draws, 1, 1))
        copies = np.tile(inputs.astype(np.float64), (draws, 1, 1))
        z = rng.standard_normal(copies.shape)
        restored_input = copies + alpha * sigma * z
        known = -sigma * z / alpha
        views = copies + known
        how = (f"recorrupted pairs (α = {alpha:g}) of {len(inputs)} crop(s) of {inputs.shape[1]}×{inputs.shape[2]} px"
               + (f", {draws} independent draws" if draws > 1 else ""))
    result = yield from _restore(model, restored_input, settings)
    shape = np.shape(restored_input)
    mean = np.asarray(result.mean, dtype=np.float64).reshape(shape)
    unit = np.asarray(result.interval_unit, dtype=np.float64).reshape(shape)
    v = (np.asarray(views, dtype=np.float64) - mean) / unit
    noise = None
    if probes is not None:
        probes = np.asarray(probes, dtype=np.float64)
        level = ndimage.gaussian_filter(np.asarray(views, dtype=np.float64), (0, 2.0, 2.0))
        noise = correlated_noise(probes, level, unit)
    return Residuals(v, unit, result, how, noise, None if known is None else known / unit, draws, mean), inputs


def response_length(residuals: "Residuals", offsets) -> float | None:
    """The error's correlation length from the restorations of two recorrupted draws of the same
    crops: their difference is the restoration's response to the difference of the known noises,
    J·σ·(z₁ − z₂), with no camera noise and no structure in it, so its correlation length is read
    precisely, where the residuals' own products (noise a hundred times the error) give a length
    that often sits at a bound. It is the length of the part of the error that the noise drives;
    the bias on structure may fall off faster or slower. None with a single draw."""
    if residuals.draws < 2 or residuals.restoration_mean is None:
        return None
    means = residuals.restoration_mean
    planes = len(means) // residuals.draws
    difference = (means[planes:] - means[:-planes]) / residuals.unit[planes:]
    known = None if residuals.known is None else residuals.known[planes:]
    weights = _precision(residuals.v[planes:], known)
    return correlation_length(*_pair_moments(difference, weights, weights, offsets))


def recorrupted_crops(planes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int]:
    """(crops, draws): what a recorrupted calibration restores, draws × the crops: crops of at most
    half the budget, so that at least two draws fit (their difference gives the error's
    correlation length, :func:`response_length`). The Train widget's time estimate reads it too."""
    crops = _crops(planes, max(max_pixels // 2, 1))[0]
    return crops, recorrupted_draws(crops.size, max_pixels)


def recorrupted_draws(crop_pixels: int, max_pixels: int = MAX_PIXELS) -> int:
    """How many recorrupted copies of crops of ``crop_pixels`` in all the calibration restores: as
    many as fit in ``max_pixels``, at most MAX_DRAWS."""
    return int(min(MAX_DRAWS, max(1, max_pixels // max(int(crop_pixels), 1))))


def iter_self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                        alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                        second_is: str = "a second acquisition", second_noise=None, **settings):
    """:func:`self_calibrate` as a generator (yields Progress; returns a CalibrationRun whose truth is None)."""
    from .checkpoint import load_model
    if isinstance(model, str):
        model = load_model(model)
    coverages, run = calibration_request(model, coverage, settings)
    planes = as_planes(noisy, "noisy")
    if second is not None:
        partner = as_planes(second, "second")
        if [p.shape for p in partner] != [p.shape for p in planes]:
            raise ValueError("second must have the noisy image's shape (an independent acquisition of the same field)")
        view_name = second_is
        probe = (as_planes(second_noise, "second_noise") if second_noise is not None
                 else [(b - a) / math.sqrt(2) for a, b in zip(planes, partner)])
    elif frames:
        if len(planes) < 2:
            raise ValueError("frames=True needs at least two frames (a T axis)")
        planes, partner, probe, view_name = frame_views(planes)
    else:
        partner, probe, view_name = None, None, ""
    if partner is None and not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number; got {alpha!r}")

    offsets = _offsets()
    last, inputs = yield from iter_residuals(model, planes, run, alpha=None if partner is not None else alpha,
                                             seed=seed, partner=partner, probe=probe, view_name=view_name,
                                             max_pixels=max_pixels)
    mask = np.ones(last.v.shape, dtype=bool)
    taken_off = last.noise if last.noise is not None else last.known
    ell = response_length(last, offsets)
    scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws, ell=ell)
    # correlated camera noise enters the lag-1 products as if it were error: by how much, in V's units
    rho_noise, rho_se = noise_lag1_correlation(inputs)
    camera_share = 1.0 if partner is not None else alpha ** 2 / (1 + alpha ** 2)  # of the view's noise variance
    noise_bias = abs(rho_noise) * camera_share * float(np.mean(last.v ** 2))
    # left out only when the correlation is seen (3 standard errors) and could move V by a tenth
    # (with a noise probe the noise's own cross-moments are taken off at every lag instead)
    dropped = (last.noise is None and abs(rho_noise) > 3 * rho_se
               and noise_bias > LAG1_BIAS_LIMIT * max(scale.pooled, V_FLOOR))
    if dropped:
        offsets = [o for o in _offsets(MAX_LAG + 1) if math.hypot(*o) >= 2]
        scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws, ell=ell)

    # V < 0 cannot be: products that come out negative mean the view's noise is not independent of
    # the restoration's, e.g. a camera-noise fit a few per cent low makes the noise the network lets through
    # anti-correlate with the view's (its Jacobian times the misfit). Such residuals say nothing of the
    # error: the model's own spread (V = 1) is used instead, and the source says so
    implausible = scale.pooled < 0
    if implausible:
        scale = dataclasses.replace(scale, variances=[1.0] * len(scale.variances))

    # a split-half check: λ from one half of the blocks, its modelled coverage under the other half's V
    split = np.tile(block_split(inputs.shape, split_seed), (last.draws, 1, 1))  # a block's copies on one side
    half_a = error_scale(last.v, last.unit, split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell)
    half_b = error_scale(last.v, last.unit, ~split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell)
    factors = [scale.factor(c) for c in coverages]
    checked = [math.nan if implausible else half_b.coverage_of(half_a.factor(c)) for c in coverages]
    widths = [float(np.mean(2 * f * last.unit)) for f in factors]
    source = ("self-calibrated: residuals against " + last.how + ". Error scale from cross-moments at lags "
              f"{min(scale.lags_used):g}–{max(scale.lags_used):g} px (noise-cancelling)"
              + (f", extrapolated to lag 0 over the {ell:.2g} px correlation length of the restoration's response to "
                 "the draws' difference" if ell is not None else "")
              + ": V = E[(error/spread)²] = "
              f"{scale.pooled:.3g} ± {scale.pooled_se:.2g} overall; used per {N_BINS} bins of the spread "
              f"{', '.join(f'{v:.3g}' for v in scale.variances)} (measured {', '.join(f'{v:.3g}' for v in scale.raw_variances)}, "
              f"shrunk by their standard errors, then {CONFIDENCE_K:g} standard error above, floor {V_FLOOR:g})"
              + (f"; lag 1 left out: the camera noise is correlated between neighbours (ρ ≈ {rho_noise:.2f})"
                 if dropped else f"; camera noise lag-1 correlation {rho_noise:.3f} ± {rho_se:.3f}")
              + ("; the noise's own cross-moments, read off the frame difference, taken off" if last.noise is not None
                 else "")
              + ("; V came out below 0 (noise in the products, or a noise fit that is off): the model's own "
                 "spread is used (V = 1) and these intervals are not calibrated on this image" if implausible else "")
              + ". Coverage is modelled (Gaussian per bin), not conformal; held-out coverage = the split-half check")
    settings_record = run_settings(last.restoration.metadata)
    calibration = Calibration(settings_record, coverages, factors, checked, widths, source, int(last.v.size), None)
    kept_calibrations = [c for c in model.calibrations if not Calibration.from_dict(c).matches(settings_record)]
    return CalibrationRun(dataclasses.replace(model, calibrations=[calibration.to_dict(), *kept_calibrations]),
                          calibration, last.restoration, None)


NEIGHBOUR_MEAN = "the mean of frames t − 1 and t + 1"
NEXT_FRAME = "the next frame"


def frame_views(frames: list) -> tuple[list, list, list, str]:
    """(frames, their independent views, noise probes, what the views are) for a time series: the
    mean of the two neighbouring frames where there are three frames or more (a sample moving at
    constant speed is, to first order, where it is in frame t, and the view's noise is halved), else
    the next frame. A probe is noise alone with the view's noise covariance: half the difference of
    the two neighbours, or the difference of the pair / √2 (what moved between them counts too)."""
    if len(frames) >= 3:
        return (list(frames[1:-1]), [(a + b) / 2 for a, b in zip(frames[:-2], frames[2:])],
                [(b - a) / 2 for a, b in zip(frames[:-2], frames[2:])], NEIGHBOUR_MEAN)
    return list(frames[:-1]), list(frames[1:]), [(b - a) / math.sqrt(2) for a, b in zip(frames[:-1], frames[1:])], NEXT_FRAME


def calibration_planes(data, axes: str, count: int = CALIBRATION_PLANES):
    """(planes, their independent views or None, noise probes or None, what the views are): up to
    ``count`` evenly spaced (Y, X) planes of an image with these axes, read one at a time (lazy
    arrays stay lazy). With a T axis of two frames or more, views and probes come from the
    neighbouring frames at the same C and Z (:func:`frame_views`)."""
    lead = tuple(data.shape[:-2])
    positions = list(np.ndindex(*lead)) if lead else [()]
    t = axes.find("T")
    n_frames = lead[t] if t >= 0 else 1

    def spaced(items):
        return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).astype(int))]

    if n_frames < 2:
        return np.stack([np.asarray(data[p], dtype=np.float32) for p in spaced(positions)]), None, None, ""
    edge = 1 if n_frames >= 3 else 0  # frame t needs t − 1 and t + 1, or only t + 1 in a pair of frames
    chosen = spaced([p for p in positions if edge <= p[t] < n_frames - 1])

    def at(p, dt):
        return np.asarray(data[p[:t] + (p[t] + dt,) + p[t + 1:]], dtype=np.float32)

    triplets = [frame_views([at(p, dt) for dt in ((-1, 0, 1) if edge else (0, 1))]) for p in chosen]
    first, views, probes = (np.stack([triplet[k][0] for triplet in triplets]) for k in range(3))
    return first, views, probes, triplets[0][3]


def self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                   alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                   second_is: str = "a second acquisition", second_noise=None, progress=None, cancel=None,
                   **settings):
    """Calibrate ``model``'s intervals on the user's noisy image alone; return a calibrated copy.

    noisy: a plane or a stack (any of T, C, Z, Y, X; every plane is used).
    second: an independent acquisition of the same field (same shape), if the user has one; or
    frames=True: ``noisy`` is a time series (its planes in time order): frame t's view is the mean
        of frames t − 1 and t + 1 (:func:`frame_views`; what motion is left counts as error: the
        intervals come out wider, not narrower).
    second_is: what ``second`` is, for the calibration's source.
    second_noise: noise alone with the covariance of ``second``'s noise (default: the difference of
        ``second`` and ``noisy`` / √2), whose cross-moments are taken off the residuals' so that
        camera noise correlated between pixels does not pass for error.
    Otherwise the pairs are recorrupted from ``noisy`` with its fitted camera noise (``alpha``).
    settings: the sampler settings the intervals will be used with (as for :func:`denoise`).
    Cost: one restoration of at most ``max_pixels`` pixels (crops of evenly spaced planes).
    """
    from .driving import drive
    from .restore import Cancelled

    run, cancelled = drive(iter_self_calibrate(model, noisy, coverage, second=second, frames=frames, alpha=alpha,
                                               second_is=second_is, second_noise=second_noise, seed=seed,
                                               split_seed=split_seed, max_pixels=max_pixels, **settings),
                           progress, cancel)
    if cancelled:
        raise Cancelled("calibration was cancelled")
    return run.model
