"""One plane loop, several sinks (core.run.plane_loop): a deterministic run gives the same maps, value for
value, in memory, in TIFF files and in an OME-Zarr store, including one that was stopped and resumed;
for a diffusion model and for a method alike."""
import numpy as np
import pytest
import tifffile

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.io.map_store import read_maps
from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr

PSF = gaussian_psf(1.5)


class _Stop(Exception):
    pass


def _stop_at_the_second_plane(info):
    if info.text.startswith("plane 2"):  # the first plane is written and flagged done by then
        raise _Stop


@pytest.fixture
def stack(tmp_path):
    """Three planes of different content, so that a plane written in another's place shows."""
    rng = np.random.default_rng(7)
    image = np.stack([rng.poisson(lam, size=(40, 48)) for lam in (3, 9, 20)]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", image)
    return image


@pytest.mark.parametrize("run", ["model", "method"])
def test_memory_tiff_and_zarr_hold_the_same_maps(run, stack, tmp_path, tiny_model):
    model, settings = (tiny_model, {"n_samples": 2, "steps": 2, "seed": 3}) if run == "model" else \
        ("richardson-lucy", {"psf": PSF, "iterations": 3})
    source = tmp_path / "in.tif"
    in_memory = denoise(stack, model, **settings)
    names = list(in_memory.maps)
    assert names == (["mean", "std", "entropy"] if run == "model" else ["mean"])

    _, paths = denoise_to_tiff(source, tmp_path / "tif", model, stem="in", **settings)
    assert [p.name for p in paths] == [f"in_{name}.tif" for name in names]
    in_tiff = {name: tifffile.imread(path) for name, path in zip(names, paths)}

    whole = denoise_to_zarr(source, tmp_path / "whole.ome.zarr", model, **settings)
    in_zarr = {name: np.asarray(a[...]) for name, a in read_maps(tmp_path / "whole.ome.zarr")[0].items()}

    resumed_path = tmp_path / "resumed.ome.zarr"
    with pytest.raises(_Stop):
        denoise_to_zarr(source, resumed_path, model, progress=_stop_at_the_second_plane, **settings)
    resumed = denoise_to_zarr(source, resumed_path, model, **settings)
    in_resumed = {name: np.asarray(a[...]) for name, a in read_maps(resumed_path)[0].items()}
    assert whole["planes_resumed"] == 0 and resumed["planes_resumed"] == 1

    for name in names:
        expected = in_memory.maps[name]
        for sink, maps in (("tiff", in_tiff), ("zarr", in_zarr), ("resumed zarr", in_resumed)):
            assert maps[name].dtype == expected.dtype, (sink, name)
            np.testing.assert_array_equal(maps[name], expected, err_msg=f"{sink}: {name}")
    # the planes differ, so equal maps mean each plane went to its own place
    assert not np.array_equal(in_memory.mean[0], in_memory.mean[1])


def test_what_killed_runs_left_hidden_is_removed_by_the_next_run_into_the_same_output(tmp_path, tiny_model, stack):
    """A run killed while writing leaves hidden part-written files (a TIFF map of a set the next run may not make,
    a checkpoint of up to 100 MB) that no later run removed."""
    from napari_diffdenoise.core.run.batch import denoise_to_tiff
    from napari_diffdenoise.core.training.run_files import remove_stale_temporaries

    tifffile.imwrite(tmp_path / "in.tif", stack)
    maps = tmp_path / "maps"
    maps.mkdir()
    left = [maps / ".in_lower.tif.partial", maps / ".in_entropy.tif.partial"]
    other = maps / ".other_lower.tif.partial"  # another input's: not this run's to remove
    for path in (*left, other):
        path.write_bytes(b"part of a map")
    denoise_to_tiff(tmp_path / "in.tif", maps, tiny_model, stem="in", n_samples=2, steps=2)
    assert sorted(p.name for p in maps.iterdir()) == [".other_lower.tif.partial", "in_entropy.tif", "in_mean.tif",
                                                      "in_std.tif"]
    model = tmp_path / "m.safetensors"
    stale = [tmp_path / ".m.safetensors.x1y2.tmp", tmp_path / ".m.state.safetensors.z3.tmp"]
    keep = tmp_path / ".mine.safetensors.x1y2.tmp"
    for path in (*stale, keep):
        path.write_bytes(b"a checkpoint cut off")
    remove_stale_temporaries(model)
    assert not any(p.exists() for p in stale) and keep.exists()
