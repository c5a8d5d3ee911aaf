"""Adapting to the user's data from noisy images alone (core.adapt) against the bundled model,
Noise2Void with the same CPU budget (bench/n2v.py) and VST+BM3D*, on the real nuclei image at 3, 10
and 30 photons and on rings, a structure the bundled model never saw; with the calibration of the
intervals before and after.

    python -m bench adapt --images real-3,real-10 --part a      # the runs (minutes each)
    python -m bench adapt --images real-30,rings-10 --part b    # beside it, on the other core
    python -m bench adapt --report                              # the table from all parts

Adaptation runs for the longest budget once, keeping the best head by validation loss at each
shorter budget (the learning rate is constant, so that is what a shorter run gives). Budgets are
wall-clock minutes on this machine with one torch thread per run.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.adapt import iter_adapt, iter_recalibrate
from napari_diffdenoise.core.calibration import Calibration
from napari_diffdenoise.core.driving import drive
from napari_diffdenoise.core.metrics import calibration as error_bins
from napari_diffdenoise.core.metrics import psnr_fitted
from napari_diffdenoise.core.simulate import Acquisition

from . import baselines, n2v
from .common import HELD_OUT_SEED, RESULTS, held_out_pair, markdown_table, write_report
from .real import real_density

BUDGETS = (2.0, 5.0, 10.0)
N2V_MINUTES = 5.0
OFFSET, READ_NOISE = 100.0, 1.5


def image(name: str):
    kind, photons = name.rsplit("-", 1)
    photons = float(photons)
    if kind == "real":
        acq = Acquisition(peak_photons=photons, background_photons=2.0, read_noise=READ_NOISE, psf_sigma=0,
                          offset=OFFSET)
        density = real_density()
        noisy = acq.acquire(density, np.random.default_rng(HELD_OUT_SEED + int(photons))).astype(np.float32)
        return noisy, acq.expected(density).astype(np.float32)
    noisy, clean = held_out_pair(kind, photons, 256, 0)
    return noisy.astype(np.float32), clean.astype(np.float32)


def interval_check(model, noisy, clean, calibration: dict | None) -> dict:
    """ρ(std, |error|) and, with a calibration, the fraction of pixels inside its 90 % interval."""
    r = denoise(noisy, model, seed=1)
    out = {"rho": error_bins(r.std, r.mean - clean)[2]}
    if calibration is not None:
        lam = Calibration.from_dict(calibration).factor(0.9)
        out["inside90"] = float(np.mean(np.abs(clean - r.mean) <= lam * r.interval_unit))
    return out


def run(names: list[str], part: str, budgets=BUDGETS) -> None:
    torch.set_num_threads(1)
    base = load_model("demo")
    records = []
    for name in names:
        noisy, clean = image(name)
        rec = {"image": name, "noisy": psnr_fitted(noisy, clean),
               "bm3d": baselines.vst_bm3d(noisy, clean, OFFSET, READ_NOISE)[0],
               "bundled": psnr_fitted(denoise(noisy, base, n_samples=0).mean, clean)}
        rec.update({f"bundled_{k}": v for k, v in interval_check(base, noisy, clean, base.calibrations[0]).items()})
        result, _ = drive(iter_adapt(base, noisy, minutes=max(budgets), seed=0,
                                     snapshots=tuple(60 * b for b in budgets[:-1])))
        rec["noise_model"] = [result.noise.gain, result.noise.floor]
        heads = {**{b: result.snapshots[60 * b] for b in budgets[:-1]}, budgets[-1]: (result.best_step, None)}
        for minutes, (step, state) in heads.items():
            model = copy.deepcopy(result.model)
            if state is not None:
                model.mean_network.load_state_dict(state)
            rec[f"adapted_{minutes:g}"] = psnr_fitted(denoise(noisy, model, n_samples=0).mean, clean)
            rec[f"step_{minutes:g}"] = step
        t0 = time.perf_counter()
        recalibrated = drive(iter_recalibrate(result.model, noisy, result.noise))[0]
        rec["recalibration_seconds"] = time.perf_counter() - t0
        rec.update({f"adapted_{k}": v for k, v in interval_check(recalibrated, noisy, clean,
                                                                 recalibrated.calibrations[0]).items()})
        net, steps = n2v.train_n2v(noisy, N2V_MINUTES)
        rec["n2v"], rec["n2v_steps"] = psnr_fitted(n2v.restore_n2v(net, noisy), clean), steps
        records.append(rec)
        print(json.dumps(rec), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"adapt-{part}.json").write_text(json.dumps(records, indent=1))


def report() -> None:
    records = [r for path in sorted(RESULTS.glob("adapt-*.json")) for r in json.loads(path.read_text())]
    budgets = sorted({float(k.split("_")[1]) for r in records for k in r if k.startswith("adapted_") and
                      k.split("_")[1].replace(".", "").isdigit()})
    rows = [[r["image"], r["noisy"], r["bm3d"], r["bundled"], *[r[f"adapted_{b:g}"] for b in budgets], r["n2v"],
             r[f"adapted_{5:g}"] - r["bundled"] if 5.0 in budgets else float("nan"),
             r[f"adapted_{5:g}"] - r["n2v"] if 5.0 in budgets else float("nan")] for r in records]
    calib = [[r["image"], r["bundled_rho"], r["adapted_rho"], r["bundled_inside90"], r["adapted_inside90"],
              f"{r['noise_model'][0]:.3g}·level {r['noise_model'][1]:+.3g}"] for r in records]
    body = (
        "PSNR (dB, CARE fit) of the [mean] layer. *bundled*: the `demo` model's mean head as shipped. *adapted*: "
        "after adapting on the noisy image itself for the given wall-clock minutes (core.adapt: noise model fitted "
        "from the image, mean head fine-tuned by Recorrupted-to-Recorrupted, best validation step kept). *N2V*: "
        f"Noise2Void trained from scratch on the same image for {N2V_MINUTES:g} minutes (bench/n2v.py). VST+BM3D* "
        "is oracle-tuned with the true camera. Real: the DSB nuclei image (512²) re-acquired with offset 100 and "
        "read noise 1.5; rings: a held-out 256² image of a structure the bundled model never saw. Runs used one "
        "torch thread each, two side by side on this 2-core machine.\n\n"
        + markdown_table(["image", "noisy", "VST+BM3D*", "bundled", *[f"adapted {b:g} min" for b in budgets],
                          f"N2V {N2V_MINUTES:g} min", "adapted 5 − bundled", "adapted 5 − N2V"], rows)
        + "\n\n## Calibration before and after\n\nSpearman ρ(std, |error of the mean|) and the fraction of pixels "
        "inside the 90 % interval: bundled with its shipped calibration (simulated data), adapted with the one "
        "made on pairs simulated from its own mean and the fitted noise model. Last column: the fitted noise "
        "model, var = gain·level + floor (true: 1·level − 97.75 for the real image).\n\n"
        + markdown_table(["image", "ρ bundled", "ρ adapted", "inside 90 % bundled", "inside 90 % adapted",
                          "fitted noise"], calib) + "\n"
    )
    path = write_report("adapt", "Adapting from noisy images alone", body, {"records": records})
    print(path.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="real-3,real-10,real-30,rings-10")
    parser.add_argument("--part", default="all")
    parser.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    if args.report:
        report()
    else:
        run(args.images.split(","), args.part, tuple(float(b) for b in args.budgets.split(",")))


if __name__ == "__main__":
    main()
