"""Per-image percentile normalisation into the model's range [−1, 1] and back (CSBDeep style)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_PERCENTILES = (1.0, 99.8)
# Samples may leave [−1, 1]: training targets go through the *noisy* image's map, so structure
# brighter than its 99.8th percentile lies above +1. Clean estimates are clipped to this range.
SAMPLE_RANGE = (-1.5, 1.5)


@dataclass(frozen=True)
class IntensityMap:
    """The affine map of one image: ``low`` → −1 and ``high`` → +1, in the input's units."""

    low: float
    high: float

    @classmethod
    def from_percentiles(cls, image: np.ndarray, percentiles=DEFAULT_PERCENTILES) -> IntensityMap:
        p_low, p_high = percentiles
        if not 0 <= p_low < p_high <= 100:
            raise ValueError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {percentiles}")
        # float64: an offset of 1e9 plus a few counts is one constant in float32
        low, high = np.percentile(np.asarray(image, dtype=np.float64), [p_low, p_high])
        if not high > low:
            # a flat image has no range to stretch; any positive span keeps the map invertible
            high = low + 1.0
        return cls(float(low), float(high))

    @property
    def half_span(self) -> float:
        return (self.high - self.low) / 2

    def to_model(self, image: np.ndarray) -> np.ndarray:
        # the subtraction in float64 before the cast: the input's precision matters there, not after
        return ((np.asarray(image, dtype=np.float64) - self.low) / self.half_span - 1).astype(np.float32)

    def to_input(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float64) + 1) * self.half_span + self.low).astype(dtype)

    def scale_to_input(self, spread: np.ndarray) -> np.ndarray:
        """Map a spread (a std) from model units to input units: scale only, no offset."""
        return (np.asarray(spread, dtype=np.float32) * self.half_span).astype(np.float32)


def check_percentiles(percentiles):
    """The percentiles as given (None: the default of whoever asks), or a ValueError saying what is accepted."""
    if percentiles is not None and not (
            isinstance(percentiles, (tuple, list)) and len(percentiles) == 2
            and all(isinstance(p, (int, float, np.integer, np.floating)) and not isinstance(p, bool) and math.isfinite(p)
                    for p in percentiles) and 0 <= percentiles[0] < percentiles[1] <= 100):
        raise ValueError(f"percentiles must be two numbers (low, high) with 0 ≤ low < high ≤ 100; got {percentiles!r}")
    return percentiles
