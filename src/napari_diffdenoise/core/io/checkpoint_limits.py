"""What a checkpoint's metadata may ask for, checked before any tensor is read (core.io.checkpoint):
bounds on the network's sizes and on the parameters they make together, and values that would give
wrong maps without an error."""
from __future__ import annotations

import math

from ..imaging.normalization import SAMPLE_RANGE
from ..model.model import MEAN_REFINEMENTS, MODEL_MEAN_ESTIMATORS

# what a checkpoint may ask for before anything is allocated: far beyond any network this package
# trains (the bundled ones: 32 base channels, 4 levels, T = 200, 512² tiles); two conditions are the
# sample head's (noisy image, mean estimate)
ARCHITECTURE_LIMITS = {"base_channels": (1, 512), "emb_dim": (1, 4096), "fourier_features": (1, 1024),
                       "blocks_per_level": (1, 8), "space_to_depth": (1, 8), "cond_channels": (0, 2)}
MAX_LEVELS, MAX_MULT, MAX_STEPS, TILE_RANGE = 8, 16, 100_000, (8, 8192)


# each bound above may hold while together they ask for an absurd network (512 base channels × 16
# at 8 levels is hundreds of G parameters): the count they make is bounded too, far above the
# bundled networks' 3 M
MAX_PARAMETERS = 200_000_000


def unet_parameter_count(arch: dict) -> int:
    """The parameters :class:`~.network.UNet` would have for this configuration, by arithmetic, so a
    checkpoint's request is known before anything is allocated (tests compare it with the built net)."""
    base, emb, mults = arch.get("base_channels", 32), arch.get("emb_dim", 128), list(arch.get("channel_mults", []))
    blocks, f2 = arch.get("blocks_per_level", 1), arch.get("space_to_depth", 2) ** 2
    cond, fourier = arch.get("cond_channels", 1), arch.get("fourier_features", 32)

    def res(c_in, c_out):
        return (2 * c_in + 9 * c_in * c_out + c_out + 2 * emb * c_out + 2 * c_out + 2 * c_out + 9 * c_out * c_out
                + c_out + (c_in * c_out + c_out if c_in != c_out else 0))

    ch = [base * m for m in mults]
    total = 2 * fourier * emb + emb + emb * emb + emb + 9 * (1 + cond) * f2 * ch[0] + ch[0]
    skips, c = [ch[0]], ch[0]
    for level, c_level in enumerate(ch):
        for _ in range(blocks):
            total += res(c, c_level)
            c = c_level
            skips.append(c)
        if level < len(ch) - 1:
            total += 9 * c * c + c
            skips.append(c)
    total += 2 * res(c, c)
    for level in reversed(range(len(ch))):
        for _ in range(blocks + 1):
            total += res(c + skips.pop(), ch[level])
            c = ch[level]
        if level > 0:
            total += 9 * c * c + c
    return total + 2 * c + 9 * c * f2 + f2


def architecture_problems(arch: dict, what: str = "") -> list[str]:
    problems = [f"{what}{key} = {arch.get(key)!r} (allowed {low}–{high})" for key, (low, high) in ARCHITECTURE_LIMITS.items()
                if key in arch and not (isinstance(arch[key], int) and low <= arch[key] <= high)]
    mults = arch.get("channel_mults", [])
    if not (isinstance(mults, list) and 1 <= len(mults) <= MAX_LEVELS
            and all(isinstance(m, int) and 1 <= m <= MAX_MULT for m in mults)):
        problems.append(f"{what}channel_mults = {mults!r} (1–{MAX_LEVELS} levels of 1–{MAX_MULT})")
    if not problems:
        count = unet_parameter_count(arch)
        if count > MAX_PARAMETERS:
            problems.append(f"{what}a network of {count / 1e6:,.0f} M parameters (allowed up to "
                            f"{MAX_PARAMETERS / 1e6:,.0f} M; the bundled ones have 3 M)")
    return problems


def _finite_pair(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                and math.isfinite(v) for v in value))


def value_problems(meta: dict) -> list[str]:
    """Values that would give wrong maps without an error: a reversed range clamps every sample to
    one value (std 0), a NaN calibration factor gives NaN intervals."""
    problems = []
    norm = meta.get("normalization", {})
    value_range = norm.get("value_range", list(SAMPLE_RANGE))
    if not (_finite_pair(value_range) and value_range[0] < value_range[1]):
        problems.append(f"normalization value_range = {value_range!r} (two finite numbers, low < high)")
    percentiles = norm.get("percentiles")
    if not (_finite_pair(percentiles) and 0 <= percentiles[0] < percentiles[1] <= 100):
        problems.append(f"normalization percentiles = {percentiles!r} (two numbers, 0 ≤ low < high ≤ 100)")
    estimator = meta.get("mean_estimator", "samples")
    if estimator not in MODEL_MEAN_ESTIMATORS:
        problems.append(f"mean_estimator = {estimator!r} (one of {', '.join(MODEL_MEAN_ESTIMATORS)})")
    refinement = meta.get("mean_refinement", "none")
    if refinement not in MEAN_REFINEMENTS:
        problems.append(f"mean_refinement = {refinement!r} (one of {', '.join(MEAN_REFINEMENTS)})")
    for i, entry in enumerate(meta.get("calibrations", [])):
        factors, coverages = entry.get("factors"), entry.get("coverages")
        if not (isinstance(factors, list) and isinstance(coverages, list) and factors
                and len(factors) == len(coverages)
                and all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in factors)
                and all(isinstance(v, (int, float)) and 0 < v < 1 for v in coverages)):
            problems.append(f"calibration {i + 1} factors = {factors!r} for coverages {coverages!r} (as many "
                            "finite factors ≥ 0 as coverages between 0 and 1)")
    return problems
