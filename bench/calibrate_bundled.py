"""Calibrate a bundled model's intervals on held-out simulated pairs (and, with ``--real``, pairs of
real structure) and store the calibration in the package's checkpoint (the bundled models ship
calibrated; docs/method.md, "Intervals").

    python -m bench.calibrate_bundled [--model demo] [--size 256] [--real DATA] [--redo --mean-refinement RULE]
    python -m bench.calibrate_bundled --model demo-unpaired      # its default sampler (fb)
    python -m bench.calibrate_bundled --model widefield          # ddim-dc with the PSF, vs the sharp truth

The calibration pairs are simulated with seeds that neither training nor any benchmark uses (image
index 7 of bench.common.held_out_pair and bench.physics.held_out_blurred; the benchmarks use 0 and
1), every kind at 3, 10, 30 and 100 photons (10, 30, 100 for widefield). One calibration is stored
per sampler setting (for demo: its std head's first, then the samples' spread at the default and
at the fast preset); settings the model is already calibrated for are kept unless --redo.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_diffdenoise.core.calibration.calibration import COVERAGE_GRID, calibrate
from napari_diffdenoise.core.imaging.simulate import KINDS
from napari_diffdenoise.core.io.checkpoint import (BUNDLED_CALIBRATION_SOURCE, bundled_model_dir, load_model,
                                                   save_checkpoint)
from napari_diffdenoise.core.model.model import MEAN_REFINEMENTS
from napari_diffdenoise.core.run.conformal import Calibration
from napari_diffdenoise.core.run.restore import DEFAULT_SAMPLER_SETTINGS, FAST_SAMPLER_SETTINGS, make_settings
from napari_diffdenoise.core.run.run_record import calibration_key, settings_record

from .common import HELD_OUT_SEED, held_out_pair

CALIBRATION_INDEX = 7
REAL_SEED = HELD_OUT_SEED + 7_000  # bench/real_calibration.py's cases take HELD_OUT_SEED + 100·i + photons, i < 5
PHOTONS = (3.0, 10.0, 30.0, 100.0)
SETTINGS = [DEFAULT_SAMPLER_SETTINGS, FAST_SAMPLER_SETTINGS]  # the default first, then the fast preset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--real", type=Path, metavar="DATA",
                        help="also calibrate on real structure: crops of the real training images (bench/real_pairs.py)")
    parser.add_argument("--redo", action="store_true",
                        help="calibrate every setting again (default: keep the calibrations the model already has)")
    parser.add_argument("--mean-refinement", choices=MEAN_REFINEMENTS,
                        help="ship the model with this refinement of its [mean] (DiffusionModel.mean_refinement): its "
                             "calibrations are keyed by it, so give --redo too")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    if args.mean_refinement is not None:
        if not args.redo and args.mean_refinement != model.mean_refinement:
            parser.error("--mean-refinement changes the settings every calibration is keyed by: give --redo too")
        model.mean_refinement = args.mean_refinement
    settings_list = SETTINGS
    if model.std_network is not None:  # the std head's own first (what runs take by default), then the samples'
        settings_list = [{"n_samples": 0, "std": "head"}] + [{**s, "std": "samples"} for s in SETTINGS]
    if model.task == "deconvolve":
        from napari_diffdenoise.core.imaging.physics import gaussian_psf

        from .physics import PSF_SIGMA, held_out_blurred

        photons = (10.0, 30.0, 100.0)
        pairs = [held_out_blurred(kind, p, args.size, CALIBRATION_INDEX)[:2] for kind in KINDS for p in photons]
        settings_list = [{"sampler": "ddim-dc", "psf": gaussian_psf(PSF_SIGMA),
                          "sampler_params": DEFAULT_SAMPLER_SETTINGS["sampler_params"], "n_samples": 8}]
        what = f"blurred (Gaussian PSF σ {PSF_SIGMA} px) at {', '.join(f'{p:g}' for p in photons)} photons, sharp truth"
    else:
        pairs = [held_out_pair(kind, photons, args.size, CALIBRATION_INDEX) for kind in KINDS for photons in PHOTONS]
        what = f"at {', '.join(f'{p:g}' for p in PHOTONS)} photons"
        if args.real:
            real = real_structure_pairs(args.real, args.size)
            pairs += [pair for _, pair in real]
            what += (f"; and {len(real)} of real structure, one {args.size}² centre crop of each training image of "
                     f"bench/real_pairs.py ({', '.join(sorted({name for name, _ in real}))}) smoothed by 1 px and "
                     "re-acquired at the same photon counts")
        if model.kind == "unpaired":
            settings_list = [{"sampler": model.default_sampler, "n_samples": 8}]
    noisy = np.stack([n for n, _ in pairs]).astype(np.float32)
    clean = np.stack([c for _, c in pairs]).astype(np.float32)
    if args.redo:
        model.calibrations = []
    source = (f"{'simulated and real structure' if args.real else 'simulated'}: {len(pairs)} held-out {args.size}² "
              f"images (nuclei, filaments, membranes, puncta {what}; {BUNDLED_CALIBRATION_SOURCE})")
    for settings in reversed(settings_list):  # calibrate() puts the newest first: the default ends first
        # every calibration it holds, the ones made in this loop too (a run's lookup, find_calibration, takes a
        # model holding calibrations not marked shipped at those alone)
        key = calibration_key(settings_record(make_settings(model, **settings)))
        if any(Calibration.from_dict(c).matches(key) for c in model.calibrations):
            print("already calibrated:", settings, flush=True)
            continue
        model = calibrate(model, noisy, clean, COVERAGE_GRID, source=source, fit_truth=False, seed=0, **settings)
        c = model.calibrations[0]
        print(c["settings"], "λ", [round(f, 3) for f in c["factors"]], "held-out", [round(h, 3) for h in c["held_out_coverage"]],
              "ρ", round(c["spearman"], 3), flush=True)
    path = bundled_model_dir() / f"{args.model}.safetensors"
    sha = save_checkpoint(model, path, half=True)
    print(f"stored {len(model.calibrations)} calibrations in {path} ({sha[:12]})")


def real_structure_pairs(data: Path, size: int) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """(image name, (noisy, truth)) for the first plane the noise check keeps of every training image of
    bench/real_pairs.py, its centre size² crop (a smaller plane mirrored out to size², as the
    calibration stacks its images), at each of PHOTONS."""
    from .real_calibration import _centre, reacquired
    from .real_pairs import CANDIDATES, check

    kept = {}
    for plane in check(data):
        if plane.kept and plane.name not in kept:
            kept[plane.name] = plane.index
    out = []
    for i, (name, index) in enumerate(kept.items()):
        planes = np.asarray(CANDIDATES[name](data))
        crop = _centre((planes[None] if planes.ndim == 2 else planes)[index], size)
        crop = np.pad(crop, [(0, size - n) for n in crop.shape], mode="reflect")
        for photons in PHOTONS:
            noisy, truth, _ = reacquired(crop, photons, REAL_SEED + 100 * i + int(photons))
            out.append((name, (noisy, truth)))
    return out


if __name__ == "__main__":
    main()
