import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_diffdenoise.cli import main


def test_core_imports_without_qt_napari_or_magicgui():
    code = (
        "import sys, napari_diffdenoise, napari_diffdenoise.cli\n"
        "from napari_diffdenoise.core.imaging import metrics, simulate\n"
        "from napari_diffdenoise.core.io import preview\n"
        "from napari_diffdenoise.core.run import restore\n"
        "from napari_diffdenoise.core.training import pairs, training\n"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt5', 'PySide2', 'PyQt6', 'PySide6', 'magicgui') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_does_not_import_the_package_root():
    """The root imports the core; a core module importing the root (its version, say) closes a circle."""
    import ast
    from pathlib import Path

    from napari_diffdenoise import core

    offenders = []
    root = Path(core.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and ((node.level == len(path.relative_to(root).parts) + 1
                                                      and node.module is None)
                                                     or (node.level == 0 and node.module == "napari_diffdenoise")):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "napari_diffdenoise" for a in node.names):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders, offenders
    from napari_diffdenoise import __version__
    from napari_diffdenoise.core._version import __version__ as core_version

    assert __version__ == core_version


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-diffdenoise")
    assert {w.display_name for w in manifest.contributions.widgets} == {"Denoise", "Train", "Compare", "Calibrate"}
    assert [s.key for s in manifest.contributions.sample_data] == ["low_light_stack", "widefield_stack"]


def test_widefield_sample_is_the_sharp_truth_blurred_by_its_psf():
    from scipy import ndimage

    from napari_diffdenoise._sample_data import make_widefield_stack

    (noisy, meta, _), (sharp, _, _), (psf, _, _) = make_widefield_stack()
    assert noisy.shape == sharp.shape == (4, 256, 256) and psf.ndim == 2 and abs(psf.sum() - 1) < 1e-5
    # the noise-free observation is the sharp truth convolved with the PSF (both hold the same constant)
    reblurred = np.stack([ndimage.convolve(p.astype(np.float64), psf, mode="reflect") for p in sharp])
    inner = (slice(None), slice(16, -16), slice(16, -16))
    assert abs((noisy - reblurred)[inner].mean()) < 0.1
    assert (noisy - reblurred)[inner].std() < 0.9 * (noisy - sharp)[inner].std()


def test_sample_stack_is_deterministic_and_paired():
    from napari_diffdenoise._sample_data import make_sample_stack

    (noisy, meta, kind), (clean, _, _) = make_sample_stack()
    noisy2 = make_sample_stack()[0][0]
    assert kind == "image" and noisy.shape == clean.shape == (4, 256, 256)
    np.testing.assert_array_equal(noisy, noisy2)
    # low light: the noisy planes scatter around the clean truth with a Poisson-like spread
    resid = noisy - clean
    assert abs(resid.mean()) < 0.2 and 1.0 < resid.std() < 5.0


def test_cli_simulate_then_denoise_writes_three_maps(tmp_path, tiny_checkpoint, capsys):
    assert main(["simulate", "--kind", "puncta", "--size", "48", "--out", str(tmp_path)]) == 0
    noisy_path = tmp_path / "puncta_noisy.tif"
    assert tifffile.imread(noisy_path).shape == (48, 48)
    out = tmp_path / "out"
    code = main(["denoise", str(noisy_path), "--model", str(tiny_checkpoint), "--samples", "2", "--steps", "2",
                 "--out", str(out)])
    assert code == 0
    for name in ("mean", "std", "entropy"):
        arr = tifffile.imread(out / f"puncta_noisy_{name}.tif")
        assert arr.shape == (48, 48) and arr.dtype == np.float32


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "stack4d.tif"
    tifffile.imwrite(bad, np.zeros((2, 2, 2, 16, 16), np.uint16))
    assert main(["denoise", str(bad), "--model", "nope"]) == 2
    assert "error:" in capsys.readouterr().err


def test_an_error_after_a_progress_line_starts_a_line_of_its_own(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    """A progress line ends with '\r': the error was written onto it ('0.1 min lefterror: …') and missed."""
    from napari_diffdenoise.core.run import batch

    def fails_half_way(*args, progress, **kwargs):
        progress(batch.BatchProgress(1, 2, 0, 0.5, 1.0, 1.0, "plane 1"))
        raise OSError("the disk is full")

    monkeypatch.setattr(batch, "denoise_to_tiff", fails_half_way)
    stack = tmp_path / "in.tif"
    tifffile.imwrite(stack, np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.uint16))
    assert main(["denoise", str(stack), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "1/2 planes" in err and err.endswith("\nerror: the disk is full\n")
    monkeypatch.undo()
    assert main(["denoise", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")  # no progress before it: no blank line


def test_cli_trains_on_paired_tiffs_and_resumes(tmp_path, tiny_checkpoint, capsys):
    from napari_diffdenoise import load_model
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

    noisy, clean = simulate_pair("filaments", (80, 80), Acquisition(peak_photons=5), seed=1)
    tifffile.imwrite(tmp_path / "n.tif", noisy)
    tifffile.imwrite(tmp_path / "c.tif", clean)
    out = tmp_path / "ft.safetensors"
    args = ["train", "--noisy", str(tmp_path / "n.tif"), "--clean", str(tmp_path / "c.tif"), "--model",
            str(tiny_checkpoint), "--out", str(out), "--batch-size", "2", "--patch-size", "32"]
    assert main(args + ["--steps", "4"]) == 0
    assert load_model(out).provenance["step"] == 4
    said = capsys.readouterr()
    assert re.search(r"best validation loss [0-9.e-]+, its weights beside it as ft-best\.safetensors\)$",
                     said.out.strip())
    # a 32 px strip of an 80 px plane: 40 % held out where --val-fraction says 10 %, and the run says so
    assert "validation: 40% of the pixels held out" in said.err and "more than --val-fraction asks" in said.err
    # said once the training took its data and settings, not ahead of a refusal of them
    assert main([*args, "--steps", "4", "--patch-size", "30", "--out", str(tmp_path / "p30.safetensors")]) != 0
    assert "held out" not in capsys.readouterr().err
    # with no validation strip there is no best file, and the line does not say 'None'
    assert main([*args, "--steps", "1", "--val-fraction", "0", "--out", str(tmp_path / "v0.safetensors")]) == 0
    assert capsys.readouterr().out.strip().endswith("(no validation (--val-fraction 0): no -best file)")
    assert not (tmp_path / "v0-best.safetensors").exists()
    assert main(args + ["--steps", "6", "--resume"]) == 0  # a longer run picks up at step 4
    assert len(load_model(out).provenance["history"]) == 6
    assert main(["train", "--clean", str(tmp_path / "c.tif"), "--noisy", str(tmp_path / "n.tif"), str(tmp_path / "n.tif"),
                 "--out", str(out)]) == 2  # two noisy, one clean: refused


def test_cli_deconvolves_with_a_psf_from_the_optics(tmp_path):
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

    _, blurred = simulate_pair("puncta", (64, 64), Acquisition(psf_sigma=2.0), seed=2)
    tifffile.imwrite(tmp_path / "b.tif", blurred)
    assert main(["deconvolve", str(tmp_path / "b.tif"), "--na", "0.8", "--pixel", "100", "--iterations", "5",
                 "--out", str(tmp_path)]) == 0
    restored = tifffile.imread(tmp_path / "b_mean.tif")
    assert restored.shape == (64, 64) and restored.dtype == np.float32
    assert restored.max() > blurred.max()  # sharper: light gathered back into the spots
    assert main(["deconvolve", str(tmp_path / "b.tif"), "--out", str(tmp_path)]) == 2  # no PSF given


def test_cli_denoise_with_psf_guidance_records_it(tmp_path, tiny_checkpoint):
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

    noisy, _ = simulate_pair("filaments", (48, 48), Acquisition(psf_sigma=1.5), seed=3)
    tifffile.imwrite(tmp_path / "w.tif", noisy)
    args = ["denoise", str(tmp_path / "w.tif"), "--model", str(tiny_checkpoint), "--samples", "1", "--steps", "2",
            "--sampler", "ddim-dc", "--out", str(tmp_path)]
    assert main(args) == 2  # no PSF given
    assert main(args + ["--psf-sigma", "1.5", "--sampler-param", "regulariser=l1", "--sampler-param", "guidance=2"]) == 0
    from napari_diffdenoise.core.io.tiff_maps import RUN_KEY, read_record

    with tifffile.TiffFile(tmp_path / "w_mean.tif") as tif:
        meta = read_record(tif)[RUN_KEY]
    assert meta["sampler"] == "ddim-dc" and meta["regulariser"] == "l1" and meta["guidance"] == 2
    assert meta["psf_shape"][0] % 2 == 1


def test_cli_demo_on_the_widefield_sample_writes_an_overview_beside_richardson_lucy(tmp_path):
    import json

    assert main(["demo", "--sample", "widefield", "--samples", "1", "--steps", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "widefield_report.json").read_text())
    assert report["model"] == "widefield" and report["sampler"] == "ddim-dc" and len(report["planes"]) == 4
    assert all("psnr_Richardson-Lucy" in plane for plane in report["planes"])
    assert (tmp_path / "widefield_overview.png").stat().st_size > 10_000
    assert tifffile.imread(tmp_path / "widefield_mean.tif").shape == (4, 256, 256)


def test_cli_writes_a_three_plane_stack_as_grey_planes_not_rgb(tmp_path, tiny_checkpoint):
    stack = np.random.default_rng(0).poisson(5, (3, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    assert main(["denoise", str(tmp_path / "s.tif"), "--model", str(tiny_checkpoint), "--samples", "1", "--steps", "1",
                 "--out", str(tmp_path)]) == 0
    with tifffile.TiffFile(tmp_path / "s_mean.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tif.asarray().shape == (3, 32, 32)


def test_the_layers_menus_offer_the_widgets(make_napari_viewer):
    make_napari_viewer()
    try:
        from napari._app_model import get_app_model
    except ImportError:  # napari < 0.5.5
        from napari._app_model import get_app as get_app_model

    menus = get_app_model().menus
    def ids(menu):
        return {getattr(item, "command", None) and item.command.id for item in menus.get_menu(menu)}

    assert "napari-diffdenoise.denoise_widget" in ids("napari/layers/filter")
    assert "napari-diffdenoise.compare_widget" in ids("napari/layers/measure")


def test_the_command_palette_opens_denoise_on_the_selected_layer(make_napari_viewer):
    import numpy as np

    viewer = make_napari_viewer()
    try:
        from napari._app_model import get_app_model
    except ImportError:  # napari < 0.5.5
        from napari._app_model import get_app as get_app_model
    for name in ("first", "middle", "last"):
        viewer.add_image(np.zeros((16, 16)), name=name)
    viewer.layers.selection.active = viewer.layers["middle"]  # neither the first nor the newest layer
    widget = get_app_model().commands.execute_command("napari-diffdenoise.denoise_layer").result()
    assert widget.image.value is viewer.layers["middle"]


def test_cli_mean_choices_are_the_librarys(tmp_path, headed):
    """--mean offers every estimator the library has (it once lacked the mean head)."""
    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint
    from napari_diffdenoise.core.run.restore import MEAN_ESTIMATORS

    path = tmp_path / "headed.safetensors"
    save_checkpoint(headed, path)
    noisy = np.random.default_rng(4).poisson(20, (40, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", noisy)
    for mean in ("head", "samples"):
        assert main(["denoise", str(tmp_path / "in.tif"), "--model", str(path), "--samples", "2", "--steps", "2",
                     "--mean", mean, "--out", str(tmp_path / mean)]) == 0
    head = tifffile.imread(tmp_path / "head" / "in_mean.tif")
    np.testing.assert_allclose(head, denoise(noisy, headed, n_samples=2, steps=2, mean="head").mean, rtol=1e-5, atol=1e-4)
    assert not np.allclose(head, tifffile.imread(tmp_path / "samples" / "in_mean.tif"))
    import argparse

    from napari_diffdenoise.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    mean_option = next(a for a in commands.choices["denoise"]._actions if a.dest == "mean")
    assert list(mean_option.choices) == list(MEAN_ESTIMATORS)


def test_cli_entropy_choices_are_the_librarys_and_quantised_is_the_librarys_map(tmp_path, tiny_checkpoint):
    """--entropy offers the library's definitions (core.io.maps), its default the library's, and the map it
    writes is the library's for that definition."""
    import argparse

    from napari_diffdenoise import denoise
    from napari_diffdenoise.cli import build_parser
    from napari_diffdenoise.core.io.maps import DEFAULT_ENTROPY, ENTROPY_KINDS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("denoise", "demo"):
        option = next(a for a in commands.choices[command]._actions if a.dest == "entropy")
        assert list(option.choices) == list(ENTROPY_KINDS) and option.default == DEFAULT_ENTROPY
    noisy = np.random.default_rng(4).poisson(5, (2, 40, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", noisy)
    fast = ["--model", str(tiny_checkpoint), "--samples", "4", "--steps", "2"]
    assert main(["denoise", str(tmp_path / "in.tif"), *fast, "--entropy", "quantised", "--out", str(tmp_path / "q")]) == 0
    assert main(["denoise", str(tmp_path / "in.tif"), *fast, "--out", str(tmp_path / "default")]) == 0
    quantised = tifffile.imread(tmp_path / "q" / "in_entropy.tif")
    np.testing.assert_array_equal(quantised, denoise(noisy, str(tiny_checkpoint), n_samples=4, steps=2,
                                                     entropy="quantised").entropy)
    default = tifffile.imread(tmp_path / "default" / "in_entropy.tif")
    np.testing.assert_array_equal(default, denoise(noisy, str(tiny_checkpoint), n_samples=4, steps=2).entropy)
    assert quantised.max() > 1 and default.max() < 1  # 0 … log2 4 bits, against 0 … about 0.5


def test_the_map_registry_is_public_api_and_documented():
    from pathlib import Path

    import napari_diffdenoise
    from napari_diffdenoise.core.io import maps

    assert napari_diffdenoise.register_map is maps.register_map and napari_diffdenoise.LayerStyle is maps.LayerStyle
    assert {"register_map", "LayerStyle"} <= set(napari_diffdenoise.__all__)
    api = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    assert "::: napari_diffdenoise.register_map" in api and "::: napari_diffdenoise.LayerStyle" in api


def test_train_and_adapt_refuse_an_output_that_is_one_of_their_inputs(tmp_path, tiny_checkpoint):
    """With --overwrite and its clean image as --out, train wrote its checkpoint over that image; the output
    must be a .safetensors file none of the run's inputs is, whatever --overwrite says."""
    noisy = np.random.default_rng(0).poisson(5, (80, 80)).astype(np.float32)
    tifffile.imwrite(tmp_path / "n.tif", noisy)
    tifffile.imwrite(tmp_path / "c.tif", noisy)
    before = (tmp_path / "c.tif").read_bytes()
    common = ["--steps", "2", "--batch-size", "2", "--patch-size", "32", "--overwrite"]
    assert main(["train", "--noisy", str(tmp_path / "n.tif"), "--clean", str(tmp_path / "c.tif"), "--model",
                 str(tiny_checkpoint), "--out", str(tmp_path / "c.tif"), *common]) == 2
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(Path(tiny_checkpoint).read_bytes())
    assert main(["train", "--clean", str(tmp_path / "c.tif"), "--model", str(taken), "--out", str(taken),
                 *common]) == 2  # the model it starts from
    assert main(["adapt", str(tmp_path / "n.tif"), "--model", str(taken), "--out", str(taken), "--overwrite",
                 "--steps", "1"]) == 2
    assert (tmp_path / "c.tif").read_bytes() == before
    assert taken.read_bytes() == Path(tiny_checkpoint).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p != Path(tiny_checkpoint)) == [
        "c.tif", "n.tif", "taken.safetensors"]


def test_a_folder_where_a_map_goes_is_refused_before_any_work_and_left_as_it_was(tmp_path, tiny_checkpoint):
    """With --overwrite, a folder standing at a map's name was set aside under a hidden name after the maps were
    written, and the run then failed (exit 2); a file given as --out failed only after the restoration."""
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    (tmp_path / "out" / "in_std.tif").mkdir(parents=True)
    (tmp_path / "out" / "in_std.tif" / "inside.txt").write_text("mine")
    run = ["denoise", str(tmp_path / "in.tif"), "--model", str(tiny_checkpoint), "--samples", "2", "--steps", "2"]
    assert main([*run, "--out", str(tmp_path / "out"), "--overwrite"]) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["in_std.tif"]  # no map, no hidden file
    assert (tmp_path / "out" / "in_std.tif" / "inside.txt").read_text() == "mine"
    (tmp_path / "a-file").write_text("mine")
    assert main([*run, "--out", str(tmp_path / "a-file")]) == 2
    assert main(["demo", "--samples", "2", "--steps", "2", "--out", str(tmp_path / "a-file")]) == 2
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_thread_count_out_of_range_is_refused_before_any_file_is_opened(tmp_path, tiny_checkpoint):
    """--threads -2 failed after the maps' partial files were opened, and left them; 100 000 crashed OpenMP."""
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    for threads, out in (("-2", "a"), ("0", "b"), ("100000", "c.zarr")):
        assert main(["denoise", str(tmp_path / "in.tif"), "--model", str(tiny_checkpoint), "--samples", "2",
                     "--steps", "2", "--threads", threads, "--out", str(tmp_path / out)]) == 2
        assert not (tmp_path / out).exists()


def test_a_coverage_out_of_range_is_refused_before_the_calibration_on_the_image(tmp_path, monkeypatch):
    """--coverage 90 was refused only after tens of seconds of self-calibration."""
    from napari_diffdenoise.core.calibration import on_image

    def not_reached(*args, **kwargs):
        raise AssertionError("the calibration ran")

    monkeypatch.setattr(on_image, "iter_model_for_files", not_reached)
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    for coverage in ("90", "0", "nan", "0.3"):
        assert main(["denoise", str(tmp_path / "in.tif"), "--coverage", coverage, "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_the_library_refuses_a_coverage_its_calibration_on_the_image_cannot_give_before_calibrating(monkeypatch):
    import pytest

    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.calibration import on_image

    def not_reached(*args, **kwargs):
        raise AssertionError("the calibration ran")

    monkeypatch.setattr(on_image, "iter_calibrate_on_data", not_reached)
    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=r"coverage \(--coverage\) must be between 0.5 and 0.99 for intervals calibrated"):
        denoise(image, "demo", coverage=0.3)


def test_a_file_that_is_not_a_tiff_is_named_in_the_message(tmp_path, capsys):
    (tmp_path / "text.tif").write_text("hello, not an image")
    (tmp_path / "empty.tif").write_bytes(b"")
    for name in ("text.tif", "empty.tif"):
        assert main(["denoise", str(tmp_path / name), "--out", str(tmp_path / "o")]) == 2
        assert f"{tmp_path / name} cannot be read as a TIFF" in capsys.readouterr().err


def test_a_bad_run_setting_on_the_command_line_is_named_by_its_option(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    assert main(["denoise", str(tmp_path / "in.tif"), "--samples", "-1", "--out", str(tmp_path / "o")]) == 2
    assert "error: --samples (n_samples) must be" in capsys.readouterr().err


def test_a_run_that_fails_on_its_input_leaves_no_output_folder_behind(tmp_path):
    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    assert main(["denoise", str(tmp_path / "nan.tif"), "--samples", "2", "--steps", "2",
                 "--out", str(tmp_path / "a" / "b")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.tif"]
    (tmp_path / "mine").mkdir()  # a folder the user made stays, empty or not
    assert main(["denoise", str(tmp_path / "nan.tif"), "--samples", "2", "--steps", "2",
                 "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine").is_dir()
