import math

import numpy as np
import pytest
import torch

from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.imaging.uncertainty import pixel_entropy, quantise, summarise


def test_entropy_closed_forms():
    k = 8
    same = torch.full((k, 3, 3), 0.123)
    spread = torch.linspace(-0.99, 0.99, k)[:, None, None].expand(k, 3, 3)  # 8 distinct bins
    halves = torch.tensor([-0.5] * 4 + [0.5] * 4)[:, None, None].expand(k, 3, 3)  # two equal groups
    assert torch.allclose(pixel_entropy(same), torch.zeros(3, 3))
    assert torch.allclose(pixel_entropy(spread), torch.full((3, 3), math.log2(k)))
    assert torch.allclose(pixel_entropy(halves), torch.ones(3, 3))


def test_entropy_matches_histogram_definition_on_random_samples():
    samples = torch.rand(16, 20, 20) * 0.1  # narrow: many shared bins
    q = quantise(samples).numpy()
    expected = np.zeros((20, 20))
    for y in range(20):
        for x in range(20):
            _, counts = np.unique(q[:, y, x], return_counts=True)
            p = counts / counts.sum()
            expected[y, x] = -(p * np.log2(p)).sum()
    np.testing.assert_allclose(pixel_entropy(samples).numpy(), expected, atol=1e-5)


def test_quantisation_covers_the_sample_range_in_256_levels():
    q = quantise(torch.tensor([-5.0, -1.5, -1.0, 0.0, 1.0, 1.499, 5.0]))
    assert q.tolist() == [0, 0, 42, 128, 213, 255, 255]


def test_summary_mean_and_population_std():
    samples = torch.tensor([[0.0], [1.0]])
    mean, std, _ = summarise(samples)
    assert mean.item() == 0.5 and std.item() == 0.5
    _, std_one, ent_one = summarise(samples[:1])
    assert std_one.item() == 0 and ent_one.item() == 0


def test_intensity_map_round_trip_and_units():
    image = np.random.default_rng(0).gamma(2.0, 100.0, (64, 64)).astype(np.uint16)
    imap = IntensityMap.from_percentiles(image, (1, 99.8))
    z = imap.to_model(image)
    assert z.dtype == np.float32
    assert np.percentile(z, 1) == pytest.approx(-1, abs=1e-3) and np.percentile(z, 99.8) == pytest.approx(1, abs=1e-3)
    np.testing.assert_allclose(imap.to_input(z), image, rtol=1e-4, atol=1e-2)
    assert imap.scale_to_input(np.float32(2.0)) == pytest.approx(imap.high - imap.low)


def test_flat_image_does_not_divide_by_zero():
    imap = IntensityMap.from_percentiles(np.full((8, 8), 7.0))
    assert np.isfinite(imap.to_model(np.full((8, 8), 7.0))).all()
    with pytest.raises(ValueError, match="percentiles"):
        IntensityMap.from_percentiles(np.zeros((4, 4)), (50, 10))


def test_a_wider_value_range_gets_more_bins_of_the_same_width():
    q = quantise(torch.tensor([-3.0, -1.5, 0.0, 2.0, 2.999, 10.0]), (-3.0, 3.0))
    assert q.dtype == torch.int32
    assert q.tolist() == [0, 128, 256, 426, 511, 511]  # 512 bins of 3/256
    # 2.0 and 2.5 share the top bin of [−1.5, 1.5] but not of [−3, 3]
    apart = torch.tensor([2.0, 2.5])[:, None]
    assert pixel_entropy(apart).item() == 0.0
    assert pixel_entropy(apart, (-3.0, 3.0)).item() == pytest.approx(1.0)
    assert summarise(apart, (-3.0, 3.0))[2].item() == pytest.approx(1.0)
    assert summarise(apart)[2].item() == 0.0


def test_entropy_of_unequal_groups_is_the_closed_form():
    samples = torch.tensor([0.0, 0.0, 0.0, 0.5])[:, None]  # p = 3/4, 1/4
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert pixel_entropy(samples).item() == pytest.approx(expected, rel=1e-6)
    mean, std, _ = summarise(samples)
    assert mean.item() == pytest.approx(0.125) and std.item() == pytest.approx(math.sqrt(3) / 8)
