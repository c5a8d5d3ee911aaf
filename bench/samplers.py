"""Samplers against each other at equal cost, judged on calibration as well as PSNR (issues on the
sampler seam and on honest samples): DDIM η = 0 and η = 1, DPM-Solver++(2M), its SDE variant and
EDM's Heun (deterministic and with churn), at about 4 / 6 / 10 / 20 network evaluations per sample.

For each: PSNR of the average of K samples; Spearman ρ between the std map and the error of the
mean the intervals are centred on (the model's default mean); the held-out coverage and mean width
of the 90 % split-conformal interval (λ chosen on half of each image's blocks, measured on the
other half: at equal coverage a narrower interval means a more informative std); and the seconds.

    python -m bench samplers [--model demo] [--size 128] [--samples 8]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration.calibration import block_split, measure
from napari_diffdenoise.core.imaging.metrics import psnr_fitted, reliability
from napari_diffdenoise.core.imaging.simulate import KINDS, Acquisition
from napari_diffdenoise.core.sampling.sampler_registry import get_sampler

from .common import DOCS, HELD_OUT_SEED, held_out_pair, line_plots, markdown_table, write_report
from .real import real_density

SETTINGS = [  # (label, sampler, params) at ≈ 4 / 6 / 10 / 20 evaluations per sample
    *[(f"ddim η=0, {n}", "ddim", {"steps": n, "eta": 0.0}) for n in (4, 6, 10, 20)],
    *[(f"ddim η=1, {n}", "ddim", {"steps": n, "eta": 1.0}) for n in (4, 6, 10, 20)],
    *[(f"dpm++2m, {n}", "dpm++2m", {"steps": n}) for n in (4, 6, 10, 20)],
    *[(f"dpm++2m-sde, {n}", "dpm++2m-sde", {"steps": n}) for n in (4, 6, 10, 20)],
    *[(f"heun, {2 * n - 1}", "heun", {"steps": n}) for n in (2, 3, 5, 10)],
    *[(f"heun churn 2, {2 * n - 1}", "heun", {"steps": n, "churn": 2.0}) for n in (2, 3, 5, 10)],
    ("one-step, 1", "one-step", {}),  # the default sampler of a model with a sample head (demo)
]
STD_HEAD = "std head (no samples)"  # the default std of a model with a std head (demo): one pass, no spread
PHOTONS = (3.0, 10.0, 30.0, 100.0)


def images(size: int):
    """Held-out simulated images (one per kind and light level) and crops of the real image."""
    for kind in KINDS:
        for photons in PHOTONS:
            noisy, clean = held_out_pair(kind, photons, size, 0)
            yield f"{kind} {photons:g}", noisy, clean
    density = real_density()[128 : 128 + 2 * size, 128 : 128 + 2 * size]
    for photons in (3.0, 10.0, 30.0):
        acq = Acquisition(peak_photons=photons, background_photons=2.0, read_noise=1.5, psf_sigma=0, offset=100.0)
        noisy = acq.acquire(density, np.random.default_rng(HELD_OUT_SEED + int(photons))).astype(np.float32)
        yield f"real {photons:g}", noisy, acq.expected(density).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    records = []
    for name, noisy, clean in images(args.size):
        t0 = time.perf_counter()
        head = denoise(noisy, model, n_samples=0) if model.mean_network is not None else None  # std: the head's
        seconds = time.perf_counter() - t0
        mask = block_split(noisy.shape, 0)
        if model.std_network is not None:
            r = head
            (factor,), (covered,), (width,), _, rho = measure(r.mean, r.interval_unit, clean, [0.9], mask, r.std)
            rmv, rmse = reliability(r.std, r.mean - clean)
            records.append({"image": name, "setting": STD_HEAD, "sampler": None, "evaluations": r.metadata["n_steps"],
                            "psnr_samples": psnr_fitted(r.mean, clean), "psnr_centre": psnr_fitted(r.mean, clean),
                            "spearman": rho, "coverage90": covered,
                            "width90": width / float(np.percentile(clean, 99.5) - np.percentile(clean, 0.5)),
                            "lambda90": factor, "rmv": rmv.tolist(), "rmse": rmse.tolist(), "seconds": seconds})
            print(name, STD_HEAD, {k: round(v, 3) for k, v in records[-1].items() if isinstance(v, float)}, flush=True)
        for label, sampler, params in SETTINGS:
            if not get_sampler(sampler, model.kind).fits(model):
                continue
            t0 = time.perf_counter()
            r = denoise(noisy, model, sampler=sampler, sampler_params=params, n_samples=args.samples, seed=0,
                        mean="samples")
            seconds = time.perf_counter() - t0
            centre = head.mean if head is not None else r.mean
            (factor,), (covered,), (width,), _, rho = measure(centre, r.interval_unit, clean, [0.9], mask, r.std)
            rmv, rmse = reliability(r.std, centre - clean)
            records.append({"image": name, "setting": label, "sampler": sampler, **params,
                            "evaluations": r.metadata["n_steps"], "psnr_samples": psnr_fitted(r.mean, clean),
                            "psnr_centre": psnr_fitted(centre, clean), "spearman": rho, "coverage90": covered,
                            "width90": width / float(np.percentile(clean, 99.5) - np.percentile(clean, 0.5)),
                            "lambda90": factor, "rmv": rmv.tolist(), "rmse": rmse.tolist(), "seconds": seconds})
            print(name, label, {k: round(v, 3) for k, v in records[-1].items() if isinstance(v, float)}, flush=True)

    def average(label, key, subset=None):
        sel = [r[key] for r in records if r["setting"] == label and (subset is None or r["image"].startswith(subset))]
        return float(np.mean(sel))

    measured = [label for label in (*[lab for lab, _, _ in SETTINGS], STD_HEAD)
                if any(r["setting"] == label for r in records)]
    rows = [[label, int(average(label, "evaluations")), average(label, "psnr_samples"), average(label, "spearman"),
             average(label, "spearman", "real"), average(label, "coverage90"), average(label, "width90"),
             average(label, "lambda90"), average(label, "seconds")] for label in measured]
    families = dict.fromkeys(label.rsplit(",", 1)[0] for label in measured if label != STD_HEAD)
    series, widths = {}, {}
    for family in families:
        labels = [lab for lab in measured if lab.rsplit(",", 1)[0] == family]
        x = [average(lab, "evaluations") for lab in labels]
        series[family] = (x, [average(lab, "spearman") for lab in labels])
        widths[family] = (x, [average(lab, "width90") for lab in labels])
    line_plots(DOCS / "samplers.png", [(series, "network evaluations per sample", "Spearman ρ(std, |error|)", True),
                                       (widths, "network evaluations per sample", "90 % interval width / range", True)],
               figsize=(8.4, 3.2))
    centre = "the model's mean head" if model.mean_network is not None else "the sample average"
    body = (
        f"{len(KINDS) * len(PHOTONS)} held-out simulated {args.size}² images (every kind at {', '.join(f'{p:g}' for p in PHOTONS)} "
        f"photons) and crops of {2 * args.size}² of the real nuclei image at 3, 10 and 30 photons; model `{args.model}`, "
        f"K = {args.samples}, seed 0. *PSNR*: the average of the K samples (dB, CARE fit). *ρ*: Spearman correlation of "
        f"the std map with |error| of the mean the intervals are centred on ({centre}), per image, averaged (all images, "
        "then the real crops alone). *Coverage* and *width*: the 90 % split-conformal interval, λ from half of each "
        "image's 32² blocks, measured on the other half; width as a fraction of the truth's 0.5–99.5 % range. *s*: "
        "seconds per image on this CPU. *evaluations*: network passes per sample as the run records them (the "
        "one-step sampler's include the mean head's pass it draws from). The last row is the std head "
        "(core/model/std_head.py), the std a run of this model gives by default whatever the sampler: one pass beside "
        "the mean head, no samples; its PSNR is the mean head's.\n\n"
        + markdown_table(["setting", "evaluations", "PSNR (mean of K)", "ρ all", "ρ real", "coverage 0.9", "width",
                          "λ", "s"], rows)
        + "\n\n![samplers](samplers.png)\n"
    )
    path = write_report("samplers", "Samplers at equal cost: PSNR and calibration", body, {"records": records})
    print(path.read_text())


if __name__ == "__main__":
    main()
