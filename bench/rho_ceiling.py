"""How high can ρ(std, |error|) go on each real case? The std head's ρ beside the error's true scale.

    python -m bench rho_ceiling [--real DIR] [--model demo] [--size 256] [--draws 16]

Issue #23 asks the std map to rank the real error with Spearman ρ ≥ 0.45. A pixel's |error| is one
draw from its error distribution, so even the error's true scale ranks it only partly; how far
depends on how much that scale varies over the image and on the error's shape. This bench measures
that ceiling on the re-acquired held-out real images of bench/real_calibration.py, whose truth and
camera are exact: the same scene is acquired ``draws`` more times (other noise, same truth) and
restored with the same settings, and the error's scale per pixel is the RMS of those restorations'
errors, σ* = √E[(truth − mean)²] over the noise: bias and variance, all a std map is asked to know.
σ* ranks the error of the benchmarked acquisition (not among the draws) as well as any map that
knows the scene but not this acquisition's noise can; a map made from the noisy image alone knows
less about the scene and more about the noise realisation, so σ* is a reference, not a strict bound.

Beside it, two maps a user has: the std head's (the default one pass) and a map that knows no model,
√ of the noisy image smoothed by 2 px (shot noise's std grows with the square root of the signal).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from scipy import ndimage, stats

from napari_diffdenoise import denoise, load_model

from .common import markdown_table, write_report
from .real_calibration import PHOTONS, reacquired, reacquired_images, reacquisition_seed, real_data_parser

DRAWS_SEED = 80_000  # the oracle's extra acquisitions: seeds neither the benchmarked cases nor training use


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(np.ravel(a), np.ravel(b)).statistic)


def error_scale_by_draws(model, image: np.ndarray, photons: float, truth: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """σ* per pixel: the RMS error of the restorations of ``draws`` fresh acquisitions of the scene."""
    squared = np.zeros(truth.shape, dtype=np.float64)
    for k in range(draws):
        noisy, _, _ = reacquired(image, photons, seed + k)
        squared += (truth - denoise(noisy, model, seed=0).mean).astype(np.float64) ** 2
    return np.sqrt(squared / draws)


def evaluate_case(model, image, photons: float, seed: int, draws: int) -> dict:
    noisy, truth, _ = reacquired(image, photons, seed)
    t0 = time.perf_counter()
    result = denoise(noisy, model, seed=0)
    seconds = time.perf_counter() - t0
    error = np.abs(truth - result.mean).astype(np.float64)
    scale = error_scale_by_draws(model, image, photons, truth, draws, DRAWS_SEED + seed)
    # what a perfect std would reach were the error Gaussian of scale σ*: the ceiling's shape part
    gaussian = np.abs(scale * np.random.default_rng(seed).standard_normal(scale.shape))
    return {"rho_head": spearman(result.std, error),
            "rho_shot": spearman(np.sqrt(np.maximum(ndimage.gaussian_filter(noisy.astype(np.float64), 2.0), 0)), error),
            "rho_oracle": spearman(scale, error), "rho_gaussian": spearman(scale, gaussian),
            "rho_head_oracle": spearman(result.std, scale), "oracle_cv": float(np.std(scale) / np.mean(scale)),
            "seconds": seconds}


def main(argv=None):
    parser = real_data_parser("rho_ceiling", __doc__)
    parser.add_argument("--draws", type=int, default=16, help="fresh acquisitions per case for the error's scale")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rows, records = [], []
    for label, image in reacquired_images(args.real, args.size):
        for photons in PHOTONS:
            # the benchmarked acquisition is bench/std_head.py's and bench/real_calibration.py's
            rec = {"case": f"{label}, {photons:g} ph",
                   **evaluate_case(model, image, photons, reacquisition_seed(label, photons), args.draws)}
            records.append(rec)
            print(rec, flush=True)
            rows.append([rec["case"], rec["rho_head"], rec["rho_shot"], rec["rho_oracle"], rec["rho_gaussian"],
                         rec["rho_head_oracle"], rec["oracle_cv"]])
    rows.append(["mean", *[float(np.mean([r[j] for r in rows])) for j in range(1, len(rows[0]))]])
    head = sum(r["rho_head"] >= 0.45 for r in records)
    reach = sum(r["rho_oracle"] >= 0.45 for r in records)
    body = (f"Model `{args.model}`, default settings (the std head's one pass). Centre crops of {args.size}², the "
            "re-acquired cases of bench/real_calibration.py (the same acquisitions as there and in bench/std_head.py). "
            "ρ: Spearman against |truth − mean| over all pixels. *Shot*: √ of the noisy image smoothed by 2 px, a map "
            f"that knows no model. *Error's scale σ\\**: the RMS error of the same restoration over {args.draws} fresh "
            "acquisitions of the scene (see the module docstring: it knows the scene, which no map made from the noisy "
            "image does). *Gaussian*: ρ of σ\\* against a Gaussian error of scale σ\\*, what a perfect std would reach "
            "were the error Gaussian. ρ head, σ\\*: how well the head ranks the error's scale itself. CV: σ\\*'s std "
            "over its mean, how much the error's scale varies over the image.\n\n"
            + markdown_table(["case", "ρ std head", "ρ shot", "ρ error's scale σ*", "ρ Gaussian of σ*", "ρ head, σ*",
                              "σ* CV"], rows)
            + f"\n\nρ ≥ 0.45 (issue #23's target): the std head on **{head} of {len(records)}** cases; the error's "
            f"own scale on **{reach} of {len(records)}**. Where σ\\* stays below 0.45, a std map would have to know "
            "the noise realisation, not the error's scale, to meet the target on that case.\n")
    write_report("rho_ceiling", "How well a std map can rank the real error", body, {"records": records})


if __name__ == "__main__":
    main()
