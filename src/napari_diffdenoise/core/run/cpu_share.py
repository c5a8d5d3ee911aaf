"""How many torch threads a run on the CPU takes: no more than the cores other processes leave free.

torch's threads meet at a barrier after every operation, so one thread the system has parked behind
another program holds up all of them. On this project's 2-core machine, beside one other busy process,
the default preset took 6.93 s on a real 512² plane with torch's 2 threads and 3.41 s as chosen here
(docs/benchmarks/busy_cores.md, `python -m bench busy_cores`, best of three; 7.1–13.8 s and 3.6–3.8 s in two
earlier runs); alone, 2.05 s and 2.24 s. So the load of the
other processes (this one's own CPU time taken off: its threads may still spin after a step) is read over
SAMPLE_SECONDS before a plane or a training step, at most once every READ_EVERY (a stack of small planes, a
string of Previews or an adaptation's steps share one reading; a busy reading is taken again at once, as a burst
of other work that ends within the window would otherwise slow the next READ_EVERY), and the work runs on the
cores it leaves.

A result's last bits depend on the thread count (docs/method.md, Reproducibility), so inside
:func:`same_bits` the load is not read: runs to files, whose planes give the same bits wherever they run
(core.run.batch, docs/big-data.md), with the calibration they make first, and ``adapt`` given a step count;
training (core.training.training) shares the cores only to a time budget, as a step count promises the same curve.
With torch at one thread nothing is read.

Every run, inside :func:`same_bits` too, takes no more threads than the CPUs the process may use
(:func:`usable_threads`): torch reads the process's affinity when it starts, but not a container's CPU quota, and
threads beyond the quota wait for each other the way they wait behind another program. The quota is where the
process runs, fixed while it runs, so the same bits still hold there; a cluster's workers take the coordinator's
count whatever their own (``same_bits(count_given=True)``), so that every plane agrees.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time

import joblib
import psutil
import torch

SAMPLE_SECONDS = 0.05  # the window the cores' load is read over: a few scheduler ticks, unnoticed beside a plane
READ_EVERY = 10.0  # s one reading is used for
_clock = time.monotonic
_reading: tuple[float, float] | None = None  # (_clock() it was taken, physical cores other processes kept busy)
_kept = threading.local()  # .depth: how many same_bits() scopes this thread is in; .given: one says count_given


@contextlib.contextmanager
def same_bits(count_given: bool = False):
    """Inside, in this thread, work keeps torch's thread count whatever the load (where the same bits are
    promised: see the module docstring). ``count_given``: the count was chosen elsewhere for every process
    alike (a cluster's coordinator, core.run.batch), so it stands even above the CPUs this one may use."""
    depth, given = getattr(_kept, "depth", 0), getattr(_kept, "given", False)
    _kept.depth, _kept.given = depth + 1, given or count_given
    try:
        yield
    finally:
        _kept.depth, _kept.given = depth, given


def usable_threads(limit: int) -> int:
    """``limit`` torch threads, no more than the CPUs this process may use and at least one: joblib.cpu_count
    reads the process's affinity, its container's CPU quota (cgroup v1 or v2) and LOKY_MAX_CPU_COUNT where a user
    sets it. In a container given 1 CPU of this 2-core machine the default preset took 4.2–4.6 s on a real 512²
    plane with torch's 2 threads and 3.4–3.6 s with one (docs/benchmarks/busy_cores.md, `python -m bench
    busy_cores`, two runs)."""
    return max(1, min(limit, joblib.cpu_count()))


def free_threads(limit: int) -> int:
    """Of ``limit`` torch threads, no more than :func:`usable_threads`, those not sharing a physical core with
    another process's work, at least one: torch's threads take the first cores, so the busy ones first fill the
    cores beyond ``limit``. The load is read only where there is a choice (more than one usable thread, outside
    :func:`same_bits`)."""
    global _reading
    if getattr(_kept, "given", False):
        return max(limit, 1)
    limit = usable_threads(limit)
    if limit <= 1 or getattr(_kept, "depth", 0):
        return limit
    now = _clock()
    if _reading is None or now - _reading[0] >= READ_EVERY:
        busy = _busy_cores()
        if busy is None:  # the load cannot be read here: torch's count, as before this module
            return limit
        if busy:  # a burst of other work (a shell, a redraw) must not cost the next READ_EVERY: a second reading
            again = _busy_cores()
            busy = busy if again is None else min(busy, again)
        _reading = (now, busy)
    physical = psutil.cpu_count(logical=False) or psutil.cpu_count() or os.cpu_count() or 1
    return max(1, limit - max(0, math.ceil(_reading[1]) - max(0, physical - limit)))


def _busy_cores() -> float | None:
    """Physical cores the other processes keep busy, over SAMPLE_SECONDS from now; None where the system
    does not say (a restricted /proc, say)."""
    try:
        logical = psutil.cpu_count() or os.cpu_count() or 1
        physical = psutil.cpu_count(logical=False) or logical
        own = psutil.Process()
        before = sum(own.cpu_times()[:2])
        total = sum(psutil.cpu_percent(interval=SAMPLE_SECONDS, percpu=True)) / 100  # logical cores in use
        mine = (sum(own.cpu_times()[:2]) - before) / SAMPLE_SECONDS
    except (OSError, psutil.Error, NotImplementedError):
        return None
    others = round(max(total - mine, 0.0))  # a core is busy or not: a redraw's few percent are neither
    return others * physical / logical


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's thread count set to ``count`` inside, and given back after (None: left as it is). The count is
    the process's: another thread that starts torch work meanwhile takes it too (a widget's timing beside a run,
    which then reads the same load)."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
