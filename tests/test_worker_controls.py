"""The progress bookkeeping shared by the widgets: no time below zero, and no bar running back, whatever a worker
reports."""
import time
from types import SimpleNamespace

from napari_diffdenoise._widgets._worker import WorkerControls


def _controls():
    controls = WorkerControls()
    controls.progress, controls.status = SimpleNamespace(value=0), SimpleNamespace(value="")
    controls._started = time.monotonic() - 30
    return controls


def test_a_fraction_past_the_end_shows_no_negative_time():
    controls = _controls()
    controls._report(0.5, "Adapting")
    assert controls.progress.value == 500 and controls.status.value == "Adapting, about 30 s left"
    controls._report(1.25, "Adapting")
    assert controls.progress.value == 1000
    assert controls.status.value == "Adapting, about 0 s left"


def test_the_bar_never_runs_back():
    """Adapt re-priced its recalibration from the pace it saw, and the bar fell from 81 % to 76 %."""
    controls = _controls()
    controls._report(0.81, "adapting")
    controls._report(0.76, "recalibrating the intervals on this image")
    assert controls.progress.value == 810 and controls.status.value.startswith("recalibrating")
    controls._report(0.9, "recalibrating the intervals on this image")
    assert controls.progress.value == 900
