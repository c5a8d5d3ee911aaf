"""The bright pass: structure far brighter than a plane's 99.8th percentile would be clipped in the
plane's intensity map, so boxes around it are restored a second time in a brighter map and blended
in where the first estimate nears its ceiling (docs/method.md)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..imaging.normalization import IntensityMap
from ..model.model import DiffusionModel


def bright_map(pixels, imap: IntensityMap) -> IntensityMap:
    """The intensity map a bright box is restored in: the box's brightest raw pixel at +1. Noise
    lifts the raw maximum above the clean one, so the clean structure fits under +1 with the value
    range's headroom to spare. (Its brightest *smoothed* pixel is not enough: a lysosome 2–3 px
    across loses a third of its peak to a 1 px blur, and the clip cut it back to 1.5 units —
    lysosome_08 in docs/benchmarks/real_frames.md.)"""
    return IntensityMap(imap.low, max(float(np.max(pixels)), imap.high))


def ceiling_level(imap: IntensityMap, model: DiffusionModel) -> float:
    """The input level where the plane's intensity map puts the model's clip ceiling: structure above it
    is what the bright pass restores again."""
    return float(imap.to_input(np.float64(model.value_range[1]), np.float64))


def without_hot_pixels(plane: np.ndarray, imap: IntensityMap, model: DiffusionModel) -> tuple[np.ndarray, np.ndarray]:
    """(the plane with its hot pixels replaced by their neighbours' median, their mask): single pixels
    above the map's ceiling that no optics makes (core.imaging.hot_pixels), which the model would
    restore as a blob — and adapt would train on as structure."""
    from ..imaging.hot_pixels import hot_pixels, neighbours_median

    hot = hot_pixels(plane, above=ceiling_level(imap, model))
    if not hot.any():
        return plane, hot
    cleaned = np.array(plane, copy=True)
    cleaned[hot] = neighbours_median(plane)[hot].astype(cleaned.dtype)
    return cleaned, hot


def reaches_ceiling(mean: np.ndarray, plane, imap: IntensityMap, model: DiffusionModel) -> bool:
    """Whether the first estimate (input units) is clipped somewhere while the data (``plane``, the
    pixels it restores) go above the ceiling too: the sign of structure brighter than the map can
    represent, whatever the percentiles say. Without the data's word an estimate at the ceiling is
    the network's own excess (an untrained one reaches it anywhere), which a brighter map cannot mend."""
    ceiling = model.value_range[1]
    return bool(imap.to_model(np.float64(np.max(plane))) > ceiling
                and imap.to_model(mean).max() >= ceiling - CEILING_TOLERANCE)


# model units: a mean of clipped samples sits just under the ceiling, not on it
CEILING_TOLERANCE = 0.05
BLEND_BAND = 0.3  # model units under the clip ceiling over which the bright map's estimate takes over
# px of context around the pixels the bright pass serves: the network sees the structure around them
# (and the blend weight is 0 at a box's edge, so no seam can show)
BRIGHT_MARGIN = 32


def bright_weight(mean: np.ndarray, imap: IntensityMap, model: DiffusionModel) -> np.ndarray:
    """Where the first map's estimate nears its clip ceiling, the bright map's estimate takes over
    (a smooth weight over the top BLEND_BAND model units, so no edge appears)."""
    level = imap.to_model(mean)
    ceiling = model.value_range[1]
    return np.clip((level - (ceiling - BLEND_BAND)) / BLEND_BAND, 0, 1).astype(np.float32)


def bright_boxes(weight: np.ndarray, margin: int = BRIGHT_MARGIN) -> list[tuple[slice, slice]]:
    """The boxes the bright pass restores: each group of pixels with a blend weight above 0, widened
    by ``margin``; boxes that overlap are merged. Bright structure is sparse on real planes, so this,
    not the whole plane, is what the second pass costs (docs/benchmarks/speed.md: 16.7 s instead of
    28.6 s for the default run on the NEUBIAS neuron)."""
    from scipy import ndimage

    grown = ndimage.binary_dilation(weight > 0, iterations=margin) if margin else weight > 0
    boxes = [(sl[0].start, sl[0].stop, sl[1].start, sl[1].stop) for sl in ndimage.find_objects(ndimage.label(grown)[0])]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [(slice(y0, y1), slice(x0, x1)) for y0, y1, x0, x1 in sorted(boxes)]


# px: the Gaussian that makes the plane the first estimate's stand-in. At 1 px a lysosome 2–3 px across lost a
# third of its peak and stayed under the ceiling its estimate reached: on 19 real planes (lysosome series, the
# 8-bit time-lapse, five NEUBIAS images) 1 px foresaw the pass on 3 of the 17 that took it, 0.5 px on all 17 and
# none of the 2 that did not; 'Time here' for six lysosome frames 1.49 s → 2.85 s, the run 2.95 s (a scratch
# measurement of 2026-12-07, docs/performance.md; not a bench page)
STAND_IN_SMOOTHING = 0.5


def expected_boxes(plane, imap: IntensityMap, model: DiffusionModel) -> list[tuple[slice, slice]]:
    """The boxes the bright pass is expected to restore on ``plane``, before the run: the pass follows
    the first estimate's mean, which does not exist yet, so the plane lightly smoothed (STAND_IN_SMOOTHING:
    the noise averaged down, as the mean has it, its peaks kept) stands in. For the run's cost and its
    progress; the pass itself follows the estimate."""
    from scipy import ndimage

    plane = np.asarray(plane, dtype=np.float32)
    stand_in = ndimage.gaussian_filter(plane, STAND_IN_SMOOTHING)
    if not reaches_ceiling(stand_in, plane, imap, model):
        return []
    return bright_boxes(bright_weight(stand_in, imap, model))


def blend_into(maps, box: tuple[slice, slice], high, weight: np.ndarray):
    """``maps`` with the bright pass's maps of ``box`` blended in by ``weight`` (the box's own)."""
    def mix(low, bright):
        if low is None or bright is None:
            return low
        out = low.copy()
        region = (...,) + box
        out[region] = (1 - weight) * low[region] + weight * bright
        return out

    return dataclasses.replace(maps, maps={name: mix(value, high.maps.get(name)) for name, value in maps.maps.items()},
                               samples=mix(maps.samples, high.samples), evaluations=maps.evaluations + high.evaluations)
