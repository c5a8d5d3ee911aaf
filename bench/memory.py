"""Memory and time on big images, each case in a fresh process (its peak RSS is its own):

- one 2048² plane in memory (``denoise``), and a 64 × 1024² stack read from a zarr store and written
  to an OME-Zarr store plane by plane (``denoise_to_zarr``): peak RSS, target ≤ 2 GB for both;
- the time per plane against its pixel count (256² … 2048²), which should grow linearly.

Every case runs the default run, what a user gets (``denoise(image, model)``: for `demo` one pass of each head
over 4 symmetries and K one-step samples), unless ``--steps`` / ``--samples`` say otherwise; the settings are in
the table.

    python -m bench memory [--stack-planes 64] [--steps S] [--samples K]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from .common import markdown_table, write_report

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    case = json.loads(sys.argv[1])
    from napari_diffdenoise import denoise, load_model
    model = load_model(case["model"])
    rng = np.random.default_rng(0)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    run = case["run"]
    settings = None
    if case["kind"] == "plane":
        image = rng.poisson(6, (case["size"], case["size"])).astype(np.uint16)
        m = denoise(image, model, seed=0, **run).metadata
        settings = (f"{m['sampler']} sampler, K = {m['n_samples']}, {m['n_steps']} network passes in a row; "
                    f"mean: {m['mean_estimator']}, std: {m['std_estimator']}, {m['symmetries']} symmetries")
    else:
        import zarr
        from napari_diffdenoise.core.run.batch import denoise_to_zarr
        shape = (case["planes"], case["size"], case["size"])
        store = zarr.open_array(case["input"], mode="w", shape=shape, dtype="uint16", chunks=(1,) + shape[1:])
        for z in range(shape[0]):  # written plane by plane: the stack is never in this process's memory
            store[z] = rng.poisson(6, shape[1:]).astype(np.uint16)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        denoise_to_zarr(case["input"], case["output"], case["model"], seed=0, **run)
    seconds = time.perf_counter() - t0
    from napari_diffdenoise.core.run.restore import DEFAULT_OVERLAP_FRACTION
    from napari_diffdenoise.core.imaging.tiling import make_tiles
    tiles = make_tiles((case["size"],) * 2, model.tile, int(model.tile * DEFAULT_OVERLAP_FRACTION))
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "baseline_mb": baseline, "seconds": seconds, "tiles": len(tiles), "settings": settings,
                      "network_mpx": sum(t.height * t.width for t in tiles) / 1e6}))
""")


def run_case(case: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return {**case, **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench memory")
    p.add_argument("--model", default="demo")
    p.add_argument("--stack-planes", type=int, default=64)
    # left out, the default run, what a user gets (for demo: one pass of each head and one-step samples)
    p.add_argument("--steps", type=int, default=None, help="the sampler's steps (default: the default run's)")
    p.add_argument("--samples", type=int, default=None, help="K (default: the default run's)")
    p.add_argument("--timing-only", action="store_true",
                   help="rerun the timing table only, keeping the memory table of the last run (bench/results)")
    p.add_argument("--rounds", type=int, default=2, help="timing rounds over all sizes; the fastest of each counts")
    args = p.parse_args(argv)
    run = {k: v for k, v in (("n_samples", args.samples), ("steps", args.steps)) if v is not None}
    common = {"model": args.model, "run": run}
    if args.timing_only:
        from .common import RESULTS

        memory = json.loads((RESULTS / "memory.json").read_text())["memory"]
    else:
        with tempfile.TemporaryDirectory() as scratch:
            memory = [run_case({**common, "kind": "plane", "size": 2048}),
                      run_case({**common, "kind": "stack", "size": 1024, "planes": args.stack_planes,
                                "input": str(Path(scratch) / "in.zarr"),
                                "output": str(Path(scratch) / "out.ome.zarr")})]
    sizes = [256, 512, 1024, 2048]
    # sizes interleaved over rounds, the fastest run of each kept: load that comes and goes on a
    # shared machine then hits every size alike instead of one
    runs = [run_case({**common, "kind": "plane", "size": s}) for _ in range(args.rounds) for s in sizes]
    timing = [min((r for r in runs if r["size"] == s), key=lambda r: r["seconds"]) for s in sizes]
    reference = next(t for t in timing if t["size"] == 512)
    settings = timing[0]["settings"]  # the stack runs with the same keywords; a plane's record names them
    memory_rows = [["one 2048² plane, in memory (`denoise`)" if m["kind"] == "plane" else
                    f"{m['planes']} × 1024² zarr → OME-Zarr (`denoise_to_zarr`)",
                    settings, m["baseline_mb"], m["peak_mb"],
                    "met" if m["peak_mb"] <= 2048 else f"missed by {m['peak_mb'] - 2048:.0f} MB", m["seconds"]]
                   for m in memory]
    time_rows = [[f"{t['size']}²", t["size"] ** 2 / 1e6, t["tiles"], t["network_mpx"], t["seconds"],
                  t["seconds"] / (t["size"] ** 2 / 1e6), t["seconds"] / t["network_mpx"],
                  (t["seconds"] / reference["seconds"]) / (t["network_mpx"] / reference["network_mpx"])]
                 for t in timing]
    per_plane = memory[1]["seconds"] / memory[1]["planes"]
    body = "\n\n".join([
        ("Peak resident memory of a fresh process (`ru_maxrss`), target ≤ 2048 MB. *baseline*: after "
        "importing the package and loading the model (and, for the stack, writing the input store)."),
        markdown_table(["case", "settings", "baseline MB", "peak MB", "≤ 2 GB", "seconds"], memory_rows),
        (f"The stack run took {per_plane:.1f} s per 1024² plane. Its peak does not grow with the number of planes: "
        "each plane is read, restored and written before the next is read."),
        (f"Time per plane against its size (one process, {settings}). The network sees each plane in tiles of the "
        "model's size with 25 % overlap, so it processes more pixels than the plane has (*network Mpx*); "
        "a plane that fits one tile has no overlap. Time is linear in the network's pixels (a constant "
        "s per network Mpx, ratio near 1); per plane pixel it grows by the overlap factor, which is bounded "
        "by (tile / (tile − overlap))² = 1.78 for large planes."),
        markdown_table(["plane", "Mpx", "tiles", "network Mpx", "seconds", "s / plane Mpx", "s / network Mpx",
                        "time ratio / network-pixel ratio (vs 512²)"], time_rows),
    ])
    write_report("memory", "Memory and time on big images", body, {"memory": memory, "timing": timing})


if __name__ == "__main__":
    main(sys.argv[1:])
