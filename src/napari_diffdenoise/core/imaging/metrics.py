"""Image-quality metrics after the CARE convention (Weigert et al. 2018): the ground truth is
scaled to [0, 1] by its min and max, the prediction is fitted to it by a least-squares scale and
offset, and every metric uses the fixed data range 1. scikit-image computes PSNR, SSIM and NRMSE;
MS-SSIM (which it lacks) follows its reference implementation here, checked against the pytorch-msssim
package."""
from __future__ import annotations

import numpy as np
from scipy import ndimage, stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, Table 1


def normalise_truth(truth: np.ndarray) -> np.ndarray:
    """Ground truth scaled to [0, 1] by its min and max, the fixed range the metrics use."""
    truth = truth.astype(np.float64)
    return (truth - truth.min()) / max(truth.max() - truth.min(), 1e-12)


def fit_scale_offset(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """a·prediction + b with least-squares (a, b) against ``target``."""
    p = prediction.astype(np.float64).ravel()
    design = np.stack([p, np.ones_like(p)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, target.astype(np.float64).ravel(), rcond=None)
    return a * prediction.astype(np.float64) + b


def _prepare(prediction, truth):
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {truth.shape} differ in shape")
    for name, array in (("the prediction", prediction), ("the ground truth", truth)):
        if not np.all(np.isfinite(array)):  # the fit's least squares failed on them with a LAPACK error
            raise ValueError(f"{name} holds NaN or infinite values: score finite images")
    if truth.min() == truth.max():  # scaled to 0…1 it is all 0, which any fitted prediction matched perfectly
        raise ValueError(f"the ground truth is constant (every pixel {truth.flat[0]:g}): there is nothing to score "
                         "against")
    gt = normalise_truth(truth)
    return fit_scale_offset(prediction, gt), gt


def psnr_fitted(prediction: np.ndarray, truth: np.ndarray) -> float:
    pred, gt = _prepare(prediction, truth)
    return float(peak_signal_noise_ratio(gt, pred, data_range=1.0))


def ssim_fitted(prediction: np.ndarray, truth: np.ndarray) -> float:
    pred, gt = _prepare(prediction, truth)
    return float(structural_similarity(gt, pred, data_range=1.0))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - size // 2
    window = np.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filtering with the window wholly inside the image (no padding), as the reference does."""
    out, half = image, len(window) // 2
    for axis in (0, 1):
        if out.shape[axis] >= len(window):
            out = ndimage.correlate1d(out, window, axis=axis, mode="constant")
            out = out[half:-half] if axis == 0 else out[:, half:-half]
    return out


def _ssim_parts(x, y, data_range=1.0):
    """(mean SSIM, mean contrast-structure) with an 11-tap Gaussian window, σ = 1.5, valid region only
    (Wang et al. 2004; the MS-SSIM reference implementation)."""
    window = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _filter_valid(x, window), _filter_valid(y, window)
    vx = _filter_valid(x * x, window) - mx**2
    vy = _filter_valid(y * y, window) - my**2
    cov = _filter_valid(x * y, window) - mx * my
    cs = (2 * cov + c2) / (vx + vy + c2)
    ssim = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
    return float(ssim.mean()), float(cs.mean())


def _halve(image: np.ndarray) -> np.ndarray:
    """2×2 average pooling; an odd side gets one zero row/column in front (torch's avg_pool2d with
    padding 1, counting the padding), as the reference implementation does."""
    pads = [(s % 2, 0) for s in image.shape]
    image = np.pad(image, pads)
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))


def ms_ssim(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003) as its reference implementation computes it (checked against
    the pytorch-msssim package in tests/test_metrics.py): contrast-structure at the first scales,
    SSIM at the last, each clipped at 0, weights of Wang et al. Table 1. Images too small for 5
    scales (a side under 176 pixels) use fewer, with the weights renormalised."""
    x, y = _prepare(prediction, truth)
    n_scales = int(max(1, min(5, np.floor(np.log2(min(x.shape) / 11)) + 1)))
    weights = np.array(MS_SSIM_WEIGHTS[:n_scales]) / sum(MS_SSIM_WEIGHTS[:n_scales])
    value = 1.0
    for i, w in enumerate(weights):
        ssim, cs = _ssim_parts(y, x)
        if i == n_scales - 1:
            value *= max(ssim, 0.0) ** w
        else:
            value *= max(cs, 0.0) ** w
            x, y = _halve(x), _halve(y)
    return float(value)


def evaluate(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every metric the papers report (but LPIPS, which needs downloaded weights)."""
    pred, gt = _prepare(prediction, truth)
    err = pred - gt
    rmse = float(np.sqrt(np.mean(err**2)))
    return {
        "PSNR": float(peak_signal_noise_ratio(gt, pred, data_range=1.0)),
        "SSIM": float(structural_similarity(gt, pred, data_range=1.0)),
        "MS-SSIM": ms_ssim(prediction, truth),
        "NRMSE": rmse,  # RMSE / (max − min) of the truth, which is 1 after normalisation
        "NRMSE/mean": rmse / max(float(gt.mean()), 1e-12),
        "MAE": float(np.mean(np.abs(err))),
        # of the prediction as given: the fit's scale flips the sign of an inverted one (r was +1 for −truth)
        "Pearson r": float(np.corrcoef(np.ravel(prediction).astype(np.float64), gt.ravel())[0, 1]),
    }


def calibration(std: np.ndarray, error: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean predicted std per bin, mean |error| per bin, Spearman ρ) over equal-count bins of std:
    a calibrated uncertainty map has error rising with std."""
    std, error = np.ravel(std), np.abs(np.ravel(error))
    order = np.argsort(std, kind="stable")
    groups = np.array_split(order, bins)
    return (np.array([std[g].mean() for g in groups]), np.array([error[g].mean() for g in groups]),
            float(stats.spearmanr(std, error).statistic))


def reliability(std: np.ndarray, error: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The reliability diagram CAREamics draws for its samplers: pixels in equal-count bins of the
    predicted std; per bin the root mean variance (RMV, √mean std²) and the RMSE of the error. A
    calibrated std lies on the diagonal."""
    std, error = np.ravel(std).astype(np.float64), np.ravel(error).astype(np.float64)
    groups = np.array_split(np.argsort(std, kind="stable"), bins)
    return (np.array([np.sqrt(np.mean(std[g] ** 2)) for g in groups]),
            np.array([np.sqrt(np.mean(error[g] ** 2)) for g in groups]))
