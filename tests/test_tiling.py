import numpy as np
import pytest
import torch

from napari_diffdenoise.core.imaging.tiling import TILE_STRETCH, make_tiles, tile_starts
from napari_diffdenoise.core.model.model import DiffusionModel
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.run.restore import denoise


@pytest.mark.parametrize("shape, tile, overlap", [((300, 257), 64, 16), ((64, 64), 64, 16), ((50, 200), 64, 0)])
def test_tile_weights_are_a_partition_of_unity(shape, tile, overlap):
    total = np.zeros(shape)
    for t in make_tiles(shape, tile, overlap):
        total[t.slices] += t.weight
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_tile_starts_cover_the_axis_with_the_requested_overlap():
    starts = tile_starts(300, 64, 16)
    assert starts[0] == 0 and starts[-1] == 300 - 64
    assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))


class LocalNet(torch.nn.Module):
    """A stand-in ε-network with a known receptive field (radius 2): two 3×3 convolutions."""

    class config:
        cond_channels = 1
        size_multiple = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, y, gamma, cond=None):
        return 0.5 * torch.tanh(self.conv2(torch.tanh(self.conv1(torch.cat([cond, y], 1))))) + 0.5 * y


@pytest.fixture
def local_model():
    return DiffusionModel(LocalNet(), NoiseSchedule("cosine", 50), tile=64)


def _near_inner_borders(shape, tiles, margin):
    """Pixels within ``margin`` of a tile border that lies inside the plane."""
    mask = np.zeros(shape, bool)
    for t in tiles:
        for edge in (t.y0, t.y0 + t.height):
            if 0 < edge < shape[0]:
                mask[max(0, edge - margin) : edge + margin] = True
        for edge in (t.x0, t.x0 + t.width):
            if 0 < edge < shape[1]:
                mask[:, max(0, edge - margin) : edge + margin] = True
    return mask


def _test_image():
    rng = np.random.default_rng(1)
    return rng.poisson(20 * (1 + np.sin(np.arange(160) / 9)[None] * np.cos(np.arange(144) / 7)[:, None]))


def test_tiled_equals_untiled_away_from_seams(local_model):
    steps = 4
    kw = dict(n_samples=2, steps=steps, eta=1.0, seed=3)  # stochastic sampler: the hard case for seams
    image = _test_image()
    whole = denoise(image, local_model, tile=160, **kw).mean
    tiled = denoise(image, local_model, tile=64, overlap=16, **kw).mean
    tiles = make_tiles(image.shape, 64, 16)
    assert len(tiles) == 9
    # a border can influence pixels within the receptive field (2) per step
    near = _near_inner_borders(image.shape, tiles, margin=2 * steps + 1)
    np.testing.assert_allclose(tiled[~near], whole[~near], rtol=1e-4, atol=1e-3 * whole.std())
    # and near the borders the blend keeps the difference far below the image's own variation
    assert np.abs(tiled - whole)[near].mean() < 0.02 * whole.std()


def test_stochastic_tiled_sampling_leaves_no_seams(tiny_model):
    image = _test_image()
    tiled = denoise(image, tiny_model, tile=64, overlap=16, n_samples=2, steps=4, eta=1.0, seed=3).mean
    tiles = make_tiles(image.shape, 64, 16)
    grad = np.abs(np.diff(tiled, axis=1))
    border_cols = sorted({t.x0 + t.width - 1 for t in tiles if t.x0 + t.width < image.shape[1]})
    border_cols += sorted({t.x0 - 1 for t in tiles if t.x0 > 0})
    # a seam is a step across the tile border: the gradient there would stand out from the rest
    assert grad[:, border_cols].mean() < 1.3 * grad.mean()


def test_one_tiled_network_pass_matches_the_whole_plane_pass(tiny_model):
    from napari_diffdenoise.core.model.tiled_network import TiledEpsilon

    y, cond = torch.randn(2, 1, 144, 160), torch.randn(1, 1, 144, 160)
    with torch.inference_mode():
        whole = TiledEpsilon(tiny_model, cond, (144, 160), 160, 0, 10**9)(y, 0.5)
        tiled = TiledEpsilon(tiny_model, cond, (144, 160), 96, 32, 10**9)(y, 0.5)
    diff = (whole - tiled).abs()
    assert diff.median() < 0.01 * whole.std() and diff.max() < 0.5 * whole.std()


def test_memory_is_bounded_by_the_tile(tiny_model):
    seen = []
    # a hook travels with the run's per-device copy of the network (a patched `forward` would call the original)
    tiny_model.network.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    denoise(np.ones((200, 130), np.float32), tiny_model, tile=64, n_samples=1, steps=2)
    # tiles stretch by at most TILE_STRETCH a side (rounded to the network's multiple) where fewer cover the plane
    multiple = tiny_model.network.config.size_multiple
    longest = -(-int(TILE_STRETCH * 64) // multiple) * multiple
    assert max(max(h, w) for h, w in seen) <= longest
    assert max(h * w for h, w in seen) > 64 * 64  # 130 = two tiles of 72 rather than three of 64


@pytest.mark.parametrize("size", [65, 100, 130, 200, 257, 300, 511, 600, 700, 1000, 1024, 2048, 4097])
@pytest.mark.parametrize("tile, overlap, multiple", [(64, 16, 4), (512, 128, 16), (128, 0, 8)])
def test_the_tile_layout_never_costs_more_pixels_than_tiles_of_the_setting(size, tile, overlap, multiple):
    from napari_diffdenoise.core.imaging.tiling import tile_length

    before = len(tile_starts(size, tile, overlap)) * min(tile, size)
    for stretch in (1.0, TILE_STRETCH):
        length = tile_length(size, tile, overlap, stretch, multiple)
        starts = tile_starts(size, length, overlap)
        assert len(starts) * length <= before
        assert length <= max(stretch * tile + multiple, tile) and (length <= tile or stretch > 1)
        assert starts[0] == 0 and starts[-1] + length == size  # the axis is covered, exactly
        assert all(a + length - b >= overlap for a, b in zip(starts, starts[1:]))  # with the overlap asked


def test_a_1024_plane_takes_four_stretched_tiles_instead_of_nine():
    from napari_diffdenoise.core.imaging.tiling import tile_grid

    assert tile_grid((1024, 1024), 512, 128) [2:] != (576, 576)
    ys, xs, height, width = tile_grid((1024, 1024), 512, 128, TILE_STRETCH, 16)
    assert (ys, xs, height, width) == ([0, 448], [0, 448], 576, 576)
    assert len(tile_starts(1024, 512, 128)) ** 2 == 9  # what the plane took before: 2.25× its pixels


def test_ramp_weights_are_sin_squared_over_the_ramp_and_one_elsewhere():
    from napari_diffdenoise.core.imaging.tiling import ramp_weights

    ramp = np.sin(np.pi / 2 * (np.arange(4) + 0.5) / 4) ** 2
    both = ramp_weights(10, 4, True, True)
    np.testing.assert_allclose(both[:4], ramp)
    np.testing.assert_allclose(both[-4:], ramp[::-1])
    np.testing.assert_array_equal(both[4:6], [1.0, 1.0])
    np.testing.assert_allclose(ramp_weights(10, 4, True, False)[4:], 1.0)
    np.testing.assert_allclose(ramp_weights(10, 4, False, True)[:6], 1.0)
    np.testing.assert_array_equal(ramp_weights(6, 0, True, True), np.ones(6))
    # opposite ramps of two neighbours sum to one across their overlap
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0)


def test_the_weights_of_three_tiles_are_their_sin_squared_ramps_across_each_overlap():
    from napari_diffdenoise.core.imaging.tiling import ramp_weights

    # three tiles of 61 (the shortest that reach across) at 0, 44 and 89: overlaps of 17 and 16
    tiles = make_tiles((8, 150), 64, 16)
    assert [(t.y0, t.x0, t.height, t.width) for t in tiles] == [(0, 0, 8, 61), (0, 44, 8, 61), (0, 89, 8, 61)]
    assert all(t.weight.dtype == np.float32 and t.weight.shape == (8, 61) for t in tiles)
    assert tiles[1].slices == (slice(0, 8), slice(44, 105))
    first, second = ramp_weights(17, 17, True, False), ramp_weights(16, 16, True, False)  # sin² rising
    # opposite ramps already sum to one, so the normalised weight is the ramp itself
    np.testing.assert_allclose(tiles[0].weight[0], np.r_[np.ones(44), first[::-1]], atol=1e-6)
    np.testing.assert_allclose(tiles[1].weight[0], np.r_[first, np.ones(28), second[::-1]], atol=1e-6)
    np.testing.assert_allclose(tiles[2].weight[0], np.r_[second, np.ones(45)], atol=1e-6)
    np.testing.assert_array_equal(tiles[1].weight, np.broadcast_to(tiles[1].weight[0], (8, 61)))  # one row of tiles


def test_a_2d_grid_weights_by_the_product_of_its_axes():
    tiles = make_tiles((100, 100), 64, 16)  # 2 × 2 tiles of 58 at 0 and 42, overlapping by 16
    assert [(t.y0, t.x0, t.height, t.width) for t in tiles] == [(0, 0, 58, 58), (0, 42, 58, 58), (42, 0, 58, 58),
                                                                (42, 42, 58, 58)]
    corner = tiles[3].weight
    rising = np.sin(np.pi / 2 * (np.arange(16) + 0.5) / 16) ** 2
    np.testing.assert_allclose(corner[:16, :16], np.outer(rising, rising), atol=1e-6)
    np.testing.assert_allclose(corner[16:, 16:], 1.0)
    np.testing.assert_allclose(tiles[0].weight[:16, 42:], np.outer(np.ones(16), rising[::-1]), atol=1e-6)


def test_tile_starts_refuse_an_overlap_outside_the_tile():
    assert tile_starts(64, 64, 100) == [0]  # one tile: no overlap to check
    with pytest.raises(ValueError, match=r"overlap must be in \[0, tile\), got 64 for tile 64"):
        tile_starts(100, 64, 64)
    with pytest.raises(ValueError, match="got -1 for tile 64"):
        tile_starts(100, 64, -1)
    assert tile_starts(100, 64, 0) == [0, 36] and tile_starts(200, 64, 63) == list(range(137))
