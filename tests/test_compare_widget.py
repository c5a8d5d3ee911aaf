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
        psnr[name] = float(table["data"][-1][table["columns"].index("PSNR")])
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


def test_compare_says_how_it_scores_clears_stale_numbers_and_warns_on_scales(make_napari_viewer, errors, monkeypatch):
    warnings = []
    monkeypatch.setattr(compare_module, "notify_warning", warnings.append)
    viewer = make_napari_viewer()
    truth = np.random.default_rng(0).random((32, 32))
    viewer.add_image(truth, name="truth")
    viewer.add_image(truth + 0.1, name="result", scale=(2, 2))
    viewer.add_image(np.zeros((16, 16)), name="small")
    w = CompareWidget(viewer)
    assert "scale-and-offset fit" in w.note.value
    w.result.value, w.truth.value = viewer.layers["result"], viewer.layers["truth"]
    w.compute()
    assert len(w.table.to_dict("split")["data"]) == 1 and warnings and "different scales" in warnings[0]
    w.result.value = viewer.layers["small"]
    w.compute()
    assert errors and len(w.table.to_dict("split")["data"]) == 0  # the earlier numbers are gone
