"""Image-quality metrics after the CARE convention: fit the prediction to the ground truth by a
least-squares scale and offset, then measure on a fixed data range (scikit-image underneath)."""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def normalise_truth(truth: np.ndarray) -> np.ndarray:
    """Ground truth scaled to [0, 1] by its min and max, the fixed range the metrics use."""
    truth = truth.astype(np.float64)
    return (truth - truth.min()) / max(truth.max() - truth.min(), 1e-12)


def fit_scale_offset(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """a·prediction + b with least-squares (a, b) against ``target`` (Weigert et al. 2018)."""
    p = prediction.astype(np.float64).ravel()
    design = np.stack([p, np.ones_like(p)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, target.astype(np.float64).ravel(), rcond=None)
    return a * prediction.astype(np.float64) + b


def psnr_fitted(prediction: np.ndarray, truth: np.ndarray) -> float:
    gt = normalise_truth(truth)
    return float(peak_signal_noise_ratio(gt, fit_scale_offset(prediction, gt), data_range=1.0))


def ssim_fitted(prediction: np.ndarray, truth: np.ndarray) -> float:
    gt = normalise_truth(truth)
    return float(structural_similarity(gt, fit_scale_offset(prediction, gt), data_range=1.0))
