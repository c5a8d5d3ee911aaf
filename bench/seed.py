"""The seed procedure (ancestral DDPM over all T steps, K = 15, the samples' average as the mean) against
the package's default run (``denoise(noisy, model)`` with nothing else: for `demo` the one-step sampler and
the mean and std heads) and against DDIM at 10 steps, K = 8 (the default until the heads), side by side in
one run on the same held-out images: PSNR, seconds, the network calls each run made.

    python -m bench seed [--size 96]

Crops of 96² keep the seed procedure to a few minutes an image here; the per-pixel cost ratio is
the same at 512² (one tile either way; speed.md times whole 512² planes).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted, ssim_fitted
from napari_diffdenoise.core.imaging.simulate import KINDS

from .common import held_out_pair, markdown_table, write_report

PHOTONS = (3.0, 10.0, 30.0)
# the mean is named where it is the samples' average: left to the model, every sampler's mean is the mean head's
SETTINGS = {
    "seed procedure: ancestral, all T steps, K = 15, mean of the samples": {"sampler": "ddpm", "n_samples": 15,
                                                                                  "mean": "samples"},
    "the default run (denoise with no settings)": {},
    "DDIM 10 steps, K = 8, mean of the samples": {"sampler": "ddim", "n_samples": 8, "steps": 10, "mean": "samples"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    records = []
    for photons in PHOTONS:
        for kind in KINDS:
            noisy, clean = held_out_pair(kind, photons, args.size, 2)
            for label, kw in SETTINGS.items():
                t0 = time.perf_counter()
                result = denoise(noisy, model, seed=0, **kw)
                seconds = time.perf_counter() - t0
                records.append({"kind": kind, "photons": photons, "setting": label, "seconds": seconds,
                                "network_passes": result.metadata["network_evaluations"],
                                "psnr": psnr_fitted(result.mean, clean), "ssim": ssim_fitted(result.mean, clean)})
            print(f"{kind} {photons:g}: " + ", ".join(f"{r['psnr']:.2f}" for r in records[-len(SETTINGS):]), flush=True)

    def mean(sel, key):
        return float(np.mean([r[key] for r in sel]))

    seed_label, *others = list(SETTINGS)
    rows = []
    for label in SETTINGS:
        sel = [r for r in records if r["setting"] == label]
        rows.append([label, mean(sel, "psnr"), mean(sel, "ssim"), int(sel[0]["network_passes"]),
                     mean(sel, "seconds")])
    by_light = [[label, *[mean([r for r in records if r["setting"] == label and r["photons"] == p], "psnr")
                          for p in PHOTONS]] for label in SETTINGS]
    seed_rows = [r for r in records if r["setting"] == seed_label]

    def against_seed(label):
        rows = [r for r in records if r["setting"] == label]
        diffs = [r["psnr"] - s["psnr"] for r, s in zip(rows, seed_rows)]
        return (f"{label[0].upper()}{label[1:]} − seed procedure: **{np.mean(diffs):+.2f} dB** on average (per image {min(diffs):+.2f} to "
                f"{max(diffs):+.2f}), with {seed_rows[0]['network_passes'] / rows[0]['network_passes']:.0f}× fewer "
                f"network passes and {mean(seed_rows, 'seconds') / mean(rows, 'seconds'):.0f}× less time, measured "
                "side by side.")

    body = (
        f"Held-out simulated {args.size}² images (index 2: seeds used by no other table), one per kind and light "
        f"level, model `{args.model}`. PSNR/SSIM after the CARE fit. Network passes: the run's batched network calls "
        "over the crop (its `network_evaluations`: a step's K samples go in batches of at most the run's pixel "
        "budget, the default's heads once per symmetry, 4).\n\n"
        + markdown_table(["setting", "PSNR", "SSIM", "network passes", f"seconds per {args.size}²"], rows)
        + "\n\n## PSNR by light level\n\n"
        + markdown_table(["setting", *[f"{p:g} photons" for p in PHOTONS]], by_light)
        + "\n\n" + "\n\n".join(against_seed(label) for label in others) + "\n"
    )
    path = write_report("seed", "The seed procedure against the default run", body, {"records": records})
    print(path.read_text())


if __name__ == "__main__":
    main()
