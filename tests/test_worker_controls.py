"""The progress bookkeeping shared by the widgets: no time below zero, whatever a worker reports."""
import time
from types import SimpleNamespace

from napari_diffdenoise._widgets._worker import WorkerControls


def test_a_fraction_past_the_end_shows_no_negative_time():
    controls = WorkerControls()
    controls.progress, controls.status = SimpleNamespace(value=0), SimpleNamespace(value="")
    controls._started = time.monotonic() - 30
    controls._report(1.25, "Adapting")
    assert controls.progress.value == 1000
    assert controls.status.value == "Adapting, about 0 s left"
    controls._report(0.5, "Adapting")
    assert controls.status.value == "Adapting, about 30 s left"
