"""PSF-guided DDIM (PI-DDPM's data consistency) on a Gaussian prior with the exact ε-predictor."""
import numpy as np
import pytest
import torch
from test_samplers import MU, S, make_noise, optimal_eps, run

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.sampling.consistency import DataConsistency, gradient_norm
from napari_diffdenoise.core.sampling.dc_sampling import ddim_dc
from napari_diffdenoise.core.sampling.samplers import ddim

SCHED = NoiseSchedule("cosine", 100)
PSF = gaussian_psf(1.5)


def blurred_observation(seed=0, size=48, k=4):
    """x = K∗y + small noise, y drawn from the prior N(MU, S²) per pixel; (K, 1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    truth = MU + S * torch.randn((1, 1, size, size), generator=g, dtype=torch.float64)
    op = DataConsistency(truth, PSF)
    obs = op.blur(truth) + 0.01 * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    return truth, DataConsistency(obs.expand(k, -1, -1, -1), PSF)


def sample(op, guidance, seed=1, **kw):
    y_T = make_noise(seed)(tuple(op.observation.shape))
    return run(ddim_dc(optimal_eps, SCHED, y_T, make_noise(seed + 100), consistency=op, steps=10,
                       guidance=guidance, clip=None, **kw))


def test_gradient_is_that_of_the_squared_error_by_autograd():
    truth, op = blurred_observation()
    estimate = (truth + 0.1).expand(4, -1, -1, -1).clone().requires_grad_(True)
    op.residual(estimate).pow(2).sum().backward()
    exact = op.gradient(estimate.detach())
    inner = (..., slice(8, -8), slice(8, -8))  # reflect padding makes the border differ
    torch.testing.assert_close(exact[inner], estimate.grad[inner])


def test_zero_guidance_is_plain_ddim():
    _, op = blurred_observation()
    y_T = make_noise(3)(tuple(op.observation.shape))
    plain = run(ddim(optimal_eps, SCHED, y_T, make_noise(4), steps=10, clip=None))
    guided = run(ddim_dc(optimal_eps, SCHED, y_T, make_noise(4), consistency=op, steps=10, guidance=0.0, clip=None))
    torch.testing.assert_close(plain, guided)


def test_guidance_lowers_the_data_consistency_error_monotonically():
    _, op = blurred_observation()
    errors = [op.error(sample(op, g)).mean().item() for g in (0.0, 0.5, 2.0)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.6 * errors[0]


def test_guidance_moves_samples_towards_the_truth():
    truth, op = blurred_observation()
    rmse = [(sample(op, g) - truth).pow(2).mean().sqrt().item() for g in (0.0, 2.0)]
    assert rmse[1] < rmse[0]


def test_l1_regulariser_pulls_towards_the_background():
    _, op = blurred_observation()
    plain, sparse = sample(op, 2.0), sample(op, 2.0, regulariser="l1", reg_weight=5.0)
    assert (sparse - op.background).abs().mean() < (plain - op.background).abs().mean()


def test_gradient_norm_is_per_fixed_area():
    small, large = torch.ones(1, 1, 64, 64), torch.ones(1, 1, 256, 256)
    torch.testing.assert_close(gradient_norm(small), gradient_norm(large))


def test_unknown_regulariser_is_refused():
    _, op = blurred_observation()
    with pytest.raises(ValueError, match="regulariser"):
        op.gradient(op.observation, "tv", 1.0)


def test_denoise_with_dc_needs_a_psf_and_only_dc_takes_one(tiny_model):
    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match="needs the PSF"):
        denoise(image, tiny_model, sampler="ddim-dc", n_samples=1)
    with pytest.raises(ValueError, match="does not use a PSF"):
        denoise(image, tiny_model, sampler="ddim", n_samples=1, psf=PSF)
    with pytest.raises(ValueError, match="psf must be non-negative"):
        denoise(image, tiny_model, sampler="ddim-dc", n_samples=1, psf=-PSF)
    with pytest.raises(ValueError, match="regulariser"):
        denoise(image, tiny_model, sampler="ddim-dc", n_samples=1, psf=PSF, sampler_params={"regulariser": "tv"})


def test_denoise_with_dc_is_deterministic_and_differs_from_unguided(tiny_model):
    image = np.random.default_rng(0).poisson(5, (40, 40)).astype(np.float32)
    kw = dict(sampler="ddim-dc", n_samples=2, steps=3, seed=7, psf=PSF)
    first, again = denoise(image, tiny_model, **kw), denoise(image, tiny_model, **kw)
    np.testing.assert_array_equal(first.mean, again.mean)
    assert first.mean.shape == image.shape and np.isfinite(first.std).all()
    assert first.metadata["sampler"] == "ddim-dc" and first.metadata["guidance"] > 0
    unguided = denoise(image, tiny_model, **kw, sampler_params={"guidance": 0.0})
    assert not np.allclose(first.mean, unguided.mean)
