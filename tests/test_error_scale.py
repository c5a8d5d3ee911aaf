"""The interval model of the self-calibration in closed form: the lags it takes, how it splits and
fits them, the weights and folds it uses, and the mixture's factor."""
import math

import numpy as np
import pytest
from scipy import ndimage, stats

from napari_diffdenoise.core.run.conformal import BLOCK
from napari_diffdenoise.core.calibration.error_scale import (
    L_MAX,
    L_MIN,
    N_BINS,
    PRECISION_SMOOTHING,
    V_FLOOR,
    ErrorScale,
    _fold_labels,
    _halves,
    correlation_length,
    error_scale,
    lag_offsets,
    precision_weights,
    shifted_pair,
)


def test_the_lags_are_one_half_plane_within_the_radius():
    assert lag_offsets(1.0) == [(0, 1), (1, 0)]
    assert lag_offsets(1.5) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    offsets = lag_offsets()  # MAX_LAG = 3: the 28 lattice points of 0 < |d| ≤ 3, one of each ± pair
    assert len(offsets) == 14 and (0, 3) in offsets and (3, 0) in offsets and (2, 2) in offsets
    assert (2, 3) not in offsets and all(dy > 0 or dx > 0 for dy, dx in offsets)


def test_a_shifted_pair_is_the_image_at_p_and_at_p_plus_d():
    a = np.arange(20.0).reshape(4, 5)
    first, second = shifted_pair(a, 1, -2)
    np.testing.assert_array_equal(first, a[0:3, 2:5])
    np.testing.assert_array_equal(second, a[1:4, 0:3])
    first, second = shifted_pair(a[None], -1, 1)  # leading axes carried along
    np.testing.assert_array_equal(first[0], a[1:4, 0:4])
    np.testing.assert_array_equal(second[0], a[0:3, 1:5])


def test_the_lags_split_at_their_median_length_weighted_by_their_pair_counts():
    lags = np.array([1.0, 1.0, 2.0, 3.0, 3.0])
    moments = np.array([4.0, 2.0, 3.0, 1.0, np.nan])
    totals = np.array([1.0, 3.0, 4.0, 1.0, 5.0])
    # median of the lengths 1, 2, 3 is 2: the short half holds lags 1 and 2; the NaN drops out
    c_short, r_short, c_long, r_long = _halves(lags, moments, totals)
    assert c_short == pytest.approx((4 + 6 + 12) / 8) and r_short == pytest.approx((1 + 3 + 8) / 8)
    assert (c_long, r_long) == (1.0, 3.0)
    assert _halves(lags[:2], moments[:2], totals[:2]) == (2.5, 1.0, 2.5, 2.0)  # one length: no long half
    assert _halves(lags, np.full(5, np.nan), totals) == (0.0, 1.0, 0.0, 2.0)  # nothing usable
    assert _halves(lags, moments, np.zeros(5)) == (0.0, 1.0, 0.0, 2.0)


def test_the_correlation_length_is_bounded_and_falls_back_where_the_fit_fails():
    lags = np.array([1.0, 3.0])
    ones = np.ones(2)
    for ell in (2.0, 5.0):
        assert correlation_length(lags, np.exp(-lags ** 2 / (2 * ell ** 2)), ones) == pytest.approx(ell)
    assert correlation_length(lags, np.exp(-lags ** 2 / (2 * 0.5 ** 2)), ones) == L_MIN
    assert correlation_length(lags, np.exp(-lags ** 2 / (2 * 50.0 ** 2)), ones) == L_MAX
    assert correlation_length(lags, np.array([1.0, 1.0]), ones) == L_MAX  # flat: as long as allowed
    assert correlation_length(lags, np.array([1.0, 2.0]), ones) == L_MAX  # rising: noise, the longest
    assert correlation_length(lags, np.array([1.0, -0.5]), ones) == L_MIN  # the long lags gone negative
    assert correlation_length(lags, np.array([-1.0, -2.0]), ones) == L_MIN


def test_precision_weights_are_the_inverse_local_energy():
    v = np.full((2, 40, 40), 2.0)
    np.testing.assert_allclose(precision_weights(v), 0.25)
    np.testing.assert_allclose(precision_weights(v, noise=np.zeros_like(v)), 0.5)  # (4 + 0) / 2
    np.testing.assert_allclose(precision_weights(v, noise=np.full_like(v, 4.0)), 1 / 10)  # (4 + 16) / 2
    assert precision_weights(np.zeros((30, 30))).max() == 1e12  # no energy: a bounded weight
    # the energy is smoothed within each plane, never across planes
    planes = np.stack([np.full((60, 60), 1.0), np.full((60, 60), 3.0)])
    np.testing.assert_allclose(precision_weights(planes)[:, 30, 30], [1.0, 1 / 9])
    step = np.ones((1, 200, 200))
    step[0, :, 100:] = 2.0
    weights = precision_weights(step)[0, 100]
    assert weights[0] == pytest.approx(1.0) and weights[-1] == pytest.approx(0.25)
    assert weights[100 - int(PRECISION_SMOOTHING)] < 0.95  # the window's reach


def test_folds_are_whole_blocks_drawn_by_the_seed_and_shared_by_the_draws():
    shape = (4, 2 * BLOCK + 3, 3 * BLOCK)
    labels = _fold_labels(shape, 8, seed=2, draws=2)
    assert labels.shape == shape and labels.min() >= 0 and labels.max() < 8
    blocks = labels[:, ::BLOCK, ::BLOCK]
    np.testing.assert_array_equal(labels, np.kron(blocks, np.ones((1, BLOCK, BLOCK), int))[:, : shape[1], : shape[2]])
    np.testing.assert_array_equal(labels[:2], labels[2:])  # the two draws of the same two crops
    assert not np.array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(_fold_labels(shape, 8, seed=2, draws=2), labels)
    assert not np.array_equal(_fold_labels(shape, 8, seed=3, draws=2), labels)
    assert _fold_labels((BLOCK, BLOCK), 8, seed=0).shape == (BLOCK, BLOCK)


def test_the_factor_of_one_gaussian_and_its_coverage():
    one = ErrorScale([-np.inf, np.inf], [1.0], [1.0], [1.0], [1.0], shape=2.0)
    assert one.factor(0.95) == pytest.approx(stats.norm.ppf(0.975), abs=1e-9)
    assert one.factor(0.999) == pytest.approx(stats.norm.ppf(0.9995), abs=1e-9)  # beyond the first bracket [0, 1]
    assert one.coverage_of(1.0) == pytest.approx(math.erf(1 / math.sqrt(2)))
    wide = ErrorScale([-np.inf, np.inf], [1.0], [100.0], [100.0], [1.0], shape=2.0)
    assert wide.factor(0.5) == pytest.approx(10 * stats.norm.ppf(0.75), abs=1e-8)


def _residuals(seed=0, shape=(2, 64, 64)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) + ndimage.gaussian_filter(rng.standard_normal(shape), (0, 3, 3)) * 6


def test_a_pixel_on_an_inner_edge_falls_in_the_bin_above_only():
    v = _residuals()
    unit = np.where(np.arange(64) < 16, 0.5, 1.0) * np.ones(v.shape)  # a quarter below the edge, the rest on it
    scale = error_scale(v, unit, np.ones(v.shape, bool), lag_offsets(), edges=[-np.inf, 1.0, np.inf])
    assert scale.weights == [0.25, 0.75] and scale.edges == [-np.inf, 1.0, np.inf]
    quartiles = error_scale(v, unit, np.ones(v.shape, bool), lag_offsets()).edges  # the default: quantiles of u
    assert quartiles[0] == -np.inf and quartiles[-1] == np.inf and quartiles[1:-1] == np.quantile(unit, [0.25, 0.5, 0.75]).tolist()


def test_each_bin_is_shrunk_towards_the_pooled_value_and_taken_one_standard_error_up():
    v = _residuals(shape=(2, 128, 128))
    unit = np.repeat(np.arange(1.0, 5.0), 32)[None, None, :] * np.ones(v.shape)  # four bands of u
    v = v * np.repeat([0.5, 1.0, 2.0, 4.0], 32)[None, None, :]  # an error scale that differs by band
    scale = error_scale(v, unit, np.ones(v.shape, bool), lag_offsets())
    raw, se2 = np.array(scale.raw_variances), np.array(scale.standard_errors) ** 2
    between = max(float(np.mean((raw - scale.pooled) ** 2 - se2)), 0.0)
    keep = between / (between + se2)
    assert keep.min() > 0.5  # the bands' scatter is far beyond their noise
    expected = (scale.pooled + (raw - scale.pooled) * keep
                + np.sqrt(keep * se2 + ((1 - keep) * scale.pooled_se) ** 2))
    np.testing.assert_allclose(scale.variances, np.maximum(expected, V_FLOOR), rtol=1e-9)


def test_the_seed_draws_the_folds_behind_the_standard_errors():
    v, ones = _residuals(), np.ones((2, 64, 64))
    mask = np.ones(v.shape, bool)
    first = error_scale(v, ones, mask, lag_offsets(), seed=3)
    assert error_scale(v, ones, mask, lag_offsets(), seed=3).standard_errors == first.standard_errors
    assert error_scale(v, ones, mask, lag_offsets(), seed=4).standard_errors != first.standard_errors
    assert error_scale(v, ones, mask, lag_offsets(), seed=4).raw_variances == first.raw_variances  # folds only


def test_a_noise_probe_equal_to_the_residuals_takes_all_of_them_off_in_every_fold():
    v, ones = _residuals(), np.ones((2, 64, 64))
    scale = error_scale(v, ones, np.ones(v.shape, bool), lag_offsets(), noise=v)
    assert scale.raw_variances == [0.0] * N_BINS
    assert scale.standard_errors == pytest.approx([1e-6] * N_BINS)  # the folds agree: the floor of se²
    assert scale.variances == [V_FLOOR] * N_BINS
