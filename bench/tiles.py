"""Tiles stretched to cover a plane with fewer overlaps (core.imaging.tiling.tile_length) against tiles of
the model's own size, side by side in one run on planes larger than a tile.

    python -m bench tiles [--model demo] [--data ../shared/data/real]

The planes are the NEUBIAS rat hippocampal neuron (512², raw counts, held out of training; licence
in the real data folder's MANIFEST) mirrored to 1024² and 1536², so they hold real structure and
real noise. Each layout restores them with the one pass (mean and std heads) and with one DDIM
sample of two steps; the maps of the new layout are compared with the old one's.
"""
from __future__ import annotations

import argparse
import contextlib

import numpy as np
import tifffile

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging import tiling
from napari_diffdenoise.core.imaging.tiling import TILE_STRETCH, tile_grid

from .common import markdown_table, timed, write_report
from .speed import DEFAULT_DATA, NEURON

SIDES = (1024, 1536)
RUNS = {"one pass (mean + std heads)": {"n_samples": 0},
        "K = 1, DDIM 2 steps": {"n_samples": 1, "sampler": "ddim", "sampler_params": {"steps": 2, "eta": 1.0}}}


@contextlib.contextmanager
def tiles_of_the_setting():
    """The layout before: as many tiles of the setting's size as tile_starts takes."""
    length = tiling.tile_length
    tiling.tile_length = lambda size, tile, overlap, stretch=1.0, multiple=1: min(size, tile)
    try:
        yield
    finally:
        tiling.tile_length = length


def mirrored(plane: np.ndarray, side: int) -> np.ndarray:
    reps = -(-side // plane.shape[0])
    return np.pad(plane, [(0, reps * plane.shape[0] - plane.shape[0])] * 2, mode="symmetric")[:side, :side]


def network_pixels(model, side: int, stretch: float) -> float:
    """The pixels the network sees per call, over the plane's."""
    tile, overlap = model.tile, model.tile // 4
    m = model.network.config.size_multiple
    ys, xs, h, w = tile_grid((side, side), tile, overlap, stretch, m)
    return len(ys) * len(xs) * (-(-h // m) * m) * (-(-w // m) * m) / side ** 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    neuron = tifffile.imread(f"{args.data}/{NEURON}").astype(np.float32)
    for settings in RUNS.values():  # first calls pay one-off costs (allocations, the time estimate): not here
        denoise(neuron[:256, :256], model, seed=0, **settings)
    rows, records = [], []
    for side in SIDES:
        plane = mirrored(neuron, side)
        for label, settings in RUNS.items():
            with tiles_of_the_setting():
                old, old_s = timed(lambda: denoise(plane, model, seed=0, **settings))
            new, new_s = timed(lambda: denoise(plane, model, seed=0, **settings))
            span = float(np.subtract(*np.percentile(old.mean, [99.9, 0.1])))
            delta = float(np.abs(new.mean - old.mean).max() / span)
            moved = float(np.mean(np.abs(new.mean - old.mean) > 0.01 * span))
            with tiles_of_the_setting():
                old_pixels = network_pixels(model, side, 1.0)
            rec = {"side": side, "run": label, "old_s": old_s, "new_s": new_s, "old_pixels": old_pixels,
                   "new_pixels": network_pixels(model, side, TILE_STRETCH), "max_mean_diff": delta, "moved": moved}
            records.append(rec)
            print(rec, flush=True)
            rows.append([f"{side}²", label, rec["old_pixels"], rec["new_pixels"], old_s, new_s, new_s / old_s, delta, moved])
    body = (f"Model `{args.model}` (tiles of {model.tile}², overlap {model.tile // 4}). Old: as many tiles of the "
            f"setting's size as cover the plane; new: as few equal tiles as cover it, each up to {TILE_STRETCH:g}× "
            "the setting a side (core.imaging.tiling.tile_length). Network px / plane px: the pixels one network "
            "call sees "
            "over the plane's (overlaps are paid twice). Max |Δ mean|: over the plane's 0.1–99.9 percentile range; "
            "moved: the fraction of pixels that moved by more than 1 % of it.\n\n"
            + markdown_table(["plane", "run", "network px / plane px, old", "new", "seconds, old", "seconds, new",
                              "new / old", "max |Δ mean|", "moved > 1 %"], rows))
    write_report("tiles", "Stretched tiles against tiles of the setting", body, {"records": records})


if __name__ == "__main__":
    main()
