"""Speed of the bundled model on this machine: the presets against one BM3D call on a real 512²
plane (issue #21's yardstick, side by side in one run), batching the K samples vs tile size, and
the wall time of whole 512×512 planes for the default sampler and a 1-sample preview.

    python -m bench speed [--model demo] [--data ../shared/data/real]

The real plane is the NEUBIAS rat hippocampal neuron (xy_16bit__rat_hippocampal_neuron.tif, in
the real data folder; licence in its MANIFEST), as a user opens it: raw counts, its own noise.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import calibration, psnr_fitted
from napari_diffdenoise.core.run.restore import FAST_SAMPLER_SETTINGS

from .common import held_out_pair, markdown_table, timed, write_report

NEURON = "neubias_training_resources/xy_16bit__rat_hippocampal_neuron.tif"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def bm3d_once(plane: np.ndarray):
    """One BM3D call (the `bm3d` package) on the plane scaled to [0, 1], its noise σ estimated from
    the plane (skimage): the classical denoiser a user would otherwise run."""
    import bm3d
    from skimage.restoration import estimate_sigma

    x = plane.astype(np.float64)
    scaled = (x - x.min()) / (x.max() - x.min())
    return bm3d.bm3d(scaled, sigma_psd=float(estimate_sigma(scaled)))


@contextlib.contextmanager
def whole_plane_bright_pass():
    """The bright pass as it was before it went to boxes: over the whole plane."""
    from napari_diffdenoise.core.run import plane_sampling  # where the run looks the boxes up

    boxes = plane_sampling.bright_boxes
    plane_sampling.bright_boxes = lambda weight, margin=0: [(slice(0, weight.shape[0]), slice(0, weight.shape[1]))]
    try:
        yield
    finally:
        plane_sampling.bright_boxes = boxes


def against_bm3d(model, plane: np.ndarray):
    """Every preset on the real plane beside one BM3D call, measured in this run (these machines are
    noisy: ratios, not seconds, are what carries over). Maps of the reduced-cost routes are compared
    with the default's: max |Δ| over the plane's 0.1–99.9 percentile range."""
    _, bm3d_s = timed(lambda: bm3d_once(plane))
    from napari_diffdenoise.core.run.run_presets import preset

    fast, default = ({**preset(name).settings(model), "coverage": 0.9} for name in ("fast", "default"))
    ddim_fast = {"sampler": FAST_SAMPLER_SETTINGS["sampler"], "n_samples": FAST_SAMPLER_SETTINGS["n_samples"],
                 "sampler_params": FAST_SAMPLER_SETTINGS["sampler_params"], "coverage": 0.9}
    ddim_default = {"sampler": "ddim", "n_samples": 8, "steps": 10, "coverage": 0.9}
    low, high = np.percentile(plane, [0.1, 99.9])
    span = float(high - low)
    denoise(plane, model, seed=0, n_samples=1, steps=1, sampler="ddim")  # warm-up: the first calls pick kernels
    from napari_diffdenoise.core.run.run_cost import restoration_cost

    def work(kw):
        return "one step each (the sample head)" if kw["sampler"] == "one-step" else \
            f"{kw['sampler'].upper()} {kw.get('steps', kw.get('sampler_params', {}).get('steps'))} steps"

    rows, data, reference = [["BM3D, one call (σ estimated)", bm3d_s, "—", 1.0, "—", "—", "—"]], [], None
    runs = [
        # the widget's Preview makes one pass of the heads (no average over symmetries)
        ("Preview: the mean and std heads (no samples)", {"n_samples": 0, "symmetries": 1}, contextlib.nullcontext()),
        ("Preview, no std: the mean head alone", {"n_samples": 0, "std": "samples", "symmetries": 1},
         contextlib.nullcontext()),
        (f"fast: K={fast['n_samples']}, {work(fast)}, 90 % intervals", fast, contextlib.nullcontext()),
        (f"default: K={default['n_samples']}, {work(default)}, 90 % intervals", default, contextlib.nullcontext()),
        ("default, one pass of the heads (symmetries=1, the default before 2026-12-04 19:45)",
         {**default, "symmetries": 1}, contextlib.nullcontext()),
        (f"before the sample head, fast: K=4, {work(ddim_fast)}", ddim_fast, contextlib.nullcontext()),
        (f"before the sample head, default: K=8, {work(ddim_default)}", ddim_default, contextlib.nullcontext()),
        ("DDIM 10 steps, std from the samples (before the std head)", {**ddim_default, "std": "samples"},
         contextlib.nullcontext()),
        ("DDIM 10 steps, bright pass over the whole plane (before boxes)", ddim_default, whole_plane_bright_pass()),
        ("default, precision='bfloat16'", {**default, "precision": "bfloat16"}, contextlib.nullcontext()),
        ("DDIM 10 steps, precision='bfloat16'", {**ddim_default, "precision": "bfloat16"}, contextlib.nullcontext()),
        ("Preview, precision='bfloat16'", {"n_samples": 0, "precision": "bfloat16", "symmetries": 1},
         contextlib.nullcontext()),
    ]
    for label, kw, ctx in runs:
        with ctx:
            # the run itself, its intervals by the model's stored calibration: what calibrating on the image adds
            # is the widget's estimate's to say (core.calibration.recalibration_cost)
            result, seconds = timed(lambda kw=kw: denoise(plane, model, seed=0, calibrate_on_image=False, **kw))
        if label.startswith("default:"):
            reference = result
        deltas = ["—", "—"]
        if reference is not None and result is not reference and result.std is not None:
            change = np.abs(result.mean - reference.mean) / span
            deltas = [float(change.max()), float(np.mean(change > 0.01))]
        said = restoration_cost(model, plane.shape, plane, **kw).seconds  # what the Denoise widget's "Time here" says
        rows.append([label, seconds, said, seconds / bm3d_s, result.metadata["network_evaluations"], *deltas])
        data.append({"setting": label, "seconds": seconds, "time_here_said": said, "x_bm3d": seconds / bm3d_s,
                     "network_calls": result.metadata["network_evaluations"],
                     "bright_pass": bool(result.metadata.get("bright_pass_planes")), "max_delta": deltas})
    # what the Denoise widget and the CLI run first when they calibrate on the image (the default's settings)
    from napari_diffdenoise.core.calibration.recalibration_cost import recalibration_cost
    from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data
    from napari_diffdenoise.core.run.driving import drive
    from napari_diffdenoise.core.run.restore import calibration_settings

    label = "self-calibration on the plane (Denoise widget, CLI --self-calibrate), the default's settings"
    (calibrated, _), seconds = timed(lambda: drive(iter_calibrate_on_data(model, plane, "YX", seed=1,
                                                                          **calibration_settings(model, default))))
    said = recalibration_cost(model, plane.shape, axes="YX", sample_plane=plane, **default).seconds
    calls = calibrated.restoration.metadata["network_evaluations"]
    rows.append([label, seconds, said, seconds / bm3d_s, calls, "—", "—"])
    data.append({"setting": label, "seconds": seconds, "time_here_said": said, "x_bm3d": seconds / bm3d_s,
                 "network_calls": calls})
    return rows, {"bm3d_seconds": bm3d_s, "rows": data}


def forward_seconds(model, tile: int, batch: int, repeat: int = 3) -> float:
    net = model.network.eval().to(memory_format=torch.channels_last)
    y = torch.randn(batch, 1, tile, tile).contiguous(memory_format=torch.channels_last)
    gamma = torch.full((batch,), 0.5)
    with torch.inference_mode():
        net(y, gamma, y)  # warm-up: first calls pick kernels
        _, seconds = timed(lambda: net(y, gamma, y), repeat)
    return seconds


def settings_rows(model, tile: int = 256, repeat: int = 3) -> list[list]:
    """One forward (batch 1) under each inference setting, measured side by side in this run;
    ratios are against plain eager fp32 NCHW with autograd on."""
    net = model.network.eval()
    gamma = torch.full((1,), 0.5)
    nchw = torch.randn(1, 1, tile, tile)
    last = nchw.contiguous(memory_format=torch.channels_last)

    def run(x, grad: bool = False, bf16: bool = False):
        ctx = torch.enable_grad() if grad else torch.inference_mode()
        with ctx, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(x, gamma, x)

    threads = torch.get_num_threads()
    cases = [
        ("fp32, NCHW, autograd on", lambda: run(nchw, grad=True), "nchw"),
        ("fp32, NCHW, inference_mode", lambda: run(nchw), "nchw"),
        ("fp32, channels-last, inference_mode (default)", lambda: run(last), "last"),
        ("bf16 autocast, channels-last, inference_mode", lambda: run(last, bf16=True), "last"),
        ("fp32, channels-last, inference_mode, 1 thread", lambda: run(last), "last-1"),
    ]
    rows, base = [], None
    for label, fn, layout in cases:
        net.to(memory_format=torch.channels_last if layout.startswith("last") else torch.contiguous_format)
        torch.set_num_threads(1 if layout == "last-1" else threads)
        fn()  # warm-up
        _, seconds = timed(fn, repeat)
        base = base or seconds
        rows.append([label, seconds * 1e3, base / seconds])
    torch.set_num_threads(threads)
    net.to(memory_format=torch.channels_last)
    reference = run(last).float()
    bf16_error = float((run(last, bf16=True).float() - reference).abs().max())
    rows.append([f"(bf16 max |Δ output| vs fp32: {bf16_error:.3g})", "", ""])
    return rows


def forward_flops(model, tile: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    y = torch.randn(1, 1, tile, tile)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.network(y, torch.full((1,), 0.5), y)
    return float(counter.get_total_flops())


def sgemm_gflops(n: int = 2048) -> float:
    a = torch.randn(n, n)
    a @ a
    _, seconds = timed(lambda: a @ a, 5)
    return 2 * n**3 / seconds / 1e9


def neuron_parser(description: str) -> argparse.ArgumentParser:
    """A bench's parser with ``--model`` and ``--data`` (the real data folder holding NEURON), which
    :func:`neuron_args` checks."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real data folder (holds the neuron)")
    return parser


def neuron_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not (args.data / NEURON).is_file():
        parser.error(f"--data: {args.data / NEURON} is missing (the real plane this bench runs on)")
    return args


def main(argv=None):
    args = neuron_args(neuron_parser(__doc__), argv)
    model = load_model(args.model)
    neuron = tifffile.imread(args.data / NEURON)
    bm3d_rows, bm3d_data = against_bm3d(model, neuron)

    batching_rows, data = [], {"batching": [], "planes": []}
    for tile in (64, 128, 256, 512):
        one = forward_seconds(model, tile, 1)
        eight = forward_seconds(model, tile, 8)
        speedup = 8 * one / eight
        batching_rows.append([f"{tile}²", one * 1e3, eight * 1e3 / 8, speedup])
        data["batching"].append({"tile": tile, "s_batch1": one, "s_batch8": eight, "speedup": speedup})

    peak = sgemm_gflops()
    flop_rows = []
    for tile in (256, 512):
        flops = forward_flops(model, tile)
        seconds = forward_seconds(model, tile, 1)
        achieved = flops / seconds / 1e9
        flop_rows.append([f"{tile}²", flops / 1e9, seconds, achieved, achieved / peak])
    data["flops"] = {"peak_sgemm_gflops": peak, "rows": flop_rows}
    setting_rows = settings_rows(model)
    data["settings"] = setting_rows

    noisy, clean = held_out_pair("filaments", 10.0, 512, 0)
    plane_rows = []
    fast = {"sampler": FAST_SAMPLER_SETTINGS["sampler"], "n_samples": FAST_SAMPLER_SETTINGS["n_samples"],
            "sampler_params": FAST_SAMPLER_SETTINGS["sampler_params"]}
    for label, kw in [
        ("Preview: the mean and std heads, no samples (the widget's Preview)", {"n_samples": 0, "symmetries": 1}),
        ("previous Preview: K=1, DDIM 5 steps", {"sampler": "ddim", "n_samples": 1, "steps": 5, "eta": 0.0, "mean": "samples"}),
        ("previous default: K=8, DDIM 10 steps η=0, mean of the samples", {"sampler": "ddim", "n_samples": 8, "steps": 10,
                                                                            "eta": 0.0, "mean": "samples"}),
        (f"DDIM default before the sample head: K=8, 10 steps η=1, mean and std heads, 90 % intervals (tile {model.tile})",
         {"sampler": "ddim", "n_samples": 8, "steps": 10, "coverage": 0.9}),
        ("DDIM 10 steps, std from the samples (before the std head)", {"sampler": "ddim", "n_samples": 8, "steps": 10,
                                                                       "coverage": 0.9, "std": "samples"}),
        ("DDIM fast: K=4, 3 steps η=1, mean and std heads, 90 % intervals", dict(**fast, coverage=0.9)),
        ("DDIM 10 steps, the 8 samples batched", {"sampler": "ddim", "n_samples": 8, "steps": 10,
                                                   "batch_pixels": 8 * 512 * 512}),
        ("DDIM 10 steps, tile 256 (3×3 overlapping tiles)", {"sampler": "ddim", "n_samples": 8, "steps": 10, "tile": 256}),
        ("default: K=8, one step each (the sample head), mean and std heads, 90 % intervals", {"coverage": 0.9}),
    ]:
        result, seconds = timed(lambda kw=kw: denoise(noisy, model, seed=0, calibrate_on_image=False, **kw))
        evals = result.metadata["network_evaluations"]
        psnr = psnr_fitted(result.mean, clean)
        rho = calibration(result.std, result.mean - clean)[2] if result.std is not None else float("nan")
        plane_rows.append([label, seconds, evals, psnr, rho])
        data["planes"].append({"setting": label, "seconds": seconds, "network_calls": evals, "psnr": psnr, "rho": rho})
    # the seed procedure (ancestral, 200 steps × 15 samples) is 3000 single-sample evaluations per
    # tile: its time is extrapolated from the per-evaluation cost, measured in this run
    per_eval = plane_rows[2][1] / (8 * 10)
    seed_seconds = per_eval * 15 * model.schedule.n_steps
    plane_rows.append([f"seed procedure: K=15, ancestral {model.schedule.n_steps} steps (extrapolated)", seed_seconds,
                       "—", "— (seed.md runs it)", "—"])
    data["seed_procedure_seconds_extrapolated"] = seed_seconds

    data["against_bm3d"] = bm3d_data
    body = (
        f"## Against BM3D on a real 512² plane\n\nThe NEUBIAS rat hippocampal neuron ({neuron.shape[0]}×{neuron.shape[1]}, "
        "raw 16-bit counts, held out of training), as a user opens it. One BM3D call and every preset, side by side in "
        "this run; × BM3D is the ratio of wall times (issue #21's targets: default ≤ 0.5, fast ≤ 0.1, Preview ≤ 0.05). "
        "Max |Δ mean|: the largest difference of the mean map from the default's, over the plane's 0.1–99.9 "
        "percentile range; pixels moved: the fraction that moved by more than 1 % of that range. 'Time here' said: "
        "the Denoise widget's estimate before the run (core/run/run_cost.py: the network calls at rates timed here, "
        "what a run spends outside them timed once, per pixel and per run, on two planes, each of the bright pass's "
        "boxes found on the plane priced as a run of its own). The "
        "plane's bright dendrites take the bright pass (docs/method.md, 'The whole dynamic range'). The "
        "last row: the calibration on the image that the Denoise widget (its checkbox) and the CLI "
        "(`--self-calibrate`) run before the default run when asked for intervals calibrated here "
        "(core/calibration/self_calibration.py; its estimate: core/calibration/recalibration_cost.py).\n\n"
        + markdown_table(["setting", "seconds", "'Time here' said", "× BM3D", "network calls", "max |Δ mean|", "pixels moved > 1 %"], bm3d_rows)
        + "\n\n## Batching the K samples through the network\n\n"
        "One network forward of the bundled model (channels-last, `inference_mode`), per sample. "
        "Speed-up = 8 × (time of batch 1) / (time of batch 8): above 1, batching pays.\n\n"
        + markdown_table(["tile", "ms per sample, batch 1", "ms per sample, batch 8", "batching speed-up"], batching_rows)
        + f"\n\n## Achieved compute\n\nMeasured peak of this CPU: {peak:.0f} GFLOP/s (fp32 matrix product "
        "2048³, best of 5). Network FLOPs counted by `torch.utils.flop_counter` (convolutions and matrix "
        "products; normalisation and activations are not counted but cost time).\n\n"
        + markdown_table(["tile", "GFLOP per forward", "seconds", "GFLOP/s", "fraction of peak"], flop_rows)
        + "\n\n## Inference settings, one 256² forward, batch 1\n\nSpeed-up against the first row, all "
        "measured in this run. `torch.compile` is left out: it needs a C++ toolchain at run time that a "
        "napari install does not guarantee (a one-off measurement: +4 % for 44 s of compiling).\n\n"
        + markdown_table(["setting", "ms", "speed-up"], setting_rows)
        + "\n\n## One 512 × 512 plane\n\nA held-out filaments plane at 10 photons (noisy input "
        f"{psnr_fitted(noisy, clean):.2f} dB), so the rows also show what each setting gives.\n\n"
        + markdown_table(["setting", "seconds", "network calls", "PSNR (dB, fitted)", "Spearman ρ(std, |error|)"],
                         plane_rows)
        + f"\n\nThe fast default needs {8 * 10} sample-evaluations per pixel against {15 * model.schedule.n_steps} "
        f"for the seed procedure: {15 * model.schedule.n_steps / 80:.1f}× fewer.\n"
    )
    path = write_report("speed", "Speed on this machine", body, data)
    print(path.read_text())


if __name__ == "__main__":
    main()
