import numpy as np
import pytest
import torch

from napari_diffdenoise.core.imaging.camera_noise import CameraNoise, estimate_noise
from napari_diffdenoise.core.training.adapt import adapt, iter_adapt


def cells(seed=0, size=96, photons=20.0, offset=100.0, read=2.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    density = np.zeros((size, size))
    for cy, cx in rng.integers(10, size - 10, (12, 2)):
        density += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
    counts = rng.poisson(photons * density / density.max() + 2.0)
    return (counts + offset + read * rng.standard_normal(counts.shape)).astype(np.float32)


def test_the_noise_model_is_read_off_one_image():
    """Poisson counts (gain 1) + offset 100 + read noise 2: var = 1·(y − 100) + 4 = y − 96, right at
    the levels the image holds (most of it is background: the slope is loosely held by few bins)."""
    noise = estimate_noise([cells(size=256, photons=60.0)])
    levels = np.array([102.0, 106.0, 115.0, 130.0, 160.0])  # background 102, blob peaks 162
    np.testing.assert_allclose(noise.variance(levels), levels - 96, rtol=0.25)
    assert noise.gain == pytest.approx(1.0, rel=0.25)
    flat = estimate_noise([np.random.default_rng(0).normal(50, 3, (128, 128))])  # Gaussian noise alone
    assert flat.variance(50.0) == pytest.approx(9, rel=0.15)  # right at the image's level, whatever the slope


def test_adapt_changes_only_the_head_is_deterministic_and_records_how(headed):
    noisy = cells(size=128)  # its strip holds the 8 deciding cells a single image's head needs to be kept
    first = adapt(headed, noisy, minutes=None, steps=4, seed=3, batch_size=2, patch_size=32, recalibrate=False,
                  validate_every=2, device="cpu")
    again = adapt(headed, noisy, minutes=None, steps=4, seed=3, batch_size=2, patch_size=32, recalibrate=False,
                  validate_every=2, device="cpu")
    for a, b in zip(first.mean_network.state_dict().values(), again.mean_network.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert all(torch.equal(a, b) for a, b in zip(first.network.state_dict().values(), headed.network.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(first.mean_network.state_dict().values(),
                                                    headed.mean_network.state_dict().values()))
    info = first.provenance["adapted"]
    assert info["steps"] == 4 and info["seed"] == 3 and info["images"] == [[128, 128]]
    assert "Recorrupted" in info["method"]
    assert first.kind == headed.kind and first.calibrations == [] and first.mean_network is not headed.mean_network
    assert info["draws_lag1_correlation"] is None  # white camera noise: white draws
    # camera noise correlated between pixels (each pixel a 2 × 2 mean): the draws are given its correlation
    from scipy import ndimage

    smeared = adapt(headed, ndimage.uniform_filter(cells(size=128), 2), minutes=None, steps=1, batch_size=2,
                    patch_size=32, recalibrate=False, device="cpu")
    assert min(smeared.provenance["adapted"]["draws_lag1_correlation"]) > 0.3


def test_adapt_takes_stacks_and_lists_and_recalibrates_on_the_images_residuals(with_std):
    stack = np.stack([cells(1), cells(2)])
    model = adapt(with_std, [stack, cells(3)], minutes=None, steps=2, batch_size=2, patch_size=32, device="cpu")
    assert model.provenance["adapted"]["images"] == [[96, 96]] * 3
    (calibration,) = model.calibrations
    # the route is self-calibration on the image's own residuals (not pairs simulated from the mean)
    assert calibration["source"].startswith("self-calibrated: residuals against ")
    from napari_diffdenoise import denoise

    result = denoise(cells(4), model, coverage=0.9)  # the model's own run, which the recalibration was made for
    assert result.metadata["calibration_source"] == calibration["source"]
    assert np.all(result.lower <= result.mean) and np.all(result.upper >= result.mean)


def test_cancel_reaches_the_recalibration_after_adapting(headed, monkeypatch):
    from napari_diffdenoise.core.run.restore import Cancelled
    from napari_diffdenoise.core.training import adapt as adapt_module

    started = []
    recalibrate = adapt_module.iter_recalibrate

    def recalibrating(*args, **kwargs):
        started.append(True)
        return (yield from recalibrate(*args, **kwargs))

    monkeypatch.setattr(adapt_module, "iter_recalibrate", recalibrating)

    def cancel():  # the adaptation runs through; the recalibration's first poll cancels
        return bool(started)

    with pytest.raises(Cancelled, match="while recalibrating"):
        adapt(headed, cells(1), minutes=None, steps=2, batch_size=2, patch_size=32, device="cpu", cancel=cancel)


def test_the_recalibration_after_adapting_a_time_series_uses_its_frames_too(with_std):
    """A stack of repeated views is recalibrated as the Denoise widget calibrates a T axis (recorrupted
    pairs and the neighbouring frames, the wider interval); a single plane, a stack said not to be a
    series and a stack whose planes differ keep the recorrupted pairs alone."""
    from napari_diffdenoise.core.calibration.recalibration_cost import recalibration_cost
    from napari_diffdenoise.core.run.driving import drive
    from napari_diffdenoise.core.training.adapt import iter_recalibrate, recalibration_axes

    rng = np.random.default_rng(0)
    scene = cells(0)
    series = np.stack([scene + rng.normal(0, 3, scene.shape) for _ in range(4)]).astype(np.float32)
    different = np.stack([cells(s) for s in range(4)])
    assert recalibration_axes(series) == "TYX" and recalibration_axes(series, time_series=True) == "TYX"
    assert recalibration_axes(series, time_series=False) is None
    assert recalibration_axes(different) is None and recalibration_axes(series[0]) is None
    assert recalibration_axes([series[0], series[1]]) is None  # a list of images: each its own field

    def source(noisy, **kwargs):
        return drive(iter_recalibrate(with_std, noisy, **kwargs))[0].calibrations[0]

    framed = source(series)
    assert framed["source"].startswith("the wider of two self-calibrations at each level")
    assert "the mean of frames t − 1 and t + 1" in framed["source"]
    # what it restores is what the Train widget prices for it
    assert framed["n_pixels"] == recalibration_cost(with_std, series.shape, axes="TYX").pixels
    alone = source(series, time_series=False)
    assert alone["source"].startswith("self-calibrated: residuals against recorrupted pairs")
    assert alone["n_pixels"] == recalibration_cost(with_std, series.shape).pixels


def test_the_recalibration_after_adapting_takes_the_images_axes(with_std):
    """Given the image's axes (the CLI's file, the Train widget's layer), each channel is recalibrated on its
    own, as the Denoise widget calibrates it, where it was pooled; a wrong one is refused before training."""
    from napari_diffdenoise.core.calibration.recalibration_cost import recalibration_cost
    from napari_diffdenoise.core.training.adapt import recalibration_axes

    two = np.stack([cells(5), 3 * cells(6)])
    model = adapt(with_std, two, minutes=None, steps=2, batch_size=2, patch_size=32, device="cpu", axes="cyx")
    calibration = model.calibrations[0]
    assert calibration["channel_axis"] == 0 and len(calibration["channel_factors"]) == 2
    assert calibration["n_pixels"] == recalibration_cost(with_std, two.shape, axes="CYX").pixels
    pooled = adapt(with_std, two, minutes=None, steps=2, batch_size=2, patch_size=32, device="cpu")
    assert pooled.calibrations[0].get("channel_factors") is None
    with pytest.raises(ValueError, match="axes 'TCYX' name 4 dimensions"):
        adapt(with_std, two, minutes=None, steps=2, axes="TCYX")
    with pytest.raises(ValueError, match="axes: give them for one image"):
        recalibration_axes([two[0], two[1]], axes="YX")


@pytest.mark.parametrize("image, message", [
    (np.random.default_rng(0).normal(100, 5, (160, 160)), "too flat to learn from"),
    (np.zeros((20, 20)), "too small for 64 px patches"),
])
def test_adapt_refuses_what_it_cannot_learn_from(headed, image, message):
    with pytest.raises(ValueError, match=message):
        next(iter_adapt(headed, image, steps=1))


def test_adapt_needs_a_mean_head(tiny_model):
    with pytest.raises(ValueError, match="needs a paired model with a mean head"):
        next(iter_adapt(tiny_model, cells(), steps=1))


def test_cancel_stops_within_a_step(headed):
    from napari_diffdenoise.core.run.restore import Cancelled

    seen = []
    with pytest.raises(Cancelled):
        adapt(headed, cells(), minutes=None, steps=50, batch_size=2, patch_size=32, progress=seen.append,
              cancel=lambda: len(seen) >= 2, device="cpu")
    assert len(seen) == 2


def test_cli_adapt_writes_a_model_and_never_overwrites(tmp_path, headed, capsys):
    import tifffile

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint

    save_checkpoint(headed, tmp_path / "start.safetensors")
    tifffile.imwrite(tmp_path / "noisy.tif", cells(size=160))
    out = tmp_path / "mine.safetensors"
    args = ["adapt", str(tmp_path / "noisy.tif"), "--out", str(out), "--model", str(tmp_path / "start.safetensors"),
            "--steps", "2", "--no-recalibrate"]
    assert main(args) == 0
    assert load_model(out).provenance["adapted"]["steps"] == 2
    assert main(args) == 2 and "already exists" in capsys.readouterr().err


def test_cli_adapt_takes_a_smaller_patch_for_a_small_image(tmp_path, headed, capsys):
    """A 64² image is too small for the default 64 px patches and their validation strip; the message says to
    take a smaller patch size, which the CLI offers."""
    import tifffile

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint

    save_checkpoint(headed, tmp_path / "start.safetensors")
    tifffile.imwrite(tmp_path / "small.tif", cells(size=64))
    args = ["adapt", str(tmp_path / "small.tif"), "--model", str(tmp_path / "start.safetensors"), "--steps", "2",
            "--no-recalibrate"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors")]) == 2
    assert "use a smaller patch size" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b.safetensors"), "--patch-size", "32"]) == 0
    assert load_model(tmp_path / "b.safetensors").provenance["adapted"]["images"] == [[64, 64]]
    # said before the steps: too small a strip to judge an adapted head by
    assert "note: its validation strips hold 4 cells to judge an adapted head by" in capsys.readouterr().err


def test_cli_adapt_recalibrates_each_channel_of_a_file_that_names_them(tmp_path, with_std):
    import tifffile

    from napari_diffdenoise.cli import main
    from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint

    save_checkpoint(with_std, tmp_path / "start.safetensors")
    tifffile.imwrite(tmp_path / "cells.tif", np.stack([cells(7, 160), 3 * cells(8, 160)]).astype(np.uint16), imagej=True,
                     metadata={"axes": "CYX"})
    out = tmp_path / "mine.safetensors"
    assert main(["adapt", str(tmp_path / "cells.tif"), "--out", str(out), "--model",
                 str(tmp_path / "start.safetensors"), "--steps", "2"]) == 0
    assert len(load_model(out).calibrations[0]["channel_factors"]) == 2


def test_camera_noise_variance_never_reaches_zero():
    assert CameraNoise(1.0, -100.0).variance(np.array([0.0, 50.0])).min() > 0
    assert CameraNoise(1.0, -100.0, (100.0, 200.0), (0.0, 100.0)).variance(np.array([0.0, 150.0])).min() > 0


def eight_bit(seed=0, size=192, gain=2.0):
    """Like the 8-bit time-lapse: low counts × gain 2, rounded, clipped to [1, 255]; (frame, true variance)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    density = np.zeros((size, size))
    for cy, cx in rng.integers(10, size - 10, (25, 2)):
        density += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
    lam = 60 * density / density.max() + 0.8
    frame = np.clip(np.round(gain * rng.poisson(lam) + 0.5 * rng.standard_normal(lam.shape)), 1, 255)
    return frame.astype(np.float32), lam


def test_the_noise_fit_holds_on_8_bit_clipped_quantised_counts():
    """The median absolute deviation of integer second differences sticks to steps (it read 1.5 for
    a variance of 0.9 on the real 8-bit time-lapse); the mean square does not, and clipped blocks
    are left out. True variance: gain²·λ + 0.25 + 1/12 at level gain·λ."""
    for seed in range(3):
        frame, _ = eight_bit(seed)
        noise = estimate_noise([frame])
        levels = np.array([10.0, 20.0, 40.0])
        ratio = noise.variance(levels) / (2.0 * levels + 0.25 + 1 / 12)
        assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


def test_the_noise_line_is_not_dragged_by_a_few_bright_structured_bins():
    """A dim, smooth field with 60 bright puncta (var = 4·level − 600): the bright bins hold their
    edges. A least-squares line through the bins gave 0.53–0.74 of the variance at the dim levels
    where most pixels lie (on a real confocal series: a quarter)."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:256, :256]
        level = 250 + 150 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / (2 * 80.0**2))
        for cy, cx in rng.integers(0, 256, (60, 2)):
            level += 2500 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
        frame = level + np.sqrt(4 * level - 600) * rng.standard_normal(level.shape)
        levels = np.array([260.0, 300.0, 380.0])
        ratio = estimate_noise([frame]).variance(levels) / (4 * levels - 600)
        assert np.all((ratio > 0.8) & (ratio < 1.3)), ratio


def test_adapts_training_pairs_carry_the_cameras_skew():
    """The pairs the head is fine-tuned on (core.training.recorrupted_pairs) recorrupt with draws of the
    camera's variance and third moment over α: input − target = (α + 1/α)·s, so at 3 photons (gain 1,
    read noise 1.5) s has variance 5.25 and third moment 3/α; with Gaussian draws it would be 0."""
    from napari_diffdenoise.core.imaging.normalization import IntensityMap
    from napari_diffdenoise.core.imaging.recorruption import RecorruptionNoise
    from napari_diffdenoise.core.training.datasets import Split
    from napari_diffdenoise.core.training.recorrupted_pairs import recorrupted_batch

    camera, alpha = CameraNoise.poisson_gaussian(read_noise=1.5, offset=100.0), 0.5
    plane = np.full((64, 64), 103.0)
    imap = IntensityMap(100.0, 110.0)
    x, t = recorrupted_batch([plane], [RecorruptionNoise.of(camera, plane, alpha)], [imap], [Split(0, 48)], [0], 32,
                             alpha, 64, np.random.default_rng(0), "cpu")
    s = (x - t).numpy().astype(np.float64) * imap.half_span / (alpha + 1 / alpha)
    assert s.mean() == pytest.approx(0.0, abs=0.03)
    assert s.var() == pytest.approx(5.25, rel=0.03)
    assert np.mean(s ** 3) == pytest.approx(3.0 / alpha, rel=0.1)


def test_the_refinement_message_says_what_the_returned_model_does():
    """A series judged not to gain from refining every plane may still refine its bright ones, as the bundled
    model does: the message said "left unrefined" while the saved model refined them."""
    from napari_diffdenoise.core.imaging.pilot_wiener import ALWAYS, IF_BRIGHT
    from napari_diffdenoise.core.training.adapt import refinement_message

    judged = {"refined": False, "quadrants": 8, "frames": 2, "difference": -0.0517, "standard_error": 0.0497}
    kept_rule = refinement_message(judged, IF_BRIGHT)
    assert kept_rule.startswith("the [mean] not refined on every plane (on 8 quadrants of 2 held-out frames, MSE to "
                                "their registered neighbours -5.17 % ± 4.97 %")
    assert kept_rule.endswith("its bright planes (at least 600 photons) are refined still, as the bundled model's are")
    assert "bright" not in refinement_message(judged, "none")
    assert "bright planes" in refinement_message({"refined": False}, IF_BRIGHT)
    assert refinement_message({**judged, "refined": True}, ALWAYS).startswith(
        "the [mean] refined by a Wiener filter with itself as the pilot on every plane")
