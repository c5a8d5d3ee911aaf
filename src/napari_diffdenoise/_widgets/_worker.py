"""Start / cancel / finish bookkeeping shared by the dock widgets that run a napari worker."""
from __future__ import annotations


class WorkerControls:
    """Mixin for a Container with ``start_button``, ``cancel_button``, ``progress`` and ``status``."""

    _worker = None

    def _launch(self, worker) -> None:
        self._worker = worker
        worker.finished.connect(self._on_finished)
        self.start_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        self.status.value = "Starting…"
        worker.start()

    def cancel(self) -> None:
        """Stop the running worker at its next step (napari's quit lands at the next yield)."""
        if self._worker is not None:
            self.status.value = "Cancelling…"
            self._worker.quit()

    def _on_finished(self) -> None:
        self.start_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None
