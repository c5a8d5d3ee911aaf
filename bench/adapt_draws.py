"""What the recorruption's draws do to adaptation's training (issue 23, part 3): the mean head
fine-tuned on Recorrupted-to-Recorrupted pairs whose s carries the camera's third moment over α
(core.imaging.recorruption, what adapt draws) against Gaussian s of the same variance, same seed,
same steps, on the real cases of bench/std_head.py. The training alone is measured: the head after
the last step, whatever adapt's keep rule would decide.

    python -m bench adapt_draws [--steps 120] [--cases "3 ph;10 ph;lysosome;time-lapse"]
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise
from napari_diffdenoise.core.training.adapt_spec import ALPHA, LEARNING_RATE, check_adapt
from napari_diffdenoise.core.training.finetune import BATCH_SIZE, PATCH_SIZE
from napari_diffdenoise.core.training.recorrupted_pairs import recorrupted_batch, train_step

from .common import markdown_table, write_report
from .real_calibration import DEFAULT_DATA
from .std_head import real_cases

LAWS = ("camera's skew", "Gaussian")


def trained_head(model, noisy: np.ndarray, law: str, steps: int, seed: int = 0):
    """``model`` with its mean head fine-tuned for ``steps`` steps on recorrupted pairs of ``noisy``
    drawn by ``law`` (adapt's optimiser and batches, without its held-out frames and keep rule)."""
    planes, splits, noise = check_adapt(model, noisy, minutes=None, steps=steps, alpha=ALPHA,
                                        patch_size=PATCH_SIZE.default, val_fraction=0.0)
    laws = [RecorruptionNoise.of(noise, p, ALPHA) for p in planes]
    if law == "Gaussian":
        laws = [dataclasses.replace(w, theta=np.zeros_like(w.theta)) for w in laws]
    maps = [IntensityMap.from_percentiles(p, model.percentiles) for p in planes]
    adapted = copy.deepcopy(model)
    head = adapted.mean_network.train()
    opt = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    torch.manual_seed(seed)
    for step in range(steps):
        x, t = recorrupted_batch(planes, laws, maps, splits, list(range(len(planes))), PATCH_SIZE.default, ALPHA,
                                 BATCH_SIZE.default, np.random.default_rng([seed, step]), "cpu")
        train_step(adapted, opt, x, t)
    head.eval()
    return adapted


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--cases", default="3 ph;10 ph;lysosome;time-lapse",
                        help="parts of the case labels to run, separated by semicolons")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model("demo")
    wanted = [w.strip() for w in args.cases.split(";")]
    rows, records = [], []
    for label, noisy, truth, _camera, _static, _tau2, _registered in real_cases(args.data, 256):
        if not any(w in label for w in wanted):
            continue
        rec = {"case": label, "bundled": float(psnr_fitted(denoise(noisy, model, n_samples=0).mean, truth))}
        for law in LAWS:
            t0 = time.perf_counter()
            try:
                adapted = trained_head(model, noisy, law, args.steps)
            except ValueError as refusal:  # adapt declines it (e.g. too flat): nothing to compare
                rec[law] = None
                print(label, "refused:", refusal, flush=True)
                continue
            rec[law] = float(psnr_fitted(denoise(noisy, adapted, n_samples=0).mean, truth)) - rec["bundled"]
            rec[f"{law} s"] = time.perf_counter() - t0
        records.append(rec)
        print(rec, flush=True)
        rows.append([label, rec["bundled"], *("refused" if rec[w] is None else rec[w] for w in LAWS),
                     "—" if rec[LAWS[0]] is None else rec[LAWS[0]] - rec[LAWS[1]]])
    scored = [r for r in records if r[LAWS[0]] is not None]
    rows.append(["mean", float(np.mean([r["bundled"] for r in scored])),
                 *(float(np.mean([r[w] for r in scored])) for w in LAWS),
                 float(np.mean([r[LAWS[0]] - r[LAWS[1]] for r in scored]))])
    body = (f"The bundled `demo` model's mean head fine-tuned for {args.steps} steps (adapt's optimiser, batch and "
            f"α = {ALPHA:g}; about half a minute on this CPU) on Recorrupted-to-Recorrupted pairs of each case's noisy "
            "image, ŷ = y + α·s → ȳ = y − s/α, with s drawn two ways: with the fitted camera's variance and its third "
            "moment over α (a shifted gamma, core/imaging/recorruption.py: what adapt draws), or Gaussian with the "
            "same variance (what adapt drew before). Same seed, same patches. Why it matters: the pair's noises "
            "a = n + α·s and b = n − s/α are uncorrelated either way, but a restoration reaches them through its "
            "curvature by E[a²·b] = κ₃(n) − α·κ₃(s), which only the skewed draws cancel for photon noise. The head "
            "after the last step is scored, whatever adapt's keep rule would decide (it keeps the bundled head "
            "unless its held-out criterion shows the adapted one better: docs/benchmarks/std_head.md). Fitted PSNR "
            "of the one pass against the case's truth (bench/std_head.py; the frame series: the mean of the "
            "neighbouring frames, a noisy truth that ranks rather than measures).\n\n"
            + markdown_table(["case", "PSNR bundled", f"Δ dB, {LAWS[0]}", f"Δ dB, {LAWS[1]}",
                              "skew − Gaussian dB"], rows))
    write_report("adapt_draws", "Adaptation's recorrupted pairs: the camera's skew or Gaussian draws", body,
                 {"steps": args.steps, "records": records})


if __name__ == "__main__":
    main()
