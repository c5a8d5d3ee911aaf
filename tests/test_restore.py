import numpy as np
import pytest

from napari_diffdenoise import Cancelled, denoise


def test_shapes_dtypes_and_metadata_for_a_stack(tiny_model, noisy_stack):
    result = denoise(noisy_stack, tiny_model, n_samples=3, steps=4, seed=1)
    for name in ("mean", "std", "entropy"):
        arr = getattr(result, name)
        assert arr.shape == noisy_stack.shape and arr.dtype == np.float32 and np.isfinite(arr).all()
    assert (result.std >= 0).all()
    assert result.entropy.min() >= 0 and result.entropy.max() <= np.log2(3) + 1e-5
    meta = result.metadata
    assert meta["n_samples"] == 3 and meta["steps"] == 4 and meta["seed"] == 1 and meta["sampler"] == "ddim"
    assert meta["network_evaluations"] == 2 * 4  # one tile per plane, 3 samples batched together


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64, np.float32])
def test_any_numeric_dtype_in_float32_out_and_float64_kept(tiny_model, dtype):
    image = (np.random.default_rng(0).random((24, 24)) * 100).astype(dtype)
    result = denoise(image, tiny_model, n_samples=1, steps=2)
    # float64 stays float64, and so do integers wider than 16 bits: a large offset would lose the
    # signal to float32's 7 digits
    expected = np.float64 if dtype in (np.float64, np.int32) else np.float32
    assert result.mean.shape == (24, 24) and result.mean.dtype == expected and result.std.dtype == np.float32


def test_mean_and_std_come_back_in_input_units(tiny_model):
    image = 1000.0 + 50.0 * np.random.default_rng(0).random((32, 32))
    result = denoise(image, tiny_model, n_samples=4, steps=3)
    # the model's range [−1.5, 1.5] maps to about [p1 − 0.25·span, p99.8 + 0.25·span] ⊂ [985, 1065]
    assert 980 < result.mean.min() and result.mean.max() < 1070
    assert result.std.max() < 100


def test_same_seed_same_output_and_other_seed_differs(tiny_model, noisy_stack):
    a = denoise(noisy_stack, tiny_model, n_samples=2, steps=3, seed=7)
    b = denoise(noisy_stack, tiny_model, n_samples=2, steps=3, seed=7)
    c = denoise(noisy_stack, tiny_model, n_samples=2, steps=3, seed=8)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.entropy, b.entropy)
    assert not np.array_equal(a.mean, c.mean)


def test_batching_does_not_change_the_result(tiny_model, noisy_stack):
    one = denoise(noisy_stack, tiny_model, n_samples=3, steps=2, batch_pixels=1)
    all_ = denoise(noisy_stack, tiny_model, n_samples=3, steps=2, batch_pixels=10**8)
    np.testing.assert_allclose(one.mean, all_.mean, rtol=1e-3, atol=1e-3)


def test_ddpm_runs_all_training_steps(tiny_model):
    seen = []
    denoise(np.ones((16, 16)), tiny_model, sampler="ddpm", n_samples=1, progress=seen.append)
    steps = [p for p in seen if p.tile == 0]  # the others report tiles inside a step
    assert len(steps) == tiny_model.schedule.n_steps and steps[-1].fraction == 1.0


def test_progress_counts_planes_and_steps_and_cancel_stops(tiny_model, noisy_stack):
    seen = []
    denoise(noisy_stack, tiny_model, n_samples=1, steps=5, progress=seen.append)
    assert [(p.plane, p.step) for p in seen if p.tile == 0] == [(z, s) for z in range(2) for s in range(1, 6)]
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    calls = []
    with pytest.raises(Cancelled):
        denoise(noisy_stack, tiny_model, n_samples=1, steps=5, progress=calls.append, cancel=lambda: len(calls) >= 3)
    assert len(calls) == 3  # stopped within one step of the request


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((2, 1, 1, 2, 16, 16)), "2 to 5 dimensions"),
        (np.zeros(16), "2 to 5 dimensions"),
        (np.zeros((2, 16, 16)), "axes 'TZYX' name 4 dimensions"),
        (np.zeros((2, 16, 16)), "end in YX"),
        (np.zeros((4, 4)), "at least 8"),
        (np.full((16, 16), np.nan), "NaN"),
        (np.array([["a"] * 16] * 16), "numeric"),
    ],
)
def test_bad_images_are_refused_with_a_message(tiny_model, image, message):
    axes = {"axes 'TZYX' name 4 dimensions": "TZYX", "end in YX": "YXZ"}.get(message)
    with pytest.raises((ValueError, TypeError), match=message):
        denoise(image, tiny_model, axes=axes)


def test_bad_parameters_are_refused(tiny_model):
    with pytest.raises(ValueError, match="n_samples"):
        denoise(np.ones((16, 16)), tiny_model, n_samples=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        denoise(np.ones((16, 16)), tiny_model, sampler="magic")
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to"):
        denoise(np.ones((16, 16)), tiny_model, steps=10_000)
    with pytest.raises(ValueError, match="not available"):
        denoise(np.ones((16, 16)), tiny_model, device="cuda:7")


def test_kept_samples_summarise_to_the_returned_maps(tiny_model, noisy_stack):
    result = denoise(noisy_stack, tiny_model, n_samples=3, steps=2, keep_samples=True)
    assert result.samples.shape == (3,) + noisy_stack.shape
    # counts are never negative: the mean is clamped at 0 (the samples are left as drawn)
    np.testing.assert_allclose(np.maximum(result.samples.mean(0), 0), result.mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(result.samples.std(0), result.std, rtol=1e-3, atol=1e-3)
    # the first k samples of a K-sample run are the samples of a k-sample run with the same seed
    two = denoise(noisy_stack, tiny_model, n_samples=2, steps=2)
    np.testing.assert_allclose(np.maximum(result.samples[:2].mean(0), 0), two.mean, rtol=1e-4, atol=1e-3)


def test_a_suspended_run_leaves_the_thread_in_normal_grad_mode(tiny_model, noisy_stack):
    """Regression: an inference_mode block spanning the generator's yields left napari's pooled
    worker thread in inference mode, and a later training job on that thread could not backprop."""
    import torch

    from napari_diffdenoise.core.run.restore import iter_denoise

    run = iter_denoise(noisy_stack, tiny_model, n_samples=1, steps=3)
    next(run)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    run.close()


def test_identical_planes_get_independent_noise_and_samples_do_not_depend_on_k(tiny_model):
    plane = np.random.default_rng(3).poisson(6, (32, 40)).astype(np.float32)
    stack = np.stack([plane, plane])
    result = denoise(stack, tiny_model, n_samples=3, steps=3, eta=1.0, mean="samples", keep_samples=True)
    # the same plane twice: the same model, different noise → different samples, similar statistics
    assert not np.allclose(result.samples[:, 0], result.samples[:, 1])
    # one sample's noise does not depend on how many others are drawn (η = 1 draws noise every step)
    one = denoise(plane, tiny_model, n_samples=1, steps=3, eta=1.0, mean="samples", keep_samples=True)
    np.testing.assert_allclose(one.samples[0], result.samples[0, 0], rtol=1e-4, atol=1e-3)
    assert not np.allclose(result.samples[0, 0], result.samples[1, 0])


def test_wide_integer_counts_keep_float64_maps(tiny_model):
    """int64 counts near 1e9 came back as float32, in steps of 64 counts, on a 9-count signal."""
    rng = np.random.default_rng(0)
    image = (10**9 + rng.poisson(9, (32, 32))).astype(np.int64)
    result = denoise(image, tiny_model, n_samples=2, steps=2, seed=0)
    assert result.mean.dtype == np.float64 and result.std.dtype == np.float32
    offsets = result.mean - 1e9
    assert np.all(np.abs(offsets) < 1000) and np.unique(np.round(offsets) % 64).size > 4
    small = denoise(image.astype(np.uint16) // 1, tiny_model, n_samples=2, steps=2, seed=0)
    assert small.mean.dtype == np.float32  # 16-bit counts fit float32 exactly


@pytest.mark.parametrize("settings", [
    dict(n_samples=0),  # the preview: the mean and std heads
    dict(n_samples=0, mean="x0", std="samples"),  # x̂₀ of the diffusion network
    dict(n_samples=2, sampler="one-step"),
    dict(n_samples=2, steps=2, sampler="ddim", mean="head", std="samples"),
    dict(n_samples=2, steps=2, sampler="ddim", mean="samples", std="samples"),
])
def test_a_run_copies_every_network_it_calls_to_its_device(with_sample_head, settings):
    """A run calls copies of the networks it uses (on its device, channels-last) and copies only
    those: a call that reached the caller's own network would be one left on the wrong device."""
    from napari_diffdenoise.core.run.plane_runs import network_passes
    from napari_diffdenoise.core.run.restore import make_settings

    model = with_sample_head
    originals, copies = [], []
    for name in ("network", "mean_network", "std_network", "sample_network"):
        # a copy carries the hook too: it tells itself from the caller's network by identity
        getattr(model, name).register_forward_hook(
            lambda module, args, out, name=name: (originals if module is getattr(model, name) else copies).append(name))
    plane = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    result = denoise(plane, model, seed=0, **settings)
    assert originals == []
    assert set(copies) == set(network_passes(model, make_settings(model, **settings)))


def test_a_network_changed_in_place_is_copied_again(tiny_model):
    """The device copy of a network is kept between runs, and made again once its weights change:
    a run after training in place restores with the trained weights."""
    import torch

    plane = np.random.default_rng(0).poisson(20, (32, 32)).astype(np.float32)
    before = denoise(plane, tiny_model, seed=0, n_samples=1, steps=2, mean="samples", std="samples")
    again = denoise(plane, tiny_model, seed=0, n_samples=1, steps=2, mean="samples", std="samples")
    np.testing.assert_array_equal(before.mean, again.mean)
    with torch.no_grad():
        for p in tiny_model.network.parameters():
            p.mul_(1.5)  # in place, as an optimiser step is
    changed = denoise(plane, tiny_model, seed=0, n_samples=1, steps=2, mean="samples", std="samples")
    assert np.abs(changed.mean - before.mean).max() > 1e-3
