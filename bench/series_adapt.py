"""Intervals after adapting to a real time series: the series recalibrated on its frames too (what
``adapt`` does with a stack of repeated views: core.training.adapt.iter_recalibrate) against
recorrupted pairs alone (what it did before, and still does for single images).

    python -m bench series_adapt [--data DIR] [--model demo] [--size 256] [--minutes 1 | --steps N]
                                 [--recorrupted-pairs]

Per frame case of bench/real_calibration.py (three lysosome files, raw counts with camera noise
correlated between pixels; three fields of the 8-bit time-lapse): ``adapt(model, frames 0–24,
recalibrate=False)``, then the adapted model calibrated both ways on the same frames, and frame t
(never seen) restored with its default one pass and scored as there: coverage of the truth (the mean
of frames t ± 1, its own noise accounted for), the width against the oracle λ's. The adaptation's
budget is wall clock on this shared CPU (``--minutes``), so which head it keeps can change between runs; with
``--steps`` it is a step count, and a rerun on the same machine and torch keeps the same heads. Beside them, whether
adapting refined the [mean] (core.training.adapt_criteria.refinement_judge) and the adapted [mean]'s PSNR against
the registered truth, less the bundled model's and less oracle VST + BM3D's (its strength chosen against that
truth, as bench/real_frames.py does).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration.calibration_run import run_settings
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.run.conformal import find_calibration
from napari_diffdenoise.core.run.cpu_share import same_bits
from napari_diffdenoise.core.run.driving import drive
from napari_diffdenoise.core.training.adapt import iter_adapt, iter_recalibrate

from .common import markdown_table, write_report
from .real_calibration import (
    DEFAULT_DATA,
    LEVELS,
    LYSOSOME,
    LYSOSOME_SETS,
    STATIC_WINDOW,
    TIMELAPSE,
    coverage,
    held_out_report,
    lysosome_cases,
    lysosome_files,
    oracle_factor,
    timelapse_cases,
)
from .real_frames import oracle_bm3d_psnr

# (column name, iter_recalibrate's time_series): None lets adapt's own test find the series
ROUTES = {"series (frames too, the wider)": None, "recorrupted pairs alone": False}


def within(covered: list[float]) -> bool:
    return all(abs(c - level) <= 0.05 for c, level in zip(covered, LEVELS))


def _gains(records) -> str:
    gains = np.array([r["psnr_gain_registered"] for r in records])
    still = np.array([r["psnr_gain_still"] for r in records])
    refined = sum(r["mean_refinement"] != "none" for r in records)
    over = np.array([r["psnr_over_oracle_bm3d"] for r in records])
    return (f"{gains.mean():+.2f} dB on average ({gains.min():+.2f} … {gains.max():+.2f}), below it on "
            f"{int((gains < 0).sum())} of {len(gains)} (on the pixels that held still, against frames t − 5 … t + 2 "
            f"without t: {still.mean():+.2f} dB, {still.min():+.2f} … {still.max():+.2f}); the [mean] refined on {refined}; against oracle VST + BM3D "
            f"{over.mean():+.2f} dB on average ({over.min():+.2f} … {over.max():+.2f}), at or above it on "
            f"{int((over >= 0).sum())} of {len(over)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--lysosomes", choices=LYSOSOME_SETS, default="tuning",
                        help="which lysosome series (bench/real_calibration.py): 'held-out' runs only the seven no "
                             "choice was made on, to the page series_adapt_held_out")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=1.0, help="adapt's budget per series, in wall clock")
    budget.add_argument("--steps", type=int, default=None,
                        help="adapt's budget per series in steps instead (a rerun then keeps the same heads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recorrupted-pairs", action="store_true",
                        help="adapt with frame_pairs=False (recorrupted pairs of each frame, the default before the "
                             "series trained on its own frames), to the pages series_adapt_recorrupted*")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder holding the real data (see bench/real_calibration.py)")
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    held_out = args.lysosomes == "held-out"
    cases = [*lysosome_cases(args.data / LYSOSOME, args.size, lysosome_files(args.data / LYSOSOME, args.lysosomes)),
             *([] if held_out else timelapse_cases(args.data / TIMELAPSE, args.size))]
    rows, records = [], []
    for label, frame, truth, tau2, frames, _static, registered in cases:
        frames = np.asarray(frames, dtype=np.float32)
        t0 = time.perf_counter()
        with same_bits() if args.steps else contextlib.nullcontext():  # as adapt() runs it
            outcome = drive(iter_adapt(model, frames, minutes=None if args.steps else args.minutes, steps=args.steps,
                                       seed=0, frame_pairs=not args.recorrupted_pairs))[0]
        adapt_seconds = time.perf_counter() - t0
        adapted = outcome.model
        # the head adapt trained, kept or not, run as the bundled model runs: what the judge had to tell
        trained = dataclasses.replace(outcome.rejected or adapted, mean_refinement=model.mean_refinement)
        result = denoise(frame, adapted, n_samples=0)
        err = np.abs(truth - result.mean).astype(np.float64)
        unit = result.interval_unit.astype(np.float64)
        # frame t's own scene where the sample moved too (bench/frame_truth.py), on the pixels where it holds
        where = registered.consistent
        reg_err, reg_unit, reg_tau2 = np.abs(registered.truth - result.mean)[where], unit[where], registered.tau2[where]
        bundled_mean = denoise(frame, model, n_samples=0).mean
        adapted_psnr = float(psnr_fitted(result.mean[where], registered.truth[where]))
        bundled_psnr = float(psnr_fitted(bundled_mean[where], registered.truth[where]))
        gain = adapted_psnr - bundled_psnr
        trained_gain = float(psnr_fitted(denoise(frame, trained, n_samples=0).mean[where], registered.truth[where])
                             - bundled_psnr)
        over_bm3d = adapted_psnr - oracle_bm3d_psnr(frame, registered)
        # a truth with no registration in it, which adapt's series pairs and judge both use: the pixels that held
        # still over frames t − 5 … t + 2, against those frames' mean without frame t (its noise is the input's)
        average, still, _tau2 = _static
        others = (len(range(-STATIC_WINDOW[0], STATIC_WINDOW[1] + 1)) * average - frame) / (sum(STATIC_WINDOW))
        still_gain = float(psnr_fitted(result.mean[still], others[still]) - psnr_fitted(bundled_mean[still], others[still]))
        record = {"case": label, "kept": adapted.provenance["adapted"]["kept"], "adapt_s": adapt_seconds,
                  "adapt_steps": adapted.provenance["adapted"]["steps"], "routes": {},
                  "mean_refinement": adapted.mean_refinement, "psnr_gain_registered": gain,
                  "psnr_over_oracle_bm3d": over_bm3d, "psnr_gain_still": still_gain,
                  "trained_head_gain_registered": trained_gain,
                  "training_pairs": adapted.provenance["adapted"]["decision"].get("training_pairs"),
                  "judge": {c: f for c, f in adapted.provenance["adapted"]["decision"].get("criteria", {}).items()}}
        # each criterion's difference in standard errors (adapt keeps the head below −KEEP_MARGIN_SE on all)
        z = " / ".join(f"{f['difference'] / f['standard_error']:+.1f}" if f["standard_error"] > 0 else "0"
                       for f in record["judge"].values())
        row = [label, record["adapt_steps"], record["training_pairs"], trained_gain, record["kept"], z,
               record["mean_refinement"], gain, still_gain, over_bm3d]
        for name, time_series in ROUTES.items():
            t0 = time.perf_counter()
            calibrated = drive(iter_recalibrate(adapted, frames, 0, time_series))[0]
            seconds = time.perf_counter() - t0
            calibration = find_calibration(calibrated, run_settings(result.metadata))
            covered = [coverage(err, unit, tau2, calibration.factor(c), c) for c in LEVELS]
            ratio = calibration.factor(0.9) / oracle_factor(err, unit, tau2, 0.9)
            reg_covered = [coverage(reg_err, reg_unit, reg_tau2, calibration.factor(c), c) for c in LEVELS]
            record["routes"][name] = {"coverage": covered, "width_over_oracle_0.9": ratio, "seconds": seconds,
                                      "registered_coverage": reg_covered}
            row += [" / ".join(f"{c:.2f}" for c in covered), " / ".join(f"{c:.2f}" for c in reg_covered), ratio, seconds]
        records.append(record)
        rows.append(row)
        print(label, {n: [round(c, 3) for c in r["coverage"]] for n, r in record["routes"].items()}, flush=True)

    header = ["case", "steps", "trained on", "trained head − bundled's (dB, registered truth)", "head kept",
              "judge (series / still, standard errors)",
              "[mean] refinement", "PSNR − bundled's (dB, registered truth)",
              "on still pixels", "− oracle BM3D's"]
    for name in ROUTES:
        header += [f"{name}: coverage @{' / '.join(f'{c:g}' for c in LEVELS)}", "against the registered truth",
                   "width / oracle @0.9", "s"]
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min of wall clock"
    counts = ", ".join(f"{name}: **{sum(within(r['routes'][name]['coverage']) for r in records)} of {len(records)}**"
                       f" ({sum(within(r['routes'][name]['registered_coverage']) for r in records)} against the registered "
                       "truth)" for name in ROUTES)
    body = ("**The lysosome series held out of every choice the other pages informed** (`--lysosomes held-out`; "
            "no time-lapse here).\n\n" if held_out else "") + (f"Model `{args.model}` (sha256 {model.sha256[:12]}), adapted for {budget} on "
            f"frames 0–24 of each series ({args.threads} torch thread), centre crops of {args.size}² (\"trained on\": "
            "'series' where adapt fine-tunes the head on the series' own frames against their neighbours registered "
            "onto them, 'recorrupted' on recorrupted pairs, core.training.adapt). Frame t (30 for "
            "the lysosomes, 27 for the time-lapse fields) restored by the adapted model's default one pass (mean head, "
            "std head); truth and coverage as in bench/real_calibration.py (the mean of frames t ± 1; and frames t ± 1, t ± 2 "
            "registered onto frame t where they agree, bench/frame_truth.py). 'Trained head': the head adapt trained, "
            "whether it kept it or not, run as the bundled model runs — what adapt's judge had to tell from the "
            "bundled head. Cases within ±0.05 of nominal at all three "
            f"levels: {counts}. The adapted [mean] against the bundled model's: {_gains(records)}.\n\n"
            + markdown_table(header, rows) + "\n")
    options = f" --steps {args.steps}" if args.steps else (f" --minutes {args.minutes:g}" if args.minutes != 1 else "")
    options += " --recorrupted-pairs" if args.recorrupted_pairs else ""
    name = "series_adapt_recorrupted" if args.recorrupted_pairs else "series_adapt"
    report, command = ((held_out_report(name)[0], held_out_report("series_adapt", options)[1]) if held_out
                       else (name, f"python -m bench series_adapt{options}" if options else None))
    write_report(report, "Intervals after adapting to a real time series", body, {"records": records}, command)


if __name__ == "__main__":
    main()
