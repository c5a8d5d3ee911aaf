"""Start / cancel / finish bookkeeping shared by the dock widgets that run a napari worker."""
from __future__ import annotations

import time

from qtpy.QtCore import QEvent, QObject

from ..core.run.run_cost import duration


class _WhenClosed(QObject):
    """Calls ``closed`` once when ``widget`` is closed: napari's close button takes a dock's widget out of the
    window (setParent(None)) without deleting it, so Qt's ``destroyed`` does not come then; a widget deleted
    outright says so by ``destroyed``."""

    def __init__(self, widget, closed):
        super().__init__(widget)
        self._closed, self._done = closed, False
        widget.installEventFilter(self)
        widget.destroyed.connect(self._close)

    def eventFilter(self, watched, event):  # noqa: N802 — Qt's name
        if event.type() == QEvent.Type.ParentChange and watched.parent() is None:
            self._close()
        return False

    def _close(self, *_):
        if not self._done:
            self._done = True
            self._closed()


def when_closed(widget, closed) -> None:
    """``closed()`` once ``widget`` (a QWidget) leaves its dock or is deleted."""
    _WhenClosed(widget, closed)


class WorkerControls:
    """Mixin for a Container with ``start_button``, ``cancel_button``, ``progress`` and ``status``.
    Progress shows in the widget's bar and in napari's activity panel, with the time left."""

    _worker = None
    _activity = None
    _started = 0.0
    _shown = 0.0  # the fraction the bar shows
    # the panel is gone (when_closed): its controls may be deleted with its window while Qt goes on (another viewer,
    # IPython), and a slot that set one raised "wrapped C/C++ object … has been deleted" (PyQt aborts on it)
    _closed = False

    def _launch(self, worker, description: str = "napari-diffdenoise") -> None:
        self._worker = worker
        worker.finished.connect(self._on_finished)
        self.start_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        self.status.value = "Starting…"
        self._started, self._shown = time.monotonic(), 0.0
        try:
            from napari.utils import progress

            self._activity = progress(total=1000, desc=description)
        except Exception:  # noqa: BLE001 — the activity panel is a nicety; the widget's own bar suffices
            self._activity = None
        worker.start()

    def _report(self, fraction: float, text: str) -> None:
        """Move both progress bars to ``fraction`` (0–1) and show ``text`` with the time left."""
        if self._closed:
            return
        # never back: a share re-priced from the pace seen (adapt's recalibration) moved the bar from 81 % to 76 %
        fraction = self._shown = min(max(fraction, self._shown, 0.0), 1.0)  # and never past the end
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

    def _cancelled(self, said: str) -> None:
        """A cancelled run's words, its bar emptied (it stayed at the share done: 34 %, as if the run were there)."""
        if self._closed:
            return
        self.status.value = said
        self.progress.value = 0

    def _quit_when_closed(self) -> None:
        """The dock is gone: its run stops at its next step, touching no control of the widget, and adds
        nothing (no one is left to cancel it, and a run that went on for minutes added layers to a viewer whose
        user had closed what started them)."""
        self._closed = True
        if self._worker is not None:
            self._worker.quit()

    def _on_finished(self) -> None:
        if not self._closed:
            self.start_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None
        activity, self._activity = self._activity, None
        if activity is not None:
            activity.close()

