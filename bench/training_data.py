"""The simulated training data the bench's recipes train on (bench/train_bundled.py, bench/care.py,
bench/std_head.py): one pool and one validation batch, so the baselines see what the bundled model saw."""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor

from napari_diffdenoise.core.training.pairs import SimulatedClean, SimulatedPairs

# peak photons of the bundled models' training acquisitions (log-uniform); real camera frames reach far
# above 200 (the lysosome series: 1000–2300 photon-equivalents at their puncta, fitted by estimate_noise)
PEAK_RANGE = SimulatedPairs.peak_range
POOL_CHUNK = 192  # structure images per simulator seed: a pool of 192 is the CPU recipe's, seed 0


def _pool_chunk(args):
    source_type, extra, size, seed = args
    return source_type(pool_size=size, seed=seed, **extra).pool


def simulated_source(kind: str, target: str, pool_size: int, patch_size: int, workers: int = 0,
                     peak_range: tuple[float, float] = PEAK_RANGE):
    """The training source and the fixed validation batch. A pool larger than one chunk is drawn
    in parallel, chunk i from seed i, so its first chunk is the CPU recipe's pool."""
    t0 = time.perf_counter()
    source_type = SimulatedClean if kind == "unpaired" else SimulatedPairs
    extra = {"peak_range": tuple(peak_range), **({} if kind == "unpaired" else {"target": target})}
    sizes = [min(POOL_CHUNK, pool_size - start) for start in range(0, pool_size, POOL_CHUNK)]
    source = source_type(pool_size=sizes[0], seed=0, **extra)
    if len(sizes) > 1:
        jobs = [(source_type, extra, size, seed) for seed, size in enumerate(sizes[1:], start=1)]
        with ProcessPoolExecutor(max_workers=max(1, min(len(jobs), workers or os.cpu_count() or 1))) as pool:
            for chunk in pool.map(_pool_chunk, jobs):
                source.pool.extend(chunk)
    val_batch = source_type(pool_size=16, seed=10_000, **extra).batch(32, patch_size)
    print(f"simulated a training pool of {len(source.pool)} images in {time.perf_counter() - t0:.0f} s", flush=True)
    return source, val_batch
