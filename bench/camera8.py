"""Self-calibrated intervals through an 8-bit camera: the kind of frame issue #23's hidden widefield data
is (8-bit counts, a few DN of offset, quantised, clipped at 0 and 255), beside the camera model every
other page re-acquires with.

    python -m bench camera8 [--data DIR] [--size 256]

The real images bench/real_calibration.py re-acquires (the DSB nuclei and the four held out of every
bundled model's training), smoothed and scaled as there (its :func:`reacquired`), acquired at 3 / 10 /
30 photons at the brightest pixel through two cameras:

- *float*: bench/real_calibration.py's (background 2 photons, read noise 1.5 e⁻, offset 100, not rounded);
- *8-bit*: background 0.5 photons, GAIN DN per photo-electron, read noise READ_DN DN, offset OFFSET_DN DN,
  rounded and clipped to [0, 255]: the dark background sits at the clipped end (up to 13 % of a frame's pixels at 0;
  at 30 photons the brightest pixels expect about 185 DN).

Truth: the mean of TRUTH_FRAMES acquisitions of the same scene through the same camera (what a long average is,
clipping included), its noise (their variance / TRUTH_FRAMES per pixel) accounted for as bench/real_calibration.py
accounts for a frame series' (a pixel is covered at level c when |truth − mean| ≤ √((λ·u)² + (z_c·τ)²)).
Each image is restored and self-calibrated as ``--self-calibrate`` does on a single plane (recorrupted pairs,
core.calibration.self_calibration) with the default settings' std (the std head).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_diffdenoise import load_model

from .common import markdown_table, write_report
from .real_calibration import BACKGROUND as FLOAT_BACKGROUND
from .real_calibration import (
    DEFAULT_DATA,
    LEVELS,
    PHOTONS,
    TRUTH_SMOOTHING,
    evaluate_case,
    reacquired_images,
    reacquisition_seed,
    within_tolerance,
)
from .real_calibration import OFFSET as FLOAT_OFFSET
from .real_calibration import READ_NOISE as FLOAT_READ_NOISE

GAIN, READ_DN, OFFSET_DN, BACKGROUND_8BIT = 6.0, 2.0, 2.0, 0.5  # the 8-bit camera (DN per e⁻, DN, DN, photons)
TRUTH_FRAMES = 400
CAMERAS = ("float", "8-bit")


def acquire(camera: str, photons: np.ndarray, rng) -> np.ndarray:
    """One frame of the expected ``photons`` per pixel (background not included) through ``camera``."""
    if camera == "float":
        electrons = rng.poisson(photons + FLOAT_BACKGROUND)
        return FLOAT_OFFSET + electrons + rng.normal(0, FLOAT_READ_NOISE, photons.shape)
    electrons = rng.poisson(photons + BACKGROUND_8BIT)
    return np.clip(np.round(GAIN * electrons + OFFSET_DN + rng.normal(0, READ_DN, photons.shape)), 0, 255)


def density_of(image: np.ndarray) -> np.ndarray:
    """The scene as bench/real_calibration.py's :func:`reacquired` makes it: smoothed, unit peak."""
    smooth = ndimage.gaussian_filter(image.astype(np.float64), TRUTH_SMOOTHING)
    low, high = np.percentile(smooth, [0.1, 99.95])
    return np.clip((smooth - low) / (high - low), 0, None)


def case(camera: str, density: np.ndarray, photons: float, seed: int):
    """(noisy, truth, τ², share at 0, share at 255): one frame and the mean of TRUTH_FRAMES others."""
    rng = np.random.default_rng(seed)
    expected = photons * density
    noisy = acquire(camera, expected, rng).astype(np.float32)
    total, total2 = np.zeros_like(expected), np.zeros_like(expected)
    for _ in range(TRUTH_FRAMES):
        frame = acquire(camera, expected, rng)
        total += frame
        total2 += frame * frame
    truth = total / TRUTH_FRAMES
    tau2 = np.maximum(total2 / TRUTH_FRAMES - truth ** 2, 0) / TRUTH_FRAMES
    return noisy, truth.astype(np.float32), tau2, float(np.mean(noisy <= 0)), float(np.mean(noisy >= 255))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench camera8")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    model = load_model("demo")
    rows, records = [], []
    for label, image in reacquired_images(args.data, args.size):
        density = density_of(image)
        for photons in PHOTONS:
            row = [f"{label}, {photons:g} ph"]
            for camera in CAMERAS:
                noisy, truth, tau2, dark, saturated = case(camera, density, photons, reacquisition_seed(label, photons))
                record = evaluate_case(model, f"{label}, {photons:g} ph, {camera}", noisy, truth, tau2, std="head")
                own = record["routes"]["self (recorrupted)"]
                record.update(camera=camera, at_0=dark, at_255=saturated)
                records.append(record)
                row += [f"{dark:.2f} / {saturated:.3f}", record["psnr"], record["spearman"],
                        *(own[str(c)]["coverage"] for c in LEVELS),
                        own["0.9"]["factor"] / own["0.9"]["oracle_factor"]]
            rows.append(row)
    header = ["case"]
    for camera in CAMERAS:
        header += [f"{camera}: at 0 / 255", f"{camera}: PSNR", f"{camera}: ρ",
                   *(f"{camera}: self @{c}" for c in LEVELS), f"{camera}: λ self / oracle @0.9"]
    summary = []
    for camera in CAMERAS:
        mine = [r for r in records if r["camera"] == camera]
        cov = np.array([[r["routes"]["self (recorrupted)"][str(c)]["coverage"] for c in LEVELS] for r in mine])
        summary.append([camera, *(f"{m:.3f} ({lo:.2f}–{hi:.2f})" for m, lo, hi in zip(cov.mean(0), cov.min(0), cov.max(0))),
                        int(within_tolerance(cov).sum()), len(mine),
                        float(np.mean([r["spearman"] for r in mine])), float(np.mean([r["psnr"] for r in mine]))])
    body = (
        f"Model `demo`, centre crops of {args.size}², default settings (the std head's std). 8-bit camera: "
        f"{GAIN:g} DN per photo-electron, read noise {READ_DN:g} DN, offset {OFFSET_DN:g} DN, background "
        f"{BACKGROUND_8BIT:g} photons, rounded, clipped to [0, 255]; float camera: bench/real_calibration.py's. "
        f"Truth: the mean of {TRUTH_FRAMES} acquisitions through the same camera, its noise accounted for (see "
        "the module docstring). Self: recorrupted pairs of the single frame, as `--self-calibrate` makes them. "
        "'at 0 / 255': the frame's share of pixels at either end of the 8-bit range.\n\n"
        "Summary (mean, min–max over cases; cases within ±0.05 of nominal at all three levels):\n\n"
        + markdown_table(["camera", *(f"self @{c}" for c in LEVELS), "cases within ±0.05", "cases", "mean ρ",
                          "mean PSNR"], summary)
        + "\n\n" + markdown_table(header, rows) + "\n")
    print(write_report("camera8", "Self-calibrated intervals through an 8-bit camera", body, {"records": records}))


if __name__ == "__main__":
    main()
