"""Self-calibration from noisy data alone: the noise-cancelling error scale, the noise-correlation
check, the interval factor of the mixture, and the route through calibrate()."""
import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage, stats

from napari_diffdenoise.core.calibration.calibration import calibrate
from napari_diffdenoise.core.calibration.error_scale import (
    ERROR_SHAPE,
    V_FLOOR,
    ErrorScale,
    correlation_length,
    error_scale,
    extrapolate_to_zero,
    lag_offsets,
    pair_moments,
)
from napari_diffdenoise.core.calibration.self_calibration import self_calibrate
from napari_diffdenoise.core.calibration.view_noise import CORRELATED_NOISE, noise_correlation
from napari_diffdenoise.core.run.driving import drive
from napari_diffdenoise.core.run.restore import denoise


def smooth_field(shape, variance, sigma, rng):
    """A spatially correlated error of the given variance (Gaussian-filtered white noise)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / field.std() * math.sqrt(variance)


def test_error_scale_sees_a_smooth_error_under_noise_a_hundred_times_larger():
    rng = np.random.default_rng(0)
    shape = (4, 256, 256)
    error = smooth_field(shape, 4.0, 3.0, rng)  # V = 4 in units of u = 1
    noise = rng.standard_normal(shape) * 20.0  # variance 400: 100 × the error's
    unit = rng.uniform(1, 3, shape)  # the model's spread, pixel by pixel; v = (error·u + noise) / u
    scale = error_scale(error + noise / unit, unit, np.ones(shape, bool), lag_offsets())
    assert all(0.2 < w < 0.3 for w in scale.weights)
    assert all(v == pytest.approx(4.0, rel=0.5) for v in scale.raw_variances)
    # what subtracting a fitted variance would give, with that variance known to 2 %: ±8
    assert np.average(scale.raw_variances, weights=scale.weights) == pytest.approx(4.0, rel=0.25)


def test_error_scale_is_zero_for_white_residuals_and_floored():
    rng = np.random.default_rng(1)
    shape = (2, 128, 128)
    scale = error_scale(rng.standard_normal(shape) * 10, np.ones(shape), np.ones(shape, bool), lag_offsets())
    assert max(scale.raw_variances) < 0.5
    assert scale.variances == [V_FLOOR] * len(scale.variances)


def test_extrapolation_to_lag_zero_recovers_a_gaussian_correlation():
    lags = np.array([1.0, 1.0, 2.0, 2.0])
    moments = 5.0 * np.exp(-lags ** 2 / (2 * 3.0 ** 2))  # ℓ = 3 px
    assert correlation_length(lags, moments, np.ones_like(lags)) == pytest.approx(3.0, rel=1e-6)
    assert extrapolate_to_zero(lags, moments, np.ones_like(lags)) == pytest.approx(5.0, rel=1e-6)
    assert extrapolate_to_zero(lags, -moments, np.ones_like(lags)) < 0  # noise, kept for the standard errors
    # noise that makes the correlation fall within a pixel cannot blow V up: ℓ is bounded below
    steep = np.array([4.0, 4.0, 0.01, 0.01])
    assert extrapolate_to_zero(lags, steep, np.ones_like(lags)) == pytest.approx(4.0 * np.exp(1 / (2 * 1.5 ** 2)))


def test_pair_moments_of_a_known_field():
    v = np.zeros((1, 4, 4))
    v[0, :, ::2] = 1.0  # columns 0 and 2
    ones = np.ones_like(v)
    lags, moments, totals = pair_moments(v, ones, ones, [(0, 1), (0, 2), (1, 0)])
    assert list(lags) == [1.0, 1.0, 2.0, 2.0, 1.0, 1.0]  # each offset in both directions
    assert list(moments[:2]) == [0.0, 0.0]  # a lit column never sits beside a lit one
    assert moments[2] == moments[3] == pytest.approx(4 / 8)  # 8 pairs two columns apart, 4 of them both lit
    assert moments[4] == moments[5] == pytest.approx(0.5) and list(totals[4:]) == [12.0, 12.0]
    first = ones.copy()
    first[0, :, 1:] = 0  # pairs counted for column 0 only: its right neighbour (column 1) is dark
    assert pair_moments(v, first, ones, [(0, 1)])[1][0] == 0.0


def test_noise_correlation_is_read_off_the_noise_band_of_the_spectrum():
    rng = np.random.default_rng(2)
    white = rng.standard_normal((2, 256, 256)) + 50
    camera = noise_correlation(white)
    assert not camera.seen() and max(camera.standard_errors) < 0.05
    raw = rng.standard_normal((2, 256, 258))
    b = 0.3  # n(y, x) = w(y, x) + b·w(y, x − 1): ρ₁ = b / (1 + b²) along x, none along y
    along_x = raw[:, :, 1:-1] + b * raw[:, :, :-2]
    camera = noise_correlation(along_x)
    assert camera.lag1[1] == pytest.approx(b / (1 + b * b), abs=0.04) and abs(camera.lag1[0]) < 3 * camera.standard_errors[0]
    assert camera.seen(CORRELATED_NOISE)
    # the offsets the noise reaches under the draws' 3-tap model: along x only, lags 1 and 2
    assert camera.at(0, 1) == pytest.approx(camera.lag1[1]) and 0 < camera.at(0, 2) < 0.1 and camera.at(0, 3) == 0
    assert abs(camera.at(1, 0)) < 3 * camera.standard_errors[0] and camera.at(0, 0) == 1
    # structure far stronger than the noise, smooth on the optics' scale: white noise still reads white
    scene = 2000 * ndimage.gaussian_filter(rng.standard_normal((2, 256, 256)), (0, 2.0, 2.0))
    camera = noise_correlation(scene + white)
    assert not camera.seen(CORRELATED_NOISE), camera
    assert noise_correlation(white[0, :40, :40]).standard_errors == (math.inf, math.inf)  # one tile: no spread


def test_noise_correlated_beyond_what_the_draws_carry_is_said_so_not_given_a_false_standard_error():
    """A summed or resampled image (NEUBIAS's sum-projected Golgi series) has noise correlated past
    the 3-tap draws' reach: every tile's reading then hits the bound and the jackknife says ± 0.000,
    which read as an exact figure. It says 'at least' and what it costs the intervals."""
    from napari_diffdenoise.core.calibration.view_noise import MOST_LAG1

    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.standard_normal((2, 256, 256)), (0, 1.5, 1.5)) + 50
    camera = noise_correlation(smooth)
    assert camera.lag1 == pytest.approx((MOST_LAG1, MOST_LAG1)) and MOST_LAG1 == pytest.approx(0.574, abs=1e-3)
    text = camera.describe()
    assert "at least 0.574 along y, at least 0.574 along x" in text and "± 0.000" not in text
    assert "intervals calibrated on them run narrow" in text
    plain = noise_correlation(rng.standard_normal((2, 256, 256)) + 50).describe()
    assert "±" in plain and "at least" not in plain and "narrow" not in plain


def test_factor_solves_the_mixture():
    one = ErrorScale([-np.inf, np.inf], [1.0], [4.0], [4.0], [1.0], shape=2.0)
    assert one.factor(0.9) == pytest.approx(2 * stats.norm.ppf(0.95), rel=1e-6)
    two = ErrorScale([-np.inf, 1, np.inf], [0.5, 0.5], [1.0, 9.0], [1.0, 9.0], [1.0], shape=2.0)
    lam = two.factor(0.9)
    covered = 0.5 * (2 * stats.norm.cdf(lam) - 1) + 0.5 * (2 * stats.norm.cdf(lam / 3) - 1)
    assert covered == pytest.approx(0.9, abs=1e-6)
    assert two.coverage_of(lam) == pytest.approx(0.9, abs=1e-6)


def test_the_error_shape_sets_the_interval_in_closed_form():
    # β = 1 is a Laplace law: variance 2b², P(|E| ≤ λ) = 1 − exp(−λ/b)
    laplace = ErrorScale([-np.inf, np.inf], [1.0], [2.0], [2.0], [1.0], shape=1.0)
    assert laplace.factor(0.9) == pytest.approx(math.log(10), rel=1e-6)
    assert laplace.coverage_of(math.log(5)) == pytest.approx(0.8, abs=1e-9)
    # a peaked law of the same variance needs a narrower interval at 0.8 and a wider one at 0.95
    gauss = dataclasses.replace(laplace, shape=2.0)
    assert laplace.factor(0.8) < gauss.factor(0.8) and laplace.factor(0.95) > gauss.factor(0.95)
    # the default is the measured shape, between the two
    measured = dataclasses.replace(laplace, shape=ERROR_SHAPE)
    assert ErrorScale([-np.inf, np.inf], [1.0], [2.0], [2.0], [1.0]).shape == ERROR_SHAPE
    assert laplace.factor(0.8) < measured.factor(0.8) < gauss.factor(0.8)


def noisy_image(seed=0, shape=(48, 48)):
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.uniform(5, 60, shape), 2)
    return rng.poisson(clean).astype(np.float32)


def test_calibrate_without_truth_uses_the_residual_route_and_is_deterministic(tiny_model):
    noisy = noisy_image()
    a = calibrate(tiny_model, noisy, coverage=(0.8, 0.9), sampler="ddim", n_samples=3, steps=2, seed=0)
    b = calibrate(tiny_model, noisy, coverage=(0.8, 0.9), sampler="ddim", n_samples=3, steps=2, seed=0)
    cal = a.calibrations[0]
    assert cal["source"].startswith("self-calibrated: residuals against recorrupted pairs (α = 1)")
    assert cal["factors"] == b.calibrations[0]["factors"]
    assert 0 < cal["factors"][0] < cal["factors"][1] < math.inf
    assert cal["settings"]["n_samples"] == 3 and cal["settings"]["params"]["steps"] == 2
    simulated = calibrate(tiny_model, noisy, coverage=(0.8, 0.9), sampler="ddim", n_samples=3, steps=2,
                          without_truth="simulated")
    assert simulated.calibrations[0]["source"].startswith("simulated:")
    with pytest.raises(ValueError, match="without_truth must be one of"):
        calibrate(tiny_model, noisy, coverage=0.9, n_samples=3, steps=2, without_truth="guess")


def test_frame_pairs_and_a_second_acquisition(tiny_model):
    frames = np.stack([noisy_image(s, (64, 64)) for s in range(4)])
    run = self_calibrate(tiny_model, frames, coverage=0.9, frames=True, n_samples=3, steps=2)
    assert "the mean of frames t − 1 and t + 1 for 2 plane(s)" in run.calibrations[0]["source"]
    pair = self_calibrate(tiny_model, frames[:2], coverage=0.9, frames=True, n_samples=3, steps=2)
    assert "the next frame for 1 plane(s)" in pair.calibrations[0]["source"]
    second = self_calibrate(tiny_model, frames[0], coverage=0.9, second=frames[1], n_samples=3, steps=2)
    assert "a second acquisition for 1 plane(s)" in second.calibrations[0]["source"]
    # recorrupted pairs of correlated camera noise are drawn with its correlation, and say so; white
    # camera noise gets white draws
    recorrupted = self_calibrate(tiny_model, frames[0], coverage=0.9, n_samples=3, steps=2)
    smeared = ndimage.uniform_filter(frames[0], 2)  # each pixel the mean of a 2 × 2 cell: correlated noise
    assert not noise_correlation(frames[:1]).seen(CORRELATED_NOISE) and noise_correlation(smeared[None]).seen(CORRELATED_NOISE)
    correlated = self_calibrate(tiny_model, smeared, coverage=0.9, n_samples=3, steps=2)
    assert "drawn with the camera noise's correlation between pixels (" in correlated.calibrations[0]["source"]
    assert "the offsets within reach of the camera noise's correlation between pixels" in correlated.calibrations[0]["source"]
    assert "drawn with the camera noise's correlation" not in recorrupted.calibrations[0]["source"]
    for model in (run, second, recorrupted, correlated):
        assert f"then 1 standard error above, floor {V_FLOOR:g})" in model.calibrations[0]["source"]
    with pytest.raises(ValueError, match="frames=True needs at least two frames"):
        self_calibrate(tiny_model, frames[0], coverage=0.9, frames=True, n_samples=3, steps=2)
    with pytest.raises(ValueError, match="second must have the noisy image's shape"):
        self_calibrate(tiny_model, frames[0], coverage=0.9, second=frames[0][:40], n_samples=3, steps=2)
    with pytest.raises(ValueError, match="n_samples must be at least 2"):
        self_calibrate(tiny_model, frames[0], coverage=0.9, n_samples=1, steps=2)


def test_the_calibrated_copy_gives_intervals_with_its_factor(tiny_model):
    from napari_diffdenoise import denoise

    noisy = noisy_image(3)
    model = self_calibrate(tiny_model, noisy, coverage=(0.8, 0.9, 0.95), n_samples=3, steps=2, seed=0)
    lam = model.calibrations[0]["factors"][1]
    result = denoise(noisy, model, n_samples=3, steps=2, coverage=0.9, seed=0)
    half = (result.upper - result.lower) / 2
    inside = result.lower > 0  # the lower bound is clamped at 0 for non-negative input
    np.testing.assert_allclose(half[inside], lam * result.interval_unit[inside], rtol=1e-4)


def test_cli_self_calibrates_on_the_input(tiny_checkpoint, tmp_path, capsys):
    import tifffile

    from napari_diffdenoise.cli import main

    series = np.stack([noisy_image(s) for s in range(3)]).astype(np.uint16)
    path = tmp_path / "series.tif"
    tifffile.imwrite(path, series, metadata={"axes": "TYX"})
    out = tmp_path / "maps"
    code = main(["denoise", str(path), "--out", str(out), "--model", str(tiny_checkpoint), "--coverage", "0.9",
                 "--self-calibrate", "--samples", "3", "--steps", "2"])
    assert code == 0
    err = capsys.readouterr().err
    assert "the mean of frames t − 1 and t + 1 for 1 plane(s)" in err
    lower, upper = tifffile.imread(out / "series_lower.tif"), tifffile.imread(out / "series_upper.tif")
    assert lower.shape == series.shape and np.all(upper >= lower) and np.any(upper > lower)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["denoise", str(path), "--out", str(tmp_path / "other"), "--model", str(tiny_checkpoint),
                 "--self-calibrate", "--samples", "3", "--steps", "2"]) == 2
    assert "--self-calibrate calibrates intervals: give --coverage too" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cli_self_calibrates_against_a_second_acquisition(tiny_checkpoint, tmp_path, capsys):
    import tifffile

    from napari_diffdenoise.cli import main

    take1, take2, short = tmp_path / "take1.tif", tmp_path / "take2.tif", tmp_path / "short.tif"
    tifffile.imwrite(take1, noisy_image(1).astype(np.uint16))
    tifffile.imwrite(take2, noisy_image(2).astype(np.uint16))
    tifffile.imwrite(short, noisy_image(2, (40, 48)).astype(np.uint16))
    common = ["--model", str(tiny_checkpoint), "--coverage", "0.9", "--samples", "3", "--steps", "2"]
    assert main(["denoise", str(take1), "--out", str(tmp_path / "maps"), *common, "--self-calibrate",
                 "--second", str(take2)]) == 0
    err = capsys.readouterr().err
    assert f"and against {take2} (a second acquisition of the same field)" in err
    assert "Second: self-calibrated: residuals against a second acquisition" in err
    assert "the second acquisition differs from the image beyond noise on" in err
    upper, lower = tifffile.imread(tmp_path / "maps" / "take1_upper.tif"), tifffile.imread(tmp_path / "maps" / "take1_lower.tif")
    assert np.all(upper >= lower) and np.any(upper > lower)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["denoise", str(take1), "--out", str(tmp_path / "a"), *common, "--stored-calibration",
                 "--second", str(take2)]) == 2
    assert ("--second is what the intervals are calibrated against on the image, which this run does not calibrate "
            "on: calibrate_on_image=False, the CLI's --stored-calibration, takes the stored calibration. Give "
            "--self-calibrate instead of --stored-calibration") in capsys.readouterr().err
    assert main(["denoise", str(take1), "--out", str(tmp_path / "b"), *common, "--self-calibrate",
                 "--second", str(short)]) == 2
    assert "second must have the noisy image's shape (48, 48)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written for a refused run


def test_views_of_a_time_series():
    from napari_diffdenoise.core.calibration.self_calibration import calibration_planes, frame_views

    movie = np.arange(5 * 2 * 4 * 4, dtype=np.float32).reshape(5, 2, 4, 4)  # T, C, Y, X
    first, views, probes, what = calibration_planes(movie, "TCYX", count=3)
    assert what == "the mean of frames t − 1 and t + 1" and len(first) == 3
    np.testing.assert_array_equal(probes, np.full_like(probes, 32.0))  # (frame t + 1 − frame t − 1) / 2
    # frame t and its view (t − 1 + t + 1) / 2 at the same C: equal for a linear ramp in time
    np.testing.assert_array_equal(views, first)
    assert {float(f[0, 0]) for f in first} <= {float(movie[t, c, 0, 0]) for t in (1, 2, 3) for c in (0, 1)}
    two = movie[:2]
    first, views, probes, what = calibration_planes(two, "TCYX")
    assert what == "the next frame" and np.all(views - first == 32) and np.allclose(probes, 32 / np.sqrt(2))
    stack, none, no_probe, _ = calibration_planes(movie, "ZCYX", count=2)
    assert none is None and no_probe is None and len(stack) == 2
    planes, views, probes, what = frame_views([np.full((2, 2), t, np.float32) for t in (0.0, 1.0, 5.0)])
    assert len(planes) == 1 and planes[0][0, 0] == 1.0 and views[0][0, 0] == 2.5 and probes[0][0, 0] == 2.5


def test_a_negative_error_scale_falls_back_to_the_models_own_spread(tiny_model, monkeypatch):
    """V < 0 cannot be (a noise fit a few per cent low does it through the network's Jacobian): the
    intervals then come from the model's spread, and the calibration says it is not calibrated."""
    from napari_diffdenoise.core.calibration import self_calibration

    real = self_calibration.error_scale

    def negative(*args, **kwargs):
        scale = real(*args, **kwargs)
        return dataclasses.replace(scale, pooled=-1.0, variances=[0.25] * len(scale.variances))

    monkeypatch.setattr(self_calibration, "error_scale", negative)
    model = self_calibrate(tiny_model, noisy_image(), coverage=(0.8, 0.9), n_samples=3, steps=2)
    cal = model.calibrations[0]
    assert "V came out below 0" in cal["source"] and "not calibrated on this image" in cal["source"]
    # V = 1 in every bin: the quantiles of a unit-variance law of the model's error shape
    unit_scale = math.sqrt(math.gamma(1 / ERROR_SHAPE) / math.gamma(3 / ERROR_SHAPE))
    np.testing.assert_allclose(cal["factors"], stats.gennorm(ERROR_SHAPE, scale=unit_scale).ppf([0.9, 0.95]), rtol=1e-6)
    assert all(math.isnan(c) for c in cal["held_out_coverage"])


def test_an_error_scale_slightly_below_zero_keeps_the_floor_with_an_independent_view(tiny_model, monkeypatch):
    """With frames there is no noise fit to be off: V read slightly below 0 (less than the floor) is
    an error near 0, and the intervals stay at the floor. With recorrupted pairs the same reading is
    the sign of a noise fit that is off, and they fall back on the model's own spread."""
    from napari_diffdenoise.core.calibration import self_calibration

    real = self_calibration.error_scale

    def slightly_negative(*args, **kwargs):
        scale = real(*args, **kwargs)
        floor = kwargs["floor"]
        return dataclasses.replace(scale, pooled=-0.5 * V_FLOOR, variances=[floor] * len(scale.variances))

    monkeypatch.setattr(self_calibration, "error_scale", slightly_negative)
    frames = np.stack([noisy_image(s) for s in range(3)])
    cal = self_calibrate(tiny_model, frames, frames=True, coverage=(0.8, 0.9), n_samples=3, steps=2).calibrations[0]
    assert "V came out below" not in cal["source"]
    floor_scale = math.sqrt(V_FLOOR * math.gamma(1 / ERROR_SHAPE) / math.gamma(3 / ERROR_SHAPE))
    np.testing.assert_allclose(cal["factors"], stats.gennorm(ERROR_SHAPE, scale=floor_scale).ppf([0.9, 0.95]), rtol=1e-6)
    assert not any(math.isnan(c) for c in cal["held_out_coverage"])
    recorrupted = self_calibrate(tiny_model, frames[0], coverage=(0.8, 0.9), n_samples=3, steps=2).calibrations[0]
    assert "V came out below 0 (noise" in recorrupted["source"]
    assert all(math.isnan(c) for c in recorrupted["held_out_coverage"])


def test_noise_correlated_between_pixels_is_taken_off_with_a_probe():
    """The lysosome camera's noise has ρ₁ ≈ 0.6 between neighbours: without a probe it passes for
    error; a noise-only image with the same covariance (a frame difference) takes it off."""
    rng = np.random.default_rng(7)
    shape = (4, 192, 192)

    def correlated():
        w = rng.standard_normal((shape[0], shape[1] + 1, shape[2] + 1)) * 5  # variance 57: 14 × the error's
        return w[:, 1:, 1:] + 0.8 * (w[:, :-1, 1:] + w[:, 1:, :-1])  # ρ₁ ≈ 0.36 along rows and columns

    error = smooth_field(shape, 4.0, 3.0, rng)
    unit = np.ones(shape)
    mask = np.ones(shape, bool)
    blind = error_scale(error + correlated(), unit, mask, lag_offsets())
    seen = error_scale(error + correlated(), unit, mask, lag_offsets(), noise=correlated())
    assert blind.pooled > 3 * 4.0  # the noise's correlation read as error
    assert seen.pooled == pytest.approx(4.0, rel=0.35)


def test_draws_of_the_same_crops_share_folds_and_quiet_the_estimate():
    from napari_diffdenoise.core.calibration.error_scale import _fold_labels
    from napari_diffdenoise.core.calibration.residuals import MAX_DRAWS, recorrupted_draws

    assert recorrupted_draws(256 * 256, 2 ** 18) == 4
    assert recorrupted_draws(512 * 512, 2 ** 18) == 1
    assert recorrupted_draws(64 * 64, 2 ** 18) == MAX_DRAWS
    labels = _fold_labels((3, 64, 64), 8, 0, draws=3)
    assert (labels[0] == labels[1]).all() and (labels[0] == labels[2]).all()
    rng = np.random.default_rng(3)
    error = smooth_field((1, 192, 192), 2.0, 3.0, rng)  # one image's error, seen through four noise draws
    v = error + rng.standard_normal((4, 192, 192)) * 12.0
    unit = np.ones_like(v)
    one = error_scale(v[:1], unit[:1], np.ones((1, 192, 192), bool), lag_offsets())
    four = error_scale(v, unit, np.ones(v.shape, bool), lag_offsets(), draws=4)
    assert four.pooled_se < 0.7 * one.pooled_se
    assert four.pooled == pytest.approx(2.0, rel=0.35)


def test_a_small_image_is_recorrupted_several_times_within_the_budget(tiny_model):
    from napari_diffdenoise.core.calibration.self_calibration import iter_self_calibrate

    noisy = noisy_image()
    run, _ = drive(iter_self_calibrate(tiny_model, noisy, coverage=0.9, max_pixels=3 * noisy.size, n_samples=3, steps=2))
    assert run.restoration.mean.shape == (3, *noisy.shape)
    assert "3 independent draws" in run.calibration.source
    # the copies are different recorruptions of the one image
    assert not np.allclose(run.restoration.mean[0], run.restoration.mean[1])


def test_what_moved_in_the_noise_probe_is_not_taken_off():
    """A probe made from frame differences holds the camera noise and whatever moved between the
    frames; only the noise is in the view. With the blocks where something moved set aside, the
    camera's correlation is taken off and the motion is not."""
    from napari_diffdenoise.core.calibration.view_noise import correlated_noise

    rng = np.random.default_rng(11)
    shape = (4, 192, 192)

    def correlated():
        w = rng.standard_normal((shape[0], shape[1] + 1, shape[2] + 1)) * 2
        return w[:, 1:, 1:] + 0.8 * (w[:, :-1, 1:] + w[:, 1:, :-1])

    moved = np.zeros(shape)  # puncta that moved by 2 px: a smooth dipole each, in a few blocks
    for plane in moved:
        for y, x in rng.integers(10, 182, (20, 2)):
            plane[y, x], plane[y, x + 2] = 600.0, -600.0
    moved = ndimage.gaussian_filter(moved, (0, 2, 2))
    error = smooth_field(shape, 4.0, 3.0, rng)
    unit, mask = np.ones(shape), np.ones(shape, bool)
    v = error + correlated()
    probe = correlated() + moved
    plain = error_scale(v, unit, mask, lag_offsets(), noise=probe)
    robust = correlated_noise(probe, np.zeros(shape), unit)
    assert plain.pooled < 0.7 * 4.0  # the motion's correlation subtracted as if it were noise
    assert error_scale(v, unit, mask, lag_offsets(), noise=robust).pooled == pytest.approx(4.0, rel=0.2)
    assert robust.quiet.mean() < 0.95  # the blocks where something moved were set aside
    assert robust.correlation(0, 1) == pytest.approx(0.36, abs=0.05)


def test_the_scenes_slow_change_in_the_noise_probe_is_not_taken_off():
    """A probe made from frames is a difference in time: a field that fades or drifts between the
    frames leaves a smooth part in it, correlated at every lag, which the view does not hold as
    noise. Read as noise it would take the error away (V below 0); the probe's smooth part is not
    read as noise, and the camera's own correlation still is."""
    from napari_diffdenoise.core.calibration.view_noise import correlated_noise

    rng = np.random.default_rng(13)
    shape = (4, 192, 192)

    def correlated():
        w = rng.standard_normal((shape[0], shape[1] + 1, shape[2] + 1)) * 2
        return w[:, 1:, 1:] + 0.8 * (w[:, :-1, 1:] + w[:, 1:, :-1])

    yy, xx = np.mgrid[:192, :192] / 192.0
    drift = np.stack([a * np.sin(3 * xx + b) * np.cos(2 * yy) for a, b in ((3, 0), (-2, 1), (2.5, 2), (-3, 3))])
    error = smooth_field(shape, 1.0, 3.0, rng)
    unit, mask = np.ones(shape), np.ones(shape, bool)
    v = error + correlated()
    probe = correlated_noise(correlated() + drift, np.zeros(shape), unit)
    assert error_scale(v, unit, mask, lag_offsets(), noise=probe).pooled == pytest.approx(1.0, rel=0.35)
    assert probe.correlation(0, 1) == pytest.approx(0.36, abs=0.05)
    assert abs(probe.correlation(0, 3)) < 0.05  # the drift, correlated at every lag, is gone


def test_the_correlation_length_comes_from_the_draws_difference():
    """Two draws' restorations differ by the response to the known noises' difference: smooth, with no
    camera noise in it, so its correlation length is read where the residuals' products cannot."""
    from napari_diffdenoise.core.calibration.residuals import Residuals, response_length

    rng = np.random.default_rng(5)
    shape = (2, 192, 192)  # one crop, two draws
    response = smooth_field(shape, 1.0, 3.0, rng)  # Gaussian-filtered white noise: ℓ = 3·√2 px
    unit = np.ones(shape)
    v = smooth_field(shape, 2.0, 3.0, rng) + rng.standard_normal(shape) * 12.0
    residuals = Residuals(v, unit, None, "", draws=2, restoration_mean=response)
    assert response_length(residuals, lag_offsets()) == pytest.approx(3 * math.sqrt(2), rel=0.15)
    assert response_length(dataclasses.replace(residuals, draws=1), lag_offsets()) is None
    # what the noisy residuals tell of it, for comparison: far off or at a bound
    noisy_length = correlation_length(*pair_moments(v, np.ones(shape), np.ones(shape), lag_offsets()))
    assert abs(noisy_length - 3 * math.sqrt(2)) > 0.15 * 3 * math.sqrt(2)


def test_a_large_image_is_recorrupted_twice_on_crops_of_half_the_budget(tiny_model):
    from napari_diffdenoise.core.calibration.self_calibration import iter_self_calibrate

    noisy = noisy_image(shape=(48, 64))
    run, _ = drive(iter_self_calibrate(tiny_model, noisy, coverage=0.9, max_pixels=noisy.size, n_samples=3, steps=2))
    draws, h, w = run.restoration.mean.shape
    assert draws == 2 and h * w <= noisy.size // 2
    assert "correlation length of the restoration's response" in run.calibration.source


def test_recorruption_draws_carry_the_cameras_variance_and_skew():
    """ŷ = y + α·s and ȳ = y − s/α: s has the camera's variance and its third moment over α, so that
    the input's and the view's noises have E[a²·b] = κ₃(n) − α·κ₃(s) = 0 (core.imaging.recorruption);
    a camera with no photon noise gets Gaussian draws."""
    from napari_diffdenoise.core.imaging.camera_noise import CameraNoise
    from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise

    camera = CameraNoise.poisson_gaussian(read_noise=1.5, offset=100.0)  # 3 photons at 103: κ₃ = 3
    images = np.full((4, 128, 128), 103.0)
    for alpha in (1.0, 0.5):
        s = RecorruptionNoise.of(camera, images, alpha).draw(np.random.default_rng(0))
        assert s.mean() == pytest.approx(0.0, abs=0.02)
        assert s.var() == pytest.approx(5.25, rel=0.02)
        assert np.mean(s ** 3) == pytest.approx(3.0 / alpha, rel=0.1)
        n = np.random.default_rng(1).poisson(3.0, s.shape) - 3.0 + 1.5 * np.random.default_rng(2).standard_normal(s.shape)
        a, b = n + alpha * s, n - s / alpha
        assert np.mean(a * b) == pytest.approx(0.0, abs=0.1)
        assert np.mean(a * a * b) == pytest.approx(0.0, abs=0.5)  # 3 with Gaussian draws
    symmetric = RecorruptionNoise.of(CameraNoise(0.0, 4.0), images, 1.0).draw(np.random.default_rng(0))
    assert symmetric.var() == pytest.approx(4.0, rel=0.02) and abs(stats.skew(symmetric.ravel())) < 0.02


def test_recorruption_draws_at_a_given_level_leave_the_views_noise_uncorrelated_within_a_bin():
    """The draws' variance read at the image smoothed by 1.5 px follows the pixel's neighbourhood noise:
    among the pixels whose recorrupted input is darkest (a bin of u, which is a function of that input),
    the view's noise n − s then correlates between neighbours, which the cross-moments read as error
    (bench/estimator_terms.py). Read at a noise-free level (here the truth) it does not."""
    from napari_diffdenoise.core.imaging.camera_noise import CameraNoise
    from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise

    camera = CameraNoise.poisson_gaussian(read_noise=1.5, offset=100.0)  # 3 photons at 103: variance 5.25
    truth = np.full((32, 256, 256), 103.0)
    rng = np.random.default_rng(0)
    y = 100.0 + rng.poisson(3.0, truth.shape) + 1.5 * rng.standard_normal(truth.shape)
    products = {}
    for name, level in (("smoothed", None), ("given", truth)):
        law = RecorruptionNoise.of(camera, y, 1.0, level=level)
        if level is not None:
            assert np.allclose(law.variance, 5.25)
        s = law.draw(np.random.default_rng(1))
        view = (y - s - truth) / math.sqrt(5.25)
        darkest = ndimage.gaussian_filter(y + s, (0, 1.5, 1.5))[..., :-1]
        darkest = darkest <= np.quantile(darkest, 0.25)
        products[name] = float(np.mean((view[..., :-1] * view[..., 1:])[darkest]))  # standard error 0.0025
    assert products["smoothed"] > 0.007
    assert abs(products["given"]) < 0.0075 and products["smoothed"] - products["given"] > 0.006


def test_the_calibrations_draws_take_the_level_they_are_given(tiny_model):
    """iter_residuals(draw_level=…) reads the draws' variance at the level it returns for the crops."""
    from napari_diffdenoise.core.calibration.calibration_run import calibration_request
    from napari_diffdenoise.core.calibration.residuals import iter_residuals, recorrupted_crops

    clean = np.where(np.arange(64) < 32, 5.0, 80.0) * np.ones((48, 1))  # a dim half and a bright one
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float32)
    _, run = calibration_request(tiny_model, (0.9,), {"n_samples": 3, "steps": 2})
    seen = []

    def flat(crops):
        seen.append(crops.shape)
        return np.full(crops.shape, float(np.median(crops)))

    (given, _), _ = drive(iter_residuals(tiny_model, [noisy], run, alpha=1.0, seed=3, draw_level=flat))
    (smoothed, _), _ = drive(iter_residuals(tiny_model, [noisy], run, alpha=1.0, seed=3))
    assert len(seen) == 1 and seen[0][1:] == given.v.shape[1:] and seen[0][0] * given.draws == given.v.shape[0]
    # the draws' spread (the known part of the view's noise, −s/α) follows the image where read at its
    # smoothed level, and not at all at a flat one
    ratios = {}
    for name, res in (("given", given), ("smoothed", smoothed)):
        draws = res.known * res.unit
        bright = np.tile(recorrupted_crops([clean])[0], (res.draws, 1, 1)) > 40  # the crops the draws were made on
        ratios[name] = float(draws[bright].var() / draws[~bright].var())
    assert 0.8 < ratios["given"] < 1.25 and ratios["smoothed"] > 5, ratios


def test_recorruption_draws_carry_the_cameras_correlation_between_pixels():
    """Camera noise correlated along x: the fit from second differences reads its variance low and
    white draws leave ŷ = y + s and ȳ = y − s correlated (at lag 0 by the fit's shortfall, at lag 1 by
    the camera's correlation); draws given the correlation read off the image's spectrum cancel both."""
    from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
    from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise

    rng = np.random.default_rng(4)
    tap = 0.15  # [a, 1, a] along x: lag-1 correlation 2a / (1 + 2a²) = 0.29
    white = rng.standard_normal((4, 128, 130))
    n = 3.0 * (white[..., 1:-1] + tap * (white[..., :-2] + white[..., 2:])) / math.sqrt(1 + 2 * tap * tap)
    y = 100.0 + n
    fit = estimate_noise(list(y))
    # second differences along y see all of it, along x (6 − 8ρ₁ + 2ρ₂)/6 of it
    assert fit.variance(np.array([100.0]))[0] == pytest.approx(9.0 * (1 + (6 - 8 * 0.29 + 2 * 0.022) / 6) / 2, rel=0.05)

    def cross(a, b, lag):
        return float(np.mean(a[..., : a.shape[-1] - lag] * b[..., lag:]))

    camera = noise_correlation(y)
    assert camera.lag1[1] == pytest.approx(2 * tap / (1 + 2 * tap * tap), abs=0.04)
    for correlation, correlated_pair in ((None, True), (camera.lag1, False)):
        s = RecorruptionNoise.of(fit, y, 1.0, correlation).draw(np.random.default_rng(5))
        a, b = n + s, n - s
        products = [cross(a, b, 0) / 9.0, cross(a, b, 1) / 9.0]
        if correlated_pair:
            assert products[0] > 0.1 and products[1] > 0.2  # the fit 16 % low; ρ₁ = 0.29
        else:
            assert s.var() == pytest.approx(9.0, rel=0.1) and cross(s, s, 1) / s.var() == pytest.approx(0.29, abs=0.04)
            assert abs(products[0]) < 0.1 and abs(products[1]) < 0.05


def test_a_time_series_is_calibrated_both_ways_and_keeps_the_wider_interval(tiny_model):
    """The widget's and the CLI's calibration (iter_calibrate_on_data): recorrupted pairs of the chosen
    frames and, with a T axis, those frames against their neighbours; at each level the larger λ."""
    from napari_diffdenoise.core.calibration.self_calibration import (
        calibrated_on_image,
        calibration_planes,
        iter_calibrate_on_data,
    )
    from napari_diffdenoise.core.run.conformal import Calibration

    series = np.stack([noisy_image(s) for s in range(4)])
    options = {"coverage": (0.8, 0.9, 0.95), "n_samples": 3, "steps": 2}
    both, _ = drive(iter_calibrate_on_data(tiny_model, series, "TYX", **options))
    first, second, second_noise, second_is = calibration_planes(series, "TYX")
    recorrupted = self_calibrate(tiny_model, first, **options).calibrations[0]
    paired = self_calibrate(tiny_model, first, second=second, second_noise=second_noise, second_is=second_is,
                            **options).calibrations[0]
    measured = [calibrated_on_image(Calibration.from_dict(c)) for c in (recorrupted, paired)]
    if measured[0] == measured[1]:
        expected = np.maximum(recorrupted["factors"], paired["factors"])
    else:  # one fell back on the model's own spread: the other's (test_the_wider_calibration_takes…)
        expected = (recorrupted if measured[0] else paired)["factors"]
    assert both.calibration.factors == pytest.approx(expected)
    source = both.model.calibrations[0]["source"]
    assert source.startswith("the wider of two self-calibrations at each level")
    assert "recorrupted pairs" in source and "the mean of frames t − 1 and t + 1 for 2 plane(s)" in source
    assert source.count(f"floor {V_FLOOR:g})") == 2
    # a stack without a T axis: the recorrupted pairs alone
    stack, _ = drive(iter_calibrate_on_data(tiny_model, series, "ZYX", **options))
    assert stack.calibration.factors == pytest.approx(self_calibrate(tiny_model, series, **options).calibrations[0]["factors"])
    assert stack.calibration.source.startswith("self-calibrated: residuals against recorrupted pairs")


def test_the_wider_calibration_takes_the_larger_factor_level_by_level(tiny_model):
    from napari_diffdenoise.core.calibration.calibration_run import CalibrationRun
    from napari_diffdenoise.core.calibration.self_calibration import wider
    from napari_diffdenoise.core.run.conformal import Calibration

    def run(factors, source):
        cal = Calibration({"sampler": "ddim"}, [0.8, 0.9, 0.95], factors, [0.81, 0.9, 0.96], [1.0, 2.0, 3.0],
                          source, 100)
        return CalibrationRun(dataclasses.replace(tiny_model, calibrations=[cal.to_dict(), {"kept": True}]),
                              cal, None, None)

    both = wider(run([1.0, 2.0, 3.0], "recorrupted"), run([1.5, 1.8, 3.5], "frames"))
    assert both.calibration.factors == [1.5, 2.0, 3.5]
    assert both.calibration.n_pixels == 200
    assert both.calibration.source == ("the wider of two self-calibrations at each level (the second's at 0.8, 0.95). "
                                       "First: recorrupted. Second: frames")
    assert both.model.calibrations[0]["factors"] == [1.5, 2.0, 3.5] and both.model.calibrations[1] == {"kept": True}
    # a calibration that fell back on the model's own spread (NaN split-half check) is no measurement
    fallback = run([1.9, 2.5, 3.0], "fell back")
    fallback.calibration.held_out_coverage[:] = [math.nan] * 3
    assert wider(run([1.0, 2.0, 3.0], "recorrupted"), fallback).calibration.factors == [1.0, 2.0, 3.0]
    assert wider(fallback, run([1.0, 2.0, 3.0], "frames")).calibration.factors == [1.0, 2.0, 3.0]


def test_planes_too_large_for_two_to_fit_each_give_the_calibration_a_crop():
    """Half the budget spent on the first plane alone saw channel 0 of a two-channel image only
    (NEUBIAS's membranes, 354×475 per channel) and the first plane of a Z stack; whole planes are still
    taken where two or more fit."""
    from napari_diffdenoise.core.calibration.residuals import MAX_PIXELS, MIN_CROP, _crops, recorrupted_crops

    channels = [np.full((354, 475), c, np.float32) for c in (1, 2)]
    crops, draws = recorrupted_crops(channels, MAX_PIXELS)
    assert [float(c.mean()) for c in crops] == [1.0, 2.0] and draws == 2 and crops[0].size * 2 * draws <= MAX_PIXELS
    stack = [np.full((1024, 1024), z, np.float32) for z in range(4)]
    crops = _crops(stack, MAX_PIXELS)[0]
    assert [float(c.mean()) for c in crops] == [0, 1, 2, 3] and crops.shape[1] >= MIN_CROP
    many = [np.full((2048, 2048), z, np.float32) for z in range(4)]
    assert _crops(many, 2 * MIN_CROP**2)[0].shape == (2, MIN_CROP, MIN_CROP)  # fewer planes, not crops under 128
    small = [np.full((256, 256), z, np.float32) for z in range(4)]
    assert [float(c.mean()) for c in _crops(small, MAX_PIXELS // 2)[0]] == [0, 3]  # two whole planes fit: as before


def test_each_channel_is_calibrated_on_its_own_and_its_planes_take_their_channels_width(tiny_model, monkeypatch):
    """One λ pooled over channels was 0.4–3× off a channel's own on NEUBIAS's multi-channel images:
    a C axis is calibrated channel by channel, and each plane's interval takes its channel's λ. (The
    untrained tiny model's calibrations fall back alike on every channel, so each channel's is made
    here from a real one, scaled by what that channel's planes hold.)"""
    from napari_diffdenoise.core.calibration import self_calibration
    from napari_diffdenoise.core.calibration.calibration_run import CalibrationRun
    from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data
    from napari_diffdenoise.core.run.conformal import Calibration

    settings = {"coverage": (0.8, 0.9), "n_samples": 3, "steps": 2}
    real = drive(self_calibration.iter_self_calibrate(tiny_model, noisy_image(), **settings))[0]
    seen_planes = []

    def by_channel(model, planes, **options):  # λ × the channel's number, read off its planes
        seen_planes.append(np.asarray(planes))
        yield from ()
        scale = float(np.asarray(planes).max())
        cal = dataclasses.replace(real.calibration, factors=[f * scale for f in real.calibration.factors])
        return CalibrationRun(dataclasses.replace(model, calibrations=[cal.to_dict()]), cal, None, None)

    monkeypatch.setattr(self_calibration, "iter_self_calibrate", by_channel)
    stack = np.zeros((2, 2, 48, 48), np.float32)  # ZCYX: channel 1 twice as bright as channel 0
    stack[:, 0], stack[:, 1] = noisy_image(), 2 * noisy_image()
    run, _ = drive(iter_calibrate_on_data(tiny_model, stack, "ZCYX", **settings))
    cal = run.calibration
    assert [float(p.max()) for p in seen_planes] == [stack[:, 0].max(), stack[:, 1].max()]
    assert cal.channel_axis == 1 and len(cal.channel_factors) == 2
    assert cal.factors == [max(a, b) for a, b in zip(*cal.channel_factors)]
    assert cal.source.startswith("each of 2 channels on its own. Channel 0: ")
    for z in range(2):  # each plane's λ is its channel's, whatever the other axes
        for c in range(2):
            assert cal.factor(0.9, (z, c)) == pytest.approx(np.interp(0.9, cal.coverages, cal.channel_factors[c]))
    assert cal.channel_factors[0] != cal.channel_factors[1]
    assert cal.factor(0.9) == pytest.approx(np.interp(0.9, cal.coverages, cal.factors))  # no channel: the widest
    assert Calibration.from_dict(cal.to_dict()) == cal  # stored in a checkpoint as it is
    result = denoise(stack, run.model, coverage=0.9, axes="ZCYX", **{k: v for k, v in settings.items() if k != "coverage"})
    widths = result.metadata["interval_factor_per_channel"]
    assert widths[0] < widths[1]
    for c in range(2):
        inside = result.mean[:, c] > 0  # the lower bound is clamped at 0 elsewhere, not the upper
        np.testing.assert_allclose((result.upper - result.mean)[:, c][inside],
                                   (widths[c] * result.interval_unit[:, c])[inside], rtol=1e-4)


def test_a_progress_of_each_channel_and_route_fills_its_share_of_one_bar(tiny_model):
    """Each route of a time series' calibration (recorrupted copies, then the frame pairs) counted its crops from 1
    again, and the bar ran back from 100 % of the first to 0 % of the second (in each channel)."""
    from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data

    stack = np.stack([noisy_image(1), noisy_image(2)])  # CYX
    seen = []
    drive(iter_calibrate_on_data(tiny_model, stack, "CYX", coverage=(0.8, 0.9), n_samples=3, steps=2), seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and 0 < fractions[0] < 0.5 < fractions[-1] == pytest.approx(1)
    # the restored planes are crops and recorrupted copies of them, not the image's two planes
    assert seen[0].where.startswith("calibration crop 1/") and seen[-1].where.startswith(f"calibration crop {seen[-1].n_planes}/")
    assert "(recorrupted copies; channel 1/2)" in seen[0].where and "channel 2/2)" in seen[-1].where
    frames = np.stack([noisy_image(1), noisy_image(1), noisy_image(2)])  # TYX
    seen.clear()
    drive(iter_calibrate_on_data(tiny_model, frames, "TYX", coverage=(0.8, 0.9), n_samples=3, steps=2), seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1)
    routes = [p.part for p in seen]
    assert routes[0] == "recorrupted copies" and routes[-1].startswith("against the mean of frames")
    # each route's share is its share of the pixels restored: the recorrupted copies fill the budget several times
    first_paired = next(p for p in seen if p.part != routes[0])
    assert 0.5 < first_paired.start < 1


def test_a_channel_whose_calibration_fell_back_leaves_the_others_check_standing(tiny_model):
    """A channel whose residuals said nothing (V below 0: the model's own spread, its check NaN) keeps
    its own fallback λ, and the image's split-half check is the other channels'."""
    from napari_diffdenoise.core.calibration.calibration_run import CalibrationRun
    from napari_diffdenoise.core.calibration.self_calibration import calibrated_on_image, per_channel
    from napari_diffdenoise.core.run.conformal import Calibration

    def run(factors, checks):
        cal = Calibration({"sampler": "ddim"}, [0.8, 0.9], factors, checks, [1.0, 2.0], "self-calibrated: x", 100)
        return CalibrationRun(tiny_model, cal, None, None)

    fell_back, measured = run([1.4, 1.7], [math.nan, math.nan]), run([0.8, 1.0], [0.79, 0.91])
    combined = per_channel([fell_back, measured], 0).calibration
    assert combined.held_out_coverage == [0.79, 0.91] and calibrated_on_image(combined)
    assert combined.factors == [1.4, 1.7] and combined.channel_factors == [[1.4, 1.7], [0.8, 1.0]]
    assert not calibrated_on_image(per_channel([fell_back, fell_back], 0).calibration)


def test_the_library_calibrates_each_channel_when_given_axes(tiny_model):
    """``calibrate(model, noisy, axes=...)`` and ``self_calibrate`` run what the widget and the CLI run: each
    channel on its own (the same λ as iter_calibrate_on_data's), where without axes the planes are pooled."""
    from napari_diffdenoise import calibrate
    from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data, self_calibrate
    from napari_diffdenoise.core.run.conformal import Calibration

    settings = {"coverage": (0.8, 0.9), "n_samples": 3, "steps": 2}
    stack = np.stack([noisy_image(1), 3 * noisy_image(2)])  # CYX
    on_data = drive(iter_calibrate_on_data(tiny_model, stack, "CYX", **settings))[0].calibration
    for route in (calibrate, self_calibrate):
        cal = Calibration.from_dict(route(tiny_model, stack, axes="CYX", **settings).calibrations[0])
        assert cal.channel_axis == 0 and cal.channel_factors == on_data.channel_factors
    pooled = Calibration.from_dict(calibrate(tiny_model, stack, **settings).calibrations[0])
    assert pooled.channel_factors is None and pooled.source.startswith("self-calibrated")
    with pytest.raises(ValueError, match="axes 'YX' name 2 dimensions"):
        calibrate(tiny_model, stack, axes="YX", **settings)
    with pytest.raises(ValueError, match="axes: give either axes"):
        self_calibrate(tiny_model, stack, axes="CYX", frames=True, **settings)
    with pytest.raises(ValueError, match="the simulated pairs pool every plane"):
        calibrate(tiny_model, stack, axes="CYX", without_truth="simulated", **settings)


def test_a_second_acquisition_is_a_view_beside_the_recorrupted_pairs_each_channel_on_its_own(tiny_model):
    """Two acquisitions of one field (CYX, independent noise): given ``second`` with axes, each channel is
    calibrated on recorrupted pairs and against the second acquisition's same planes, the wider interval
    at each level; the pair alone is iter_self_calibrate's with that second acquisition."""
    from napari_diffdenoise.core.calibration.self_calibration import (
        SECOND_ACQUISITION,
        iter_calibrate_on_data,
        iter_self_calibrate,
    )
    from napari_diffdenoise.core.run.conformal import Calibration

    settings = {"coverage": (0.8, 0.9), "n_samples": 3, "steps": 2}
    rng = np.random.default_rng(7)
    fields = [ndimage.gaussian_filter(rng.uniform(5, 60, (48, 48)), 2), ndimage.gaussian_filter(rng.uniform(20, 200, (48, 48)), 3)]
    first, second = (np.stack([rng.poisson(f) for f in fields]).astype(np.float32) for _ in range(2))
    run = drive(iter_calibrate_on_data(tiny_model, first, "CYX", second, **settings))[0]
    cal = run.calibration
    assert cal.channel_axis == 0 and len(cal.channel_factors) == 2
    for k, channel in enumerate(run.channels):
        assert channel.calibration.source.startswith("the wider of two self-calibrations")
        assert f"residuals against {SECOND_ACQUISITION}" in channel.calibration.source
        recorrupted = drive(iter_self_calibrate(tiny_model, first[k:k + 1], **settings))[0].calibration
        paired = drive(iter_self_calibrate(tiny_model, first[k:k + 1], second=second[k:k + 1], **settings))[0].calibration
        assert cal.channel_factors[k] == [max(a, b) for a, b in zip(recorrupted.factors, paired.factors)]
    library = Calibration.from_dict(self_calibrate(tiny_model, first, axes="CYX", second=second, **settings)
                                    .calibrations[0])
    assert library.channel_factors == cal.channel_factors
    with pytest.raises(ValueError, match=r"second must have the noisy image's shape \(2, 48, 48\)"):
        drive(iter_calibrate_on_data(tiny_model, first, "CYX", second[:1], **settings))


def test_how_much_a_second_acquisition_differs_beyond_noise():
    """A still field acquired twice differs from itself nowhere beyond noise; one whose blobs drifted
    2.5 px between the acquisitions differs around them. Per channel of a C axis, averaged."""
    from drifting_blobs import moving_series

    from napari_diffdenoise.core.calibration.self_calibration import acquisitions_differ, said_of_second

    _, moving = moving_series(n=2, step=(2.5, 0.0), seed=3)
    clean, _ = moving_series(n=1, seed=3)
    rng = np.random.default_rng(4)
    still = rng.poisson(np.stack([clean[0], clean[0]])).astype(np.float64)
    assert acquisitions_differ(still[:1], still[1:], "ZYX") < 0.01
    moved = acquisitions_differ(moving[:1], moving[1:], "ZYX")
    assert moved > 0.05
    both = acquisitions_differ(np.stack([still[:1], moving[:1]], axis=1), np.stack([still[1:], moving[1:]], axis=1),
                               "ZCYX")
    assert both == pytest.approx((acquisitions_differ(still[:1], still[1:], "ZYX") + moved) / 2)
    assert said_of_second(0.234).startswith("the second acquisition differs from the image beyond noise on 23 %")


def test_against_a_truth_each_channel_is_calibrated_on_its_own_given_axes(tiny_model):
    """Split conformal per channel: each channel's λ is what calibrating it alone gives, where pooling the
    channels gave one λ to both; ρ is the channels' mean."""
    from napari_diffdenoise import calibrate
    from napari_diffdenoise.core.run.conformal import Calibration

    settings = {"coverage": (0.8, 0.9), "n_samples": 3, "steps": 2}
    rng = np.random.default_rng(11)
    truth = np.stack([np.full((48, 48), 20.0), np.full((48, 48), 200.0)]).astype(np.float32)  # CYX
    noisy = rng.poisson(truth).astype(np.float32)
    cal = Calibration.from_dict(calibrate(tiny_model, noisy, truth, axes="CYX", **settings).calibrations[0])
    alone = [Calibration.from_dict(calibrate(tiny_model, noisy[k], truth[k], **settings).calibrations[0])
             for k in range(2)]
    assert cal.channel_axis == 0 and cal.channel_factors == [a.factors for a in alone]
    assert cal.spearman == pytest.approx(np.mean([a.spearman for a in alone]))
    assert cal.source.startswith("each of 2 channels on its own. Channel 0: user pairs")
    pooled = Calibration.from_dict(calibrate(tiny_model, noisy, truth, **settings).calibrations[0])
    assert pooled.channel_factors is None
    with pytest.raises(ValueError, match="noisy and clean must have the same shape"):
        calibrate(tiny_model, noisy, truth[:1], axes="CYX", **settings)
