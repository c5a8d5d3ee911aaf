"""How many torch threads a run on the CPU takes: no more than the cores other processes leave free.

torch's threads meet at a barrier after every operation, so one thread the system has parked behind
another program holds up all of them. On this project's 2-core machine, beside one other busy process,
the default preset took 13.9 s on a real 512² plane with torch's 2 threads and 3.9 s with one
(docs/benchmarks/wait_policy.md, `python -m bench wait_policy`); alone, 2.5 s with 2. So the load of the
other processes is read over SAMPLE_SECONDS before a plane (at most once every READ_EVERY: a stack of small
planes, a string of Previews or an adaptation's steps share one reading), and the plane runs on the cores it leaves.
A plane's last bits depend on the thread count (docs/method.md, Reproducibility), so where the same bits are
promised the count stays as it is: runs to files (core.run.batch, docs/big-data.md) and ``adapt`` given a
step count. With torch at one thread nothing is read.
"""
from __future__ import annotations

import contextlib
import math
import os
import time

import psutil
import torch

SAMPLE_SECONDS = 0.05  # the window the cores' load is read over: a few scheduler ticks, unnoticed beside a plane
READ_EVERY = 10.0  # s one reading is used for
_reading: tuple[float, int] | None = None  # (time.monotonic() it was taken, physical cores it found free)


def free_threads(limit: int) -> int:
    """Of ``limit`` torch threads (one per physical core by torch's default), as many as the physical cores
    that the other processes leave free, at least one. The load is read only where there is a choice
    (``limit`` above 1), and while this process's own run waits between steps, so it is other work's."""
    global _reading
    if limit <= 1:
        return max(limit, 1)
    now = time.monotonic()
    if _reading is None or now - _reading[0] >= READ_EVERY:
        _reading = (now, _free_cores())
    return max(1, min(limit, _reading[1]))


def _free_cores() -> int:
    logical = psutil.cpu_count() or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    busy = round(sum(psutil.cpu_percent(interval=SAMPLE_SECONDS, percpu=True)) / 100)  # logical cores in use
    return physical - math.ceil(busy * physical / logical)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's thread count set to ``count`` inside, and given back after (None: left as it is)."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
