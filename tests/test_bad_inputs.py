"""One test per row of the bad-input matrix (tests/bad_input_matrix.py, docs/bad-inputs.md)."""
import re
from pathlib import Path

import pytest
from bad_input_matrix import ROWS, outcome


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_each_bad_input_gets_its_message(row, tmp_path, capsys):
    _, _, _, _, expected, pattern = row
    kind, message = outcome(row, tmp_path, capsys)
    if expected in ("exit 2", "returns"):
        assert kind == expected, message
    else:
        # the library's own ValueErrors that say more by their class
        assert kind == expected.__name__ or issubclass(expected, ValueError) and kind in ("CheckpointError",
                                                                                          "NoCalibration"), (kind, message)
    assert re.search(pattern, message), message


def test_a_large_offset_survives_normalisation(tiny_model):
    """1e9 + Poisson counts: normalised in float64, restored in float64; not a constant image."""
    import numpy as np

    from napari_diffdenoise import denoise

    counts = np.random.default_rng(0).poisson(np.tile(np.linspace(5, 50, 32), (32, 1))).astype(np.float64)
    far = denoise(1e9 + counts, tiny_model, n_samples=2, steps=2, mean="samples")
    near = denoise(100 + counts, tiny_model, n_samples=2, steps=2, mean="samples")
    assert far.mean.dtype == np.float64
    # the normalisation is affine: an offset moves the result and nothing else
    np.testing.assert_allclose(far.mean - 1e9, near.mean - 100, atol=0.05)
    assert np.ptp(far.mean) > 1


def test_fine_tuning_leaves_the_callers_model_untouched(tiny_model):
    import numpy as np
    import torch

    from napari_diffdenoise import TrainConfig, train

    before = {k: v.clone() for k, v in tiny_model.network.state_dict().items()}
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 30, (2, 64, 64)).astype(np.float32)
    result = train(rng.poisson(clean).astype(np.float32), clean, model=tiny_model,
                   config=TrainConfig(steps=2, batch_size=2, patch_size=32, warmup_steps=1), val_fraction=0.2)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.network.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in result.model.network.state_dict().items())
    assert tiny_model.name == "tiny" and result.model.network is not tiny_model.network


def test_cli_outputs_keep_the_whole_name_never_overwrite_and_carry_the_pixel_size(tmp_path, tiny_checkpoint, capsys):
    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main

    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16)
    for name in ("a.1.tif", "a.2.tif", ".hidden.tif"):
        tifffile.imwrite(tmp_path / name, image, resolution=(1 / 0.65, 1 / 0.65), resolutionunit="CENTIMETER")
        args = ["denoise", str(tmp_path / name), "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
                "--samples", "2", "--steps", "1"]
        assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"{s}_{m}.tif" for s in ("a.1", "a.2", ".hidden") for m in ("mean", "std", "entropy"))
    before = (tmp_path / "out" / "a.1_mean.tif").read_bytes()
    assert main(["denoise", str(tmp_path / "a.1.tif"), "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
                 "--samples", "2", "--steps", "1", "--seed", "3"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "out" / "a.1_mean.tif").read_bytes() == before
    with tifffile.TiffFile(tmp_path / "out" / "a.1_mean.tif") as tif:
        page = tif.pages[0]
        x = page.tags["XResolution"].value
        assert abs(x[0] / x[1] - 1 / 0.65) < 1e-3 and page.tags["ResolutionUnit"].value == 3
        assert tif.series[0].axes == "YX"


def test_a_full_disk_leaves_no_partial_maps(tmp_path, monkeypatch, tiny_checkpoint, capsys):
    import numpy as np
    import tifffile

    from napari_diffdenoise import cli
    from napari_diffdenoise.core.io import tiff_maps

    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (3, 32, 32)).astype(np.uint16))
    real = tiff_maps.TiffMaps.write_plane
    planes = []

    def disk_full_on_the_third_plane(self, position, maps):
        if len(planes) == 2:
            raise OSError(28, "No space left on device")
        planes.append(position)
        real(self, position, maps)

    monkeypatch.setattr(tiff_maps.TiffMaps, "write_plane", disk_full_on_the_third_plane)
    code = cli.main(["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "out"), "--model",
                     str(tiny_checkpoint), "--samples", "2", "--steps", "1"])
    assert code == 2 and "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # no map, no temporary file, not the folder the run made


def _tree(folder) -> dict:
    """Every file under ``folder`` with its bytes: what "nothing changed on disk" compares."""
    from pathlib import Path

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_an_output_over_its_input_is_refused_and_the_input_kept(tmp_path, tiny_checkpoint, capsys):
    import numpy as np
    import zarr

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr

    data = np.random.default_rng(0).poisson(5, (3, 32, 32)).astype(np.uint16)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(1, 32, 32), dtype=data.dtype)[...] = data
    before = _tree(tmp_path)
    args = ["--overwrite", "--model", str(tiny_checkpoint), "--samples", "1", "--steps", "1"]
    assert main(["denoise", str(tmp_path / "in.zarr"), "--out", str(tmp_path / "in.zarr"), *args]) == 2
    assert "is the input" in capsys.readouterr().err
    # the same store through another spelling of its path, and a TIFF folder inside it
    assert main(["denoise", str(tmp_path / "in.zarr"), "--out", str(tmp_path / "." / "in.zarr/"), *args]) == 2
    assert main(["denoise", str(tmp_path / "in.zarr"), "--out", str(tmp_path / "in.zarr" / "maps"), *args]) == 2
    with pytest.raises(ValueError, match="is the input"):
        denoise_to_zarr(tmp_path / "in.zarr", tmp_path / "in.zarr", str(tiny_checkpoint), overwrite=True, n_samples=1)
    with pytest.raises(ValueError, match="lies inside it"):
        denoise_to_tiff(tmp_path / "in.zarr", tmp_path / "in.zarr", str(tiny_checkpoint), stem="in", n_samples=1)
    assert _tree(tmp_path) == before
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "in.zarr"), mode="r")[...], data)
    # a folder that merely holds the input takes the maps beside it
    assert main(["denoise", str(tmp_path / "in.zarr"), "--out", str(tmp_path / "beside.zarr"), *args]) == 0


def test_the_writer_replaces_only_its_own_stores(tmp_path):
    import numpy as np
    import zarr

    from napari_diffdenoise._zarr_io import write_image

    user = tmp_path / "keep.zarr"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    zarr.create_array(str(tmp_path / "theirs.zarr"), shape=(4, 4), dtype="u1")  # a zarr store, not ours
    before = _tree(tmp_path)
    for name in ("keep.zarr", "theirs.zarr"):
        with pytest.raises(ValueError, match="not an OME-Zarr store napari-diffdenoise wrote"):
            write_image(str(tmp_path / name), np.zeros((16, 16), np.float32), {})
    assert _tree(tmp_path) == before
    # our own store, saved again (napari's dialog asked before replacing it): replaced, with the new pixels
    write_image(str(tmp_path / "ours.zarr"), np.zeros((16, 16), np.float32), {})
    write_image(str(tmp_path / "ours.zarr"), np.ones((16, 16), np.float32), {})
    assert zarr.open_group(str(tmp_path / "ours.zarr"), mode="r")["0"][...].min() == 1
    (tmp_path / "ours.zarr" / "notes.txt").write_text("added by the user since")
    with pytest.raises(ValueError, match="already exists"):
        write_image(str(tmp_path / "ours.zarr"), np.ones((16, 16), np.float32), {})
    assert (tmp_path / "ours.zarr" / "notes.txt").read_text() == "added by the user since"


def test_simulate_and_demo_keep_existing_files_unless_asked(tmp_path, capsys):
    from napari_diffdenoise.cli import main

    (tmp_path / "nuclei_clean.tif").write_bytes(b"mine")
    assert main(["simulate", "--size", "32", "--out", str(tmp_path)]) == 2
    assert "nuclei_clean.tif already exist" in capsys.readouterr().err
    assert _tree(tmp_path) == {"nuclei_clean.tif": b"mine"}
    assert main(["simulate", "--size", "32", "--out", str(tmp_path), "--overwrite"]) == 0
    assert (tmp_path / "nuclei_clean.tif").read_bytes() != b"mine" and (tmp_path / "nuclei_noisy.tif").exists()
    (tmp_path / "report.json").write_text("an earlier demo")
    before = _tree(tmp_path)
    assert main(["demo", "--out", str(tmp_path), "--samples", "1", "--steps", "1"]) == 2
    assert "report.json already exist" in capsys.readouterr().err and _tree(tmp_path) == before


def test_a_resume_checks_the_inputs_identity_and_a_partial_store_says_so(tmp_path, tiny_checkpoint):
    import numpy as np
    import tifffile
    import zarr

    from napari_diffdenoise._zarr_io import read_zarr
    from napari_diffdenoise.core.run.batch import denoise_to_zarr

    rng = np.random.default_rng(5)
    first, second = (rng.poisson(5, (3, 32, 32)).astype(np.uint16) for _ in range(2))
    tifffile.imwrite(tmp_path / "a.tif", first)
    tifffile.imwrite(tmp_path / "b.tif", second)
    settings = dict(n_samples=1, steps=1)
    meta = denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), **settings)
    assert meta["input_path"] == str((tmp_path / "a.tif").resolve()) and len(meta["input_content_sha256"]) == 64
    mean = np.asarray(zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["mean"]["0"][...])
    with pytest.raises(ValueError, match="another input"):
        denoise_to_zarr(tmp_path / "b.tif", tmp_path / "out.zarr", str(tiny_checkpoint), **settings)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["mean"]["0"][...], mean)
    # the same file, unchanged: the run is taken up again (nothing left to do)
    again = denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), **settings)
    assert again["planes_resumed"] == 3
    # the store's record stays the run's that restored the planes (it was rewritten with this call's 0 s)
    record = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs["napari_diffdenoise"]["metadata"]
    assert record["seconds"] == meta["seconds"] > 0 and record["planes_resumed"] == 0
    zarr.open_group(str(tmp_path / "out.zarr"), mode="r+")["done"][2] = False
    layers = read_zarr(tmp_path / "out.zarr")
    assert [kw["name"] for _, kw, _ in layers] == [f"out [{m}] (partial: 2/3 planes)" for m in ("mean", "std", "entropy")]
    assert layers[0][1]["metadata"]["napari_diffdenoise"]["partial"] == {"planes_done": 2, "n_planes": 3}
    tifffile.imwrite(tmp_path / "a.tif", second)  # edited in place between a kill and the resume
    with pytest.raises(ValueError, match="content has changed"):
        denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), **settings)


def test_a_failed_rename_leaves_the_earlier_maps_whole(tmp_path, monkeypatch, tiny_checkpoint, capsys):
    import os

    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.uint16))
    args = ["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
            "--samples", "2", "--steps", "1"]
    assert main(args) == 0
    before = _tree(tmp_path / "out")
    real = os.replace

    def entropy_fails(src, dst):
        if str(src).endswith(".partial") and str(dst).endswith("_entropy.tif"):
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", entropy_fails)
    assert main([*args, "--seed", "7", "--overwrite"]) == 2
    assert "Input/output error" in capsys.readouterr().err
    assert _tree(tmp_path / "out") == before  # the old set whole: no new mean beside an old entropy, no .partial


def test_the_bad_inputs_page_has_every_row_of_the_matrix():
    """docs/bad-inputs.md is regenerated (python scripts/bad_input_table.py) whenever a row is added."""
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md").read_text()
    listed = [line.split("|")[1].strip() for line in page.splitlines() if line.startswith("| ") and "---" not in line]
    assert listed[1:] == [row[0] for row in ROWS]  # listed[0] is the header


def test_a_guided_store_does_not_resume_under_another_guidance(tmp_path, tiny_checkpoint):
    """Guidance changes every sample: planes restored under one guidance weight must not be mixed with
    planes restored under another; an unguided store resumes as before."""
    import numpy as np
    import tifffile

    from napari_diffdenoise.core.imaging.physics import gaussian_psf
    from napari_diffdenoise.core.run.batch import denoise_to_zarr

    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(6).poisson(5, (2, 32, 32)).astype(np.uint16))
    guided = dict(n_samples=1, steps=1, psf=gaussian_psf(1.0), guidance="dc")
    denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), guidance_weight=0.5, **guided)
    with pytest.raises(ValueError, match="guidance_weight"):
        denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), guidance_weight=1.0, **guided)
    again = denoise_to_zarr(tmp_path / "a.tif", tmp_path / "out.zarr", str(tiny_checkpoint), guidance_weight=0.5, **guided)
    assert again["planes_resumed"] == 2


def test_an_out_folder_the_user_may_not_write_in_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    """A read-only --out failed after the restoration, naming a hidden temporary file ("Permission denied:
    …/.x.partial"); it is refused first, naming the folder. (The tests may run as root, whom permissions do not
    stop: the check's os.access stands in for a read-only folder.)"""
    import os

    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.io import tiff_maps

    tifffile.imwrite(tmp_path / "in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(tiff_maps.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    for out in (locked, locked / "maps"):  # the folder itself, and one it would be made in
        assert main(["denoise", str(tmp_path / "in.tif"), "--out", str(out)]) == 2
        assert f"--out {out}: this user may not write in {locked}" in capsys.readouterr().err
    assert not list(locked.iterdir())
    (tmp_path / "afile").write_text("mine")  # a file in the way is said as one, not as a permission or an errno
    for out in ("sub", "o.zarr"):
        assert main(["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "afile" / out)]) == 2
        assert f"{tmp_path / 'afile'} is a file, where a folder would be made" in capsys.readouterr().err
    assert main(["export", "--model", "demo", "--out", str(tmp_path / "afile" / "pkg.zip")]) == 2
    assert f"{tmp_path / 'afile'} is a file, where a folder of pkg.zip would be made" in capsys.readouterr().err
    (tmp_path / "d.tif").mkdir()  # a folder named like an image
    assert main(["denoise", str(tmp_path / "d.tif"), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'd.tif'} is a folder, not an image file" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


def _calibration_never_runs(monkeypatch):
    """A calibration on the image fails the test: what is refused must be refused before it."""
    from napari_diffdenoise.core.calibration import on_image

    def calibrating(*args, **kwargs):
        raise AssertionError("the calibration on the image ran before the output was refused")

    monkeypatch.setattr(on_image, "iter_model_for_files", calibrating)


def test_taken_outputs_are_refused_before_the_calibration_on_the_image(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.calibration.on_image import denoise_to_tiff, denoise_to_zarr
    from napari_diffdenoise.core.run.batch import denoise_to_zarr as uncalibrated_to_zarr

    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16)
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, image)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_upper.tif").write_bytes(b"an earlier run's")
    uncalibrated_to_zarr(tmp_path / "a.tif", tmp_path / "a.zarr", tiny_checkpoint, n_samples=2, steps=1)
    before = _tree(tmp_path)
    _calibration_never_runs(monkeypatch)
    run = ["--model", str(tiny_checkpoint), "--samples", "2", "--steps", "1", "--coverage", "0.9"]
    assert main(["denoise", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"), *run]) == 2
    assert "a_upper.tif already exist" in capsys.readouterr().err
    assert main(["denoise", str(tmp_path / "b.tif"), "--out", str(tmp_path / "a.zarr"), *run]) == 2
    assert "holds a run on another input" in capsys.readouterr().err
    (tmp_path / "a_file").write_bytes(b"mine")
    assert main(["denoise", str(tmp_path / "a.tif"), "--out", str(tmp_path / "a_file"), *run]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a_upper.tif already exist"):
        denoise_to_tiff(tmp_path / "a.tif", tmp_path / "out", tiny_checkpoint, stem="a", n_samples=2, steps=1,
                        coverage=0.9)
    with pytest.raises(ValueError, match="holds a run on another input"):
        denoise_to_zarr(tmp_path / "b.tif", tmp_path / "a.zarr", tiny_checkpoint, n_samples=2, steps=1, coverage=0.9)
    assert _tree(tmp_path) == {**before, "a_file": b"mine"}


def test_an_overwrite_replaces_the_whole_set_of_an_inputs_maps(tmp_path, tiny_checkpoint, capsys):
    """A run without intervals over one with them: the earlier lower and upper maps would sit beside maps they
    do not bound. Files that are not that input's maps stay."""
    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    earlier = {"a_mean.tif": b"1", "a_lower.tif": b"2", "a_upper.tif": b"3", "b_lower.tif": b"4", "a_notes.txt": b"5"}
    for name, content in earlier.items():
        (out / name).write_bytes(content)
    run = ["denoise", str(tmp_path / "a.tif"), "--out", str(out), "--model", str(tiny_checkpoint), "--samples", "2",
           "--steps", "1"]
    assert main(run) == 2 and _tree(out) == earlier
    assert main([*run, "--overwrite"]) == 0
    said = capsys.readouterr()
    assert f"removed {out / 'a_lower.tif'}, {out / 'a_upper.tif'}: an earlier run's maps" in said.err
    assert re.search(r"wrote .*a_entropy\.tif in \d+\.\d s", said.out)
    after = _tree(out)
    assert sorted(after) == ["a_entropy.tif", "a_mean.tif", "a_notes.txt", "a_std.tif", "b_lower.tif"]
    assert after["a_mean.tif"] != b"1" and after["b_lower.tif"] == b"4" and after["a_notes.txt"] == b"5"


def test_ctrl_c_ends_the_command_with_a_line_not_a_traceback_and_leaves_no_partial_maps(tmp_path, tiny_checkpoint,
                                                                                        monkeypatch, capsys):
    import numpy as np
    import tifffile

    from napari_diffdenoise import cli

    def pressed(info):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_batch_printer", lambda: pressed)
    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.uint16))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_mean.tif").write_bytes(b"an earlier run's")
    before = _tree(tmp_path)
    assert cli.main(["denoise", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"), "--model",
                     str(tiny_checkpoint), "--samples", "2", "--steps", "1", "--overwrite"]) == 130
    said = capsys.readouterr().err
    assert said.strip().endswith("interrupted (Ctrl-C, or a SIGTERM)") and "Traceback" not in said
    assert _tree(tmp_path) == before


def test_a_sigterm_stops_a_tiff_run_as_ctrl_c_does_leaving_no_part_written_maps(tmp_path):
    """A batch scheduler's time limit sends SIGTERM: it left a TIFF run's hidden .partial maps behind."""
    import signal
    import subprocess
    import sys
    import time

    import numpy as np
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.random.default_rng(0).poisson(5, (40, 64, 64)).astype(np.uint16),
                     photometric="minisblack")
    run = subprocess.Popen([sys.executable, "-m", "napari_diffdenoise.cli", "denoise", str(tmp_path / "a.tif"),
                            "--out", str(tmp_path / "out"), "--axes", "ZYX"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob(".*.partial")) and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.1)  # until the maps are being written
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted (Ctrl-C, or a SIGTERM)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # the folder it made goes with the maps


def test_a_second_acquisition_of_another_shape_is_named_as_such(tmp_path, tiny_checkpoint, capsys):
    """A stack given as the second acquisition of a single frame: the message named the axes, not --second."""
    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "frame.tif", rng.poisson(5, (32, 32)).astype(np.uint16))
    tifffile.imwrite(tmp_path / "stack.tif", rng.poisson(5, (3, 32, 32)).astype(np.uint16))
    assert main(["denoise", str(tmp_path / "frame.tif"), "--out", str(tmp_path / "out"), "--model",
                 str(tiny_checkpoint), "--samples", "2", "--steps", "1", "--coverage", "0.9", "--second",
                 str(tmp_path / "stack.tif")]) == 2
    said = capsys.readouterr().err
    assert "error: second must have the noisy image's shape (32, 32) (axes YX)" in said
    assert said.rstrip().endswith(f"{tmp_path / 'stack.tif'} has (3, 32, 32)") and not (tmp_path / "out").exists()


def test_the_cli_names_the_input_where_the_library_names_its_keyword(tmp_path, capsys):
    import numpy as np
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp_path / "tiny.tif", np.ones((3, 3), np.uint16))
    assert main(["denoise", str(tmp_path / "tiny.tif"), "--coverage", "0.9", "--out", str(tmp_path / "out")]) == 2
    # on a line of its own (no "self-calibrating" line before it: refused before the calibration began)
    assert capsys.readouterr().err == "error: the input image: planes must be at least 8×8 pixels, got (3, 3)\n"
