"""One test per row of the bad-input matrix (tests/bad_input_matrix.py, docs/bad-inputs.md)."""
import re

import pytest
from bad_input_matrix import ROWS, outcome


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_each_bad_input_gets_its_message(row, tmp_path, capsys):
    _, _, _, _, expected, pattern = row
    kind, message = outcome(row, tmp_path, capsys)
    if expected in ("exit 2", "returns"):
        assert kind == expected, message
    else:
        assert kind == expected.__name__ or issubclass(expected, ValueError) and kind == "CheckpointError", (kind, message)
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
    from napari_diffdenoise.core import tiff_maps

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
    assert list((tmp_path / "out").iterdir()) == []  # no map, no temporary file
