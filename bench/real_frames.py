"""The [mean] layer on real camera frames against oracle VST + BM3D (issue 23: "the mean is still under
oracle BM3D").

    python -m bench real_frames                                  # the bundled demo
    python -m bench real_frames --old-commit SHA --head RUN/model-best.safetensors   # before shipping a head

Frames: frame 30 of every lysosome series (raw camera counts; bench/real_calibration.LYSOSOME_FILES
tune, the others are held out) and three 256² fields of frame 27 of the 8-bit time-lapse, centre
crops of 256². Truth: the neighbouring frames registered onto the frame and averaged
(bench/frame_truth.registered_truth); every score is taken on its consistent pixels, as PSNR after
the CARE scale-and-offset fit (core.imaging.metrics.psnr_fitted). The model's estimate: the [mean]
layer of its default run (`denoise(frame, model, seed=0)`: the camera fitted to the frame, the mean
head's one pass), nothing adapted. BM3D: VST with the fitted camera, its strength the best of
bench/baselines.vst_bm3d_camera_candidates *against this truth* — an oracle no user has.

Rows: "bundled" (the demo as shipped), "old" (the demo of ``--old-commit``, read from git), "candidate"
(the bundled demo with the mean head of ``--head``).
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
from .real_prior import ROOT, git_model, load

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
    if args.old_commit:
        out["old"] = load(git_model("demo", args.old_commit))
    if args.head:
        out["candidate"] = load("demo", args.head)
    return out


def measure(args) -> list[dict]:
    restorers = models(args)
    records = []
    for which, label, noisy, registered in frames(args.data):
        where = registered.consistent
        truth = registered.truth[where]
        bm3d = best_of(vst_bm3d_camera_candidates(noisy, estimate_noise([noisy])), registered.truth, where)[1]
        record = {"set": which, "frame": label, "bm3d": float(psnr_fitted(bm3d[where], truth))}
        for name, model in restorers.items():
            record[name] = float(psnr_fitted(denoise(noisy, model, seed=0, n_samples=2).mean[where], truth))
        records.append(record)
        print(record, flush=True)
    return records


def render(records: list[dict], args, seconds: float) -> str:
    names = [n for n in ("bundled", "old", "candidate") if n in records[0]]
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
    what = []
    if args.old_commit:
        what.append(f"old: the demo of commit {args.old_commit}")
    if args.head:
        what.append(f"candidate: the bundled demo with the mean head of `{args.head}`")
    return ("PSNR on the registered truth's consistent pixels (see the module docstring of bench/real_frames.py); "
            "* oracle: BM3D's strength chosen against the truth. " + ("; ".join(what) + ". " if what else "")
            + "\n\n" + table + "\n\n" + "\n".join(lines) + f"\n\nMeasured in {seconds:.0f} s.\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real",
                        help="the real-data folder (MANIFEST.md there gives sources and licences)")
    parser.add_argument("--old-commit", help="also the bundled demo of this commit, read from git")
    parser.add_argument("--head", type=Path, help="also the bundled demo with this checkpoint's mean head")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    records = measure(args)
    body = render(records, args, time.perf_counter() - start)
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (("old_commit", args.old_commit), ("head", args.head)) if v)
    path = write_report("real_frames", "The mean on real camera frames against oracle BM3D", body, {"records": records},
                        command=f"python -m bench real_frames{options}")
    print(path.read_text())


if __name__ == "__main__":
    main()
