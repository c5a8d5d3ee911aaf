"""How ρ(std, |error|) on the real frame series depends on the truth it is measured against.

    python -m bench rho_frames [--real DIR] [--model demo] [--size 256]

bench/real_calibration.py scores frame t of each series against the mean of frames t ± 1, whose noise its
coverage accounts for; a rank correlation cannot account for it, and that truth also holds whatever moved between
the frames. This bench sets the std head's ρ (the default one pass) against three truths side by side, on all ten
lysosome series and the three fields of the 8-bit time-lapse (the cases of bench/real_calibration.py and
bench/real_frames.py): the mean of t ± 1 (half a frame's noise, motion included); frames t ± 1, t ± 2 registered
onto frame t where they agree (bench/frame_truth.py: a quarter of the noise, motion followed); the mean of frames
t − 5 … t + 2 on the pixels that held still over them (real_calibration.static_truth: an eighth of the noise).
Beside each, the truth's own noise as a share of the squared error measured against it (mean τ² over mean
(truth − mean)²: near 1, the error is mostly the truth's noise, which no std map can rank), and ρ against the mean
of t ± 1 on the same pixels, which separates the pixels a truth keeps from the truth itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import stats

from napari_diffdenoise import denoise, load_model

from .common import markdown_table, write_report
from .real_calibration import LYSOSOME, TIMELAPSE, lysosome_cases, lysosome_files, real_data_parser, timelapse_cases

TARGET = 0.45  # issue #23's ρ


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(np.ravel(a), np.ravel(b)).statistic)


def cases(data: Path, size: int):
    yield from lysosome_cases(data / LYSOSOME, size, lysosome_files(data / LYSOSOME, "all"))
    yield from timelapse_cases(data / TIMELAPSE, size)


def evaluate_case(model, frame, pair_mean, pair_tau2, static, registered) -> dict:
    result = denoise(frame, model, seed=0)
    std, mean = result.std.astype(np.float64), result.mean.astype(np.float64)
    pair_error = np.abs(pair_mean - mean)
    record = {}
    still_mean, still, still_tau2 = static
    for name, truth, where, tau2 in (
            ("pair", pair_mean, np.ones(frame.shape, bool), np.broadcast_to(pair_tau2, frame.shape)),
            ("registered", registered.truth, registered.consistent, registered.tau2),
            ("still", still_mean, still, np.broadcast_to(still_tau2, frame.shape))):
        error = np.abs(truth - mean)[where]
        record[name] = {"rho": spearman(std[where], error), "share": float(where.mean()),
                        "noise_share": float(np.mean(tau2[where]) / np.mean(error**2)),
                        "rho_pair_same_pixels": spearman(std[where], pair_error[where])}
    return record


def main(argv=None):
    parser = real_data_parser("rho_frames", __doc__)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    rows, records = [], []
    for label, frame, pair_mean, pair_tau2, _, static, registered in cases(args.real, args.size):
        rec = {"case": label, **evaluate_case(model, frame, pair_mean, pair_tau2, static, registered)}
        records.append(rec)
        print(rec, flush=True)
        rows.append([label, rec["pair"]["rho"], rec["pair"]["noise_share"],
                     *[value for name in ("registered", "still")
                       for value in (rec[name]["share"], rec[name]["rho"], rec[name]["rho_pair_same_pixels"],
                                     rec[name]["noise_share"])]])
    rows.append(["mean", *[float(np.mean([r[j] for r in rows])) for j in range(1, len(rows[0]))]])
    reached = {name: sum(r[name]["rho"] >= TARGET for r in records) for name in ("pair", "registered", "still")}
    body = (f"Model `{args.model}`, default settings (the std head's one pass), centre crops of {args.size}². ρ: "
            "Spearman of the std against |truth − mean| on the pixels each truth keeps; noise share: the truth's own "
            "noise variance over the mean squared error measured against it; ρ vs t ± 1 there: ρ against the mean of "
            "t ± 1 on the same pixels (module docstring).\n\n"
            + markdown_table(["case", "ρ, mean of t ± 1", "noise share", "registered: pixels", "ρ", "ρ vs t ± 1 there",
                              "noise share", "still: pixels", "ρ", "ρ vs t ± 1 there", "noise share"], rows)
            + f"\n\nρ ≥ {TARGET:g} (issue #23's target) on {len(records)} frames: against the mean of t ± 1 "
            f"**{reached['pair']}**, against the registered truth **{reached['registered']}**, on the still pixels "
            f"**{reached['still']}**.\n")
    write_report("rho_frames", "ρ on the real frames against three truths", body, {"records": records})


if __name__ == "__main__":
    main()
