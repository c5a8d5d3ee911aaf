"""Hot pixels: single pixels far above everything around them, which no optics can make.

A camera's hot pixel (or a cosmic-ray hit) is one pixel tens to thousands of noise standard deviations
above its neighbours, which stay at the background. Light through a microscope cannot do that: the
PSF spreads a point over several pixels, so the brightest pixel of a real spot has neighbours at a
large share of its height (a Gaussian PSF of σ = 0.5 px, twice coarser than Nyquist, still gives
e^−2 = 14 %). The models were trained on blurred structure only: a spike is read as a bright spot
and restored as a blob several pixels wide with a confident interval (a 60 014-count hot pixel on
NEUBIAS's membranes image, background 14, came back at 12 768 with 31 of the 48 pixels around it
more than 10 σ above the background, std 540, with the heads of 2026-12-05: docs/benchmarks/hot_pixels.md as
generated then; the heads shipped since, fine-tuned on bright camera frames, restore that one as data, 57 706 with
no blob, which a model trained otherwise need not).
So a pixel is *hot* when it lies above the top of the plane's intensity map (where the first
estimate clips and the bright pass takes over, core.run.bright_pass: brighter than the plane's
structure), its excess over the background around it (the median of the 16 pixels two steps away) is
more than HOT_SIGMAS noise standard deviations at that level (the camera model fitted to the plane,
core.imaging.camera_noise) and its brightest neighbour's excess is under ISOLATION of its own. It is
replaced by the median of its 8 neighbours before the plane is restored, and the mean holds what the
run's ``hot_pixels`` setting says there (core.run.run_spec.HOT_PIXELS).

A real point source sampled far coarser than Nyquist (a PSF under about 0.45 px, e.g. a
low-magnification widefield camera) can look like a hot pixel: with ``hot_pixels="pass"`` (the
default) the mean keeps its recorded value, so it is not lost; ``"replace"`` removes it, as a
blind-spot restoration (Noise2Void) would. Spikes within the range of the plane's structure are left
to the model: 10–15 σ single-pixel events are common in the dark background of NEUBIAS's nuclear-pore
image and on its FISH spots stack (of one size, as an EMCCD's single electrons are: at high gain they
can be photons, signal), and the model restores them as the noise it was trained on
(docs/benchmarks/hot_pixels.md, bench/hot_pixels.py).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .camera_noise import estimate_noise

HOT_SIGMAS = 10.0  # excess over the background, in noise standard deviations at the background's level
ISOLATION = 0.1  # the brightest of the 8 neighbours' excess, at most this share of the pixel's own
_RING8 = np.ones((3, 3), bool)
_RING8[1, 1] = False
_RING = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2) if dy or dx]  # the 8 neighbours
_OUTER = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]  # 16 px


def hot_pixels(plane: np.ndarray, above: float = -np.inf) -> np.ndarray:
    """Bool mask of the plane's hot pixels (see the module docstring), among those above ``above``."""
    p = np.asarray(plane, dtype=np.float64)
    mask = np.zeros(p.shape, bool)
    if p.ndim != 2 or min(p.shape) < 5:
        return mask
    ys, xs = np.nonzero(p > above)
    if not len(ys):
        return mask
    padded = np.pad(p, 2, mode="reflect")
    neighbour = np.max([padded[ys + 2 + dy, xs + 2 + dx] for dy, dx in _RING], axis=0)
    # isolation implies p − neighbour > (1 − ISOLATION)·excess: only strict local maxima are candidates
    peak = p[ys, xs] > neighbour
    ys, xs, neighbour = ys[peak], xs[peak], neighbour[peak]
    if not len(ys):
        return mask
    background = np.median([padded[ys + 2 + dy, xs + 2 + dx] for dy, dx in _OUTER], axis=0)
    excess = p[ys, xs] - background
    sd = np.sqrt(estimate_noise([p]).variance(background))
    hot = (excess > HOT_SIGMAS * sd) & (neighbour - background < ISOLATION * excess)
    mask[ys[hot], xs[hot]] = True
    return mask


def neighbours_median(plane: np.ndarray) -> np.ndarray:
    """Each pixel's 8 neighbours' median (float64): what a hot pixel is replaced by."""
    return ndimage.median_filter(np.asarray(plane, dtype=np.float64), footprint=_RING8, mode="reflect")


def said(metadata: dict) -> str:
    """What a run's record says of the hot pixels it found ("" for none), as the widget and the CLI show it."""
    count = metadata.get("hot_pixels_found", 0)
    if not count:
        return ""
    kept = "keeps their recorded values" if metadata.get("hot_pixels") == "pass" else "holds their neighbours' median"
    return (f"{count} hot pixel{'s' if count > 1 else ''} (single pixels far above everything near them, which no "
            f"optics makes) restored around, not as blobs; the mean {kept}")
