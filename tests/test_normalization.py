"""The per-image intensity map in closed form: which percentiles it takes, the flat image, the float64
arithmetic, and the percentiles a caller may give."""
import numpy as np
import pytest

from napari_diffdenoise.core.imaging.normalization import DEFAULT_PERCENTILES, IntensityMap, check_percentiles


def test_the_map_takes_the_given_percentiles_to_minus_one_and_one():
    ramp = np.arange(1001, dtype=np.float64)  # the p-th percentile of 0 … 1000 is 10·p
    assert IntensityMap.from_percentiles(ramp) == IntensityMap(10.0, 998.0)  # the default (1, 99.8)
    assert DEFAULT_PERCENTILES == (1.0, 99.8)
    imap = IntensityMap.from_percentiles(ramp, (0, 100))
    assert imap == IntensityMap(0.0, 1000.0) and imap.half_span == 500.0
    np.testing.assert_array_equal(imap.to_model(np.array([0.0, 250.0, 1000.0])), [-1.0, -0.5, 1.0])
    np.testing.assert_array_equal(imap.to_input(np.array([-1.0, 0.5, 1.5])), [0.0, 750.0, 1250.0])
    assert imap.to_input(np.array([0.0]), dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(imap.scale_to_input(np.array([0.1, 2.0])), np.float32([50.0, 1000.0]))


def test_a_large_offset_keeps_its_counts():
    # in float32 1e9 + 3 is 1e9: the percentiles and the subtraction are taken in float64
    image = 1e9 + np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    imap = IntensityMap.from_percentiles(image, (0, 100))
    assert imap.low == 1e9 and imap.high == 1e9 + 4
    np.testing.assert_array_equal(imap.to_model(image), [-1.0, -0.5, 0.0, 0.5, 1.0])


def test_a_flat_image_gets_a_span_of_one():
    assert IntensityMap.from_percentiles(np.full((8, 8), 7.0)) == IntensityMap(7.0, 8.0)


@pytest.mark.parametrize("percentiles", [(-1, 50), (50, 50), (60, 50), (1, 100.5)])
def test_percentiles_out_of_order_or_range_are_refused(percentiles):
    with pytest.raises(ValueError, match=r"percentiles must satisfy 0 ≤ low < high ≤ 100, got"):
        IntensityMap.from_percentiles(np.arange(10.0), percentiles)


def test_the_limits_themselves_are_allowed():
    assert IntensityMap.from_percentiles(np.arange(11.0), (0, 100)) == IntensityMap(0.0, 10.0)
    assert check_percentiles((0, 100)) == (0, 100) and check_percentiles([0.5, 99]) == [0.5, 99]
    assert check_percentiles((np.int64(1), np.float32(99.0))) == (1, 99.0)
    assert check_percentiles(None) is None


@pytest.mark.parametrize("bad", [(1,), (1, 2, 3), "1,99", (True, 99), (1, float("nan")), (1, float("inf")),
                                 (-0.1, 99), (1, 100.1), (50, 50), (99, 1), ("1", 99), {1: 99, 2: 98}])
def test_check_percentiles_refuses_what_is_not_two_ordered_numbers(bad):
    with pytest.raises(ValueError, match=r"percentiles must be two numbers \(low, high\) with 0 ≤ low < high ≤ 100; got"):
        check_percentiles(bad)
