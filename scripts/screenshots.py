"""Screenshots of the real widgets in a napari window, for the documentation and the README.

    xvfb-run -a python scripts/screenshots.py [OUT_DIR]      (default docs/images)

Each widget is docked in a viewer holding the bundled low-light sample and shown doing its job: the
Denoise widget after a run at the default speed/quality (its mean, std, entropy and samples layers
added; then the samples and the entropy map each on their own), Compare with its table filled, Train
and Calibrate ready to start. tests/test_screenshots.py runs this, so it cannot rot, and the docs
build (.ci/run) runs it before building the site, so the pictures show the widgets as they are.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

WIDGETS = ("denoise", "compare", "train", "calibrate")
# the pictures, in the order they are taken: each widget, and the Denoise widget's samples and entropy map
SHOTS = ("denoise", "denoise-samples", "denoise-entropy", "compare", "train", "calibrate")


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
    from napari_diffdenoise._widgets.denoise import DenoiseWidget
    from napari_diffdenoise._widgets.train import TrainWidget
    from napari_diffdenoise.core.run.run_presets import DEFAULT_PRESET

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
        # the default preset, as a user starts (its labels name the chosen model's work: core.run.run_presets)
        denoise.preset.value = next(label for label in denoise.preset.choices if label.startswith(DEFAULT_PRESET + ":"))
        denoise.keep_samples.value = True
        denoise.coverage.value = 0.9  # intervals, calibrated on the image itself (the box a coverage shows, on)
        denoise.layers_section.collapsed = False  # the choice of layers shown; the sampling settings folded
        denoise.run()
        # the run done, and 'Time here' figured: its timing shares the CPU with the run and ends after it here
        _wait(lambda: denoise._worker is None and denoise._timings.worker is None
              and denoise.estimate.value.startswith("about"))
        mean, std, entropy, samples = (viewer.layers[f"low-light stack [{name}]"]
                                       for name in ("mean", "std", "entropy", "samples"))
        entropy.visible = False
        noisy.visible = False  # the mean with the std over it, as a user looks at them
        viewer.layers.selection.active = std
        paths.append(_shot(viewer, out / "denoise.png"))
        # the samples one by one (the first slider picks one), then the entropy map on its own
        mean.visible = std.visible = False
        samples.visible = True
        viewer.layers.selection.active = samples
        viewer.dims.set_current_step(0, 1)
        paths.append(_shot(viewer, out / "denoise-samples.png"))
        samples.visible = False
        entropy.visible = True
        viewer.layers.selection.active = entropy
        paths.append(_shot(viewer, out / "denoise-entropy.png"))
        mean.visible = std.visible = True
        entropy.visible = False
        viewer.dims.set_current_step(0, 0)
        viewer.layers.selection.active = mean
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
        # the widgets' 'Time here' timings may still run in Qt's thread pool: napari's own app waits for its
        # workers when it quits (aboutToQuit), which a script that closes the viewer and exits never reaches,
        # and a worker ending after Qt's teardown aborts the process
        from qtpy.QtCore import QThreadPool
        from qtpy.QtWidgets import QApplication

        QThreadPool.globalInstance().waitForDone(300_000)
        QApplication.processEvents()
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
