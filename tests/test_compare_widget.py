import numpy as np
import pytest

from napari_diffdenoise._widgets import compare as compare_module
from napari_diffdenoise._widgets.compare import CompareWidget


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(compare_module, "notify_error", messages.append)
    return messages


def test_compare_fills_a_copyable_table_per_plane(make_napari_viewer, errors, qtbot):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.random((2, 64, 64))
    viewer.add_image(truth + rng.normal(0, 0.1, truth.shape), name="noisy")
    viewer.add_image(truth + rng.normal(0, 0.01, truth.shape), name="good")
    viewer.add_image(truth, name="truth")
    w = CompareWidget(viewer)
    w.truth.value = viewer.layers["truth"]
    psnr = {}
    for name in ("noisy", "good"):
        w.result.value = viewer.layers[name]
        w.compute()
        table = w.table.to_dict("split")
        assert list(table["index"]) == ["plane 0", "plane 1", "mean"]
        psnr[name] = table["data"][-1][table["columns"].index("PSNR")]
    assert psnr["good"] > psnr["noisy"] + 15
    w.copy()
    from qtpy.QtWidgets import QApplication

    text = QApplication.clipboard().text()
    assert text.splitlines()[0].split("\t")[1:] == list(w.table.to_dict("split")["columns"]) and "mean" in text
    assert not errors


def test_compare_refuses_mismatched_layers(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32)), name="a")
    viewer.add_image(np.zeros((30, 32)), name="b")
    w = CompareWidget(viewer)
    w.result.value, w.truth.value = viewer.layers["a"], viewer.layers["b"]
    w.compute()
    assert errors and "differ in shape" in errors[0]
