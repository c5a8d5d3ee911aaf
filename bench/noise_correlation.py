"""The camera noise's correlation between neighbouring pixels, read off one image: the spectral
estimate the self-calibration uses (core.calibration.view_noise.noise_correlation) beside second
differences (what it used before), on real images whose noise is known.

    python -m bench noise_correlation [--data DIR] [--size 256] [--model demo]

Cases: the real images bench/real_calibration.py re-acquires at 3 / 10 / 30 photons (white camera
noise by construction), the same with that noise given a lag-1 correlation of 0.22 along x and of
0.26 along both axes (a 3-tap kernel, the noise's std per pixel kept); the real lysosome frames
(raw counts; one frame, and the 25 calibration frames together); the 8-bit time-lapse's fields.
Then the self-calibration (the std head's intervals) of the re-acquired images with correlated noise,
its recorrupting draws white (as before this round; the colouring switched off for that run, the floor
0.05 in both) and given the correlation read off the image (core.imaging.recorruption), against the truth.
A last table shows what the lysosome frames' differences hold beyond the camera noise: their
variance per brightness band (the median of (y_{t+1} − y_{t−1})²/2, as bench/real_calibration.py's
frame_noise) against the camera model fitted to one frame (core.imaging.camera_noise).
"""
from __future__ import annotations

import argparse
import contextlib
import math
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration import view_noise
from napari_diffdenoise.core.calibration.self_calibration import iter_self_calibrate
from napari_diffdenoise.core.calibration.view_noise import CORRELATED_NOISE, NOISE_BAND, noise_correlation
from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.run.driving import drive

from . import real_calibration as rc
from .common import HELD_OUT_SEED, markdown_table, write_report

# (name, kernel tap along y, along x): noise n = w ∗ [a, 1, a] per axis, lag-1 correlation 2a / (1 + 2a²)
COLOURS = (("white", 0.0, 0.0), ("x: 0.22", 0.0, 0.1125), ("both: 0.26", 0.134, 0.134))


def lag1_of_tap(a: float) -> float:
    return 2 * a / (1 + 2 * a * a)


def second_difference_lag1(plane: np.ndarray) -> float:
    """The estimate the self-calibration used before: corr(d_i, d_{i+1}) of second differences
    d along rows and columns per 16² block, the median, mapped to ρ₁ = (6r + 4)/(7 + 8r) (noise
    correlated at lag 1 only)."""
    ratios = []
    p = np.asarray(plane, dtype=np.float64)
    for d in (np.diff(p, 2, axis=1), np.diff(p, 2, axis=0).T):
        h, w = (d.shape[0] // 16) * 16, ((d.shape[1] - 1) // 16) * 16
        a, b = d[:h, :w], d[:h, 1:w + 1]
        ratios.append(((a * b).reshape(h // 16, 16, w // 16, 16).sum(axis=(1, 3))
                       / (a * a).reshape(h // 16, 16, w // 16, 16).sum(axis=(1, 3))).ravel())
    r = float(np.median(np.concatenate(ratios)))
    return (6 * r + 4) / (7 + 8 * r)


def coloured(noise: np.ndarray, std: np.ndarray, tap_y: float, tap_x: float, rng) -> np.ndarray:
    """White Gaussian noise through [a, 1, a] along each axis, unit variance, times ``std`` per pixel
    (``noise`` itself when both taps are 0)."""
    if tap_y == tap_x == 0:
        return noise
    w = rng.standard_normal(noise.shape)
    for axis, tap in ((0, tap_y), (1, tap_x)):
        if tap:
            w = ndimage.convolve1d(w, [tap, 1.0, tap], axis=axis, mode="wrap") / math.sqrt(1 + 2 * tap * tap)
    return w * std


def row(label, truth, planes) -> dict:
    """``truth``: (ρ₁ along y, along x), or None for real camera noise."""
    camera = noise_correlation(planes)
    return {"case": label, "true": None if truth is None else list(truth), "lag1": list(camera.lag1), "se": list(camera.standard_errors),
            "seen": camera.seen(CORRELATED_NOISE),
            "second_differences": float(np.mean([second_difference_lag1(p) for p in np.reshape(planes, (-1, *np.shape(planes)[-2:]))]))}


def cells(r: dict) -> list:
    truth = "–" if r["true"] is None else f"{r['true'][0]:.2f}, {r['true'][1]:.2f}"
    return [r["case"], truth, f"{r['lag1'][0]:+.3f} ± {r['se'][0]:.3f}", f"{r['lag1'][1]:+.3f} ± {r['se'][1]:.3f}",
            "yes" if r["seen"] else "no", f"{r['second_differences']:+.3f}"]


@contextlib.contextmanager
def white_draws():
    """The self-calibration as it was: its recorrupting draws white whatever the camera noise."""
    kept = view_noise.CORRELATED_NOISE
    view_noise.CORRELATED_NOISE = math.inf
    try:
        yield
    finally:
        view_noise.CORRELATED_NOISE = kept


def calibration_row(model, label, noisy, truth) -> list:
    """Coverage at LEVELS and width / oracle at 0.9 of the self-calibrated std-head intervals, with
    white and with coloured draws."""
    settings = rc.STD_ROUTES["head"]
    result = denoise(noisy, model, seed=0, **settings)
    err = np.abs(truth - result.mean).astype(np.float64)
    unit = result.interval_unit.astype(np.float64)
    oracle = rc.oracle_factor(err, unit, np.zeros_like(err), 0.9)
    cells = [label]
    for draws in ("white", "coloured"):
        with white_draws() if draws == "white" else contextlib.nullcontext():
            cal = drive(iter_self_calibrate(model, noisy, seed=1, **settings))[0].calibration
        cells += [float(np.mean(err <= cal.factor(c) * unit)) for c in rc.LEVELS]
        cells += [cal.factor(0.9) / oracle, "yes" if "V = 1" in cal.source else "no"]
    return cells


def motion_rows(folder: Path, size: int, files) -> list[list]:
    """Per lysosome file and brightness band: the frames' difference variance against the camera's."""
    rows = []
    for label, frame, _truth, tau2, _frames, _static, _registered in rc.lysosome_cases(folder, size, files):
        level = ndimage.gaussian_filter(frame.astype(np.float64), 2)
        camera = estimate_noise([frame]).variance(level)
        q = np.quantile(level, [0.5, 0.9])
        for lo, hi, band in ((-np.inf, q[0], "darker half"), (q[0], q[1], "50–90 %"), (q[1], np.inf, "brightest 10 %")):
            sel = (level >= lo) & (level < hi)
            rows.append([label, band, float(np.median(2 * tau2[sel])), float(np.median(camera[sel])),
                         float(np.median(2 * tau2[sel]) / np.median(camera[sel]))])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench noise_correlation")
    parser.add_argument("--data", type=Path, default=rc.DEFAULT_DATA)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    calibrations = []
    t0 = time.perf_counter()
    rng = np.random.default_rng(HELD_OUT_SEED)
    simulated = {name: [] for name, _, _ in COLOURS}
    for label, noisy, truth, _ in rc.reacquired_cases(args.data, args.size):
        std = np.sqrt(np.maximum(truth - rc.OFFSET, 0) + rc.READ_NOISE ** 2)
        for name, tap_y, tap_x in COLOURS:
            planes = truth + coloured(noisy - truth, std, tap_y, tap_x, rng)
            simulated[name].append(row(label, (lag1_of_tap(tap_y), lag1_of_tap(tap_x)), planes))
            if tap_y or tap_x:
                calibrations.append([name, *calibration_row(model, label, planes.astype(np.float32), truth)])
                print(*calibrations[-1], flush=True)
    real = []
    every_series = rc.lysosome_files(args.data / rc.LYSOSOME, "all")
    for label, frame, _truth, _tau2, frames, _static, _registered in rc.lysosome_cases(args.data / rc.LYSOSOME, args.size,
                                                                                       every_series):
        real.append(row(label, None, frame))
        real.append(row(f"{label.split(' (')[0]}: frames 0–24", None, frames))
    for label, frame, _truth, _tau2, frames, _static, _registered in rc.timelapse_cases(args.data / rc.TIMELAPSE, args.size):
        real.append(row(label, None, frame))
        real.append(row(f"{label.split(' (frame')[0]}: frames 0–24", None, frames))

    header = ["case", "true ρ₁ (y, x)", "spectral ρ₁ along y", "along x", f"seen (> {CORRELATED_NOISE:g}, 3 SE)",
              "second differences (before)"]
    summary = []
    for (name, tap_y, tap_x), rows in zip(COLOURS, simulated.values()):
        lag = np.array([r["lag1"] for r in rows])
        summary.append([name, f"{lag1_of_tap(tap_y):.2f}, {lag1_of_tap(tap_x):.2f}",
                        f"{lag[:, 0].mean():+.3f} (sd {lag[:, 0].std():.3f})", f"{lag[:, 1].mean():+.3f} (sd {lag[:, 1].std():.3f})",
                        f"{sum(r['seen'] for r in rows)} of {len(rows)}",
                        f"{np.mean([r['second_differences'] for r in rows]):+.3f}"])
    motion = motion_rows(args.data / rc.LYSOSOME, args.size, rc.LYSOSOME_FILES)
    levels = [f"@{c:g}" for c in rc.LEVELS]
    calibration_header = ["noise", "case", *[f"white {x}" for x in levels], "white width / oracle @0.9",
                          "white: V = 1 (fell back)", *[f"coloured {x}" for x in levels], "coloured width / oracle @0.9",
                          "coloured: V = 1 (fell back)"]
    calibration_summary = []
    for name in dict.fromkeys(r[0] for r in calibrations):
        rows = [r for r in calibrations if r[0] == name]
        for start, draws in ((2, "white"), (7, "coloured")):
            cov = np.array([r[start:start + 3] for r in rows], dtype=float)
            calibration_summary.append([name, draws, *[f"{cov[:, j].mean():.3f} ({cov[:, j].min():.2f}–{cov[:, j].max():.2f})"
                                                       for j in range(3)],
                                        int(np.sum(np.all(np.abs(cov - np.array(rc.LEVELS)) <= 0.05, axis=1))),
                                        sum(r[start + 4] == "yes" for r in rows), len(rows)])
    body = "\n\n".join([
        (f"Where the camera noise is correlated between pixels, the self-calibration's and adapt's recorrupting "
         f"draws are given its correlation (core.imaging.recorruption) and the self-calibration leaves out the "
         f"offsets it reaches (core/calibration/self_calibration.py). Whether it is correlated (above "
         f"{CORRELATED_NOISE:g} along an axis, and 3 standard errors) is read off one image's power spectrum at "
         f"|f_y|, |f_x| ≥ {NOISE_BAND:g} cycles/px, where a band-limited fluorescence image holds noise alone (32² "
         f"tiles, jackknife standard errors; core.calibration.view_noise.noise_correlation). Before this round second "
         f"differences of the image read it; the last column shows what they read. Wall time "
         f"{time.perf_counter() - t0:.0f} s."),
        "## Real images re-acquired with known noise (summary over 5 images × 3 photon levels)",
        markdown_table(["noise", "true ρ₁ (y, x)", "spectral along y: mean", "along x: mean", "seen", "second differences: mean"], summary),
        "## Per case", markdown_table(header, [cells(r) for rows in simulated.values() for r in rows]),
        (f"## Self-calibration on correlated camera noise: white vs coloured draws\n\nModel `{args.model}`, "
         "the std head's intervals, recorrupted route (core.calibration.self_calibration), coverage against the "
         "exact truth. Summary: mean (min–max) over the cases; cases within ±0.05 of nominal at all three levels; "
         "cases where V came out below 0 and the model's own spread was used."),
        markdown_table(["noise", "draws", *levels, "within ±0.05", "V = 1", "cases"], calibration_summary),
        markdown_table(calibration_header, calibrations),
        ("## Real camera noise: lysosome frames (raw counts) and the 8-bit time-lapse\n\n"
         "No truth here; the 25 frames together give the smaller standard error."),
        markdown_table(header, [cells(r) for r in real]),
        ("## What the lysosome frames' differences hold beyond the camera noise\n\n"
         "One frame's variance as bench/real_calibration.py reads it off frames t − 1 and t + 1 (the median of their "
         "squared difference / 2 per brightness level: motion between the frames counts) against the camera model "
         "fitted to frame t alone, per brightness band of frame t (medians over the band's pixels)."),
        markdown_table(["case", "band", "frame-difference variance", "camera model", "ratio"], motion),
    ])
    path = write_report("noise_correlation", "Camera-noise correlation read off one image", body,
                        {"simulated": simulated, "real": real, "motion": motion, "calibrations": calibrations})
    print(path)


if __name__ == "__main__":
    main()
