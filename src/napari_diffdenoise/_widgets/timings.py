"""One timing at a time for a widget's 'how long will this take' (the Denoise widget's 'Time here', the
Train widget's recalibration estimate).

Two timings side by side slow each other and both keep rates that read long (1.2–1.3× in the Train
widget, docs/performance.md, thirteenth session); the requests made while one runs are moot but the
latest, which waits. None starts while the widget's own run goes on (each would slow the other: the
widget asks again when its run ends), and the one running stops at its next network call when the
widget goes (napari waits for worker threads when it quits).
"""
from __future__ import annotations

from collections.abc import Callable

from .torch_teams import torch_worker


class OneTiming:
    """``may_start()`` is asked whenever a timing may start (a request, a timing's end, the widget's run's
    end through :meth:`next`): False holds what waits, and whoever said so calls :meth:`next` again later."""

    def __init__(self, may_start: Callable[[], bool]):
        self.may_start = may_start
        self.worker = None  # the timing running
        self.waiting = None  # the latest request made meanwhile: (job, args, on_result)

    def ask(self, job: Callable, *args, on_result: Callable) -> None:
        """Time ``job(*args, stop=…)`` in a worker (core.run.run_cost.stoppable) and give its result to
        ``on_result``: now, or after the timing running ends, unless a later request replaces it."""
        self.waiting = (job, args, on_result)
        self.next()

    def drop_waiting(self) -> None:
        self.waiting = None

    def next(self) -> None:
        """Start the request that waits, if any, none runs, and ``may_start()`` allows."""
        if self.worker is not None or not self.may_start() or self.waiting is None:  # may_start may ask anew
            return
        (job, args, on_result), self.waiting = self.waiting, None
        worker = torch_worker(job, *args, stop=lambda: worker.abort_requested, _start_thread=False)
        worker.returned.connect(on_result)
        worker.finished.connect(self._ended)
        self.worker = worker
        worker.start()

    def _ended(self) -> None:
        self.worker = None
        self.next()

    def stop(self) -> None:
        """The widget is gone: the timing running stops at its next network call and none waiting starts."""
        self.waiting = None
        if self.worker is not None:
            self.worker.quit()
