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
