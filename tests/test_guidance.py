"""Guidance wrapped around any sampler (core.sampling.guidance): data consistency with a PSF through every
registered paired sampler."""
import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.sampling.consistency import DataConsistency
from napari_diffdenoise.core.sampling.guidance import Guided, data_consistency_guide
from napari_diffdenoise.core.sampling.sampler_registry import samplers_for


class Recording:
    evaluations = 0

    def __call__(self, y, gamma):
        self.evaluations += 1
        return 0.3 * y + 0.1


def test_an_identity_guide_leaves_the_network_call_unchanged():
    base = Recording()
    wrapped = Guided(base, lambda x0, gamma: x0)
    y = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(wrapped(y, 0.4), Recording()(y, 0.4))
    assert wrapped.evaluations == 1  # it counts what it wraps


def test_the_wrapped_call_implies_the_corrected_clean_estimate():
    y, gamma = torch.randn(1, 1, 8, 8), 0.3
    wrapped = Guided(Recording(), lambda x0, g: torch.zeros_like(x0))
    eps = wrapped(y, gamma)
    implied = (y - (1 - gamma) ** 0.5 * eps) / gamma**0.5
    torch.testing.assert_close(implied, torch.zeros_like(implied), atol=1e-5, rtol=0)


def test_a_data_consistency_step_lowers_the_residual_of_an_asymmetric_blur():
    psf = np.zeros((7, 7))
    psf[3, 3], psf[3, 5], psf[1, 3] = 0.6, 0.3, 0.1  # asymmetric: a flipped kernel in the adjoint would fail
    truth = torch.rand(1, 1, 32, 32)
    consistency = DataConsistency(torch.zeros(1, 1, 32, 32), psf)
    consistency.observation = consistency.blur(truth)
    guess = torch.rand(1, 1, 32, 32)
    moved = data_consistency_guide(consistency, weight=0.5)(guess, 0.9)
    assert consistency.error(moved) < consistency.error(guess)
    torch.testing.assert_close(data_consistency_guide(consistency, weight=0.0)(guess, 0.9), guess)


# one-step takes no guidance (it has no diffusion steps to steer): refused, tests/test_sample_head.py
@pytest.mark.parametrize("sampler", [name for name in samplers_for("paired") if name not in ("ddim-dc", "one-step")])
def test_guidance_composes_with_every_paired_sampler(tiny_model, sampler):
    rng = np.random.default_rng(0)
    sharp = np.zeros((48, 48))
    sharp[rng.integers(4, 44, 30), rng.integers(4, 44, 30)] = 50
    from scipy.ndimage import convolve

    psf = gaussian_psf(1.5)
    blurred = rng.poisson(convolve(sharp, psf) + 2).astype(np.float32)
    params = {"steps": 3} if sampler != "ddpm" else {}
    common = dict(sampler=sampler, sampler_params=params, n_samples=2, seed=0, mean="samples")
    plain = denoise(blurred, tiny_model, **common)
    guided = denoise(blurred, tiny_model, psf=psf, guidance="dc", guidance_weight=2.0, **common)
    assert guided.metadata["guidance"] == "dc" and guided.metadata["network_evaluations"] == \
        plain.metadata["network_evaluations"]  # the guide adds no network call
    # pulled towards the observation through the blur: a lower data residual than unguided
    from napari_diffdenoise.core.imaging.normalization import IntensityMap

    imap = IntensityMap.from_percentiles(blurred, tiny_model.percentiles)
    check = DataConsistency(torch.from_numpy(imap.to_model(blurred))[None, None], psf)

    def residual(image):
        return float(check.error(torch.from_numpy(imap.to_model(image))[None, None]))

    assert residual(guided.mean) < residual(plain.mean)
    same = denoise(blurred, tiny_model, psf=psf, guidance="dc", guidance_weight=0.0, **common)
    np.testing.assert_allclose(same.mean, plain.mean, rtol=1e-5, atol=1e-4)  # weight 0 is no guidance


def test_guidance_settings_are_checked(tiny_model):
    image = np.ones((16, 16))
    with pytest.raises(ValueError, match="guidance must be one of"):
        denoise(image, tiny_model, psf=gaussian_psf(1), guidance="magic")
    with pytest.raises(ValueError, match="needs the PSF"):
        denoise(image, tiny_model, guidance="dc")
    with pytest.raises(ValueError, match="guides with the PSF itself"):
        denoise(image, tiny_model, sampler="ddim-dc", psf=gaussian_psf(1), guidance="dc")
    with pytest.raises(ValueError, match="guidance_weight must be a number from 0 to 100"):
        denoise(image, tiny_model, psf=gaussian_psf(1), guidance="dc", guidance_weight=-1)


def test_the_guides_gradient_is_the_exact_gradient_for_an_asymmetric_psf():
    psf = np.zeros((7, 7))
    psf[3, 3], psf[3, 5], psf[1, 3] = 0.2, 0.7, 0.1  # mostly off-centre: a flipped adjoint points elsewhere
    consistency = DataConsistency(torch.rand(1, 1, 24, 24, dtype=torch.float64), psf)
    estimate = torch.rand(1, 1, 24, 24, dtype=torch.float64, requires_grad=True)
    (consistency.residual(estimate) ** 2).sum().backward()
    interior = (..., slice(4, -4), slice(4, -4))  # away from the border handling
    torch.testing.assert_close(consistency.gradient(estimate.detach())[interior], estimate.grad[interior])


@pytest.mark.parametrize("regulariser, weight", [("l1", 0.3), ("l2", 0.3), ("none", 0.0)])
def test_regularised_gradients_are_the_exact_gradients(regulariser, weight):
    psf = np.zeros((5, 5))
    psf[2, 2], psf[2, 4] = 0.7, 0.3
    consistency = DataConsistency(torch.rand(1, 1, 20, 20, dtype=torch.float64), psf)
    b = consistency.background
    estimate = torch.rand(1, 1, 20, 20, dtype=torch.float64, requires_grad=True)
    penalty = {"l1": (estimate - b).abs().sum(), "l2": ((estimate - b) ** 2).sum(), "none": 0.0}[regulariser]
    ((consistency.residual(estimate) ** 2).sum() + weight * penalty).backward()
    interior = (..., slice(3, -3), slice(3, -3))
    torch.testing.assert_close(consistency.gradient(estimate.detach(), regulariser, weight)[interior],
                               estimate.grad[interior])
    with pytest.raises(ValueError, match="regulariser must be one of"):
        consistency.gradient(estimate.detach(), "tv", 1.0)


def test_a_guide_step_moves_the_estimate_by_weight_times_root_gamma_per_reference_area():
    from napari_diffdenoise.core.sampling.consistency import REFERENCE_PIXELS

    consistency = DataConsistency(torch.rand(1, 1, 64, 64), gaussian_psf(1.0))
    guess = torch.rand(1, 1, 64, 64)
    moved = data_consistency_guide(consistency, weight=0.4, regulariser="l2", reg_weight=0.1)(guess, 0.25)
    step = (moved - guess).flatten().norm() * (REFERENCE_PIXELS / guess.numel()) ** 0.5
    assert float(step) == pytest.approx(0.4 * 0.25**0.5, rel=1e-4)
    direction = consistency.gradient(guess, "l2", 0.1)
    cosine = torch.nn.functional.cosine_similarity((guess - moved).flatten(), direction.flatten(), dim=0)
    assert float(cosine) == pytest.approx(1.0, abs=1e-5)  # against the regularised gradient
    with pytest.raises(ValueError, match="regulariser must be one of"):
        data_consistency_guide(consistency, regulariser="tv")


def test_the_blur_is_a_true_convolution_with_mirrored_borders():
    from scipy import ndimage

    psf = np.zeros((5, 5))
    psf[2, 2], psf[2, 4], psf[0, 1] = 0.5, 0.3, 0.2
    image = np.random.default_rng(0).random((12, 15))
    consistency = DataConsistency(torch.zeros(1, 1, 12, 15, dtype=torch.float64), psf)
    blurred = consistency.blur(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(blurred, ndimage.convolve(image, psf, mode="mirror"), rtol=1e-5, atol=1e-6)
    # a plane smaller than the kernel's reach repeats its edge instead
    small = image[:2, :2]
    tiny = DataConsistency(torch.zeros(1, 1, 2, 2, dtype=torch.float64), psf)
    np.testing.assert_allclose(tiny.blur(torch.from_numpy(small)[None, None])[0, 0].numpy(),
                               ndimage.convolve(small, psf, mode="nearest"), rtol=1e-5, atol=1e-6)
