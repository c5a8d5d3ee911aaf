"""Split-conformal pieces in closed form: the rank of the factor, the block split, the interpolation
between calibrated levels and the refusal that names the calibrations a model has."""
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from napari_diffdenoise.core.run.conformal import BLOCK, Calibration, block_split, conformal_factor, find_calibration


def test_the_factor_is_the_ceil_n_plus_one_times_c_th_smallest_score():
    scores = np.arange(1.0, 20.0)[::-1]  # 19 scores, unsorted: 1 … 19
    assert conformal_factor(scores, 0.5) == 10.0  # ⌈20·0.5⌉ = 10th smallest
    assert conformal_factor(scores, 0.51) == 11.0  # ⌈10.2⌉ = 11
    assert conformal_factor(scores, 0.95) == 19.0  # ⌈19⌉ = 19: the largest, still finite
    assert conformal_factor(scores, 0.96) == math.inf  # ⌈19.2⌉ = 20 > n
    assert conformal_factor(scores.reshape(19, 1), 0.5) == 10.0  # any shape is raveled


def test_the_block_split_marks_half_of_the_blocks_of_every_plane_whole():
    shape = (3, 2 * BLOCK + 5, 3 * BLOCK)  # 3 × 3 blocks a plane, the last row of blocks cut short
    mask = block_split(shape, seed=4)
    assert mask.shape == shape and mask.dtype == bool
    for plane in mask:
        blocks = plane[::BLOCK, ::BLOCK]
        assert blocks.sum() == 5  # ⌈9 / 2⌉ of the blocks
        # every block is all in or all out
        full = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=bool))[: shape[1], : shape[2]]
        np.testing.assert_array_equal(plane, full)
    assert not all(np.array_equal(mask[0], m) for m in mask[1:])  # each plane draws its own half
    np.testing.assert_array_equal(block_split(shape, seed=4), mask)  # determined by the seed
    assert not np.array_equal(block_split(shape, seed=5), mask)
    plane = block_split((2 * BLOCK, 2 * BLOCK), seed=0)  # a 2D shape gives a 2D mask
    assert plane.shape == (2 * BLOCK, 2 * BLOCK) and plane.sum() == 2 * BLOCK * BLOCK


def _calibration(settings=None):
    return Calibration(settings or {"sampler": "ddim", "params": {"steps": 4, "eta": 0.0}, "mean_estimator": "x0",
                                    "n_samples": 8},
                       [0.5, 0.8, 0.9], [1.0, 2.0, 4.0], [0.5, 0.8, 0.9], [1.0, 2.0, 3.0], "user pairs", 100)


def test_the_factor_between_calibrated_levels_is_interpolated_linearly():
    calibration = _calibration()
    assert calibration.factor(0.5) == 1.0 and calibration.factor(0.9) == 4.0
    assert calibration.factor(0.65) == pytest.approx(1.5)
    assert calibration.factor(0.85) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="coverage must be between 0.5 and 0.9 for this calibration; got 0.95"):
        calibration.factor(0.95)
    with pytest.raises(ValueError, match="got 0.4"):
        calibration.factor(0.4)


def test_a_calibration_round_trips_and_ignores_keys_it_does_not_know():
    calibration = _calibration()
    data = calibration.to_dict()
    assert data["factors"] == [1.0, 2.0, 4.0] and data["source"] == "user pairs"
    assert Calibration.from_dict({**data, "written_by_a_later_version": 1}) == calibration


def test_find_calibration_returns_the_match_or_names_the_ones_there_are():
    calibration = _calibration()
    other = _calibration({"sampler": "dpm++2m", "params": {"steps": 10}, "mean_estimator": "x0", "n_samples": 8})
    model = SimpleNamespace(name="m", calibrations=[other.to_dict(), calibration.to_dict()])
    assert find_calibration(model, dict(calibration.settings, n_samples=3)) == calibration  # n_samples is a record
    wanted = {"sampler": "ddim", "params": {"steps": 9, "eta": 0.0}, "mean_estimator": "x0", "n_samples": 8}
    with pytest.raises(ValueError) as refused:
        find_calibration(model, wanted)
    assert str(refused.value) == (
        "model 'm' has no calibration for sampler 'ddim' with {'steps': 9, 'eta': 0.0} (mean: x0); it is "
        "calibrated for: sampler 'dpm++2m' with {'steps': 10} (mean: x0); sampler 'ddim' with "
        "{'steps': 4, 'eta': 0.0} (mean: x0). Use those settings, calibrate on the image (calibrate_on_image=True; "
        "the CLI's --self-calibrate), or calibrate(model, noisy, clean, ...) with these first")
    assert refused.value.what.endswith("(mean: x0)")  # the message without its remedy, for a form to give its own
    # beside one it came with, the user's are named as theirs, and the one it came with is not taken
    came_with = dataclasses.replace(_calibration(wanted), shipped=True)
    mixed = SimpleNamespace(name="m", calibrations=[other.to_dict(), came_with.to_dict()])
    with pytest.raises(ValueError, match=r"the calibrations you made are for: sampler 'dpm\+\+2m' with \{'steps': 10\} "
                                         r"\(mean: x0\)\. Use"):
        find_calibration(mixed, wanted)
    deconvolving = SimpleNamespace(name="w", task="deconvolve", calibrations=[other.to_dict()])
    with pytest.raises(ValueError, match=r"Use those settings, or calibrate\(model"):  # not told to calibrate here
        find_calibration(deconvolving, wanted)
    with pytest.raises(ValueError, match="model 'm' has no calibration for .*; it has none. Use those settings"):
        find_calibration(SimpleNamespace(name="m", calibrations=[]), wanted)
    head = {"std_estimator": "head", "mean_estimator": "head", "sampler": "ddim", "params": {}}
    with pytest.raises(ValueError, match=r"no calibration for the std head \(mean: head\); it has none"):
        find_calibration(SimpleNamespace(name="m", calibrations=[]), head)


def test_a_calibrations_source_in_a_few_words_keeps_its_brackets_whole():
    """The Denoise widget's status line cut a source at its first colon, leaving '(… (the second's at 0.85).
    First' when the source was two calibrations' sources joined."""
    from napari_diffdenoise.core.run.conformal import source_headline

    assert source_headline("user pairs") == "user pairs"
    assert source_headline("self-calibrated: residuals against recorrupted pairs. Error scale …") == "self-calibrated"
    joined = ("the wider of two self-calibrations at each level (the second's at 0.85, 0.9: wider). First: "
              "self-calibrated: residuals … Second: self-calibrated: …")
    assert source_headline(joined) == "the wider of two self-calibrations at each level (the second's at 0.85, 0.9: wider)"
    assert source_headline("held-out simulated images (bench/calibrate_bundled.py).") == (
        "held-out simulated images (bench/calibrate_bundled.py)")
