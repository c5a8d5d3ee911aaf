"""Speed on a GPU: the presets on the real 512² neuron plane, whole 2048² planes and a stack of them,
against the GPU targets of issue #21 (a 512² plane with the default in ≤ 0.1 s; 100 planes of 2048² in
≤ 60 s), the mean's agreement with the same run on this machine's CPU, and where the default's time goes
(cProfile, by own time).

    python -m bench gpu_speed [--model demo] [--data DATA] [--planes 10]

Made for a lent GPU (CUDA or MPS; docs/performance.md): the page names the device. Without one it
measures nothing unless given ``--device cpu`` (with ``--big 256 --planes 2``: a quick check of the bench). The real plane is
bench/speed.py's (the NEUBIAS rat hippocampal neuron, raw counts); the 2048² planes are it tiled 4 × 4.
"""
from __future__ import annotations

import cProfile
import pstats

import numpy as np
import tifffile
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.model.devices import resolve_device
from napari_diffdenoise.core.run.run_presets import preset

from .common import markdown_table, timed, write_report
from .speed import NEURON, neuron_args, neuron_parser

TARGET_PLANE_S = 0.1  # a 512² plane with the default
TARGET_STACK_S = 60.0  # 100 planes of 2048²


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return device.type


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | str:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else "—"


def own_time_rows(fn, top: int = 12) -> list[list]:
    """The functions where one call of ``fn`` spends its time, by own time (a GPU's work shows as the
    waits of the calls that bring results back to the host)."""
    profile = cProfile.Profile()
    profile.runcall(fn)
    stats = pstats.Stats(profile).stats
    total = sum(v[2] for v in stats.values())
    rows = sorted(((v[2], v[1], f"{k[0].split('site-packages/')[-1].split('src/')[-1]}:{k[1]} {k[2]}")
                   for k, v in stats.items()), reverse=True)[:top]
    return [[name, calls, seconds, seconds / total] for seconds, calls, name in rows]


def main(argv=None):
    parser = neuron_parser(__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--big", type=int, default=2048, help="the large planes' side")
    parser.add_argument("--planes", type=int, default=10, help="planes in the stack (the target's 100 extrapolated)")
    parser.add_argument("--repeat", type=int, default=3)
    args = neuron_args(parser, argv)
    device = resolve_device(args.device)
    if device.type == "cpu" and args.device == "auto":  # its page is left as it is, and `all` says so
        raise SystemExit("gpu_speed: no GPU here, nothing measured (--device cpu checks the bench itself)")
    model = load_model(args.model)
    plane = tifffile.imread(args.data / NEURON)
    low, high = np.percentile(plane, [0.1, 99.9])
    span = float(high - low)
    default = {**preset("default").settings(model), "coverage": 0.9}
    fast = {**preset("fast").settings(model), "coverage": 0.9}
    ddim = {"sampler": "ddim", "n_samples": 8, "steps": 10, "coverage": 0.9}
    run = {"seed": 0, "calibrate_on_image": False, "device": str(device)}
    denoise(plane, model, n_samples=1, steps=1, sampler="ddim", **run)  # warm-up: the first calls pick kernels

    runs = [
        ("Preview: the mean and std heads, one pass", {"n_samples": 0, "symmetries": 1}),
        ("fast preset", fast),
        ("default preset", default),
        ("default preset, precision='bfloat16'", {**default, "precision": "bfloat16"}),
        ("DDIM 10 steps, K = 8", ddim),
        ("DDIM 10 steps, K = 8, precision='bfloat16'", {**ddim, "precision": "bfloat16"}),
    ]
    rows, data, reference = [], {"device": device_name(device), "plane": [], "big": [], "profile": []}, None
    for label, kw in runs:
        peak_memory_reset(device)
        result, seconds = timed(lambda kw=kw: denoise(plane, model, **run, **kw), args.repeat)
        reference = result if label == "default preset" else reference
        delta = float(np.abs(result.mean - reference.mean).max() / span) if reference is not None else None
        row = [label, seconds, result.metadata["network_evaluations"], peak_memory_gb(device),
               "—" if delta is None or result is reference else delta]
        rows.append(row)
        data["plane"].append(dict(zip(["setting", "seconds", "network_calls", "peak_gb", "max_delta"], row)))
        print(row, flush=True)

    on_cpu, cpu_seconds = timed(lambda: denoise(plane, model, **{**run, "device": "cpu"}, **default))
    cpu_delta = float(np.abs(on_cpu.mean - reference.mean).max() / span)
    cpu_share = float(np.mean(np.abs(on_cpu.mean - reference.mean) / span > 0.001))

    big = np.tile(plane, (args.big // plane.shape[0] + 1, args.big // plane.shape[1] + 1))[:args.big, :args.big]
    stack = np.broadcast_to(big, (args.planes, *big.shape))
    big_rows = []
    for label, image, axes, kw in [(f"one {args.big}² plane, default", big, "YX", default),
                                   (f"one {args.big}² plane, Preview", big, "YX", runs[0][1]),
                                   (f"{args.planes} planes of {args.big}², default", stack, "ZYX", default)]:
        peak_memory_reset(device)
        _, seconds = timed(lambda image=image, axes=axes, kw=kw: denoise(image, model, axes=axes, **run, **kw),
                           1 if image.ndim == 3 else args.repeat)
        per_100 = seconds * 100 / len(image) if image.ndim == 3 else seconds * 100
        big_rows.append([label, seconds, per_100, peak_memory_gb(device)])
        data["big"].append(dict(zip(["setting", "seconds", "per_100_planes", "peak_gb"], big_rows[-1])))
        print(big_rows[-1], flush=True)

    profile_rows = own_time_rows(lambda: denoise(plane, model, **run, **default))
    data["profile"] = profile_rows
    default_s = next(r[1] for r in rows if r[0] == "default preset")
    stack_s = big_rows[-1][2]
    body = "\n\n".join([
        (f"Device: **{device_name(device)}**; model `{args.model}`; the real 512² neuron plane "
        f"({NEURON.split('/')[-1]}, raw counts) and {args.big}² planes made of it tiled. Seconds: the best of "
        f"{args.repeat} runs after a warm-up (a stack: one run), the whole `denoise` call (normalisation, the "
        "camera fit, tiles, the bright pass, maps back on the host), intervals from the stored calibration "
        "(calibrate_on_image=False, as bench/speed.py). max |Δ| against the default preset's mean, in units of "
        "the plane's 0.1–99.9 percentile range."),
        markdown_table(["setting (512² plane)", "seconds", "network calls", "peak GPU memory (GB)",
                        "max |Δ mean| vs default"], rows),
        (f"**Target: a 512² plane with the default in ≤ {TARGET_PLANE_S:g} s: "
        f"{'met' if default_s <= TARGET_PLANE_S else 'missed'}** ({default_s:.3f} s).\n\n"
        f"The same default on this machine's CPU ({torch.get_num_threads()} torch threads): {cpu_seconds:.2f} s; "
        f"its mean differs from the GPU's by at most {cpu_delta:.2g} of the range ({cpu_share:.2%} of pixels by "
        "more than 0.001): TF32 convolutions and another summation order, not another method."),
        markdown_table(["setting", "seconds", "seconds per 100 planes", "peak GPU memory (GB)"], big_rows),
        (f"**Target: 100 planes of {args.big}² in ≤ {TARGET_STACK_S:g} s: "
        f"{'met' if stack_s <= TARGET_STACK_S else 'missed'}** ({stack_s:.1f} s, extrapolated from "
        f"{args.planes} planes)."),
        ("Where the default's time goes on the 512² plane (cProfile of one call, by own time; the GPU's work "
        "shows as the waits of the calls that bring results to the host):"),
        markdown_table(["function", "calls", "own seconds", "share"], profile_rows),
    ])
    print(write_report("gpu_speed", "Speed on a GPU", body, data,
                       command="python -m bench gpu_speed " + " ".join(argv or [])))


if __name__ == "__main__":
    main()
