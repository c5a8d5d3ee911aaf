"""What the self-calibration's error scale is made of, on real images whose truth is exact.

    python -m bench estimator_terms [--real DIR] [--model demo] [--size 256]

The recorrupted route (core.calibration.self_calibration) reads V = E[(e/u)²] off cross-moments of
the standardised residual v = (ȳ − f(ŷ)) / u at lags 1–3, extrapolated to lag 0
(core.calibration.error_scale). With the truth x known, v splits exactly into the restoration's error
e = (f(ŷ) − x) / u and the view's noise w = (ȳ − x) / u: v = w − e. The estimator is linear in the
products for fixed weights and correlation length, so, with the very weights, bins and length the
calibration uses, estimate(v) = estimate(e) + estimate(w) − 2·cross(e, w). estimate(e) is what the
cross-moments make of the error itself (against E[e²]: the extrapolation's part); estimate(w) is
the view noise's products, 0 in expectation when the noise is independent between pixels and of u;
the cross term is the noise the restoration lets through (its Jacobian) against a draw variance that
differs from the camera's.

The recorrupting draws' variance is the camera's at a level: the image smoothed by 1.5 px (shipped),
or the model's own restoration of it (``restored``, core.imaging.recorruption.RecorruptionNoise.of's
``level``). The smoothed level carries the pixel's neighbourhood noise, so within a bin of u the
view's noise correlates between neighbours (docs/performance.md, 2026-12-05, ninth and tenth sessions).
The re-acquired cases of bench/real_calibration.py only (their truth is exact; a frame series' truth
carries noise that would enter e).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration.calibration_run import calibration_request
from napari_diffdenoise.core.calibration.error_scale import (
    N_BINS,
    bin_labels,
    error_scale,
    extrapolate_to_zero,
    label_moments,
    lag_offsets,
    precision_weights,
)
from napari_diffdenoise.core.calibration.residuals import iter_residuals, response_length
from napari_diffdenoise.core.calibration.self_calibration import ALPHA
from napari_diffdenoise.core.run.driving import drive

from .common import markdown_table, write_report
from .real_calibration import STD_ROUTES, reacquired_cases, real_data_parser

LEVELS = ("smoothed", "restored")  # where the draws' variance is read: shipped, and the model's restoration


def terms(model, noisy: np.ndarray, truth: np.ndarray, run, level: str) -> dict:
    """The calibration's estimate of V on ``noisy`` and its parts (module docstring), bin-share weighted."""
    def restored(crops):
        return np.stack([denoise(c, model, seed=0, **STD_ROUTES["head"]).mean for c in crops])

    (res, _inputs), _ = drive(iter_residuals(model, [noisy], run, alpha=ALPHA, seed=1,
                                             draw_level=restored if level == "restored" else None))
    v, unit = res.v, res.unit
    e = (res.restoration_mean - np.tile(truth, (res.draws, 1, 1))) / unit
    w = v + e
    mask = np.ones(v.shape, dtype=bool)
    offsets = lag_offsets()
    ell = response_length(res, offsets)
    precision = precision_weights(v)
    scale = error_scale(v, unit, mask, offsets, draws=res.draws, ell=ell)  # its bins and shares are the split's
    bins = bin_labels(unit, mask, np.asarray(scale.edges))
    share = np.asarray(scale.weights)

    def estimate(a):
        lags, moments, totals = label_moments(a, bins, N_BINS, mask, precision, offsets)
        return float(share @ [extrapolate_to_zero(lags, moments[b], totals[b], ell) for b in range(N_BINS)])

    of_v, of_e, of_w = estimate(v), estimate(e), estimate(w)
    return {"truth": float(np.mean(e ** 2)), "estimate": of_v, "error": of_e, "view_noise": of_w,
            "cross": of_v - of_e - of_w, "pooled": scale.pooled, "pooled_se": scale.pooled_se}


def main(argv=None):
    parser = real_data_parser("estimator_terms", __doc__)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    _, run = calibration_request(model, (0.9,), dict(STD_ROUTES["head"]))
    records, rows = [], []
    for label, noisy, truth, _texture in reacquired_cases(args.real, args.size):
        t0 = time.perf_counter()
        rec = {"case": label, **{level: terms(model, noisy, truth, run, level) for level in LEVELS},
               "seconds": time.perf_counter() - t0}
        records.append(rec)
        print(rec, flush=True)
        s, r = rec["smoothed"], rec["restored"]
        rows.append([label, s["truth"], s["estimate"], s["error"], s["view_noise"], s["cross"],
                     f"{s['pooled']:.2f} ± {s['pooled_se']:.2f}", r["truth"], r["estimate"], r["view_noise"],
                     f"{r['pooled']:.2f} ± {r['pooled_se']:.2f}"])

    def summary(level, key):
        values = np.array([rec[level][key] for rec in records])
        return f"{values.mean():+.3f} (sd {values.std():.3f})"

    def log_ratio(level):
        return float(np.mean([abs(np.log(max(rec[level]["estimate"], 1e-3) / rec[level]["truth"])) for rec in records]))

    body = (f"Model `{args.model}`, the std head (its default), recorrupted pairs (α = {ALPHA:g}) of centre crops of "
            f"{args.size}², seed 1 as bench/real_calibration.py's self-calibration; V in units of u (the interval's "
            "unit), each estimate the share-weighted mean over the calibration's bins of u. See the module docstring "
            "for the split.\n\n"
            + markdown_table(["case", "E[e²] (truth)", "estimate", "of it: error", "view noise", "cross",
                              "pooled V ± SE (as calibrated)", "restored level: E[e²]", "estimate", "view noise",
                              "pooled V ± SE"], rows)
            + "\n\nOver the cases, the view noise's term (0 in expectation were it independent of u and between "
            f"pixels): smoothed level **{summary('smoothed', 'view_noise')}**, restored level "
            f"**{summary('restored', 'view_noise')}**; the cross term {summary('smoothed', 'cross')} and "
            f"{summary('restored', 'cross')}; the error's own term against the truth "
            f"{np.mean([rec['smoothed']['error'] / rec['smoothed']['truth'] for rec in records]):.2f}× on average. "
            f"Mean |log(estimate / truth)|: {log_ratio('smoothed'):.2f} (smoothed), {log_ratio('restored'):.2f} "
            "(restored).\n")
    write_report("estimator_terms", "What the self-calibration's error scale is made of", body, {"records": records})


if __name__ == "__main__":
    main()
