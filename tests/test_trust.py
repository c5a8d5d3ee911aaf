"""The posterior mean, the conformal intervals and the whole dynamic range (issue: trust on real data)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_diffdenoise import calibrate, denoise, load_model, save_checkpoint
from napari_diffdenoise.core.calibration.calibration import measure
from napari_diffdenoise.core.run.bright_pass import BRIGHT_MARGIN
from napari_diffdenoise.core.run.conformal import Calibration, block_split, conformal_factor, interval_unit
from napari_diffdenoise.core.run.run_spec import DEFAULT_SYMMETRIES
from napari_diffdenoise.core.training.train_config import TrainConfig
from napari_diffdenoise.core.training.train_steps import draw_step


def test_the_one_pass_mean_is_the_network_at_zero_input_and_the_noisiest_level(tiny_model, noisy_stack, first_pass_only):
    plane = noisy_stack[0]
    # the network's own estimate (the step that holds its smooth part to the data's is core.run.low_frequency's)
    result = denoise(plane, tiny_model, n_samples=0, mean="x0", low_frequencies="model")
    assert result.std is None and result.entropy is None and result.metadata["network_evaluations"] == 1
    # by hand: the percentile map, the network at y = 0 and γ = ᾱ_{T−1}, x̂₀ = −√(1−γ)/√γ·ε̂, back to input units
    from napari_diffdenoise.core.imaging.normalization import IntensityMap

    imap = IntensityMap.from_percentiles(plane, tiny_model.percentiles)
    cond = torch.from_numpy(imap.to_model(plane))[None, None]
    gamma = float(tiny_model.schedule.alphas_cumprod[-1])
    with torch.no_grad():
        eps = tiny_model.predict_eps(torch.zeros_like(cond), torch.tensor([gamma]), cond)
    x0 = (-math.sqrt(1 - gamma) / math.sqrt(gamma) * eps[0, 0]).clamp(-1.5, 1.5).numpy()
    # (tiles are padded and run channels-last: float32 rounding differs by ~1e-3 of the range)
    np.testing.assert_allclose(result.mean, np.maximum(imap.to_input(x0), 0), rtol=1e-3, atol=5e-3)
    # with samples, the mean is the same one pass; the samples give the spread
    full = denoise(plane, tiny_model, n_samples=3, steps=2, mean="x0", keep_samples=True, low_frequencies="model")
    np.testing.assert_allclose(full.mean, result.mean, rtol=1e-5, atol=1e-4)
    assert full.metadata["n_steps"] == 2 + 1  # two sampler steps (the K samples batched), one pass for the mean
    assert not np.allclose(full.mean, np.maximum(full.samples.mean(0), 0))


def test_mean_estimators_are_checked(tiny_model):
    with pytest.raises(ValueError, match="mean must be one of"):
        denoise(np.ones((16, 16)), tiny_model, mean="median")
    with pytest.raises(ValueError, match="n_samples must be at least 1, unless"):
        denoise(np.ones((16, 16)), tiny_model, n_samples=0, mean="samples")
    assert tiny_model.mean_estimator == "samples"  # an untrained model: auto means the sample average
    assert denoise(np.ones((16, 16)), tiny_model, n_samples=1, steps=1).metadata["mean_estimator"] == "samples"


def test_mean_training_makes_y_zero_and_leaves_other_runs_unchanged():
    class Source:
        def batch(self, n, size, rng):
            clean = rng.random((n, 1, size, size)).astype(np.float32)
            return clean + 0.1, clean

    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    sched = NoiseSchedule("cosine", 50)
    plain = draw_step(Source(), sched, TrainConfig(batch_size=4, patch_size=8), 3)
    mixed = draw_step(Source(), sched, TrainConfig(batch_size=4, patch_size=8, mean_fraction=0.5), 3)
    noisy, clean, gammas, eps = mixed
    g = gammas[:2, None, None, None].astype(np.float64)
    np.testing.assert_allclose(np.sqrt(g) * clean[:2] + np.sqrt(1 - g) * eps[:2], 0, atol=1e-6)
    assert np.all(gammas[:2] < sched.alphas_cumprod_prev[-1]) and np.all(gammas[:2] >= sched.alphas_cumprod[-1] * 0.999)
    for a, b in zip(plain, mixed):  # the rest of the batch is drawn exactly as without it
        np.testing.assert_array_equal(a[2:], b[2:])


def test_split_conformal_factor_covers_exchangeable_gaussian_errors():
    rng = np.random.default_rng(0)
    unit = rng.uniform(0.5, 2.0, (4, 128, 128)).astype(np.float32)
    truth = rng.normal(0, 1, unit.shape).astype(np.float32) * unit  # errors ~ N(0, u²): λ(0.9) = 1.645
    mean = np.zeros_like(truth)
    mask = block_split(truth.shape, seed=0)
    assert 0.45 < mask.mean() < 0.55
    factors, covered, widths, n, _ = measure(mean, unit, truth, [0.8, 0.9, 0.95], mask)
    np.testing.assert_allclose(factors, [1.2816, 1.6449, 1.9600], rtol=0.03)
    np.testing.assert_allclose(covered, [0.8, 0.9, 0.95], atol=0.01)
    assert widths[0] < widths[1] < widths[2] and n == mask.sum()
    assert conformal_factor(np.arange(10.0), 0.95) == math.inf  # too few scores for that level


def test_interval_unit_is_the_unbiased_std_with_a_floor():
    std = np.array([0.0, 3.0])
    np.testing.assert_allclose(interval_unit(std, 4, half_span=10.0), [0.1, math.sqrt(12 + 0.01)], rtol=1e-6)


def test_calibrate_then_denoise_with_coverage(tiny_model, tmp_path):
    rng = np.random.default_rng(1)
    clean = rng.uniform(5, 30, (2, 48, 48)).astype(np.float32)
    noisy = rng.poisson(clean).astype(np.float32)
    settings = dict(n_samples=4, steps=2, eta=1.0, mean="samples", seed=0)
    with pytest.raises(ValueError, match="has no calibration for sampler 'ddim'"):
        denoise(noisy, tiny_model, coverage=0.9, calibrate_on_image=False, **settings)
    calibrated = calibrate(tiny_model, noisy, clean, coverage=(0.8, 0.9, 0.95), source="test pairs", **settings)
    assert tiny_model.calibrations == [] and len(calibrated.calibrations) == 1  # the caller's model is unchanged
    entry = Calibration.from_dict(calibrated.calibrations[0])
    assert entry.source == "test pairs" and entry.settings["sampler"] == "ddim" and entry.settings["params"]["eta"] == 1.0
    assert entry.factors == sorted(entry.factors) and all(abs(c - n) < 0.1 for c, n in zip(entry.held_out_coverage, entry.coverages))
    result = denoise(noisy, calibrated, coverage=0.9, **settings)
    assert result.metadata["coverage"] == 0.9 and result.metadata["interval_factor"] == pytest.approx(entry.factor(0.9))
    assert np.all(result.lower <= result.mean) and np.all(result.mean <= result.upper)
    np.testing.assert_allclose(result.upper - result.mean, entry.factor(0.9) * result.interval_unit, rtol=1e-5)
    with pytest.raises(ValueError, match="no calibration"):  # other settings, other spread
        denoise(noisy, calibrated, coverage=0.9, **{**settings, "steps": 3})
    with pytest.raises(ValueError, match="coverage must be between 0.8 and 0.95"):
        denoise(noisy, calibrated, coverage=0.99, **settings)
    path = tmp_path / "calibrated.safetensors"
    save_checkpoint(calibrated, path)
    assert load_model(path).calibrations == calibrated.calibrations


def test_progress_counts_the_bright_pass_by_its_boxes_pixels_and_never_passes_the_plane():
    """The bright pass restores small boxes, each a run of its own: counted as whole runs, the first
    estimate (nearly all of the work) read as 1/(1 + boxes) of the plane, and the run's total grew
    only once they were found, so the CLI said 'step 2/1', 200 % and a negative time left. Counted by
    their pixels, expected before the run, the first estimate is most of the progress and every
    report stays within the plane."""
    rng = np.random.default_rng(0)
    truth = np.full((192, 192), 100.0)
    yy, xx = np.mgrid[:192, :192]
    for cy, cx in ((40, 40), (150, 150)):
        truth += 65000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2)
    image = rng.poisson(truth).astype(np.uint16)
    seen = []
    result = denoise(image, load_model("demo"), n_samples=0, symmetries=1, progress=seen.append)
    assert result.metadata["bright_pass_planes"] == [0]
    steps = [p for p in seen if p.tile == 0]
    assert len(steps) == 3  # the plane, then a box around each punctum
    assert all(p.step <= p.n_steps + 1e-9 and 0 < p.fraction <= 1 for p in seen)
    boxes = 2 * (2 * BRIGHT_MARGIN + 8) ** 2 / image.size  # about: the margins around a few pixels each
    assert steps[0].fraction == pytest.approx(1 / (1 + boxes), abs=0.08)
    assert steps[0].n_steps > 1 + boxes / 2  # the boxes were expected before the first estimate found them
    assert steps[-1].fraction == 1.0 and steps[0].where == "plane 1/1, step 1/1"


def test_sparse_bright_puncta_keep_their_intensity():
    """A uint16 plane whose 99.8th percentile is a few hundred, with 65000-count puncta: the first
    intensity map clips them near 1.5 percentile units; the bright pass must give them back."""
    rng = np.random.default_rng(0)
    truth = np.full((160, 160), 100.0)
    yy, xx = np.mgrid[:160, :160]
    spots = ((40, 40), (110, 90))
    for (cy, cx), peak in zip(spots, (65000, 20000)):
        truth += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.0**2))
    image = rng.poisson(truth).astype(np.uint16)
    assert np.percentile(image, 99.8) < 1000  # the puncta lie far above the normalisation's top
    model = load_model("demo")
    result = denoise(image, model, n_samples=2, steps=2, seed=0)
    assert result.metadata["bright_pass_planes"] == [0]
    for cy, cx in spots:
        assert result.mean[cy, cx] > 0.5 * truth[cy, cx], (cy, cx, result.mean[cy, cx])
    assert result.mean.min() >= 0
    assert abs(np.median(result.mean) - 100) < 20  # the background stays where it was


def test_the_bundled_demo_carries_a_mean_head_that_is_its_default(tmp_path):
    model = load_model("demo")
    assert model.mean_estimator == "head" and model.mean_network is not None
    rng = np.random.default_rng(0)
    image = rng.poisson(np.tile(np.linspace(2, 40, 64), (64, 1))).astype(np.uint16)
    head = denoise(image, model, n_samples=0)
    # mean and std from the two heads: one network evaluation each per symmetry averaged over (core.model.symmetries),
    # std where the error is, no samples
    assert head.metadata["mean_estimator"] == head.metadata["std_estimator"] == "head"
    assert head.metadata["network_evaluations"] == 2 * DEFAULT_SYMMETRIES and model.std_network is not None
    assert head.std.min() > 0 and head.entropy is None
    assert denoise(image, model, n_samples=0, std="samples").metadata["network_evaluations"] == DEFAULT_SYMMETRIES
    # the head's estimate is the same whatever the samples, and differs from their average
    sampled = denoise(image, model, n_samples=2, steps=2, keep_samples=True)
    np.testing.assert_allclose(sampled.mean, head.mean, rtol=1e-5, atol=1e-3)
    assert np.abs(sampled.mean - np.maximum(sampled.samples.mean(0), 0)).mean() > 0.05
    # the ramp comes back as a ramp: the head removes the noise, not the signal
    assert np.corrcoef(head.mean.mean(0), np.linspace(2, 40, 64))[0, 1] > 0.99
    # the head travels with the checkpoint
    path = tmp_path / "copy.safetensors"
    save_checkpoint(model, path)
    again = load_model(path)
    np.testing.assert_allclose(denoise(image, again, n_samples=0).mean, head.mean, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="needs a model with a mean head; .widefield. has none"):
        denoise(image, load_model("widefield"), mean="head")


def test_calibrate_without_a_truth_can_simulate_pairs_from_the_noisy_image(tiny_model):
    rng = np.random.default_rng(2)
    noisy = rng.poisson(rng.uniform(5, 30, (2, 64, 64))).astype(np.float32) + 100
    calibrated = calibrate(tiny_model, noisy, coverage=(0.8, 0.9), n_samples=3, steps=2, mean="samples",
                           without_truth="simulated")
    entry = Calibration.from_dict(calibrated.calibrations[0])
    assert entry.source.startswith("simulated: the model's mean of the user's 2 noisy plane(s)")
    assert "var = " in entry.source and entry.factors[0] < entry.factors[1]


def test_too_few_calibration_pixels_for_a_coverage_is_refused(tiny_model):
    rng = np.random.default_rng(3)
    clean = rng.uniform(5, 30, (8, 8)).astype(np.float32) + 100
    noisy = rng.poisson(clean).astype(np.float32)
    with pytest.raises(ValueError, match=r"coverage 0.99 needs at least 99 calibration pixels .* this image gives 64"):
        calibrate(tiny_model, noisy, clean, coverage=(0.9, 0.99), n_samples=3, steps=2)
    calibrated = calibrate(tiny_model, noisy, clean, coverage=(0.5, 0.9), n_samples=3, steps=2)
    assert all(np.isfinite(calibrated.calibrations[0]["factors"]))


def test_bright_boxes_widen_each_bright_group_by_the_margin_and_merge_overlaps():
    from napari_diffdenoise.core.run.restore import bright_boxes

    weight = np.zeros((200, 200), np.float32)
    weight[50, 50] = 0.5
    weight[52, 58] = 1.0  # joins the first spot's box
    weight[150, 160] = 0.2
    boxes = bright_boxes(weight, margin=10)
    assert boxes == [(slice(40, 63), slice(40, 69)), (slice(140, 161), slice(150, 171))]
    assert bright_boxes(np.zeros((50, 50), np.float32)) == []


def test_the_bright_pass_restores_only_the_boxes_around_bright_structure(monkeypatch):
    """The second pass restores a box around the punctum, not the plane; away from it every map is
    the first pass's, bit for bit; at the punctum the bright pass gives the intensity back."""
    from napari_diffdenoise.core.run import plane_sampling
    from napari_diffdenoise.core.run.bright_pass import BRIGHT_MARGIN

    rng = np.random.default_rng(1)
    truth = np.full((192, 192), 100.0)
    yy, xx = np.mgrid[:192, :192]
    truth += 30000 * np.exp(-((yy - 40) ** 2 + (xx - 40) ** 2) / 2.0)
    image = rng.poisson(truth).astype(np.uint16)
    model = load_model("demo")
    restored_shapes = []
    sample_plane = plane_sampling._sample_plane

    def spy(plane, *args, **kw):
        restored_shapes.append(plane.shape)
        return (yield from sample_plane(plane, *args, **kw))

    monkeypatch.setattr(plane_sampling, "_sample_plane", spy)
    with_pass = denoise(image, model, n_samples=2, steps=2, seed=0)
    # the first pass restores the plane; the second, a box around the punctum only
    assert restored_shapes[0] == (192, 192) and len(restored_shapes) == 2
    assert all(2 * BRIGHT_MARGIN < side < 100 for side in restored_shapes[1]), restored_shapes
    monkeypatch.setattr(plane_sampling, "_reaches_ceiling", lambda *a: False)
    first_only = denoise(image, model, n_samples=2, steps=2, seed=0)
    assert with_pass.metadata["bright_pass_planes"] == [0]
    far = np.ones(image.shape, bool)
    far[:100, :100] = False  # the punctum at (40, 40), its blend and the 32 px margin lie inside
    for name in ("mean", "std", "interval_unit"):
        a, b = getattr(with_pass, name), getattr(first_only, name)
        assert np.array_equal(a[far], b[far]), name
        assert not np.array_equal(a, b), name
    assert with_pass.mean[40, 40] > 0.5 * truth[40, 40] > first_only.mean[40, 40]


def _blobs_and_a_punctum():
    """(truth, image): three broad blobs that set the 99.8th percentile, and a spot 2 px across far brighter."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    truth = np.full((128, 128), 100.0)
    for cy, cx in [(30, 30), (30, 90), (90, 30)]:
        truth += 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
    truth += 8000 * np.exp(-((yy - 90) ** 2 + (xx - 90) ** 2) / (2 * 0.8**2))
    return truth, rng.poisson(truth).astype(np.uint16)


def test_a_punctum_the_smoothed_plane_hides_still_takes_the_bright_pass(monkeypatch):
    """A spot 2 px across loses most of its peak to a 1 px blur, so the smoothed plane stays under the
    clip ceiling while the head's estimate reaches it (lysosome_08, docs/benchmarks/real_frames.md):
    the estimate, not the smoothed plane, decides, and the spot comes back far above the ceiling."""
    from scipy.ndimage import gaussian_filter

    from napari_diffdenoise.core.imaging.normalization import IntensityMap
    from napari_diffdenoise.core.run import plane_sampling

    truth, image = _blobs_and_a_punctum()
    # unrefined: this plane is bright, and the refinement gives back some of a clipped peak from the noisy pixels
    model = dataclasses.replace(load_model("demo"), mean_refinement="none")
    imap = IntensityMap.from_percentiles(image)
    ceiling = float(imap.to_input(np.float32(model.value_range[1])))
    assert imap.to_model(np.float32(gaussian_filter(image.astype(np.float32), 1.0).max())) < model.value_range[1]
    restored = denoise(image, model, n_samples=0, seed=0)
    assert restored.metadata["bright_pass_planes"] == [0]
    assert restored.mean[90, 90] > 1.3 * ceiling
    assert abs(restored.mean[30, 30] - truth[30, 30]) < 0.05 * truth[30, 30]  # the blobs keep the first pass's
    monkeypatch.setattr(plane_sampling, "_reaches_ceiling", lambda *a: False)
    assert denoise(image, model, n_samples=0, seed=0).mean[90, 90] < 1.01 * ceiling  # clipped (the low-frequency step adds ~1 count)


def test_the_time_said_before_a_run_foresees_the_bright_pass_of_a_punctum():
    """'Time here' foresees the bright pass from the plane lightly smoothed, a stand-in for the estimate the
    run decides on. At 1 px the punctum's peak fell under the ceiling and the pass went uncounted: on the
    lysosome series the widget said 7 s for a 13.8 s run."""
    from napari_diffdenoise.core.imaging.normalization import IntensityMap
    from napari_diffdenoise.core.run.bright_pass import expected_boxes

    _, image = _blobs_and_a_punctum()
    model = dataclasses.replace(load_model("demo"), mean_refinement="none")
    boxes = expected_boxes(image, IntensityMap.from_percentiles(image), model)
    assert any(box[0].start <= 90 < box[0].stop and box[1].start <= 90 < box[1].stop for box in boxes)
    assert denoise(image, model, n_samples=0, seed=0).metadata["bright_pass_planes"] == [0]
