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


def test_compare_scores_what_the_layers_hold_and_refuses_what_it_cannot_score(make_napari_viewer, errors, monkeypatch):
    """A helper's session found: the result scored against itself (331 dB) once the truth layer was removed, a
    multiscale layer scored at its smallest level, an inverted result given r = +1, a constant truth scored as
    perfect, NaN answered by a LAPACK error, and a TZYX [mean] refused."""
    from skimage.metrics import peak_signal_noise_ratio

    from napari_diffdenoise.core.imaging.metrics import fit_scale_offset, normalise_truth

    warnings = []
    monkeypatch.setattr(compare_module, "notify_warning", warnings.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    truth = rng.random((128, 128))
    noisy = truth + rng.normal(0, 0.2, truth.shape)
    viewer.add_image(truth, name="truth")
    viewer.add_image([noisy, noisy[::2, ::2]], multiscale=True, name="pyramid")
    w = CompareWidget(viewer)
    w.result.value, w.truth.value = viewer.layers["pyramid"], viewer.layers["truth"]
    w.compute()
    table = w.table.to_dict("split")
    gt = normalise_truth(truth)
    level0 = peak_signal_noise_ratio(gt, fit_scale_offset(noisy, gt), data_range=1.0)
    assert not errors and float(table["data"][0][table["columns"].index("PSNR")]) == pytest.approx(level0, abs=0.01)
    viewer.layers.remove("truth")  # the truth combo falls to the only layer left: the table goes, a rerun is refused
    assert w.truth.value is w.result.value and len(w.table.to_dict("split")["data"]) == 0
    w.compute()
    assert errors[-1] == "Result and Ground truth must be different layers"
    viewer.add_image(truth, name="truth")
    viewer.add_image(-truth, name="inverted")
    w.result.value, w.truth.value = viewer.layers["inverted"], viewer.layers["truth"]
    w.compute()
    table = w.table.to_dict("split")
    assert float(table["data"][0][table["columns"].index("Pearson r")]) == pytest.approx(-1)
    assert warnings and "anti-correlated" in warnings[-1]
    viewer.add_image(np.full((128, 128), 3.0), name="flat")
    w.result.value, w.truth.value = viewer.layers["truth"], viewer.layers["flat"]
    w.compute()
    assert "the ground truth 'flat' is constant (every pixel 3)" in errors[-1]
    holed = truth.copy()
    holed[5, 5] = np.nan
    viewer.add_image(holed, name="holed")
    w.result.value = viewer.layers["holed"]
    w.truth.value = viewer.layers["truth"]
    w.compute()
    assert "the result 'holed' holds NaN or infinite values" in errors[-1]
    stack = rng.random((2, 3, 16, 16))  # T, Z, Y, X
    viewer.add_image(stack, name="tzyx")
    viewer.add_image(stack + 0.01, name="tzyx result")
    w.result.value, w.truth.value = viewer.layers["tzyx result"], viewer.layers["tzyx"]
    w.compute()
    assert list(w.table.to_dict("split")["index"]) == [f"plane {t}, {z}" for t in range(2) for z in range(3)] + ["mean"]


def test_the_layer_lists_follow_a_rename(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16)), name="before")
    w = CompareWidget(viewer)
    viewer.layers["before"].name = "after"
    assert [w.result.native.itemText(i) for i in range(w.result.native.count())] == ["after"]


def test_a_blank_truth_plane_is_left_out_and_said_and_the_viewer_holds_compare_weakly(make_napari_viewer, errors,
                                                                                       monkeypatch):
    warnings = []
    monkeypatch.setattr(compare_module, "notify_warning", warnings.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    truth = rng.random((3, 32, 32))
    truth[1] = 0.0  # an empty slice of the stack
    viewer.add_image(truth, name="truth")
    viewer.add_image(truth + rng.normal(0, 0.05, truth.shape), name="result")
    w = CompareWidget(viewer)
    w.result.value, w.truth.value = viewer.layers["result"], viewer.layers["truth"]
    w.compute()
    table = w.table.to_dict("split")
    psnr = [row[table["columns"].index("PSNR")] for row in table["data"]]
    assert not errors and psnr[1] == "–" and psnr[0] != "–" and psnr[2] != "–"
    assert list(table["index"])[-1] == "mean"
    assert warnings and warnings[-1].startswith("1 of 3 planes not scored (the mean leaves them out): plane 1: the "
                                                "ground truth 'truth' is constant")
    # the viewer's layer events hold the widget's followers weakly (bound methods, kept as weak references): a lambda
    # of ours there held a closed Compare alive, and kept refreshing it
    held = [cb for cb in viewer.layers.events.inserted.callbacks
            if getattr(cb, "__module__", None) and cb.__module__.startswith("napari_diffdenoise")]
    assert held == []


def test_compare_opens_on_two_different_layers_a_result_against_what_is_not_its_input(make_napari_viewer, errors):
    """Both boxes opened on the first layer, and Compute straight away was refused: a [mean] is now scored against a
    layer that is neither a result nor its input, else the first layer against the second."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(1)
    truth = rng.random((32, 32))
    viewer.add_image(truth + rng.normal(0, 0.1, truth.shape), name="cells")
    viewer.add_image(truth, name="long average")
    viewer.add_image(truth, name="cells [mean]", metadata={"napari_diffdenoise": {"source_layer": "cells"}})
    viewer.add_image(truth, name="cells [std]", metadata={"napari_diffdenoise": {"source_layer": "cells"}})
    w = CompareWidget(viewer)
    assert w.result.value is viewer.layers["cells [mean]"] and w.truth.value is viewer.layers["long average"]
    alone = make_napari_viewer()
    alone.add_image(truth, name="a")
    alone.add_image(truth + 1, name="b")
    w = CompareWidget(alone)
    assert (w.result.value.name, w.truth.value.name) == ("a", "b")
    w.compute()
    assert not errors
