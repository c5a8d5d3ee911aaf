"""The [mean] refined by an empirical Wiener filter with itself as the pilot: BM3D's second step (Dabov et al.
2007, "Image denoising by sparse 3-D transform-domain collaborative filtering") without its block matching.

Each overlapping 8×8 window's DCT coefficients d_k of the noisy image are multiplied by p_k² / (p_k² + σ²), p_k
those of the mean, in the variance-stabilised domain of the camera fitted to the image (the generalised
Anscombe transform, σ = 1 there), and the windows are averaged with BM3D's weights 1 / Σ gain². Where the mean
has smoothed structure the camera resolved, the filter gives back what the noisy pixels hold of it; where the
signal is below the noise it takes the pilot's coefficients down with the noise's, and loses what the network's
prior held. On real lysosome frames the refinement gained up to +0.6 dB, on the 8-bit time-lapse and every
held-out image at 3–30 photons it lost (to −3 dB at 3 photons). Of five single-image criteria one told the two
apart (docs/benchmarks/pilot_wiener.md): the image's brightness, the photons of its brightest structure above the
background (:func:`peak_photons`). Over five held-out real scenes at 30–3000 photons through a float and an 8-bit
camera (70 acquisitions, none of them a real frame of that page) the refinement of the bundled head's mean lost on
40, the brightest of them at 498 photons, and gained on all 13 from 600 photons on (+0.01 … +5.33 dB); on the 13
real camera frames, whose brightness 277–1410 was read off each frame alone, refining from 600 on gained +0.14 dB on
average (10 refined, 2 of them worse: −0.07 and −0.09 dB) and took the bundled head to or above oracle VST + BM3D
on 9 of 13 (unrefined: 5). So a model refines its [mean] as its DiffusionModel.mean_refinement says: never, on
every plane (:data:`ALWAYS`: where ``adapt`` showed it better on the user's series,
core.training.adapt_criteria.refinement_judge), or on each plane at least :data:`BRIGHT_PHOTONS` bright
(:data:`IF_BRIGHT`: the bundled ``demo``'s, whose head the threshold was measured with).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dctn, idctn

from .camera_noise import CameraNoise, estimate_noise

BLOCK, STRIDE = 8, 2  # px: the windows' side and the step between them
ALWAYS = "pilot-wiener"  # a model's mean_refinement: every plane's [mean] refined
IF_BRIGHT = "pilot-wiener-if-bright"  # a model's mean_refinement: a plane's [mean] refined where it is bright
# photons of the brightest structure above the background (:func:`peak_photons`) from which the refinement of the
# bundled head's mean gained on every acquisition of the sweep in docs/benchmarks/pilot_wiener.md (module docstring)
BRIGHT_PHOTONS = 600.0
PEAK_PERCENTILE = 99.8  # the brightest structure's level: a percentile, so that a few hot pixels do not set it
WINDOW_ROWS = 64  # rows of windows filtered at once: ~70 MB per array on a 4096-px-wide plane


def anscombe(x, offset: float, read_noise: float):
    """Generalised Anscombe transform for Poisson (gain 1) + Gaussian noise (Murtagh et al. 1995):
    noise of unit variance whatever the signal."""
    return 2 * np.sqrt(np.maximum(x - offset + 3 / 8 + read_noise**2, 0))


def inverse_anscombe(d, offset: float, read_noise: float):
    """Closed-form approximation of the exact unbiased inverse (Mäkitalo & Foi 2011, Eq. 9)."""
    d = np.maximum(d, 0.8)
    return (d**2 / 4 + np.sqrt(1.5) / (4 * d) - 11 / (8 * d**2) + 5 * np.sqrt(1.5) / (8 * d**3) - 1 / 8
            - read_noise**2 + offset)


def dct_wiener(d: np.ndarray, pilot: np.ndarray) -> np.ndarray:
    """``d`` (noise of unit variance) Wiener-filtered window by window with ``pilot``'s DCT coefficients as
    the signal's: gains pilot² / (pilot² + 1), the windows averaged with weights 1 / Σ gain². Windows are taken
    WINDOW_ROWS rows of them at a time: all of a 4096² plane's at once would hold 4 · 10⁶ × 64 coefficients
    (2 GB) per array."""
    pad = BLOCK - 1
    dp, pp = np.pad(d, pad, mode="reflect"), np.pad(pilot, pad, mode="reflect")
    all_windows = sliding_window_view(dp, (BLOCK, BLOCK))[::STRIDE, ::STRIDE]
    all_pilots = sliding_window_view(pp, (BLOCK, BLOCK))[::STRIDE, ::STRIDE]
    total, norm = np.zeros_like(dp), np.zeros_like(dp)
    for first in range(0, all_windows.shape[0], WINDOW_ROWS):
        windows, pilots = all_windows[first:first + WINDOW_ROWS], all_pilots[first:first + WINDOW_ROWS]
        ny, nx = windows.shape[:2]
        coefficients = dctn(windows.reshape(-1, BLOCK, BLOCK), axes=(1, 2), norm="ortho")
        pilot_coefficients = dctn(pilots.reshape(-1, BLOCK, BLOCK), axes=(1, 2), norm="ortho")
        gains = pilot_coefficients**2 / (pilot_coefficients**2 + 1.0)
        weights = 1.0 / np.maximum((gains**2).sum(axis=(1, 2)), 1e-3)
        blocks = (idctn(gains * coefficients, axes=(1, 2), norm="ortho") * weights[:, None, None]).reshape(
            ny, nx, BLOCK, BLOCK)
        weights = weights.reshape(ny, nx)
        y0 = first * STRIDE
        for i in range(BLOCK):
            for j in range(BLOCK):
                total[y0 + i:y0 + i + ny * STRIDE:STRIDE, j:j + nx * STRIDE:STRIDE] += blocks[:, :, i, j]
                norm[y0 + i:y0 + i + ny * STRIDE:STRIDE, j:j + nx * STRIDE:STRIDE] += weights
    # every pixel of the plane lies in some window; the padding's far edge may not, and is cut off first
    inner = (slice(pad, -pad), slice(pad, -pad))
    return total[inner] / norm[inner]


def refine_mean(noisy: np.ndarray, mean: np.ndarray, camera: CameraNoise) -> np.ndarray:
    """``mean`` (a restoration of the plane ``noisy``, image units) refined by :func:`dct_wiener` in the
    stabilised domain of ``camera`` (var = gain · y + floor), back in image units (float64). A fit with no
    signal-dependent part (gain ≤ 0: Gaussian noise of variance floor) is stabilised by scaling alone; one with
    no noise at all leaves nothing to weigh the pixels against, and ``mean`` is returned as it is."""
    gain, floor = float(camera.gain), float(camera.floor)
    if gain <= 0:
        if floor <= 0:
            return np.asarray(mean, np.float64)
        sd = np.sqrt(floor)
        return dct_wiener(np.asarray(noisy, np.float64) / sd, np.asarray(mean, np.float64) / sd) * sd
    offset = -floor / gain**2

    def stabilised(y):
        return anscombe(np.asarray(y, np.float64) / gain, offset, 0.0)

    pilot = stabilised(np.maximum(mean, 0))
    return inverse_anscombe(dct_wiener(stabilised(noisy), pilot), offset, 0.0) * gain


def peak_photons(plane: np.ndarray, camera: CameraNoise) -> float:
    """How bright ``plane`` is as photons: (S / σ)² with S its PEAK_PERCENTILE level above its median (the
    background, on a fluorescence image) and σ² the ``camera``'s variance at that level — for photon-limited
    counts the photons its brightest structure holds above the background (n² / (n + b) ≈ n), whatever the
    camera's units, as long as ``camera`` was fitted to the plane."""
    plane = np.asarray(plane, np.float64)
    level = float(np.percentile(plane, PEAK_PERCENTILE))
    signal = level - float(np.median(plane))
    variance = float(camera.variance(np.array([level]))[0])
    return signal * signal / variance if signal > 0 and variance > 0 else 0.0


def refines(rule: str, plane: np.ndarray, camera: CameraNoise) -> bool:
    """Whether a model whose mean_refinement is ``rule`` refines the [mean] of ``plane`` (``camera`` fitted to it)."""
    return rule == ALWAYS or (rule == IF_BRIGHT and peak_photons(plane, camera) >= BRIGHT_PHOTONS)


def decided(rule: str, planes) -> tuple[str, int]:
    """(``rule`` as a run applies it to most of ``planes``, how many of them are bright): IF_BRIGHT becomes ALWAYS
    where at least half of the planes (each with the camera fitted to it) are BRIGHT_PHOTONS bright, else "none";
    another rule stays as it is. For what restores other planes than the run's, or prices them, and must refine as
    the run refines: a self-calibration's recorrupted crops, a time estimate."""
    if rule != IF_BRIGHT:
        return rule, 0
    planes = [np.asarray(p) for p in planes]
    bright = sum(refines(IF_BRIGHT, p, estimate_noise([p])) for p in planes)
    return (ALWAYS if 2 * bright >= len(planes) else "none"), bright


def said(metadata: dict) -> str:
    """What a run's record says of its [mean]'s refinement ("" where no plane was refined), as the widget and the
    CLI show it."""
    rule = metadata.get("mean_refinement", "none")
    if rule == ALWAYS:
        return ("the [mean] refined by a Wiener filter with itself as the pilot: the model's choice, made where "
                "adapting on a series showed it better")
    refined = metadata.get("mean_refined_planes", [])
    if rule != IF_BRIGHT or not refined:
        return ""
    return (f"the [mean] refined by a Wiener filter with itself as the pilot on {len(refined)} plane(s): those at "
            f"least {BRIGHT_PHOTONS:g} photons bright, where that gained on real frames (docs/benchmarks/pilot_wiener.md)")
