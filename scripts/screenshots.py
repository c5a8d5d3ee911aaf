"""Screenshots of the real widgets in a napari window, for the documentation and the README.

    xvfb-run -a python scripts/screenshots.py [OUT_DIR]      (default docs/images)

Each widget is docked in a viewer holding the bundled low-light sample and shown doing its job: the
Denoise widget after a fast run (its mean, std and entropy layers added), Compare with its table
filled, Train and Calibrate ready to start. tests/test_screenshots.py runs this, so it cannot rot,
and the docs build (.ci/run) runs it before building the site, so the pictures show the widgets as
they are.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

WIDGETS = ("denoise", "compare", "train", "calibrate")  # in the order they are taken


def _wait(condition, seconds: float = 300.0) -> None:
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not finish in time")
        QApplication.processEvents()
        time.sleep(0.02)


def take(out_dir="docs/images", size=(1400, 860)) -> list[Path]:
    import napari

    from napari_diffdenoise._sample_data import make_sample_stack
    from napari_diffdenoise._widgets.calibrate import CalibrateWidget
    from napari_diffdenoise._widgets.compare import CompareWidget
    from napari_diffdenoise._widgets.denoise import PRESETS, DenoiseWidget
    from napari_diffdenoise._widgets.train import TrainWidget

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    viewer = napari.Viewer(show=True)
    try:
        viewer.window._qt_window.resize(*size)
        for data, kwargs, _ in make_sample_stack():
            viewer.add_image(data, **kwargs)
        noisy, truth = viewer.layers["low-light stack"], viewer.layers["low-light stack [truth]"]
        viewer.dims.set_current_step(0, 1)

        denoise = DenoiseWidget(viewer)
        dock = viewer.window.add_dock_widget(denoise, name="Denoise", area="right")
        denoise.image.value = noisy
        denoise.preset.value = list(PRESETS)[0]  # fast: the picture needs the layers, not the best maps
        denoise.run()
        _wait(lambda: denoise._worker is None)
        viewer.layers["low-light stack [entropy]"].visible = False
        noisy.visible = False  # the mean with the std over it, as a user looks at them
        paths.append(_shot(viewer, out / "denoise.png"))
        viewer.window.remove_dock_widget(dock)

        compare = CompareWidget(viewer)
        dock = viewer.window.add_dock_widget(compare, name="Compare", area="right")
        compare.result.value, compare.truth.value = viewer.layers["low-light stack [mean]"], truth
        compare.compute()
        noisy.visible = True
        paths.append(_shot(viewer, out / "compare.png"))
        viewer.window.remove_dock_widget(dock)

        train = TrainWidget(viewer)
        dock = viewer.window.add_dock_widget(train, name="Train", area="right")
        train.noisy.value, train.clean.value = noisy, truth
        paths.append(_shot(viewer, out / "train.png"))
        viewer.window.remove_dock_widget(dock)

        calibrate = CalibrateWidget(viewer)
        dock = viewer.window.add_dock_widget(calibrate, name="Calibrate", area="right")
        calibrate.noisy.value = noisy
        paths.append(_shot(viewer, out / "calibrate.png"))
        viewer.window.remove_dock_widget(dock)
    finally:
        viewer.close()
    return paths


def _shot(viewer, path: Path) -> Path:
    from qtpy.QtWidgets import QApplication

    for _ in range(5):  # let the dock lay itself out and the canvas draw
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.window._qt_window.grab().save(str(path))
    return path


if __name__ == "__main__":
    for written in take(*(sys.argv[1:2] or ["docs/images"])):
        print(f"wrote {written}")
