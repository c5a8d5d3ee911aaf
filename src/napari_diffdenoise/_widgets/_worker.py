"""Start / cancel / finish bookkeeping shared by the dock widgets that run a napari worker."""
from __future__ import annotations

import time

from ..core.run.run_cost import duration


class WorkerControls:
    """Mixin for a Container with ``start_button``, ``cancel_button``, ``progress`` and ``status``.
    Progress shows in the widget's bar and in napari's activity panel, with the time left."""

    _worker = None
    _activity = None
    _started = 0.0

    def _launch(self, worker, description: str = "napari-diffdenoise") -> None:
        self._worker = worker
        worker.finished.connect(self._on_finished)
        self.start_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        self.status.value = "Starting…"
        self._started = time.monotonic()
        try:
            from napari.utils import progress

            self._activity = progress(total=1000, desc=description)
        except Exception:  # noqa: BLE001 — the activity panel is a nicety; the widget's own bar suffices
            self._activity = None
        worker.start()

    def _report(self, fraction: float, text: str) -> None:
        """Move both progress bars to ``fraction`` (0–1) and show ``text`` with the time left."""
        fraction = min(max(fraction, 0.0), 1.0)  # a last step past its budget must not show time below zero
        value = int(1000 * fraction)
        self.progress.value = value
        elapsed = time.monotonic() - self._started
        left = f", about {duration(elapsed * (1 - fraction) / fraction)} left" if fraction > 0.02 else ""
        self.status.value = text + left
        activity = self._activity  # updating it can process events, _on_finished among them
        if activity is not None:
            activity.set_description(text)
            activity.update(value - activity.n)

    def cancel(self) -> None:
        """Stop the running worker at its next step (napari's quit lands at the next yield)."""
        if self._worker is not None:
            self.status.value = "Cancelling…"
            self._worker.quit()

    def _on_finished(self) -> None:
        self.start_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None
        activity, self._activity = self._activity, None
        if activity is not None:
            activity.close()

