"""Which estimate of E[clean | noisy] should fill the [mean] layer? The candidates of the
posterior-mean issue side by side, on held-out simulated images and the real nuclei image:

- the model's mean head (a one-step MSE network carried in the checkpoint: for the bundled demo,
  the CARE network of bench/care.py, since fine-tuned on the simulator mixed with real images);
- the average of K = 8 samples (DDPM-avg, the seed paper's estimate; DDIM 10 steps, η = 0, the
  previous default), and of K = 16;
- x̂₀ at the noisiest level on the starting noise, averaged over the 8 noises (what the sampler's
  first step already computes: free, but that level gets 1/T of the training);
- the head and the sample average averaged;
- optionally (``--shared PATH``) the one-pass x̂₀ at y = 0 of a diffusion network fine-tuned with
  TrainConfig.mean_fraction (shared weights, no second network);
- VST+BM3D* (oracle-tuned) and the CARE baseline as references.

    python -m bench mean [--size 256] [--shared bench/runs/demo-mean/model.safetensors]
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.imaging.simulate import KINDS, Acquisition
from napari_diffdenoise.core.model.tiled_network import TiledEpsilon

from . import baselines
from .common import HELD_OUT_SEED, held_out_pair, markdown_table, write_report
from .quality import OFFSET, PHOTONS, READ_NOISE
from .real import real_density


def first_step_x0(model, noisy, k: int = 8, seed: int = 0) -> np.ndarray:
    """x̂₀(y_T, γ_{T−1}) of the diffusion network on K starting noises, averaged, in input units."""
    imap = IntensityMap.from_percentiles(noisy, model.percentiles)
    cond = torch.from_numpy(imap.to_model(noisy))[None, None]
    eps_fn = TiledEpsilon(model, cond, noisy.shape, model.tile, model.tile // 4, 128 * 128 * 4)
    gamma = float(model.schedule.alphas_cumprod[-1])
    y = torch.randn((k, 1) + noisy.shape, generator=torch.Generator().manual_seed(seed))
    x0 = ((y - math.sqrt(1 - gamma) * eps_fn(y, gamma)) / math.sqrt(gamma)).clamp(*model.value_range)
    return imap.to_input(x0.mean(0)[0].numpy())


def cases(size: int):
    for kind in KINDS:
        for photons in PHOTONS:
            noisy, clean = held_out_pair(kind, photons, size, 0)
            yield "simulated", kind, photons, noisy, clean
    density = real_density()
    for photons in (3.0, 10.0, 30.0):
        acq = Acquisition(peak_photons=photons, background_photons=2.0, read_noise=READ_NOISE, psf_sigma=0,
                          offset=OFFSET)
        noisy = acq.acquire(density, np.random.default_rng(HELD_OUT_SEED + int(photons))).astype(np.float32)
        yield "real", "DSB nuclei", photons, noisy, acq.expected(density).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shared", help="a checkpoint fine-tuned with mean_fraction (its one-pass x̂₀ at y = 0)")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    shared = load_model(args.shared) if args.shared else None
    records = []
    for source, kind, photons, noisy, clean in cases(args.size):
        run = denoise(noisy, model, n_samples=16, steps=10, eta=0.0, keep_samples=True, seed=0)
        average8, average16 = run.samples[:8].mean(0), run.samples.mean(0)
        rec = {"source": source, "kind": kind, "photons": photons, "noisy": psnr_fitted(noisy, clean),
               "bm3d": baselines.vst_bm3d(noisy, clean, OFFSET, READ_NOISE)[0],
               "care": baselines.care_unet(noisy, clean)[0], "mean of 8": psnr_fitted(average8, clean),
               "mean of 16": psnr_fitted(average16, clean),
               "first-step x0": psnr_fitted(first_step_x0(model, noisy), clean)}
        if model.mean_network is not None:
            rec["head"] = psnr_fitted(run.mean, clean)
            rec["(head + mean of 8)/2"] = psnr_fitted((run.mean + average8) / 2, clean)
        if shared is not None:
            rec["shared x0"] = psnr_fitted(denoise(noisy, shared, n_samples=0, mean="x0").mean, clean)
        records.append(rec)
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in records[-1].items()}, flush=True)
    methods = [k for k in records[0] if k not in ("source", "kind", "photons")]

    def table(source):
        sel = [r for r in records if r["source"] == source]
        rows = [[r["kind"], f"{r['photons']:g}", *[r[m] for m in methods]] for r in sel]
        rows.append(["average", "", *[float(np.mean([r[m] for r in sel])) for m in methods]])
        return markdown_table(["image", "photons", *methods], rows)

    best = {s: max((m for m in methods if m not in ("noisy", "bm3d", "care")),
                   key=lambda m: np.mean([r[m] for r in records if r["source"] == s])) for s in ("simulated", "real")}
    real = [r for r in records if r["source"] == "real"]
    default = "head" if model.mean_network is not None else "mean of 8"
    body = (
        f"Model `{args.model}`. PSNR in dB after the CARE scale-and-offset fit. Simulated: one held-out {args.size}² image "
        f"per kind and light level (as in the quality benchmark). Real: the DSB nuclei image (512²) re-acquired at 3, 10 "
        "and 30 photons (as in the real-image benchmark). * oracle-tuned against the truth.\n\n"
        "## Simulated\n\n" + table("simulated") + "\n\n## Real image\n\n" + table("real")
        + f"\n\nBest candidate: simulated **{best['simulated']}**, real **{best['real']}**. The default `{default}` minus "
        "VST+BM3D* on the real image: " + ", ".join(f"{r['photons']:g} ph {r[default] - r['bm3d']:+.2f} dB" for r in real)
        + "; minus the CARE baseline (all images): "
        + f"{np.mean([r[default] - r['care'] for r in records]):+.2f} dB.\n"
    )
    path = write_report("mean", "Estimators of the posterior mean", body, {"records": records})
    print(path.read_text())


if __name__ == "__main__":
    main()
