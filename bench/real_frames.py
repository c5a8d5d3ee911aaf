"""The [mean] layer on real camera frames against oracle VST + BM3D (issue 23: "the mean is still under
oracle BM3D"), and on held-out real images at low light: the two halves of a mean head's shipping rule.

    python -m bench real_frames                                  # the bundled demo
    python -m bench real_frames --old-commit SHA --head "run 2=RUN/model-best.safetensors" \
        --head "blend=RUN/model-best.safetensors@0.4"             # candidates beside the old and bundled heads

Frames: frame 30 of every lysosome series (raw camera counts; bench/real_calibration.LYSOSOME_FILES
tune, the others are held out) and three 256² fields of frame 27 of the 8-bit time-lapse, centre
crops of 256². Truth: the neighbouring frames registered onto the frame and averaged
(bench/frame_truth.registered_truth); every score is taken on its consistent pixels, as PSNR after
the CARE scale-and-offset fit (core.imaging.metrics.psnr_fitted). The model's estimate: the [mean]
layer of its default run — the mean head's one pass with the low-frequency check against the frame
(`denoise(frame, model, seed=0, n_samples=0)`: the samples would not change it) — nothing adapted. BM3D: VST with the fitted camera, its strength the best of
bench/baselines.vst_bm3d_camera_candidates *against this truth* — an oracle no user has.

Low light: bench/real_prior.py's held-out images (never trained on) with simulated noise at 3, 10 and
30 photons, [mean] PSNR against the image (its own noise included, which caps it at 30 photons).

Columns: "bundled" (the demo as shipped), "old" (the demo of ``--old-commit``, read from git), and each
``--head LABEL=PATH``: the bundled demo with PATH's mean head, or with ``@W`` a blend, W × PATH's head
+ (1 − W) × the old commit's (bench/train_bundled.blend_weights, as ``--mean-weight`` ships it).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.camera_noise import estimate_noise
from napari_diffdenoise.core.imaging.metrics import psnr_fitted

from .baselines import best_of, vst_bm3d_camera_candidates
from .common import markdown_table, write_report
from .real_calibration import LYSOSOME, TIMELAPSE, lysosome_cases, lysosome_files, timelapse_cases
from .real_prior import PHOTONS, ROOT, git_model, held_out_acquisitions, load
from .train_bundled import blend_weights

SIZE = 256


def frames(data: Path):
    """(set, label, frame, bench.frame_truth.RegisteredTruth) of every case."""
    for which in ("tuning", "held-out"):
        for case in lysosome_cases(data / LYSOSOME, SIZE, lysosome_files(data / LYSOSOME, which)):
            yield which, case[0], case[1], case[6]
    for case in timelapse_cases(data / TIMELAPSE, SIZE):
        yield "tuning", case[0], case[1], case[6]


def models(args) -> dict:
    out = {"bundled": load("demo")}
    old = load(git_model("demo", args.old_commit)) if args.old_commit else None
    if old is not None:
        out["old"] = old
    for spec in args.head:
        label, _, path = spec.partition("=")
        path, _, weight = path.partition("@")
        model = load("demo", Path(path))
        if weight:
            if old is None:
                raise SystemExit(f"--head {spec!r}: a blend (@W) is with the --old-commit's head; give --old-commit")
            if model.mean_head_gamma != old.mean_head_gamma:
                raise SystemExit(f"--head {spec!r}: its head's γ input ({model.mean_head_gamma!r}) is not the old "
                                 f"head's ({old.mean_head_gamma!r}); heads fed differently do not blend")
            model.mean_network.load_state_dict(blend_weights(model.mean_network, old.mean_network, float(weight)))
        out[label] = model
    return out


def head_mean(noisy, model):
    """The [mean] layer of the model's default run (the mean head's one pass: no samples needed)."""
    return denoise(noisy, model, seed=0, n_samples=0).mean


def oracle_bm3d_psnr(noisy, registered) -> float:
    """PSNR of VST + BM3D on the registered truth's consistent pixels, its strength chosen against that truth."""
    where = registered.consistent
    bm3d = best_of(vst_bm3d_camera_candidates(noisy, estimate_noise([noisy])), registered.truth, where)[1]
    return float(psnr_fitted(bm3d[where], registered.truth[where]))


def measure(args) -> dict:
    restorers = models(args)
    records = []
    for which, label, noisy, registered in frames(args.data):
        where = registered.consistent
        truth = registered.truth[where]
        record = {"set": which, "frame": label, "bm3d": oracle_bm3d_psnr(noisy, registered)}
        for name, model in restorers.items():
            record[name] = float(psnr_fitted(head_mean(noisy, model)[where], truth))
        records.append(record)
        print(record, flush=True)
    low_light = []
    for image, photons, noisy, clean in held_out_acquisitions(args.data):
        record = {"image": image, "photons": photons,
                  **{name: float(psnr_fitted(head_mean(noisy, model), clean)) for name, model in restorers.items()}}
        low_light.append(record)
        print(record, flush=True)
    return {"frames": records, "low_light": low_light}


def render(data: dict, args, seconds: float) -> str:
    records, low_light = data["frames"], data["low_light"]
    names = [n for n in records[0] if n not in ("set", "frame", "bm3d")]
    rows = [[r["set"], r["frame"], r["bm3d"], *[r[n] - r["bm3d"] for n in names]] for r in records]
    table = markdown_table(["set", "frame", "VST+BM3D* (dB)", *[f"{n} − BM3D" for n in names]], rows)
    lines = []
    for n in names:
        gap = np.array([r[n] - r["bm3d"] for r in records])
        lines.append(f"- **{n}**: {gap.mean():+.2f} dB against BM3D on average ({gap.min():+.2f} … {gap.max():+.2f}); "
                     f"≥ BM3D on {int((gap >= 0).sum())} of {len(gap)}")
    for n in names[1:]:
        change = np.array([r[n] - r["bundled"] for r in records])
        lines.append(f"- **{n} − bundled**: {change.mean():+.2f} dB on average, better on "
                     f"{int((change > 0).sum())} of {len(change)}")
    low_rows = [[r["image"], f"{r['photons']:g}", *[r[n] for n in names]] for r in low_light]
    low_rows.append(["mean", "", *[float(np.mean([r[n] for r in low_light])) for n in names]])
    low_table = markdown_table(["image", "photons", *names], low_rows)
    base = "old" if "old" in names else "bundled"
    low_lines = [f"- **{n} − {base}**: {np.mean([r[n] - r[base] for r in low_light]):+.3f} dB on average; at "
                 f"{PHOTONS[0]:g} photons {min(r[n] - r[base] for r in low_light if r['photons'] == PHOTONS[0]):+.2f} … "
                 f"{max(r[n] - r[base] for r in low_light if r['photons'] == PHOTONS[0]):+.2f}"
                 for n in names if n != base]
    what = [f"old: the demo of commit {args.old_commit}"] if args.old_commit else []
    what += [f"{spec.partition('=')[0]}: `{spec.partition('=')[2]}`" for spec in args.head]
    return ("PSNR on the registered truth's consistent pixels (see the module docstring of bench/real_frames.py); "
            "* oracle: BM3D's strength chosen against the truth. " + ("; ".join(what) + ". " if what else "")
            + "\n\n" + table + "\n\n" + "\n".join(lines)
            + "\n\n## Held-out real images at low light\n\n[mean] PSNR in dB (fitted) on bench/real_prior.py's held-out "
            "images with simulated noise; the last row is the low-light half of a mean head's shipping rule "
            "(docs/training.md, 'Bright camera frames').\n\n" + low_table + "\n\n" + "\n".join(low_lines)
            + f"\n\nMeasured in {seconds:.0f} s.\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real",
                        help="the real-data folder (MANIFEST.md there gives sources and licences)")
    parser.add_argument("--old-commit", help="also the bundled demo of this commit, read from git")
    parser.add_argument("--head", action="append", default=[], metavar="LABEL=PATH[@W]",
                        help="also the bundled demo with PATH's mean head (@W: blended W : 1 − W with --old-commit's)")
    parser.add_argument("--report", default="real_frames",
                        help="the page's name under docs/benchmarks (another keeps the shipped comparison's page)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    data = measure(args)
    body = render(data, args, time.perf_counter() - start)
    options = (f" --old-commit {args.old_commit}" if args.old_commit else "") + "".join(f' --head "{h}"' for h in args.head)
    options += f" --report {args.report}" if args.report != "real_frames" else ""
    path = write_report(args.report, "The mean on real camera frames against oracle BM3D", body, data,
                        command=f"python -m bench real_frames{options}")
    print(path.read_text())


if __name__ == "__main__":
    main()
