"""Speed of the bundled model on this machine: batching the K samples vs tile size, and the
wall time of whole 512×512 planes for the default sampler and a 1-sample preview.

    python -m bench speed [--model demo]
"""
from __future__ import annotations

import argparse

import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.metrics import calibration, psnr_fitted
from napari_diffdenoise.core.restore import FAST_SAMPLER_SETTINGS

from .common import held_out_pair, markdown_table, timed, write_report


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo")
    args = parser.parse_args(argv)
    model = load_model(args.model)

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
        ("Preview: the one-pass mean alone (the widget's Preview)", dict(n_samples=0)),
        ("previous Preview: K=1, DDIM 5 steps", dict(n_samples=1, steps=5, eta=0.0, mean="samples")),
        ("previous default: K=8, DDIM 10 steps η=0, mean of the samples", dict(n_samples=8, steps=10, eta=0.0,
                                                                               mean="samples")),
        (f"default: K=8, DDIM 10 steps η=1, mean head, 90 % intervals (tile {model.tile})",
         dict(n_samples=8, steps=10, coverage=0.9)),
        ("fast: K=4, DDIM 3 steps η=1, mean head, 90 % intervals", dict(**fast, coverage=0.9)),
        ("default, the 8 samples batched", dict(n_samples=8, steps=10, batch_pixels=8 * 512 * 512)),
        ("default, tile 256 (3×3 overlapping tiles)", dict(n_samples=8, steps=10, tile=256)),
    ]:
        result, seconds = timed(lambda: denoise(noisy, model, seed=0, **kw))
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

    body = (
        "## Batching the K samples through the network\n\n"
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
