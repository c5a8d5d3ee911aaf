"""Any axes, lazy inputs and noise that does not depend on where or in what order it is drawn."""
import dask.array as da
import numpy as np
import pytest
import torch
import zarr

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.axes import check_axes, plane_positions
from napari_diffdenoise.core.imaging.tiling import make_tiles
from napari_diffdenoise.core.sampling.noise import FieldNoise, gaussian_field, stream_key


def test_the_noise_of_a_block_is_the_crop_of_the_plane_field():
    key = stream_key(3, 1, 0, 2)
    whole = gaussian_field(key, (0, 0), (70, 90))
    for origin, shape in [((0, 0), (70, 90)), ((13, 7), (20, 31)), ((5, 0), (1, 1)), ((69, 89), (1, 1))]:
        block = gaussian_field(key, origin, shape)
        np.testing.assert_array_equal(block, whole[origin[0]:origin[0] + shape[0], origin[1]:origin[1] + shape[1]])


def test_the_noise_is_standard_normal_and_streams_are_independent():
    a = gaussian_field(stream_key(0, 0, 0, 0), (0, 0), (512, 512)).ravel()
    b = gaussian_field(stream_key(0, 1, 0, 0), (0, 0), (512, 512)).ravel()  # the next plane
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01 and abs((a**4).mean() - 3) < 0.05
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    field = a.reshape(512, 512)  # neighbours, including the two values of one hash, are uncorrelated
    for left, right in [(field[:, 0::2], field[:, 1::2]), (field[:, 1:-1:2], field[:, 2::2]), (field[:-1], field[1:])]:
        assert abs(np.corrcoef(left.ravel(), right.ravel())[0, 1]) < 0.01


def test_field_noise_draws_a_fresh_field_each_call_for_each_sample():
    noise = FieldNoise(seed=0, plane=4, n_samples=2, device="cpu")
    first, second = noise((2, 1, 16, 16)), noise((2, 1, 16, 16))
    assert not np.allclose(first, second) and not np.allclose(first[0], first[1])
    again = FieldNoise(seed=0, plane=4, n_samples=1, device="cpu")((1, 1, 16, 16))
    np.testing.assert_array_equal(again[0], first[0])  # sample 0 is the same whatever K


_MASK64 = 2**64 - 1


def _splitmix64_finaliser(z: int) -> int:
    z ^= z >> 30
    z = z * 0xBF58476D1CE4E5B9 & _MASK64
    z ^= z >> 27
    z = z * 0x94D049BB133111EB & _MASK64
    return z ^ z >> 31


def test_the_noise_is_the_documented_hash_and_box_muller_bit_for_bit():
    # splitmix64's first output from state 0 (Steele et al. 2014's reference generator): anchors the finaliser
    assert _splitmix64_finaliser(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    key = stream_key(3, 1, 2, 0)
    origin, shape = (5, 7), (3, 6)
    field = gaussian_field(key, origin, shape)
    expected = np.empty(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            y, x = origin[0] + i, origin[1] + j
            counter = y << 32 | x // 2
            z = _splitmix64_finaliser((_splitmix64_finaliser(counter * 0x9E3779B97F4A7C15 & _MASK64 ^ int(key))
                                       + int(key)) & _MASK64)
            u1, u2 = ((z >> 40) + 0.5) * 2.0**-24, ((z & 0xFFFFFF) + 0.5) * 2.0**-24
            radius, angle = np.sqrt(-2 * np.log(u1)), 2 * np.pi * u2
            expected[i, j] = radius * (np.cos(angle) if x % 2 == 0 else np.sin(angle))
    np.testing.assert_allclose(field, expected, rtol=1e-5, atol=1e-6)
    # the stream key is NumPy's SeedSequence of the parts: a seed gives these values in every release
    assert int(key) == 11679836372483601169
    np.testing.assert_allclose(field[0, :3], [0.94876057, 1.5136114, 0.801319], rtol=1e-6)


def test_the_noise_refuses_positions_outside_the_counter_range():
    with pytest.raises(ValueError, match=r"positions must lie in \[0, 2³¹\); got origin \(-1, 0\)"):
        gaussian_field(stream_key(0), (-1, 0), (4, 4))
    with pytest.raises(ValueError, match="positions must lie"):
        gaussian_field(stream_key(0), (0, -1), (4, 4))
    with pytest.raises(ValueError, match="positions must lie"):
        gaussian_field(stream_key(0), (2**31 - 4, 0), (4, 4))
    with pytest.raises(ValueError, match="positions must lie"):
        gaussian_field(stream_key(0), (0, 2**31 - 4), (4, 4))
    assert gaussian_field(stream_key(0), (2**31 - 5, 2**31 - 5), (4, 4)).shape == (4, 4)  # the last positions allowed


def test_field_noise_draw_k_of_sample_s_is_the_field_of_its_stream_at_the_origin():
    noise = FieldNoise(seed=7, plane=3, n_samples=2, device="cpu", origin=(40, 9))
    noise((2, 1, 5, 6))
    second = noise((2, 1, 5, 6))
    assert second.dtype == torch.float32 and second.shape == (2, 1, 5, 6)
    for sample in range(2):
        np.testing.assert_array_equal(second[sample, 0], gaussian_field(stream_key(7, 3, sample, 1), (40, 9), (5, 6)))
    assert noise.draws == 2


def test_field_noise_refuses_another_sample_count_and_more_than_one_channel():
    noise = FieldNoise(seed=0, plane=0, n_samples=2, device="cpu")
    with pytest.raises(ValueError, match="noise for 3 samples asked of a generator for 2"):
        noise((3, 1, 4, 4))
    with pytest.raises(ValueError, match=r"noise is drawn for \(K, 1, H, W\) batches; got shape \(2, 2, 4, 4\)"):
        noise((2, 2, 4, 4))
    assert noise.draws == 0  # a refused call uses no draw
    assert noise((2, 4, 4)).shape == (2, 4, 4)  # (K, H, W): one channel all the same


def test_axes_are_checked_and_inferred():
    assert check_axes(None, (3, 2, 4, 16, 16)) == "TCZYX" and check_axes("czyx", (2, 3, 16, 16)) == "CZYX"
    with pytest.raises(ValueError, match="at most once and end in YX"):
        check_axes("TTYX", (2, 2, 16, 16))
    assert plane_positions((2, 3, 16, 16)) == [(t, c) for t in range(2) for c in range(3)]


@pytest.fixture
def five_d():
    rng = np.random.default_rng(1)
    data = rng.poisson(6, (2, 2, 1, 24, 32)).astype(np.uint16)
    data[:, 1] *= 10  # a brighter channel: normalised on its own
    return data


def test_a_tczyx_array_is_restored_plane_by_plane_and_each_plane_stands_alone(tiny_model, five_d):
    result = denoise(five_d, tiny_model, n_samples=2, steps=2, seed=5)
    assert result.mean.shape == five_d.shape and result.metadata["axes"] == "TCZYX"
    # plane (1, 1, 0) is plane number 3; run alone as a stack with it in that place, it is the same
    alone = denoise(five_d.reshape(4, 24, 32), tiny_model, n_samples=2, steps=2, seed=5)
    np.testing.assert_array_equal(alone.mean.reshape(five_d.shape), result.mean)
    np.testing.assert_array_equal(alone.std.reshape(five_d.shape), result.std)
    # the bright channel comes back at its own level
    assert result.mean[:, 1].mean() > 5 * result.mean[:, 0].mean()


def test_dask_and_zarr_inputs_give_the_in_memory_result(tiny_model, five_d, tmp_path):
    expected = denoise(five_d, tiny_model, n_samples=2, steps=2, seed=5)
    lazy = da.from_array(five_d, chunks=(1, 1, 1, 24, 32))
    store = zarr.open_array(tmp_path / "in.zarr", mode="w", shape=five_d.shape, dtype=five_d.dtype,
                            chunks=(1, 1, 1, 24, 32))
    store[:] = five_d
    for source in (lazy, zarr.open_array(tmp_path / "in.zarr", mode="r")):
        result = denoise(source, tiny_model, n_samples=2, steps=2, seed=5, axes="TCZYX")
        for name in ("mean", "std", "entropy"):
            np.testing.assert_array_equal(getattr(result, name), getattr(expected, name))


def test_a_lazy_input_is_read_one_plane_at_a_time(tiny_model, five_d):
    reads = []

    class Recording:
        shape, dtype = five_d.shape, five_d.dtype

        def __getitem__(self, index):
            reads.append(index)
            return five_d[index]

    denoise(Recording(), tiny_model, n_samples=1, steps=1)
    assert reads == plane_positions(five_d.shape)


def test_nan_in_a_lazy_plane_is_refused_naming_the_plane(tiny_model):
    data = np.ones((3, 16, 16), np.float32)
    data[2, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(plane \(2,\)\)"):
        denoise(da.from_array(data, chunks=(1, 16, 16)), tiny_model, n_samples=1, steps=1)


def test_batches_spanning_several_tiles_give_the_tile_by_tile_result(tiny_model, first_pass_only):
    from napari_diffdenoise.core.imaging.tiling import TILE_STRETCH, tile_grid

    image = np.random.default_rng(5).poisson(6, (70, 90)).astype(np.uint16)
    multiple = tiny_model.network.config.size_multiple
    ys, xs, height, width = tile_grid(image.shape, 32, 8, TILE_STRETCH, multiple)  # as the run lays them
    n_tiles = len(ys) * len(xs)
    padded = -(-height // multiple) * multiple * -(-width // multiple) * multiple
    one = denoise(image, tiny_model, n_samples=3, steps=2, tile=32, overlap=8, batch_pixels=1)
    many = denoise(image, tiny_model, n_samples=3, steps=2, tile=32, overlap=8, batch_pixels=padded * 5)
    assert n_tiles > 4 and one.metadata["network_evaluations"] == n_tiles * 3 * 2
    assert many.metadata["network_evaluations"] == -(-n_tiles * 3 // 5) * 2  # 5 (tile, sample) pairs a batch
    np.testing.assert_allclose(many.mean, one.mean, rtol=1e-3, atol=1e-3)  # float sums in another order
    np.testing.assert_allclose(many.std, one.std, rtol=1e-3, atol=1e-4)


def _samples_of(block, origin, model, s, imap):
    from napari_diffdenoise.core.run.plane_sampling import _sample_plane

    run = _sample_plane(block, imap, model, s, 0, origin=origin)
    try:
        while True:
            next(run)
    except StopIteration as stop:
        return stop.value.samples


def test_overlapping_blocks_draw_the_same_noise_so_their_samples_agree_in_the_overlap(tiny_model):
    from napari_diffdenoise.core.imaging.normalization import IntensityMap
    from napari_diffdenoise.core.run.plane_sampling import device_model
    from napari_diffdenoise.core.run.restore import make_settings

    image = np.random.default_rng(0).poisson(6, (200, 96)).astype(np.float32)
    s = make_settings(tiny_model, n_samples=3, steps=3, seed=1, mean="samples", keep_samples=True, tile=64, overlap=16)
    model, imap = device_model(tiny_model, s.device), IntensityMap.from_percentiles(image, s.percentiles)
    upper = _samples_of(image[0:96], (0, 0), model, s, imap)
    lower = _samples_of(image[52:148], (52, 0), model, s, imap)  # overlaps rows 52–95
    shared = np.abs(upper[:, 64:90] - lower[:, 12:38]).mean()  # away from both blocks' edges
    independent = np.abs(upper[0, 64:90] - upper[1, 64:90]).mean()  # two samples of one block
    assert shared < 0.5 * independent
    # drawn at the wrong place (its own origin), the lower block's noise would not match
    wrong = _samples_of(image[52:148], (0, 0), model, s, imap)
    assert np.abs(upper[:, 64:90] - wrong[:, 12:38]).mean() > 0.8 * independent


def test_a_plane_larger_than_the_block_is_sampled_in_blocks_with_progress_over_all_of_them(tiny_model, first_pass_only):
    image = np.random.default_rng(0).poisson(6, (200, 150)).astype(np.uint16)
    seen = []
    blocked = denoise(image, tiny_model, n_samples=2, steps=3, seed=1, block=96, block_overlap=32,
                      progress=seen.append)
    whole = denoise(image, tiny_model, n_samples=2, steps=3, seed=1)
    steps = [(p.step, p.n_steps) for p in seen if p.tile == 0]
    # 3 × 2 blocks of 3 steps each, counted as on the whole plane: each by its share of the plane's
    # pixels (the blocks overlap, so their shares sum to more than 1)
    blocks = make_tiles(image.shape, 96, 32)
    assert len(blocks) == 6 and len(steps) == 6 * 3
    share = sum((b.slices[0].stop - b.slices[0].start) * (b.slices[1].stop - b.slices[1].start)
                for b in blocks) / image.size
    assert steps[-1][0] == steps[-1][1] == pytest.approx(3 * share) and share > 1.2
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    # blocking moves the result far less than another seed does (the same noise, blocks differ only
    # by what the network sees near their edges)
    other_seed = denoise(image, tiny_model, n_samples=2, steps=3, seed=2)
    assert np.abs(blocked.mean - whole.mean).mean() < 0.5 * np.abs(other_seed.mean - whole.mean).mean()
    with pytest.raises(ValueError, match="block must be a whole number from 64"):
        denoise(image, tiny_model, block=10)


def test_the_librarys_tiff_output_keeps_the_inputs_pixel_sizes_and_channel_names(tiny_model, tmp_path):
    import tifffile

    from napari_diffdenoise.core.io.image_io import open_image
    from napari_diffdenoise.core.run.batch import denoise_to_tiff

    cyx = np.random.default_rng(7).poisson(5, (2, 24, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in.ome.tif", cyx, ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5,
                               "Channel": {"Name": ["DAPI", "GFP"]}})
    _, paths = denoise_to_tiff(tmp_path / "in.ome.tif", tmp_path / "maps", tiny_model, stem="in", n_samples=2, steps=1)
    assert [p.name for p in paths] == ["in_mean.tif", "in_std.tif", "in_entropy.tif"]
    for path in paths:
        written = open_image(path)
        assert written.axes == "CYX" and written.channel_names == ["DAPI", "GFP"]
        assert written.scale == pytest.approx({"Y": 0.5, "X": 0.25})
        assert written.units == {"Y": "micrometer", "X": "micrometer"}
        with tifffile.TiffFile(path) as tif:  # the resolution tags every TIFF reader takes for the pixel size
            x, y = tif.pages[0].tags["XResolution"].value, tif.pages[0].tags["YResolution"].value
            assert x[0] / x[1] == pytest.approx(1e4 / 0.25) and y[0] / y[1] == pytest.approx(1e4 / 0.5)
    # {} writes none of it
    _, paths = denoise_to_tiff(tmp_path / "in.ome.tif", tmp_path / "bare", tiny_model, stem="in", n_samples=2,
                               steps=1, pixel={})
    bare = open_image(paths[0])
    assert bare.scale.get("X", 1.0) == 1.0 and bare.channel_names == []  # tifffile's default tags: 1 per pixel


def test_a_narrow_stack_from_a_microscope_file_is_not_taken_for_channels_last(tiny_model, tmp_path):
    """A (Z, Y, X) stack 12 pixels wide from an .ims: its axes are in the file, so the (Y, X, C) guess that
    refuses a bare array or TIFF of that shape does not apply."""
    import tifffile
    from test_formats import write_ims

    from napari_diffdenoise.core.run.batch import denoise_to_tiff

    zyx = np.random.default_rng(8).poisson(5, (20, 24, 12)).astype(np.uint16)
    write_ims(tmp_path / "narrow.ims", zyx[None, None], (1.0, 0.2, 0.2), ["GFP"], 1.0)
    with pytest.raises(ValueError, match=r"looks like \(Y, X, C\) with 12 channels"):
        denoise(zyx, tiny_model, n_samples=1, steps=1)  # without axes, the shape alone is ambiguous
    _, paths = denoise_to_tiff(tmp_path / "narrow.ims", tmp_path / "maps", tiny_model, stem="narrow", n_samples=1,
                               steps=1)
    np.testing.assert_array_equal(tifffile.imread(paths[0]),
                                  denoise(zyx, tiny_model, axes="ZYX", n_samples=1, steps=1).mean)
