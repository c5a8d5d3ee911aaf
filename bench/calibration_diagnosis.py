"""Why self-calibration misses on some real images: the error scale V it reads off recorrupted
residuals, against the truth's, under controlled changes (issue #23's coverage target).

    python -m bench calibration_diagnosis [--data DIR] [--cases "Golgi:3" ...]

Per case (the re-acquired held-out images of bench/real_calibration.py, std head route):
- V from the truth: E[(error/u)²] of the restoration of the noisy image, what λ should be built on;
- V self-calibrated with the camera noise fitted to the image (what users get), and with the exact
  per-pixel noise variance (taken from the truth): a noise fit that is off would show as a change;
- V self-calibrated on other acquisitions of the same scene (noise seeds): a spread that holds the
  truth's V means noise, a shift that stays means bias; and on acquisitions with Gaussian noise of the
  same per-pixel variance: a shift that goes away there comes from the photon noise's skew;
- the camera noise's own products at lags 1–3 px (n = noisy − truth, the one realisation every
  recorrupted draw shares), in units of the truth's V: divided by the image's mean u², what the
  noise-cancelling products cannot average away on an image this size; divided by each pixel's u,
  as the residuals are, which adds what u's own response to that noise does to them;
- the extrapolation to lag 0 alone: the self-calibration's estimator (its precision weights, its lags,
  the correlation length ℓ it reads off two draws' response) applied to the true error of the very
  restorations its residuals come from, so with no noise in the products, over that error's own
  E[(e/u)²] under the same weights; and ℓ over the one a Gaussian fall-off fitted to the true error's
  cross-moments gives. Below 1: the error falls off faster near lag 0 than the response does (texture
  the restoration smoothed away, which the noise-driven response does not hold);
- where each bin's measured V comes from: the estimator is bilinear in the residual r = e + m (e the
  restoration's true error, m = view − truth the view's noise, both ÷ u) and linear after its
  extrapolation, so its V per bin of u splits exactly into the error's own products (e·e: what it
  should read), the error against the view's noise (e·m + m·e) and the view's noise against itself
  (m·m); and m = n − s (the camera noise every draw shares, the recorrupting draw) splits m·m into
  n·n + s·s − (n·s + s·n). Each is 0 in expectation over pixels i ≠ j; what is left is the
  realisation and the weighting by a u that responds to n + s.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration import residuals, self_calibration
from napari_diffdenoise.core.calibration.calibration_run import calibration_request
from napari_diffdenoise.core.calibration.error_scale import (
    N_BINS,
    bin_labels,
    correlation_length,
    extrapolate_to_zero,
    label_moments,
    lag_offsets,
    pair_moments,
    precision_weights,
)
from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise
from napari_diffdenoise.core.run.driving import drive

from . import real_calibration as rc
from .common import markdown_table, write_report

SETTINGS = {"std": "head", "n_samples": 0}
# every re-acquired case of bench/real_calibration.py
DEFAULT_CASES = tuple(f"{label}:{photons:g}" for label in ("DSB nuclei", *(h[0] for h in rc.HELD_OUT))
                      for photons in rc.PHOTONS)
SEEDS = 3
SOURCE_KEYS = ("v_truth", "measured", "e_e", "e_m", "m_m", "n_n", "s_s", "n_s")


class _Exact:
    """A camera-noise description that knows each pixel's true variance, and its third moment (the
    simulated camera's gain is 1: its photon noise's third moment is its variance less the read noise's)."""

    def __init__(self, variance):
        self.variance_map = variance

    def variance(self, level):
        return np.broadcast_to(self.variance_map, np.shape(level))

    def third_moment(self, level):
        return np.maximum(self.variance(level) - rc.READ_NOISE ** 2, 0.0)


def _pooled(calibration) -> tuple[float, float]:
    found = re.search(r"V = E\[\(error/spread\)²\] = ([-\d.e+]+) ± ([\d.e+]+)", calibration.source)
    return float(found.group(1)), float(found.group(2))


def _used(calibration) -> list[float]:
    """The per-bin V the calibration builds its intervals on (after shrinking and the upper bound)."""
    found = re.search(r"used per \d+ bins of the spread ([-\d., e+]+?) \(measured", calibration.source)
    return [float(v) for v in found.group(1).split(", ")]


def recorrupted_v_truth(model, noisy, x) -> float:
    """V from the truth of the restoration of the recorrupted input ŷ = y + α·s, which is what the
    residuals measure (α = the self-calibration's), mean over SEEDS draws: beside V truth of y it says
    how well V carries from the noisier input to the user's."""
    law = RecorruptionNoise.of(estimate_noise([noisy]), noisy, self_calibration.ALPHA)
    values = []
    for seed in range(SEEDS):
        noisier = noisy + self_calibration.ALPHA * law.draw(np.random.default_rng([31, seed]))
        restored = denoise(noisier.astype(np.float32), model, seed=0, **SETTINGS)
        values.append(float(np.mean((restored.mean - x) ** 2 / restored.interval_unit.astype(np.float64) ** 2)))
    return float(np.mean(values))


def recorrupted_residuals(model, noisy, seed: int = 1):
    """The self-calibration's residuals of ``noisy`` (its settings, α and ``seed``, as :func:`_self`)."""
    _, settings = calibration_request(model, self_calibration.COVERAGE_GRID, dict(SETTINGS), None, "self_calibrate")
    (found, _inputs), _ = drive(residuals.iter_residuals(model, [noisy], settings, alpha=self_calibration.ALPHA,
                                                         seed=seed))
    return found


def extrapolation_check(found, x) -> tuple[float, float, float]:
    """(the self-calibration's extrapolation to lag 0 applied to the true error of its own
    restorations ``found`` ÷ that error's E[(e/u)²], both under its precision weights; the ℓ it
    extrapolates over; the ℓ of the true error's cross-moments)."""
    offsets = lag_offsets()
    ell = residuals.response_length(found, offsets)
    error = _true_error(found, x)
    weights = precision_weights(found.v)
    lags, moments, totals = pair_moments(error, weights, weights, offsets)
    at_zero = float(np.average(error ** 2, weights=weights))
    return extrapolate_to_zero(lags, moments, totals, ell) / at_zero, ell, correlation_length(lags, moments, totals)


def _true_error(found, x) -> np.ndarray:
    copies = np.tile(x[None], (found.draws, 1, 1))[..., :found.v.shape[-2], :found.v.shape[-1]]
    return (copies - found.restoration_mean) / found.unit


def v_sources(found, x) -> dict:
    """Per quartile of u (the self-calibration's bins): the truth's V of the restorations the residuals
    come from, the V the self-calibration measures there (before shrinking and its bound), and that
    V's exact split into the products of e·e, e·m + m·e, m·m, and m·m's into n·n, s·s and
    −(n·s + s·n) (e the true error, m = n − s the view's noise: n the camera's, s the draw's; all ÷ u)."""
    offsets = lag_offsets()
    ell = residuals.response_length(found, offsets)
    error = _true_error(found, x)
    view_noise = found.v - error
    drawn = found.known  # −s/α ÷ u: the part of the view's noise the calibration knows
    camera = view_noise - drawn
    edges = np.quantile(found.unit, np.linspace(0, 1, N_BINS + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    everywhere = np.ones(found.v.shape, dtype=bool)
    bins = bin_labels(found.unit, everywhere, edges)
    precision = precision_weights(found.v)

    def measured(values):
        lags, moments, totals = label_moments(values, bins, N_BINS, everywhere, precision, offsets)
        return np.array([extrapolate_to_zero(lags, moments[b], totals[b], ell) for b in range(N_BINS)])

    total, own, noise_own, camera_own, drawn_own = (measured(a) for a in (found.v, error, view_noise, camera, drawn))
    return {"v_truth": [float(np.mean(error[bins == b] ** 2)) for b in range(N_BINS)], "measured": total.tolist(),
            "e_e": own.tolist(), "e_m": (total - own - noise_own).tolist(), "m_m": noise_own.tolist(),
            "n_n": camera_own.tolist(), "s_s": drawn_own.tolist(), "n_s": (noise_own - camera_own - drawn_own).tolist()}


def _self(model, noisy):
    return drive(self_calibration.iter_self_calibrate(model, noisy, seed=1, **SETTINGS))[0].calibration


def lag_products(values: np.ndarray) -> list[float]:
    one = np.ones_like(values)
    lags, moments, totals = pair_moments(values, one, one, lag_offsets())
    return [float(np.average(moments[lags == lag], weights=totals[lags == lag])) for lag in sorted(set(lags))]


def diagnose(model, label: str, image: np.ndarray, photons: float) -> dict:
    noisy, truth, _ = rc.reacquired(image, photons, rc.reacquisition_seed(label, photons))
    x = truth.astype(np.float64)
    restored = denoise(noisy, model, seed=0, **SETTINGS)
    unit = restored.interval_unit.astype(np.float64)
    v_truth = float(np.mean((restored.mean - x) ** 2 / unit ** 2))
    fitted = _self(model, noisy)
    variance = x - rc.OFFSET + rc.READ_NOISE ** 2  # the simulated camera's, gain 1
    estimate = residuals.estimate_noise  # where the recorruption reads the camera noise
    residuals.estimate_noise = lambda planes: _Exact(variance)
    try:
        exact = _self(model, noisy)
    finally:
        residuals.estimate_noise = estimate
    others, gaussian = [], []
    for seed in range(SEEDS):
        other, _, _ = rc.reacquired(image, photons, 777 + seed)
        others.append(_pooled(_self(model, other))[0])
        # the same variance without the photon noise's skew: R2R's pair is independent only for Gaussian noise
        symmetric = x + np.sqrt(variance) * np.random.default_rng([777, seed]).standard_normal(x.shape)
        gaussian.append(_pooled(_self(model, symmetric.astype(np.float32)))[0])
    noise = noisy.astype(np.float64) - x
    raw = [p / np.mean(unit ** 2) for p in lag_products(noise)]
    level = 0.9
    oracle = rc.oracle_factor(np.abs(x - restored.mean), unit, np.zeros_like(x), level)
    found = recorrupted_residuals(model, noisy)
    extrapolated, ell, ell_true = extrapolation_check(found, x)
    return {"case": f"{label}, {photons:g} ph", "shape": list(noisy.shape), "v_truth": v_truth,
            "v_self": _pooled(fitted), "v_exact_noise": _pooled(exact), "v_other_seeds": others,
            "v_gaussian_seeds": gaussian,
            "noise_products_raw": [p / v_truth for p in raw],
            "noise_products_per_u": [p / v_truth for p in lag_products(noise / unit)],
            "lambda_self": fitted.factor(level), "lambda_oracle": oracle,
            "v_truth_recorrupted": recorrupted_v_truth(model, noisy, x), "v_used": _used(fitted),
            "extrapolation_of_true_error": extrapolated, "ell_used": ell, "ell_true_error": ell_true,
            "v_sources": v_sources(found, x)}


def _span(values) -> str:
    return f"{min(values):+.2f} … {max(values):+.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=rc.DEFAULT_DATA)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="label:photons")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    images = dict(rc.reacquired_images(Path(args.data), 256))
    records, rows, source_rows = [], [], []
    for case in args.cases:
        label, photons = case.rsplit(":", 1)
        rec = diagnose(model, label, images[label], float(photons))
        records.append(rec)
        print(rec, flush=True)
        seeds = rec["v_other_seeds"]
        rows.append([rec["case"], "×".join(map(str, rec["shape"])), rec["v_truth"],
                     f"{rec['v_self'][0]:.2f} ± {rec['v_self'][1]:.2f}",
                     f"{rec['v_exact_noise'][0]:.2f} ± {rec['v_exact_noise'][1]:.2f}",
                     f"{np.mean(seeds):.2f} ({min(seeds):.2f}–{max(seeds):.2f})",
                     "{:.2f} ({:.2f}–{:.2f})".format(np.mean(rec["v_gaussian_seeds"]), min(rec["v_gaussian_seeds"]),
                                                     max(rec["v_gaussian_seeds"])),
                     _span(rec["noise_products_raw"]), _span(rec["noise_products_per_u"]),
                     rec["v_truth_recorrupted"] / rec["v_truth"], ", ".join(f"{v:.2f}" for v in rec["v_used"]),
                     rec["extrapolation_of_true_error"], f"{rec['ell_used']:.2f} / {rec['ell_true_error']:.2f}",
                     rec["lambda_self"] / rec["lambda_oracle"]])
        sources = rec["v_sources"]
        for b in range(N_BINS):
            source_rows.append([rec["case"] if b == 0 else "", f"{b + 1}", *(sources[k][b] for k in SOURCE_KEYS)])
    body = (f"Model `{args.model}`, std from the std head (one pass), centre crops of ≤ 256², re-acquired as in "
            "bench/real_calibration.py. V: E[(error/u)²] over the image (u: the interval unit); self: the pooled V "
            "the self-calibration reads (core/calibration/self_calibration.py, its source), ± its own standard "
            "error; exact "
            "noise: the same with each pixel's true noise variance instead of the fitted camera; other seeds: "
            f"{SEEDS} other acquisitions of the same scene; Gaussian noise: {SEEDS} acquisitions with Gaussian noise of "
            "each pixel's true variance in place of the photon noise (Recorrupted-to-Recorrupted's pair is "
            "independent only for Gaussian noise; at a few photons the photon noise is skewed); noise products: the camera noise's own cross-moments at "
            "each lag from 1 to 3 px (one realisation), over the truth's V, min to max over the lags: ÷ mean u² "
            "(what the noise every recorrupted draw shares leaves in the products: ±1 moves a lag's product by as "
            "much as the error it should measure) and ÷ u_i·u_j pixel by pixel, as the residuals are taken (the "
            "difference is u's own response to the noise). V truth of ŷ / of y: V from the truth of the restoration "
            f"of the recorrupted input ŷ = y + α·s (α = {self_calibration.ALPHA:g}, the self-calibration's; mean over "
            f"{SEEDS} draws), which is what the residuals measure, over V truth of y, which the interval needs: "
            "below 1 the noisier input's error is smaller relative to its own u and the self-calibration reads V low "
            "even when it reads ŷ's exactly. V used: per bin of u, what the intervals are built on (the bins' V "
            "shrunk towards the pooled one by their standard errors, then one standard error above: where the "
            "standard error is as large as V, as on the sparse Golgi image, that bound roughly doubles V). Extrapolation "
            "of the true error: the self-calibration's extrapolation to lag 0 (its weights, lags and ℓ) applied to the "
            "true error of the restorations its residuals come from — the estimator with no noise in its products — "
            "over that error's own weighted E[(e/u)²]: below 1 the error falls off near lag 0 faster than the "
            "restoration's response to noise, whose length ℓ the extrapolation uses (ℓ used / ℓ of a Gaussian "
            "fall-off fitted to the true error's cross-moments). λ ratio: "
            "the self-calibrated λ at 0.9 over the oracle's.\n\n"
            + markdown_table(["case", "pixels", "V truth", "V self (fitted noise)", "V self (exact noise)",
                              "V self, other seeds: mean (min–max)", "V self, Gaussian noise, other seeds",
                              "noise products / V, ÷ mean u²",
                              "noise products / V, ÷ u_i·u_j", "V truth of ŷ / of y", "V used per bin",
                              "extrapolation of the true error / its V", "ℓ used / ℓ of the true error (px)",
                              "λ self / oracle @0.9"],
                             rows)
            + "\n\n## Where each bin's V comes from\n\n"
            "Per quartile of u (1: the smallest spread, mostly the dark background), on the residuals the "
            "self-calibration measures (one recorrupted draw set, its seed): V truth of ŷ, the true error's "
            "E[(e/u)²] of those restorations; measured, what the self-calibration reads there before shrinking and "
            "its bound; then that figure's exact split (the estimator is bilinear in the residual r = e + m and "
            "linear after its extrapolation): e·e, the true error's own products through the same estimator (what "
            "it should read); e·m, the error against the view's noise m = n − s; m·m, the view's noise against "
            "itself = n·n + s·s − (n·s + s·n), split into the camera noise n (one realisation, shared by every "
            "draw), the draws s (known to the calibration) and their cross terms. Each is 0 in expectation over pixel pairs i ≠ j taken alike; "
            "what stays is one realisation and the weighting by a u that responds to n + s.\n\n"
            + markdown_table(["case", "u quartile", "V truth of ŷ", "measured", "e·e", "e·m + m·e", "m·m",
                              "of which n·n", "s·s", "−(n·s + s·n)"], source_rows))
    write_report("calibration_diagnosis", "Self-calibration's error scale against the truth's", body,
                 {"records": records})


if __name__ == "__main__":
    main()
