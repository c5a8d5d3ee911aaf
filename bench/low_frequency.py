"""The mean's smooth part held to the data's (core/run/low_frequency.py) against the network's as it is,
on the real cases of bench/real_calibration.py.

    python -m bench low_frequency [--data DIR] [--model demo] [--size 256]

Both runs are the default one pass (mean head, std head), differing only in ``low_frequencies``. The
re-acquired images (the camera the model was trained for, exact truth) say whether the step moves
anything where the model fits; the lysosome series (raw camera counts) and the 8-bit time-lapse (real
cameras it was not trained for) are scored where the field held still over frames t − 5 … t + 2,
against their mean (bench/real_calibration.py, static_truth): there the truth is what the camera
records on average, with an eighth of one frame's noise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.run import low_frequency

from .common import markdown_table, write_report
from .real_calibration import DEFAULT_DATA
from .std_head import real_cases, unfitted_gain_db


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rows, records = [], []
    for label, noisy, truth, _camera, static, _tau2, _registered in real_cases(args.data, args.size):
        kept = denoise(noisy, model, n_samples=0, low_frequencies="model").mean.astype(np.float64)
        held = denoise(noisy, model, n_samples=0, low_frequencies="data").mean.astype(np.float64)
        t0 = time.perf_counter()
        low_frequency.low_frequency_departure(noisy, kept)
        seconds = time.perf_counter() - t0  # the step alone
        reference, where = static[:2] if static is not None else (truth, np.ones(truth.shape, dtype=bool))
        moved = float(np.mean(np.abs(held - kept) > 1e-6 * (np.ptp(kept) + 1e-12)))
        rec = {"case": label, "pixels_moved": moved,
               "unfitted_db": unfitted_gain_db(kept[where], held[where], reference[where]),
               "fitted_db": float(psnr_fitted(held[where], reference[where]) - psnr_fitted(kept[where], reference[where])),
               "offset_model": float(np.mean(kept[where] - reference[where])),
               "offset_data": float(np.mean(held[where] - reference[where])),
               "scored_share": float(where.mean()), "step_seconds": seconds}
        records.append(rec)
        print(rec, flush=True)
        rows.append([label, f"{100 * rec['scored_share']:.0f} %", f"{100 * moved:.1f} %", f"{rec['unfitted_db']:+.2f}",
                     f"{rec['fitted_db']:+.2f}", f"{rec['offset_model']:+.3f} → {rec['offset_data']:+.3f}"])
    unfitted = [r["unfitted_db"] for r in records]
    fitted = [r["fitted_db"] for r in records]
    rows.append(["mean", "", f"{100 * np.mean([r['pixels_moved'] for r in records]):.1f} %", f"{np.mean(unfitted):+.2f}",
                 f"{np.mean(fitted):+.2f}", f"worst Δ: {min(unfitted):+.2f} / {min(fitted):+.2f} dB"])
    body = (f"Model `{args.model}`, the default one pass, centre crops of {args.size}²; `low_frequencies='data'` "
            f"(the default: the departure of the mean smoothed over {low_frequency.SMOOTHING:g} px from the noisy "
            f"image smoothed alike, shrunk by {low_frequency.SIGNIFICANCE:g} standard errors of its noise, is added back) "
            "against `'model'` (the network's mean as it is). Scored: the re-acquired images over all pixels against "
            "their exact truth; the frame series where the field held still, against the mean of 8 frames (the share "
            "of the field in the second column). Moved: pixels the step changed. Unfitted: 10·log₁₀ of the MSE ratio in "
            "the image's own units; fitted: the PSNR difference after CARE's least-squares scale and offset "
            "(core.imaging.metrics), which absorbs most of an offset. Offset: the mean of mean − truth where scored, "
            "without → with the step (input units: photo-electrons plus the camera offset for the re-acquired images, "
            "camera counts for the series).\n\n"
            + markdown_table(["case", "scored", "moved", "Δ dB unfitted", "Δ dB fitted", "offset, model → data"], rows)
            + f"\n\nThe step's cost: {1000 * np.mean([r['step_seconds'] for r in records]):.0f} ms per {args.size}² "
            "plane on average (the camera fit and three Gaussian filters).\n")
    write_report("low_frequency", "The mean's smooth part held to the data's", body, {"records": records})


if __name__ == "__main__":
    main()
