"""symmetries: the heads' one pass averaged over symmetries of the square (core.model.symmetries)."""
import itertools

import numpy as np
import pytest
import torch

from napari_diffdenoise.core.model.symmetries import SYMMETRY_COUNTS, SymmetryAverage, restored, transformed
from napari_diffdenoise.core.run.restore import denoise, make_settings
from napari_diffdenoise.core.run.run_record import (
    calibration_key,
    fingerprint_settings,
    metadata_settings,
    settings_record,
)
from napari_diffdenoise.core.run.run_spec import DEFAULT_SYMMETRIES


def test_each_transform_is_undone_and_the_counts_offered_are_groups():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)  # not square: the turns swap its axes
    seen = set()
    for i in range(8):
        assert torch.equal(restored(transformed(x, i), i), x)
        seen.add(transformed(x[..., :3, :3], i).numpy().tobytes())
    assert len(seen) == 8  # the eight symmetries of the square, each once
    square = torch.arange(9.0).reshape(3, 3)
    for count in SYMMETRY_COUNTS:  # averaging over a group treats every orientation alike
        images = {transformed(square, i).numpy().tobytes() for i in range(count)}
        closed = {transformed(transformed(square, i), j).numpy().tobytes()
                  for i, j in itertools.product(range(count), repeat=2)}
        assert closed == images, count


def test_the_average_is_of_the_network_turned_back_on_each_transform():
    class Corner:  # an output that marks where the input's first pixel went: no symmetry of its own
        network = None

        def predict_eps(self, y, gammas, cond):
            out = torch.zeros_like(cond)
            out[..., 0, 0] = cond[..., 0, 0]
            return out

    cond, y = torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    average = SymmetryAverage(Corner(), 4).predict_eps(y, None, cond)
    expected = sum(restored(Corner().predict_eps(y, None, transformed(cond, i)), i) for i in range(4)) / 4
    torch.testing.assert_close(average, expected)
    assert float(average[0, 0, 0, 0]) == pytest.approx(float(cond[0, 0, 0, 0]) / 4)  # the corner kept by 1 of 4
    with pytest.raises(ValueError, match=r"symmetries must be one of \(1, 2, 4, 8\); got 3"):
        SymmetryAverage(Corner(), 3)


def test_averaged_over_all_eight_the_mean_and_std_turn_with_the_image(with_std, first_pass_only):
    """The untrained tiny heads know no symmetry: one pass is not equivariant, the average over the
    group is (a square plane of one tile, so that the tiling is the same for the turned image)."""
    torch.manual_seed(4)
    with torch.no_grad():  # the mean head awake: untrained, its output would be 0 whatever the input
        for p in with_std.mean_network.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.normal_(0, 0.05)
    plane = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    turned = np.ascontiguousarray(np.rot90(plane))
    for symmetries, equivariant in ((8, True), (1, False)):
        run = {"n_samples": 0, "seed": 0, "symmetries": symmetries, "device": "cpu"}
        a, b = denoise(plane, with_std, **run), denoise(turned, with_std, **run)
        for name in ("mean", "std"):
            close = np.allclose(np.rot90(getattr(a, name)), getattr(b, name), rtol=1e-4, atol=1e-4 * plane.max())
            assert close == equivariant, (symmetries, name)
    assert a.metadata["symmetries"] == 1
    one = denoise(plane, with_std, n_samples=0, seed=0, symmetries=1, device="cpu").mean
    four = denoise(plane, with_std, n_samples=0, seed=0, device="cpu")
    assert four.metadata["symmetries"] == DEFAULT_SYMMETRIES and not np.allclose(four.mean, one)


def test_the_default_is_four_with_the_mean_head_and_one_without(headed):
    assert make_settings(headed).symmetries == DEFAULT_SYMMETRIES
    assert make_settings(headed, mean="samples").symmetries == 1
    assert make_settings(headed, symmetries=8).symmetries == 8


def test_a_model_without_a_mean_head_takes_the_default_and_refuses_more(tiny_model):
    assert make_settings(tiny_model).symmetries == 1
    with pytest.raises(ValueError, match="symmetries=2 averages the mean head's pass"):
        make_settings(tiny_model, symmetries=2)


def test_a_count_outside_the_groups_or_a_run_without_the_mean_head_is_refused(headed):
    for bad in (3, 0, 16, 2.5, "4", True):
        with pytest.raises(ValueError, match=r"^symmetries must be one of \(None, 1, 2, 4, 8\); got "):
            make_settings(headed, symmetries=bad)
    with pytest.raises(ValueError, match=r"symmetries=4 averages the mean head's pass, and this run takes its mean "
                                         r"from 'samples': use mean='head'"):
        make_settings(headed, symmetries=4, mean="samples")


def test_the_record_carries_the_count_and_the_calibration_holds_for_every_count(headed):
    one = settings_record(make_settings(headed, symmetries=1))
    four = settings_record(make_settings(headed))
    assert metadata_settings(one)["symmetries"] == 1 and metadata_settings(four)["symmetries"] == 4
    # a store made before the setting existed (one pass) resumes under 1 only
    assert "symmetries" not in fingerprint_settings(one) and fingerprint_settings(four)["symmetries"] == 4
    assert calibration_key(one) == calibration_key(four)


def test_the_cli_takes_the_count(tmp_path):
    from napari_diffdenoise.cli import build_parser

    args = build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--symmetries", "8"])
    assert args.symmetries == 8
    assert build_parser().parse_args(["denoise", "in.tif", "--out", "out"]).symmetries is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--symmetries", "3"])
