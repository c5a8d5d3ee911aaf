"""The mean's smooth part held to the data's where it departs beyond the noise (core/run/low_frequency.py)."""
import dataclasses

import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.run.low_frequency import MIN_SIDE, low_frequency_departure
from napari_diffdenoise.core.run.restore import make_settings


def bright_blobs_on_dark(size=128, background=2.0, peak=300.0):
    """Expected counts: a dark background of a few photons and bright blobs a hundred times above it
    (the high dynamic range under which a head may lift the background)."""
    yy, xx = np.mgrid[:size, :size]
    x = np.full((size, size), background)
    for cy, cx, r in [(30, 30, 10), (80, 90, 14), (100, 30, 8)]:
        x += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * size / 128
    return x


def test_an_offset_mean_is_held_to_the_data_and_an_unbiased_one_is_left_alone():
    x = bright_blobs_on_dark()
    y = np.random.default_rng(0).poisson(x).astype(np.float32)
    dark = x < 3

    offset = low_frequency_departure(y, x + 1.5)
    assert offset.shape == y.shape
    assert np.mean(offset[dark]) == pytest.approx(-1.5, abs=0.15)

    # the truth itself departs from the data by noise alone: the test keeps it as it is
    unbiased = low_frequency_departure(y, x)
    assert np.mean(unbiased == 0) > 0.95
    assert np.abs(unbiased).max() < 0.5


def test_a_plane_too_small_for_a_camera_fit_is_left_alone():
    small = np.random.default_rng(1).poisson(5.0, (MIN_SIDE - 1, 64)).astype(np.float32)
    assert low_frequency_departure(small, np.full(small.shape, 7.0)) is None


class Lifted(torch.nn.Module):
    """A mean head that adds ``lift`` model units everywhere: the lift of a dark background the bundled
    head of 49bbfd5 showed under a high dynamic range (the head shipped since lifts it less)."""

    def __init__(self, network, lift: float):
        super().__init__()
        self.network, self.lift, self.config = network, lift, network.config

    def forward(self, x, gamma):
        return self.network(x, gamma) + self.lift


def test_denoise_takes_off_the_heads_lift_of_a_dark_background():
    bundled = load_model("demo")
    model = dataclasses.replace(bundled, mean_network=Lifted(bundled.mean_network, 0.01))
    x = bright_blobs_on_dark(96)
    y = np.random.default_rng(2).poisson(x).astype(np.float32)
    dark = x < 3
    network = denoise(y, model, n_samples=0, std="head", low_frequencies="model")
    held = denoise(y, model, n_samples=0, std="head")  # the default
    assert held.metadata["low_frequencies"] == "data" and network.metadata["low_frequencies"] == "model"
    assert np.mean(network.mean[dark] - x[dark]) > 1.0  # the lifted head's, as it is
    assert abs(np.mean(held.mean[dark] - x[dark])) < 0.4
    np.testing.assert_array_equal(held.std, network.std)  # the spread is the network's either way


def test_low_frequencies_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="low_frequencies must be one of .'data', 'model'."):
        make_settings(load_model("demo"), low_frequencies="smooth")


def test_the_camera_is_fitted_once_for_the_samples_and_the_mean_of_a_plane(tiny_model, first_pass_only, monkeypatch):
    """The hold's noise (departure_noise: a camera fit and two Gaussian filters) serves every estimate
    of a plane's run: it was fitted anew for the samples and again for the mean (on a GPU the host's
    work around the network is most of a run: docs/benchmarks/gpu_speed.md)."""
    from napari_diffdenoise.core.run import plane_sampling

    fitted = []
    fit = plane_sampling.departure_noise
    monkeypatch.setattr(plane_sampling, "departure_noise", lambda plane: fitted.append(plane.shape) or fit(plane))
    plane = np.random.default_rng(1).poisson(bright_blobs_on_dark(64)).astype(np.float32)
    held = denoise(plane, tiny_model, n_samples=2, steps=2, mean="x0", seed=0)
    assert fitted == [(64, 64)]
    monkeypatch.setattr(plane_sampling, "departure_noise", fit)
    again = denoise(plane, tiny_model, n_samples=2, steps=2, mean="x0", seed=0)
    np.testing.assert_array_equal(held.mean, again.mean)
    np.testing.assert_array_equal(held.std, again.std)
    model_only = denoise(plane, tiny_model, n_samples=2, steps=2, mean="x0", seed=0, low_frequencies="model")
    assert not np.array_equal(model_only.mean, held.mean)  # the hold did act on this plane


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (20, 13)])
def test_the_devices_gaussian_is_scipys(shape):
    """The hold's filter on the run's device has scipy's taps and edges, also where the radius (32 px)
    exceeds the plane."""
    from scipy import ndimage

    from napari_diffdenoise.core.run.low_frequency import SMOOTHING, gaussian_smoothed

    images = np.random.default_rng(2).normal(size=(2, *shape))
    smoothed = gaussian_smoothed(torch.from_numpy(images)).numpy()
    for image, ours in zip(images, smoothed):
        np.testing.assert_allclose(ours, ndimage.gaussian_filter(image, SMOOTHING, mode="reflect"), rtol=0, atol=1e-12)


def test_the_hold_on_the_device_is_the_hosts_in_model_units():
    from napari_diffdenoise.core.imaging.normalization import IntensityMap
    from napari_diffdenoise.core.run.low_frequency import departure_noise, held_on_device

    x = bright_blobs_on_dark()
    y = np.random.default_rng(0).poisson(x).astype(np.float32)
    estimates = np.stack([x + 1.5, x, 0.9 * x])  # lifted, right, dimmed
    imap = IntensityMap.from_percentiles(y)
    se2 = departure_noise(y)
    on_host = np.stack([e + low_frequency_departure(y, e, se2) for e in estimates])
    held = held_on_device(torch.from_numpy(imap.to_model(y).astype(np.float64)),
                          torch.from_numpy(np.stack([imap.to_model(e).astype(np.float64) for e in estimates])),
                          torch.from_numpy(se2 / imap.half_span ** 2))
    np.testing.assert_allclose(imap.to_input(held.numpy(), np.float64), on_host, rtol=0, atol=1e-4)  # to_model rounds to float32
    assert np.abs(on_host - estimates).max() > 0.5  # the hold acted


def test_a_run_off_the_cpu_holds_its_estimates_on_the_device(tiny_model, first_pass_only, monkeypatch):
    """The run's wiring of the device's hold, checked on the CPU by taking that route here: the same maps
    within float32's rounding."""
    from napari_diffdenoise.core.run import plane_sampling

    plane = np.random.default_rng(1).poisson(bright_blobs_on_dark(64)).astype(np.float32)
    kw = {"n_samples": 2, "steps": 2, "mean": "x0", "seed": 0}
    host = denoise(plane, tiny_model, **kw)
    monkeypatch.setattr(plane_sampling, "_holds_on_device", lambda device: True)
    device = denoise(plane, tiny_model, **kw)
    span = float(np.ptp(plane))
    np.testing.assert_allclose(device.mean, host.mean, rtol=0, atol=1e-5 * span)
    np.testing.assert_allclose(device.std, host.std, rtol=0, atol=1e-5 * span)
    unheld = denoise(plane, tiny_model, low_frequencies="model", **kw)
    assert np.abs(unheld.mean - host.mean).max() > 1e-3 * span
