"""Where the widgets' torch work runs: never on napari's GUI thread with more than one torch thread, and each job
in a thread of its own that ends with it.

torch's OpenMP (libgomp, on Linux) keeps a team of threads for every thread that has run a parallel region, for
as long as that thread lives, and once the teams' threads outnumber the cores every team waits at its barriers
by sleeping instead of spinning: a run of many small operations goes up to twice as slow. Loading a model runs
parallel regions (its weights checked and copied), so a widget that loaded one on the GUI thread left that
thread a team for good; and napari's worker threads live on in its thread pool after their job, each with its
team. Adapting a 256² crop of the real neuron in a worker thread after a load on the GUI thread took 51 steps in
12 s where the library on the main thread took 85, and 82 as done here (2 cores; docs/benchmarks/widget_threads.md,
`python -m bench widget_threads`). On one torch thread a load starts no team, and a thread that ends takes its
team with it.
"""
from __future__ import annotations

import functools
import inspect
from concurrent.futures import ThreadPoolExecutor

import torch

from ..core.io.checkpoint import load_model
from ..core.model.model import DiffusionModel
from ..core.run.cpu_share import torch_threads


def load_here(name_or_path) -> DiffusionModel:
    """:func:`~..core.io.checkpoint.load_model`, on one torch thread (for the GUI thread)."""
    with torch_threads(1):
        return load_model(name_or_path)


def in_own_thread(job, threads: int | None = None):
    """``job`` (a function, or a generator function as napari's workers take them) run in a thread of its own
    that ends when it does, a step at a time: the napari worker that calls it waits for each step, so
    cancelling, quitting and progress work as before; the job's thread-local state (grad mode, torch's thread
    count) is its own, as in a worker thread. ``threads``: torch's count in that thread, set before the job
    starts (a new thread takes torch's count as it stands at its first torch call, which another thread's
    scope may hold at 1 for a moment — and a count taken so stays for the thread's life)."""
    def set_count():
        if threads:
            torch.set_num_threads(threads)

    if inspect.isgeneratorfunction(job):
        @functools.wraps(job)
        def steps_in_own_thread(*args, **kwargs):
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-diffdenoise",
                                    initializer=set_count) as own:
                steps = job(*args, **kwargs)  # nothing of it runs before the first step
                try:
                    while True:
                        try:
                            item = own.submit(next, steps).result()
                        except StopIteration as stop:
                            return stop.value
                        yield item
                finally:
                    own.submit(steps.close).result()
        return steps_in_own_thread

    @functools.wraps(job)
    def call_in_own_thread(*args, **kwargs):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-diffdenoise", initializer=set_count) as own:
            return own.submit(job, *args, **kwargs).result()
    return call_in_own_thread


def torch_worker(job, *args, **kwargs):
    """napari's ``create_worker`` for ``job`` run :func:`in_own_thread`, on the torch thread count of the thread
    that starts it (the GUI thread's: torch's own, or what a user set in napari's console)."""
    from napari.qt.threading import create_worker

    return create_worker(in_own_thread(job, torch.get_num_threads()), *args, **kwargs)
