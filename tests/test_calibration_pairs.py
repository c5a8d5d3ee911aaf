"""Calibrating on (noisy, clean) pairs: the measurement on the held-out half in closed form, the truth
mapped onto the restoration, the calibrations a model keeps, and the requests refused."""
import numpy as np
import pytest
from scipy import stats

from napari_diffdenoise.core.calibration.calibration import calibrate, iter_calibrate, measure, self_simulated_pairs
from napari_diffdenoise.core.run.conformal import Calibration
from napari_diffdenoise.core.run.driving import drive
from napari_diffdenoise.core.run.restore import Cancelled, denoise

SETTINGS = {"n_samples": 3, "steps": 2, "eta": 1.0, "mean": "samples", "seed": 0}


def test_measure_in_closed_form():
    # one plane of 2 × 100 pixels: scores 1 … 100 on the calibration row, 0.5 … 99.5 held out
    truth = np.stack([np.arange(1.0, 101.0), np.arange(0.5, 100.0)])[None]
    mean, unit = np.zeros_like(truth), np.full_like(truth, 2.0)  # scores are |truth − mean| / u
    mask = np.zeros(truth.shape, bool)
    mask[0, 0] = True
    std = np.abs(truth)  # |error| rises with the std: ρ = 1
    factors, covered, widths, n, rho = measure(mean, unit, truth, [0.5, 0.9], mask, std)
    assert factors == [25.5, 45.5]  # the ⌈101·c⌉-th smallest of 0.5 … 50: the 51st and the 91st
    assert covered == [0.51, 0.91]  # held-out scores 0.25 … 49.75 at or below each factor
    assert widths == [2 * 25.5 * 2.0, 2 * 45.5 * 2.0] and n == 100
    assert rho == pytest.approx(1.0)
    assert measure(mean, unit, truth, [0.5], mask)[4] is None  # no std, no ρ


def test_the_truth_is_fitted_onto_the_restoration_unless_asked_not_to(tiny_model):
    rng = np.random.default_rng(1)
    clean = rng.uniform(5, 30, (64, 64)).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32)
    plain = Calibration.from_dict(calibrate(tiny_model, noisy, clean, coverage=(0.5, 0.9), **SETTINGS).calibrations[0])
    # another exposure of the same truth: the fit by scale and offset takes it back to the restoration's units
    exposed = calibrate(tiny_model, noisy, 10 * clean + 1000, coverage=(0.5, 0.9), **SETTINGS)
    np.testing.assert_allclose(Calibration.from_dict(exposed.calibrations[0]).factors, plain.factors, rtol=1e-3)
    unfitted = calibrate(tiny_model, noisy, 10 * clean + 1000, coverage=(0.5, 0.9), fit_truth=False, **SETTINGS)
    assert Calibration.from_dict(unfitted.calibrations[0]).factors[0] > 10 * plain.factors[0]


def test_a_new_calibration_comes_first_and_replaces_only_the_one_for_its_settings(tiny_model):
    rng = np.random.default_rng(2)
    clean = rng.uniform(5, 30, (64, 64)).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32)
    first = calibrate(tiny_model, noisy, clean, coverage=(0.5, 0.9), source="a", **SETTINGS)
    other = calibrate(first, noisy, clean, coverage=(0.5, 0.9), source="b", **{**SETTINGS, "steps": 3})
    assert [c["source"] for c in other.calibrations] == ["b", "a"]
    again = calibrate(other, noisy, clean, coverage=(0.5, 0.9), source="c", **SETTINGS)
    assert [c["source"] for c in again.calibrations] == ["c", "b"]
    entry = Calibration.from_dict(again.calibrations[0])
    assert entry.coverages == [0.5, 0.9] and entry.n_pixels == 2 * 32 * 32  # half of the four 32² blocks


def test_requests_that_cannot_be_calibrated_are_refused(tiny_model):
    with pytest.raises(ValueError, match=r"noisy and clean must have the same shape; got \(32, 32\) and \(32, 31\)"):
        calibrate(tiny_model, np.ones((32, 32)), np.ones((32, 31)), **SETTINGS)
    with pytest.raises(ValueError, match=r"without_truth must be one of \('residuals', 'simulated'\); got 'guess'"):
        calibrate(tiny_model, np.ones((32, 32)), without_truth="guess", **SETTINGS)
    noisy = np.random.default_rng(3).poisson(10, (64, 64)).astype(np.float32)
    seen = []
    with pytest.raises(Cancelled, match="calibration was cancelled"):
        calibrate(tiny_model, noisy, noisy, progress=seen.append, cancel=lambda: True, **SETTINGS)
    assert len(seen) == 1  # the step reported, then the run stopped


def test_simulated_pairs_are_the_models_mean_renoised_and_follow_the_seed(tiny_model):
    rng = np.random.default_rng(4)
    noisy = rng.poisson(rng.uniform(5, 30, (2, 40, 48))).astype(np.float32) + 100
    simulated, truth, source = self_simulated_pairs(tiny_model, noisy, seed=3)
    assert simulated.shape == truth.shape == (2, 40, 48) and truth.min() >= 0
    again = self_simulated_pairs(tiny_model, noisy, seed=3)
    np.testing.assert_array_equal(again[0], simulated)
    other = self_simulated_pairs(tiny_model, noisy, seed=4)[0]
    assert not np.array_equal(other, simulated)
    # the simulated image scatters about the truth with the camera model's variance, gain·level + floor
    assert abs(float(np.mean(simulated - truth))) < 0.5 and np.std(simulated - truth) > 1
    assert source.startswith("simulated: the model's mean of the user's 2 noisy plane(s), re-noised with")


def test_calibrate_names_itself_when_the_spec_is_not_a_run_spec(tiny_model):
    with pytest.raises(TypeError, match=r"calibrate\(\) takes spec=RunSpec\(…\) \(core.run.run_keywords\); got \{'steps': 2\}"):
        calibrate(tiny_model, np.ones((32, 32)), spec={"steps": 2})


def test_the_residual_route_calibrates_the_coverages_asked_for(tiny_model):
    noisy = np.random.default_rng(5).poisson(20, (64, 64)).astype(np.float32)
    calibrated = calibrate(tiny_model, noisy, coverage=(0.7, 0.9), n_samples=3, steps=2, mean="samples", seed=0)
    assert Calibration.from_dict(calibrated.calibrations[0]).coverages == [0.7, 0.9]


def test_the_measured_calibration_records_the_spearman_of_std_and_error(tiny_model):
    rng = np.random.default_rng(6)
    clean = rng.uniform(5, 30, (64, 64)).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32)
    run = drive(iter_calibrate(tiny_model, noisy, clean, (0.5, 0.9), **SETTINGS))[0]
    errors = np.abs(run.truth - run.restoration.mean)
    expected = stats.spearmanr(run.restoration.std.ravel(), errors.ravel()).statistic
    assert run.calibration.spearman == pytest.approx(expected, rel=1e-6)


def test_a_model_with_a_mean_head_simulates_from_its_one_pass_mean(headed):
    noisy = np.random.default_rng(7).poisson(20, (40, 48)).astype(np.float32)
    _, truth, _ = self_simulated_pairs(headed, noisy, seed=1)
    one_pass = np.maximum(denoise(noisy, headed, n_samples=0, seed=1).mean, 0)
    np.testing.assert_array_equal(truth[0], one_pass)
