"""The map registry (core.io.maps): a map registered from outside the package, with one declaration and
its function, reaches the library's result, the OME-Zarr store, the TIFF output, the reader and the
widget's layers."""
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_diffdenoise import denoise
from napari_diffdenoise.core.io.maps import MAPS, LayerStyle, map_names, register_map

SETTINGS = {"n_samples": 3, "steps": 2, "seed": 4}


def _sample_range(samples, context):
    spread = (samples.max(dim=0).values - samples.min(dim=0).values).float().cpu().numpy()
    return context.imap.scale_to_input(spread)


@pytest.fixture
def sample_range_map():
    register_map("range", _sample_range, description="max − min of the K samples, in the input's units",
                 dtype="float32", style=LayerStyle("inferno", "additive", 0.5, visible=False,
                                                   contrast=lambda meta: (0.0, 9.0)))
    try:
        yield
    finally:
        MAPS.pop("range", None)


def test_a_registered_map_flows_to_the_result_the_store_and_the_reader(sample_range_map, tiny_checkpoint, tmp_path):
    from napari_diffdenoise._zarr_io import read_zarr
    from napari_diffdenoise.core.io.map_store import read_maps
    from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr

    stack = np.random.default_rng(0).poisson(5, (2, 32, 40)).astype(np.uint16)
    result = denoise(stack, str(tiny_checkpoint), keep_samples=True, **SETTINGS)
    assert list(result.maps) == ["mean", "std", "entropy", "range"]
    expected = result.samples.max(axis=0) - result.samples.min(axis=0)
    assert result.maps["range"].dtype == np.float32 and result.maps["range"].shape == stack.shape
    np.testing.assert_allclose(result.maps["range"], expected, rtol=1e-4, atol=1e-3)
    assert expected.max() > 0

    tifffile.imwrite(tmp_path / "in.tif", stack)
    denoise_to_zarr(tmp_path / "in.tif", tmp_path / "out.zarr", str(tiny_checkpoint), **SETTINGS)
    maps, record = read_maps(tmp_path / "out.zarr")
    assert record["maps"] == ["mean", "std", "entropy", "range"]
    np.testing.assert_array_equal(np.asarray(maps["range"][...]), result.maps["range"])

    _, paths = denoise_to_tiff(tmp_path / "in.tif", tmp_path / "tiff", str(tiny_checkpoint), stem="in", **SETTINGS)
    assert [p.name for p in map(Path, paths)] == [f"in_{m}.tif" for m in ("mean", "std", "entropy", "range")]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiff" / "in_range.tif"), result.maps["range"])

    layers = {meta["name"]: meta for _, meta, _ in read_zarr(tmp_path / "out.zarr")}
    shown = layers["out [range]"]
    assert (shown["colormap"], shown["blending"], shown["opacity"], shown["visible"]) == ("inferno", "additive", 0.5,
                                                                                          False)
    assert shown["contrast_limits"] == (0.0, 9.0)
    assert shown["metadata"]["napari_diffdenoise"]["definition"].startswith("max − min of the K samples")


def test_a_registered_map_becomes_a_styled_layer_of_the_widget(sample_range_map, make_napari_viewer, tiny_checkpoint,
                                                                 qtbot):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = tiny_checkpoint
    w.n_samples.value, w.steps.value = 2, 2
    viewer.add_image(np.random.default_rng(1).poisson(5, (32, 32)).astype(np.float32), name="cells")
    w.image.value = viewer.layers["cells"]
    w.run()
    qtbot.waitUntil(lambda: "cells [range]" in viewer.layers, timeout=60_000)
    layer = viewer.layers["cells [range]"]
    assert layer.colormap.name == "inferno" and layer.blending == "additive" and not layer.visible
    assert tuple(layer.contrast_limits) == (0.0, 9.0)
    assert layer.metadata["napari_diffdenoise"]["map"] == "range"
    assert float(layer.data.max()) > 0
    # a result layer is never offered as a PSF
    assert all(choice != layer for _, choice in w._psf_choices())
    # the run's end retimes 'Time here' in a worker that restores with 'range' registered: the fixture takes the
    # map away only once it is done (it raised KeyError: 'range' in the teardown of a slow CI run)
    qtbot.waitUntil(lambda: w._timings.worker is None and w._timings.waiting is None, timeout=120_000)


def test_which_maps_a_run_makes_follows_the_declarations():
    class S:
        n_samples, coverage = 0, None

    assert map_names(S) == ["mean"]
    S.n_samples = 4
    assert map_names(S) == ["mean", "std", "entropy"]
    S.coverage = 0.9
    assert map_names(S) == ["mean", "std", "entropy", "lower", "upper"]


@pytest.mark.parametrize("name, kwargs, error, message", [
    ("std", {"compute": _sample_range}, ValueError, "already registered"),
    ("my map", {"compute": _sample_range}, ValueError, "must be a Python identifier"),
    ("spread", {"compute": None}, TypeError, "needs a compute function of"),
    ("spread", {"compute": _sample_range, "dtype": "int8"}, ValueError, "dtype must be 'input' or 'float32'"),
])
def test_a_bad_declaration_is_refused_with_a_message(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        register_map(name, description="x", **kwargs)
    assert "spread" not in MAPS and "my map" not in MAPS


def test_a_registered_map_reaches_the_command_lines_tiff_output(sample_range_map, tiny_checkpoint, tmp_path):
    from napari_diffdenoise._sample_data import sample_stack
    from napari_diffdenoise.cli import main

    stack = np.random.default_rng(3).poisson(5, (2, 32, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", stack)
    fast = ["--model", str(tiny_checkpoint), "--samples", "2", "--steps", "1"]
    assert main(["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "cli"), *fast]) == 0
    expected = denoise(stack, str(tiny_checkpoint), n_samples=2, steps=1).maps["range"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cli" / "in_range.tif"), expected)
    # the demo writes its maps from the result too, and refuses to write over an earlier one
    assert main(["demo", "--out", str(tmp_path / "demo"), *fast]) == 0
    written = sorted(p.name for p in (tmp_path / "demo").glob("sample_*.tif"))
    assert written == sorted(f"sample_{m}.tif" for m in ("mean", "std", "entropy", "range", "noisy", "truth"))
    noisy, _ = sample_stack()
    demo_range = tifffile.imread(tmp_path / "demo" / "sample_range.tif")
    np.testing.assert_array_equal(demo_range, denoise(noisy, str(tiny_checkpoint), n_samples=2, steps=1).maps["range"])
    assert demo_range.max() > 0
    (tmp_path / "demo" / "sample_range.tif").write_bytes(b"kept")
    for other in ("mean", "std", "entropy", "noisy", "truth"):
        (tmp_path / "demo" / f"sample_{other}.tif").unlink()
    (tmp_path / "demo" / "report.json").unlink()
    (tmp_path / "demo" / "sample_overview.png").unlink()
    assert main(["demo", "--out", str(tmp_path / "demo"), *fast]) == 2
    assert (tmp_path / "demo" / "sample_range.tif").read_bytes() == b"kept"
