import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from napari_diffdenoise.core.imaging.metrics import calibration, evaluate, ms_ssim, psnr_fitted


@pytest.fixture
def truth():
    y, x = np.mgrid[0:128, 0:128]
    return (np.sin(x / 7.0) * np.cos(y / 5.0) + 1) * 500 + 100  # arbitrary units and offset


def test_perfect_prediction_in_other_units_scores_perfectly(truth):
    m = evaluate(3 * truth - 42, truth)  # same image, different scale and offset
    assert m["SSIM"] == pytest.approx(1) and m["MS-SSIM"] == pytest.approx(1) and m["Pearson r"] == pytest.approx(1)
    assert m["NRMSE"] == pytest.approx(0, abs=1e-9) and m["MAE"] == pytest.approx(0, abs=1e-9)


def test_psnr_uses_the_fixed_unit_range_after_the_fit(truth):
    rng = np.random.default_rng(0)
    gt = (truth - truth.min()) / (truth.max() - truth.min())
    noisy = gt + rng.normal(0, 0.05, gt.shape)
    # a least-squares fit can only reduce the error, so the fitted PSNR is at least the raw one
    assert psnr_fitted(noisy, truth) >= peak_signal_noise_ratio(gt, noisy, data_range=1.0) - 1e-9
    assert psnr_fitted(noisy, truth) == pytest.approx(26.0, abs=0.3)  # σ = 0.05 → 26 dB


def test_metrics_order_a_better_prediction_above_a_worse_one(truth):
    rng = np.random.default_rng(1)
    good, bad = truth + rng.normal(0, 20, truth.shape), truth + rng.normal(0, 200, truth.shape)
    g, b = evaluate(good, truth), evaluate(bad, truth)
    for key in ("PSNR", "SSIM", "MS-SSIM", "Pearson r"):
        assert g[key] > b[key]
    for key in ("NRMSE", "MAE", "NRMSE/mean"):
        assert g[key] < b[key]
    assert 0 < ms_ssim(bad, truth) < ms_ssim(good, truth) <= 1


def test_shape_mismatch_is_refused(truth):
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate(truth[:10], truth)


def test_calibration_bins_rise_for_an_honest_std():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.01, 1, 50_000)
    error = rng.normal(0, std)
    centres, errs, rho = calibration(std, error, bins=5)
    assert np.all(np.diff(centres) > 0) and np.all(np.diff(errs) > 0) and rho > 0.3
    assert errs == pytest.approx(centres * np.sqrt(2 / np.pi), rel=0.1)  # E|N(0, s²)| = s·√(2/π)


def test_ms_ssim_matches_the_reference_implementation():
    torch = pytest.importorskip("torch")
    reference = pytest.importorskip("pytorch_msssim")
    from napari_diffdenoise._sample_data import sample_stack
    from napari_diffdenoise.core.imaging.metrics import _prepare, ms_ssim

    noisy, clean = sample_stack((181, 203))  # odd sides: the pooling's padding matters
    for z in range(3):
        fitted, truth = _prepare(noisy[z], clean[z])
        expected = reference.ms_ssim(torch.from_numpy(fitted)[None, None].double(),
                                     torch.from_numpy(truth)[None, None].double(), data_range=1.0).item()
        assert abs(ms_ssim(noisy[z], clean[z]) - expected) < 1e-4
    assert ms_ssim(clean[0], clean[0]) == pytest.approx(1.0)
