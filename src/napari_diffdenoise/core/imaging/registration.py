"""Frames of a time series registered onto one of them: where the sample moved between frames, the
neighbouring frames warped onto frame t hold frame t's scene, which their plain mean holds blurred by
the motion.

Each frame is warped along the optical flow between it and frame t (Lucas–Kanade,
skimage.registration.optical_flow_ilk, on both frames smoothed by FLOW_SMOOTHING px: at that smoothing
frame t's noise barely steers the flow, so the warped frames' noise stays independent of frame t's).
The warp interpolates with cubic splines: bilinear interpolation blurs at sub-pixel shifts (a 0.5 px
shift is a [½, ½] filter), and a blurred target favours the smoother of two restorations — on the
8-bit time-lapse, bundled against adapted heads, bilinear and cubic targets disagreed in sign on two
of three fields (docs/performance.md). Where the registration fails — structure that appears,
vanishes or deforms — the warped frames disagree with one another: :func:`consistent` says where they
agree within noise.

Used by adapt's series criterion (core.training.adapt_criteria) and by the benchmarks' truth for a
frame of a real series (bench/frame_truth.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import optical_flow_ilk

FLOW_SMOOTHING = 1.5  # px: both frames are smoothed so before the flow between them is read
FLOW_RADIUS = 7  # px: the Lucas–Kanade window's radius
INTERPOLATION_ORDER = 3  # cubic splines (see the module docstring: bilinear blurs)
CONSISTENCY_SMOOTHING = 2.0  # px: warped frames are compared smoothed by this
CONSISTENT_SPREAD = 4.0  # standard errors of noise a smoothed warped frame may stray from their mean


@dataclass
class Registered:
    warped: np.ndarray  # (n, h, w): each frame warped onto the reference
    flows: list[np.ndarray]  # each frame's flow onto the reference, (2, h, w) px

    @property
    def mean(self) -> np.ndarray:
        return self.warped.mean(axis=0)

    @property
    def level(self) -> np.ndarray:
        return level_of(self.warped)


def level_of(frames: np.ndarray) -> np.ndarray:
    """The frames' mean smoothed by CONSISTENCY_SMOOTHING px: the level the camera's variance is read at."""
    return ndimage.gaussian_filter(np.mean(frames, axis=0), CONSISTENCY_SMOOTHING)


def warp(image: np.ndarray, flow: np.ndarray, order: int | None = None) -> np.ndarray:
    """``image`` sampled at each pixel plus ``flow`` (skimage's convention: the reference's pixel (r, c)
    sits at (r + flow[0], c + flow[1]) in the moving frame); ``order``: the spline's, INTERPOLATION_ORDER by default."""
    h, w = image.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return ndimage.map_coordinates(np.asarray(image, dtype=np.float64), [rows + flow[0], cols + flow[1]],
                                   order=INTERPOLATION_ORDER if order is None else order, mode="nearest")


def register_onto(reference: np.ndarray, frames: Sequence[np.ndarray], order: int | None = None) -> Registered:
    """``frames`` warped onto ``reference`` (all (h, w), one field of view)."""
    reference = np.asarray(reference, dtype=np.float64)
    low, high = np.percentile(reference, [1, 99.9])

    def for_flow(frame):  # the flow solver's parameters assume intensities of order 1
        return ndimage.gaussian_filter((np.asarray(frame, dtype=np.float64) - low) / max(high - low, 1e-9),
                                       FLOW_SMOOTHING)

    target = for_flow(reference)
    flows = [optical_flow_ilk(target, for_flow(f), radius=FLOW_RADIUS) for f in frames]
    return Registered(np.array([warp(f, flow, order) for f, flow in zip(frames, flows)]), flows)


def consistent(frames: np.ndarray, variance: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Where every frame of ``frames`` ((n, h, w), warped onto one reference or as they are), smoothed by
    CONSISTENCY_SMOOTHING px, lies within CONSISTENT_SPREAD standard errors of noise of their smoothed mean
    (bool, (h, w)); ``variance``: one frame's camera variance at a level
    (core.imaging.camera_noise.CameraNoise.variance). A single frame agrees with itself everywhere."""
    level = level_of(frames)
    # a Gaussian of σ px keeps 1 / (2σ√π) of white noise's std
    noise_sd = np.sqrt(np.maximum(variance(level), 0.0)) / (2 * CONSISTENCY_SMOOTHING * np.sqrt(np.pi))
    spread = np.max([np.abs(ndimage.gaussian_filter(f, CONSISTENCY_SMOOTHING) - level) for f in frames], axis=0)
    return spread <= CONSISTENT_SPREAD * noise_sd * np.sqrt(1 - 1 / len(frames))
