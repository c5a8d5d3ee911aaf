"""Unpaired denoising (Baikal): Forward-Backward, Mixing and both Repaints with the bundled
unconditional model, against the paired model and VST + BM3D on held-out simulated images; then
the trade-offs of N (how far the image is diffused) and of Repaint's U (block) and R (repeats).

    python -m bench unpaired [--size 128] [--samples 4]

Defaults are the paper's, scaled from T = 1000 to the model's T (sampler_registry).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted, ssim_fitted
from napari_diffdenoise.core.imaging.simulate import KINDS
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS

from . import baselines
from .common import DOCS, held_out_pair, line_plots, markdown_table, write_report

PHOTONS = (3.0, 10.0, 30.0)
READ_NOISE, OFFSET = 1.5, 100.0  # the held-out camera (bench.common.held_out_pair)
METHODS = ("fb", "mixing", "repaint", "repaint-baikal")
N_SWEEP = (2, 5, 10, 20, 40, 80)  # of T = 200
UR_SWEEP = ((1, 3), (2, 1), (2, 3), (2, 5), (4, 3))
SWEEP_SAMPLES = 2  # the sweeps compare settings with each other, so fewer samples do


def sweep_plot(rows, path):
    series = {f"{p:g} photons": ([r["start"] for r in rows if r["photons"] == p],
                                 [r["psnr"] for r in rows if r["photons"] == p]) for p in PHOTONS}
    line_plots(path, [(series, "Forward-Backward start step N (of T = 200)", "PSNR (dB, fitted)", True)])



def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo-unpaired")
    parser.add_argument("--paired-model", default="demo")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args(argv)
    prior, paired = load_model(args.model), load_model(args.paired_model)
    k = args.samples

    def restore(noisy, model, sampler, n_samples=k, **params):
        t0 = time.perf_counter()
        result = denoise(noisy, model, sampler=sampler, n_samples=n_samples, seed=0, sampler_params=params or None)
        return result, time.perf_counter() - t0

    records, n_rows, ur_rows = [], [], []
    for kind in KINDS:
        for photons in PHOTONS:
            noisy, clean = held_out_pair(kind, photons, args.size, 0)
            rec = {"kind": kind, "photons": photons, "noisy": psnr_fitted(noisy, clean)}
            rec["bm3d"], _ = baselines.vst_bm3d(noisy, clean, OFFSET, READ_NOISE)
            result, rec["paired_s"] = restore(noisy, paired, "ddim")
            rec["paired"] = psnr_fitted(result.mean, clean)
            for method in METHODS:
                result, rec[f"{method}_s"] = restore(noisy, prior, method)
                rec[method] = psnr_fitted(result.mean, clean)
                rec[f"{method}_ssim"] = ssim_fitted(result.mean, clean)
                rec[f"{method}_evals"] = result.metadata["n_steps"]
            records.append(rec)
            print({key: (round(v, 2) if isinstance(v, float) else v) for key, v in rec.items()}, flush=True)
            for n in N_SWEEP:  # the trade-off of N, on the same images
                result, _ = restore(noisy, prior, "fb", SWEEP_SAMPLES, start=n)
                n_rows.append({"kind": kind, "photons": photons, "start": n, "psnr": psnr_fitted(result.mean, clean)})
            if photons == 10.0:
                for block, repeats in UR_SWEEP:
                    result, seconds = restore(noisy, prior, "repaint", SWEEP_SAMPLES, block=block, repeats=repeats)
                    ur_rows.append({"kind": kind, "block": block, "repeats": repeats, "seconds": seconds,
                                    "evals": result.metadata["n_steps"],
                                    "psnr": psnr_fitted(result.mean, clean)})

    def mean_of(rows, key):
        return float(np.mean([r[key] for r in rows]))

    table = []
    for photons in PHOTONS:
        sel = [r for r in records if r["photons"] == photons]
        table.append([f"{photons:g}", mean_of(sel, "noisy"), mean_of(sel, "bm3d"), mean_of(sel, "paired"),
                      *[mean_of(sel, m) for m in METHODS]])
    table.append(["all", *[mean_of(records, key) for key in ("noisy", "bm3d", "paired", *METHODS)]])
    per_kind = [[kind, *[mean_of([r for r in records if r["kind"] == kind], key)
                         for key in ("noisy", "bm3d", "paired", *METHODS)]] for kind in KINDS]
    cost = [[m, SAMPLERS[m].description, int(records[0][f"{m}_evals"]),
             mean_of(records, f"{m}_s"), mean_of(records, f"{m}_ssim")] for m in METHODS]
    overall = {m: mean_of(records, m) for m in METHODS}
    ranking = sorted(METHODS, key=overall.get, reverse=True)
    wins = {m: sum(r[m] == max(r[x] for x in METHODS) for r in records) for m in METHODS}
    ordering_holds = overall["repaint"] > overall["fb"] > overall["mixing"] or \
        overall["repaint-baikal"] > overall["fb"] > overall["mixing"]

    n_table = [[f"{photons:g}", *[mean_of([r for r in n_rows if r["photons"] == photons and r["start"] == n], "psnr")
                                  for n in N_SWEEP]] for photons in PHOTONS]
    n_plot = [{"photons": photons, "start": n,
               "psnr": mean_of([r for r in n_rows if r["photons"] == photons and r["start"] == n], "psnr")}
              for photons in PHOTONS for n in N_SWEEP]
    sweep_plot(n_plot, DOCS / "unpaired_n.png")
    ur_table = [[u, r, int(mean_of([x for x in ur_rows if (x["block"], x["repeats"]) == (u, r)], "evals")),
                 mean_of([x for x in ur_rows if (x["block"], x["repeats"]) == (u, r)], "seconds"),
                 mean_of([x for x in ur_rows if (x["block"], x["repeats"]) == (u, r)], "psnr")]
                for u, r in UR_SWEEP]

    body = (
        f"Held-out simulated {args.size}² images, one per structure kind and light level (seeds never used in "
        f"training), background 2 photons, read noise {READ_NOISE} e⁻, Gaussian PSF σ = 1.2 px. Unpaired model "
        f"`{args.model}` (unconditional, trained on clean simulated images only); paired model `{args.paired_model}` "
        f"(DDIM 10 steps). Every diffusion method averages K = {k} samples. PSNR in dB after the CARE "
        "scale-and-offset fit; VST + BM3D is oracle-tuned (see quality.md).\n\n"
        "## PSNR by light level (mean over the four kinds)\n\n"
        + markdown_table(["photons", "noisy", "VST+BM3D", "paired (ddim)", *METHODS], table)
        + "\n\n## PSNR by structure kind (mean over the light levels)\n\n"
        + markdown_table(["kind", "noisy", "VST+BM3D", "paired (ddim)", *METHODS], per_kind)
        + "\n\n## Cost at the paper's defaults\n\n"
        + markdown_table(["sampler", "what", "network evaluations per sample", f"seconds per {args.size}² image (K = {k})",
                          "SSIM (fitted)"], cost)
        + f"\n\n**Ordering.** Mean PSNR ranks {' > '.join(f'{m} ({overall[m]:.2f})' for m in ranking)}; best on "
        + ", ".join(f"{m} {wins[m]}" for m in METHODS) + f" of {len(records)} images. The paper's ordering "
        f"(Repaint > Forward-Backward > Mixing) {'holds' if ordering_holds else 'does not hold'} here.\n\n"
        f"## Trade-off of N (Forward-Backward, K = {SWEEP_SAMPLES})\n\nSmall N keeps the noise; large N forgets "
        "the image and invents structure from the prior.\n\n"
        + markdown_table(["photons", *[f"N = {n}" for n in N_SWEEP]], n_table)
        + "\n\n![PSNR against N](unpaired_n.png)\n\n"
        f"## Trade-off of U and R (true RePaint, 10 photons, mean over the kinds, K = {SWEEP_SAMPLES})\n\n"
        + markdown_table(["block U", "repeats R", "network evaluations", "seconds", "PSNR"], ur_table)
        + "\n"
    )
    path = write_report("unpaired", "Unpaired (Baikal) samplers on held-out simulated images", body,
                        {"records": records, "n_sweep": n_rows, "ur_sweep": ur_rows})
    print(path.read_text())


if __name__ == "__main__":
    main()
