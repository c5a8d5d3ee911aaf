"""The [mean] refined by an empirical Wiener filter with itself as the pilot (core.imaging.pilot_wiener), and
whether a truth-free criterion can tell where that helps: the evidence behind refining only where adapting on a
series shows it better (core.training.adapt_criteria.refinement_judge).

    python -m bench pilot_wiener

Scored on bench/real_frames.py's cases: frame 30 of every lysosome series and three fields of the 8-bit
time-lapse against their registered truth (beside oracle VST + BM3D), and bench/real_prior.py's held-out images
with simulated noise at 3, 10 and 30 photons. The head: the bundled demo's [mean] (its default run, mean only).

Five truth-free judges of "refined or not", each seeing the noisy data alone:

- series: what ``adapt`` decides on the series' frames 0…24 (core.training.adapt_criteria.refinement_judge: the
  frames adapt holds out, each restored and refined, against its neighbours t ± 1 registered onto it, per
  quadrant; refined at KEEP_MARGIN_SE standard errors), with the bundled head;
- blind spot: the restoration of the image with a stride-2 grid of pixels each replaced by a random one of
  its 4 neighbours (the masking of core.training.adapt_criteria.blind_spot), all four offsets, against the
  noisy pixels; the relative difference per 32² block, refined at KEEP_MARGIN_SE standard errors;
- neighbours: Neighbor2Neighbor's half-size sub-images of neighbouring pixels (the pairs of
  core.training.adapt_criteria.neighbour_pairs), each restored and refined as a plane and scored against its
  neighbour; the relative difference per 16² block (the four pairs averaged), refined at KEEP_MARGIN_SE standard
  errors;
- SURE: Stein's unbiased risk estimate in the variance-stabilised domain, the divergence by one Monte-Carlo
  perturbation of the input (Ramani et al. 2008), the pilot recomputed from the perturbed input;
- brightness: the photons of the image's brightest structure above its background
  (core.imaging.pilot_wiener.peak_photons), refined from BRIGHT_PHOTONS on: the bundled demo's rule
  (core.imaging.pilot_wiener.IF_BRIGHT) since 2026-12-06; after ``adapt`` kept an adapted head it did not hold
  (docs/performance.md, 2026-12-06), and adapt then leaves it.

Where that threshold comes from: a sweep over the five re-acquired held-out scenes of bench/real_calibration.py
(smoothed, so that the truth carries no noise of its own: bench/camera8.density_of) at 30–3000 photons through
the float camera (background 2 photons, read noise 1.5 e⁻, offset 100) and an 8-bit one (gain 200 DN over the
peak photons, background 0.5 photons, read noise 2 DN, offset 2 DN, rounded, clipped to [0, 255]); none of the
13 real frames enters it.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.pilot_wiener import BRIGHT_PHOTONS, anscombe, peak_photons, refine_mean
from napari_diffdenoise.core.training.adapt_criteria import (
    KEEP_MARGIN_SE,
    held_out_frames,
    refinement_judge,
    shown_better,
)
from napari_diffdenoise.core.training.finetune import PATCH_SIZE

from .camera8 import acquire, density_of
from .common import markdown_table, write_report
from .real_calibration import (
    BACKGROUND,
    LYSOSOME,
    OFFSET,
    TIMELAPSE,
    lysosome_cases,
    lysosome_files,
    reacquired_images,
    timelapse_cases,
)
from .real_frames import SIZE, head_mean, oracle_bm3d_psnr
from .real_prior import ROOT, held_out_acquisitions, load

SCORE_BLOCK = 32  # px: the blind spot's per-block differences give its standard error


def restorations(noisy, model, camera) -> dict:
    """{"head": the [mean] layer, "refined": it refined (core.imaging.pilot_wiener.refine_mean)}, image units."""
    head = head_mean(noisy, model).astype(np.float64)
    return {"head": head, "refined": refine_mean(noisy, head, camera)}


def verdict(differences) -> dict:
    """Mean relative difference (refined − head) ± its standard error; "refined" where it is below 0 by
    KEEP_MARGIN_SE standard errors."""
    differences = np.asarray(differences)
    figures = {"difference": float(differences.mean()),
               "standard_error": float(differences.std(ddof=1) / np.sqrt(len(differences)))}
    return {**figures, "pick": "refined" if shown_better({"judge": figures}) else "head"}


def series_judge(planes, model) -> dict:
    """What adapting on these frames decides about refining (core.training.adapt_criteria.refinement_judge, on
    the frames adapt holds out), with the model's head as it is."""
    planes = [np.asarray(p, np.float64) for p in planes]
    held = held_out_frames(np.stack(planes), planes, True, PATCH_SIZE.default)[0]
    judged = refinement_judge(model, planes, held, estimate_noise(planes))
    return {**judged, "pick": "refined" if judged["refined"] else "head"}


def blind_spot_judge(noisy, model, camera, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    h, w = noisy.shape
    padded = np.pad(noisy, 1, mode="reflect")
    neighbours = [padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    errors = {"head": np.zeros(noisy.shape), "refined": np.zeros(noisy.shape)}
    for oy in range(2):
        for ox in range(2):
            mask = np.zeros(noisy.shape, dtype=bool)
            mask[oy::2, ox::2] = True
            masked = np.where(mask, np.choose(rng.integers(4, size=noisy.shape), neighbours), noisy)
            for k, v in restorations(masked, model, camera).items():
                errors[k][mask] = ((v - noisy) ** 2)[mask]
    blocks = [(slice(i, i + SCORE_BLOCK), slice(j, j + SCORE_BLOCK))
              for i in range(0, h - SCORE_BLOCK + 1, SCORE_BLOCK) for j in range(0, w - SCORE_BLOCK + 1, SCORE_BLOCK)]
    return verdict([(errors["refined"][b].mean() - errors["head"][b].mean()) / errors["head"][b].mean()
                    for b in blocks])


def neighbours_judge(noisy, model) -> dict:
    """Neighbor2Neighbor's sub-sampling (core.training.adapt_criteria.neighbour_pairs' pairs: each 2×2 cell's
    pixels into four half-size images, each restored and refined as a plane and scored against its horizontal and
    vertical neighbour, both ways round), the four pairs' relative differences averaged per 16² block."""
    h, w = noisy.shape[0] // 2, noisy.shape[1] // 2
    cells = np.asarray(noisy, np.float64)[: 2 * h, : 2 * w].reshape(h, 2, w, 2)
    sub = [cells[:, 0, :, 0], cells[:, 0, :, 1], cells[:, 1, :, 1], cells[:, 1, :, 0]]
    per_pair = []
    for a, b in ((0, 1), (1, 0), (0, 3), (3, 0)):
        source = np.ascontiguousarray(sub[a])
        out = restorations(source, model, estimate_noise([source]))
        errors = {k: (v - sub[b]) ** 2 for k, v in out.items()}
        per_pair.append([(errors["refined"][i:i + 16, j:j + 16].mean() - errors["head"][i:i + 16, j:j + 16].mean())
                         / errors["head"][i:i + 16, j:j + 16].mean()
                         for i in range(0, h - 15, 16) for j in range(0, w - 15, 16)])
    return verdict(np.mean(per_pair, axis=0))


def sure_judge(noisy, model, camera, epsilon: float = 0.05, seed: int = 0) -> dict:
    gain, floor = float(camera.gain), float(camera.floor)

    def stabilised(y):
        return anscombe(np.asarray(y, np.float64) / gain, -floor / gain**2, 0.0)

    d = stabilised(noisy)
    probe = np.random.default_rng(seed).choice([-1.0, 1.0], size=noisy.shape)
    noise_sd = np.sqrt(np.maximum(gain * noisy + floor, 1e-6))
    perturbed = noisy + epsilon * probe * noise_sd  # ≈ d + ε·probe once stabilised
    step = float(np.mean((stabilised(perturbed) - d) * probe))
    outs = [{k: stabilised(np.maximum(v, 0)) for k, v in restorations(y, model, camera).items()}
            for y in (noisy, perturbed)]
    risk = {k: float(np.mean((outs[0][k] - d) ** 2) - 1 + 2 * np.mean(probe * (outs[1][k] - outs[0][k])) / step)
            for k in outs[0]}
    return {"head": risk["head"], "refined": risk["refined"],
            "pick": "refined" if risk["refined"] < risk["head"] else "head"}


SWEEP_PHOTONS = (30, 60, 100, 200, 400, 1000, 3000)
EIGHT_BIT_PEAK_DN, EIGHT_BIT_READ_DN, EIGHT_BIT_OFFSET_DN, EIGHT_BIT_BACKGROUND = 200.0, 2.0, 2.0, 0.5


def brightness_judge(noisy, camera) -> dict:
    photons = peak_photons(noisy, camera)
    return {"photons": photons, "pick": "refined" if photons >= BRIGHT_PHOTONS else "head"}


def sweep_acquisition(density: np.ndarray, photons: float, camera: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, truth) of the scene ``density`` (unit peak) at ``photons`` through the float or the 8-bit camera."""
    expected = photons * density
    if camera == "float":  # bench/camera8.py's float camera
        return acquire("float", expected, rng), OFFSET + expected + BACKGROUND
    gain = EIGHT_BIT_PEAK_DN / photons
    noisy = np.clip(np.round(gain * rng.poisson(expected + EIGHT_BIT_BACKGROUND) + EIGHT_BIT_OFFSET_DN
                             + rng.normal(0, EIGHT_BIT_READ_DN, density.shape)), 0, 255)
    return noisy, gain * (expected + EIGHT_BIT_BACKGROUND) + EIGHT_BIT_OFFSET_DN


def sweep(model, data_root: Path, size: int = 256) -> list[dict]:
    """Refined − head by photons on the held-out scenes (module docstring), with each acquisition's peak photons."""
    records = []
    for i, (name, image) in enumerate(reacquired_images(data_root, size)):
        density = density_of(image)
        for photons in SWEEP_PHOTONS:
            for camera in ("float", "8-bit"):
                noisy, truth = sweep_acquisition(density, photons, camera,
                                                 np.random.default_rng([i, int(photons), camera == "float"]))
                fitted = estimate_noise([noisy])
                out = restorations(noisy, model, fitted)
                records.append({"image": name, "photons": photons, "camera": camera,
                                "peak_photons": peak_photons(noisy, fitted),
                                **{k: float(psnr_fitted(v, truth)) for k, v in out.items()}})
                print(records[-1], flush=True)
    return records


def measure(data_root: Path) -> dict:
    # the head unrefined: since the bundled demo carries the brightness rule (IF_BRIGHT) its [mean] is refined on
    # bright planes, and this page then compared a refined [mean] with the same refined twice (2026-12-07)
    model = dataclasses.replace(load("demo"), mean_refinement="none")
    frames, low_light = [], []
    cases = [("tuning", c) for c in lysosome_cases(data_root / LYSOSOME, SIZE, lysosome_files(data_root / LYSOSOME))]
    cases += [("held-out", c) for c in lysosome_cases(data_root / LYSOSOME, SIZE,
                                                      lysosome_files(data_root / LYSOSOME, "held-out"))]
    cases += [("tuning", c) for c in timelapse_cases(data_root / TIMELAPSE, SIZE)]
    for which, (label, frame, _, _, calibration_frames, _, registered) in cases:
        noisy = np.asarray(frame, np.float64)
        camera = estimate_noise([noisy])
        where, truth = registered.consistent, registered.truth[registered.consistent]
        out = restorations(noisy, model, camera)
        record = {"set": which, "frame": label, "bm3d": oracle_bm3d_psnr(noisy, registered),
                  **{k: float(psnr_fitted(v[where], truth)) for k, v in out.items()},
                  "series": series_judge(calibration_frames, model),
                  "blind_spot": blind_spot_judge(noisy, model, camera),
                  "neighbours": neighbours_judge(noisy, model), "sure": sure_judge(noisy, model, camera),
                  "brightness": brightness_judge(noisy, camera)}
        frames.append(record)
        print(label, {k: record[k] for k in ("head", "refined", "bm3d")}, flush=True)
    for image, photons, noisy, clean in held_out_acquisitions(data_root):
        noisy = np.asarray(noisy, np.float64)
        camera = estimate_noise([noisy])
        out = restorations(noisy, model, camera)
        record = {"image": image, "photons": photons, **{k: float(psnr_fitted(v, clean)) for k, v in out.items()},
                  "blind_spot": blind_spot_judge(noisy, model, camera),
                  "neighbours": neighbours_judge(noisy, model), "sure": sure_judge(noisy, model, camera),
                  "brightness": brightness_judge(noisy, camera)}
        low_light.append(record)
        print(image, photons, {k: record[k] for k in ("head", "refined")}, flush=True)
    return {"frames": frames, "low_light": low_light, "sweep": sweep(model, data_root)}


def _judged(judge: dict) -> str:
    if "difference" not in judge:
        return f"too little registered: {judge['pick']}"
    return f"{100 * judge['difference']:+.2f} % ± {100 * judge['standard_error']:.2f}: {judge['pick']}"


def _outcome(records, judge: str) -> str:
    """What following ``judge`` gives over the head: the mean gain in dB and the cases it refined, harmed."""
    gains = np.array([r["refined"] - r["head"] if r[judge]["pick"] == "refined" else 0.0 for r in records])
    refined = [r for r in records if r[judge]["pick"] == "refined"]
    harmed = sum(r["refined"] < r["head"] for r in refined)
    return (f"{gains.mean():+.3f} dB on average over the {len(records)} cases; refined {len(refined)}, "
            f"{harmed} of them worse than the head (worst {min([0.0, *gains]):+.2f} dB)")


def _bright(judge: dict) -> str:
    return f"{judge['photons']:.0f}: {judge['pick']}"


def render(data: dict, seconds: float) -> str:
    frames, low = data["frames"], data["low_light"]
    frame_rows = [[r["set"], r["frame"], r["bm3d"], r["head"] - r["bm3d"], r["refined"] - r["bm3d"],
                   r["refined"] - r["head"], _judged(r["series"]), _judged(r["blind_spot"]),
                   _judged(r["neighbours"]), r["sure"]["pick"], _bright(r["brightness"])]
                  for r in frames]
    low_rows = [[r["image"], f"{r['photons']:g}", r["head"], r["refined"], r["refined"] - r["head"],
                 _judged(r["blind_spot"]), _judged(r["neighbours"]), r["sure"]["pick"], _bright(r["brightness"])]
                for r in low]
    sweep_rows = [[r["image"], f"{r['photons']:g}", r["camera"], r["peak_photons"], r["head"],
                   r["refined"] - r["head"]] for r in data["sweep"]]
    followed = [r["refined"] if r["brightness"]["pick"] == "refined" else r["head"] for r in frames]
    gain = np.array([r["refined"] - r["head"] for r in frames])
    low_gain = np.array([r["refined"] - r["head"] for r in low])
    lines = [
        (f"- **Refined − head on the frames**: {gain.mean():+.2f} dB on average ({gain.min():+.2f} … {gain.max():+.2f}), "
        f"better on {int((gain > 0).sum())} of {len(gain)}; ≥ oracle BM3D on "
        f"{sum(r['refined'] >= r['bm3d'] for r in frames)} of {len(frames)} (the head: "
        f"{sum(r['head'] >= r['bm3d'] for r in frames)})"),
        (f"- **Refined − head at low light**: {low_gain.mean():+.2f} dB on average ({low_gain.min():+.2f} … "
        f"{low_gain.max():+.2f}), better on {int((low_gain > 0).sum())} of {len(low_gain)}"),
        f"- **Following the series judge** (frames only): {_outcome(frames, 'series')}",
        f"- **Following the blind spot**: frames {_outcome(frames, 'blind_spot')}; low light {_outcome(low, 'blind_spot')}",
        (f"- **Following the neighbours**: frames {_outcome(frames, 'neighbours')}; low light "
        f"{_outcome(low, 'neighbours')}"),
        f"- **Following SURE**: frames {_outcome(frames, 'sure')}; low light {_outcome(low, 'sure')}",
        (f"- **Following the brightness** (≥ {BRIGHT_PHOTONS:g} photons, from the sweep below): frames "
         f"{_outcome(frames, 'brightness')}, ≥ oracle BM3D on {sum(f >= r['bm3d'] for f, r in zip(followed, frames))} "
         f"of {len(frames)}; low light {_outcome(low, 'brightness')}"),
    ]
    losses = [r for r in data["sweep"] if r["refined"] < r["head"]]
    gains = [r for r in data["sweep"] if r["peak_photons"] >= BRIGHT_PHOTONS]
    sweep_line = (f"The refinement lost on {len(losses)} of {len(data['sweep'])} acquisitions, the brightest of them at "
                  f"{max(r['peak_photons'] for r in losses):.0f} photons; at {BRIGHT_PHOTONS:g} or more ("
                  f"{len(gains)} acquisitions) refined − head {min(r['refined'] - r['head'] for r in gains):+.2f} … "
                  f"{max(r['refined'] - r['head'] for r in gains):+.2f} dB, lower than the head's on "
                  f"{sum(r['refined'] < r['head'] for r in gains)}." if losses and gains else "")
    return ("The bundled demo's [mean] layer (head) and the same refined by a Wiener filter with it as the pilot "
            "(refined, core/imaging/pilot_wiener.py): see the module docstring of bench/pilot_wiener.py. Judges: the refined restoration's "
            "relative MSE difference from the head's (± standard error) and the pick at "
            f"{KEEP_MARGIN_SE:g} standard errors; SURE picks the lower risk.\n\n"
            "## Real camera frames against their registered truth (PSNR in dB)\n\n"
            + markdown_table(["set", "frame", "VST+BM3D* (dB)", "head − BM3D", "refined − BM3D", "refined − head",
                              "series judge", "blind-spot judge", "neighbours judge", "SURE",
                              "brightness (peak photons)"], frame_rows)
            + "\n\n## Held-out real images with simulated noise (PSNR in dB)\n\n"
            + markdown_table(["image", "photons", "head", "refined", "refined − head", "blind-spot judge",
                              "neighbours judge", "SURE", "brightness (peak photons)"],
                             low_rows)
            + "\n\n" + "\n".join(lines)
            + "\n\n## Where the refinement breaks even: held-out scenes at 30–3000 photons (PSNR in dB)\n\n"
            "Each re-acquired held-out scene smoothed (no noise of its own), acquired once per photon count and camera "
            "(module docstring); peak photons as core.imaging.pilot_wiener.peak_photons reads them off the noisy image with the "
            "camera fitted to it.\n\n"
            + markdown_table(["image", "photons", "camera", "peak photons", "head", "refined − head"], sweep_rows)
            + "\n\n" + sweep_line + f"\n\nMeasured in {seconds:.0f} s.\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real",
                        help="the real-data folder (MANIFEST.md there gives sources and licences)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = measure(args.data)
    path = write_report("pilot_wiener", "The [mean] refined by a Wiener filter with itself as the pilot",
                        render(data, time.perf_counter() - start), data)
    print(path.read_text())


if __name__ == "__main__":
    main()
