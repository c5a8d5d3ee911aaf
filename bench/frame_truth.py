"""A truth for frame t of a time series that holds frame t's own scene where the sample moved: the
neighbouring frames registered onto frame t and averaged (motion-compensated), scored only where the
registration holds.

Why: the mean of frames t − 1 and t + 1 (bench/real_calibration.py's first truth for the series) holds
whatever moved between them as a blur, which a restoration of frame t is then scored against; the
mean of frames that held still (real_calibration.static_truth) is frame t's scene, but only on
11–22 % of a lysosome crop, mostly dark background. Here each frame t + k (0 < |k| ≤ REACH, frame t
itself left out, so that the truth's noise is independent of frame t's) is warped onto frame t
(core.imaging.registration: optical flow on smoothed frames, a cubic warp — bilinear and cubic truths
disagreed in sign on two of three fields of the 8-bit time-lapse, bundled against adapted heads;
scratch comparison, 2026-12-03; docs/benchmarks/std_head.md holds the cubic one) and the warped
frames are averaged.

The truth's noise: one frame's camera variance (the camera model fitted to the frames one at a
time, core.imaging.camera_noise.estimate_noise, which motion cannot enter) times the share the
warp's interpolation keeps of white noise at each pixel (measured by warping white noise with the
same flows), over the number of frames. Where the registration fails — structure that appears,
vanishes or deforms between the frames — the warped frames disagree with one another: a pixel is
*consistent* when every warped frame, smoothed by 2 px, lies within a few standard errors of noise of
their smoothed mean (core.imaging.registration.consistent). Scores against this truth are taken on consistent pixels.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.imaging.registration import CONSISTENCY_SMOOTHING, consistent, register_onto, warp

REACH = 2  # frames t − 2, t − 1, t + 1, t + 2 are registered onto frame t
NOISE_PROBES = 4  # white-noise images warped to measure the interpolation's noise share


@dataclass
class RegisteredTruth:
    truth: np.ndarray  # the mean of the neighbouring frames warped onto frame t
    consistent: np.ndarray  # bool: where the warped frames agree within noise
    tau2: np.ndarray  # the truth's own noise variance per pixel
    camera: np.ndarray  # one frame's camera-noise variance per pixel at the truth's level
    frames: tuple[int, ...]  # the frame offsets averaged

    def residual_ratio(self, frame: np.ndarray, deciles: int = 10) -> list[float]:
        """mean (frame t − truth)² over (camera + τ²) per decile of the truth's level, on consistent
        pixels: about 1 where the truth is frame t's scene up to noise (the check reported beside
        the scores)."""
        level = ndimage.gaussian_filter(self.truth, CONSISTENCY_SMOOTHING)  # the level registered_truth reads the camera at
        edges = np.quantile(level[self.consistent], np.linspace(0, 1, deciles + 1))
        r2 = (np.asarray(frame, dtype=np.float64) - self.truth) ** 2
        expected = self.camera + self.tau2
        ratios = []
        for lo, hi in itertools.pairwise(edges):
            sel = self.consistent & (level >= lo) & (level <= hi)
            ratios.append(float(r2[sel].mean() / expected[sel].mean()) if sel.any() else float("nan"))
        return ratios


def registered_truth(series: np.ndarray, t: int, reach: int = REACH, seed: int = 0) -> RegisteredTruth:
    """The motion-compensated truth for frame ``t`` of ``series`` (T, Y, X): see the module docstring."""
    series = np.asarray(series, dtype=np.float64)
    offsets = tuple(k for k in range(-reach, reach + 1) if k and 0 <= t + k < len(series))
    if not offsets:
        raise ValueError(f"frame {t} of a series of {len(series)} frames has no neighbour to register")
    registered = register_onto(series[t], [series[t + k] for k in offsets])
    rng = np.random.default_rng(seed)
    kept_share = [ndimage.gaussian_filter(np.mean(np.square(
        [warp(rng.standard_normal(series[t].shape), flow) for _ in range(NOISE_PROBES)]), axis=0), 2.0)
        for flow in registered.flows]
    camera_noise = estimate_noise([series[t + k] for k in offsets])
    camera = camera_noise.variance(registered.level)
    tau2 = camera * np.mean(kept_share, axis=0) / len(offsets)
    return RegisteredTruth(registered.mean, consistent(registered.warped, camera_noise.variance), tau2, camera, offsets)
