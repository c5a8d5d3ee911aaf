"""The model shipped in the package really restores (small crops keep this fast)."""
import numpy as np
import pytest

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_demo_model_is_small_and_recorded(demo):
    from napari_diffdenoise.core.io.checkpoint import bundled_model_dir

    assert (bundled_model_dir() / "demo.safetensors").stat().st_size < 20 * 2**20
    assert demo.kind == "paired" and demo.provenance["step"] > 1000 and demo.provenance["history"]


@pytest.mark.parametrize("kind", ["nuclei", "filaments"])
def test_demo_model_beats_the_noisy_input_on_unseen_images(demo, kind):
    noisy, clean = simulate_pair(kind, (64, 64), Acquisition(peak_photons=8), seed=987_654)
    result = denoise(noisy, demo, n_samples=4, steps=6, seed=0)
    assert psnr_fitted(result.mean, clean) > psnr_fitted(noisy, clean) + 3
    # and the mean is in the input's units: the same level as the truth, not the model's [−1, 1]
    assert abs(float(result.mean.mean()) - float(clean.mean())) < 0.1 * float(clean.std()) + 1


def test_bundled_unpaired_model_denoises_by_forward_backward():
    prior = load_model("demo-unpaired")
    assert prior.kind == "unpaired" and prior.network.config.cond_channels == 0
    noisy, clean = simulate_pair("nuclei", (64, 64), Acquisition(peak_photons=10), seed=987_655)
    result = denoise(noisy, prior, sampler="fb", n_samples=2, seed=0)
    assert psnr_fitted(result.mean, clean) > psnr_fitted(noisy, clean) + 3
    with pytest.raises(ValueError, match="does not work with an unpaired model"):
        denoise(noisy, prior, sampler="ddim")


def test_bundled_widefield_model_deconvolves_and_guidance_keeps_it_consistent():
    """On a blurred nuclei image the deconvolving model beats the blurred input against the sharp
    truth, and PSF guidance lowers the data-consistency error of its mean and raises its PSNR."""
    from scipy import ndimage

    from napari_diffdenoise.core.imaging.physics import gaussian_psf
    from napari_diffdenoise.core.imaging.simulate import draw_structure

    model = load_model("widefield")
    assert model.kind == "paired" and model.value_range[1] > 5 and model.provenance["target"] == "sharp"
    acq = Acquisition(peak_photons=50, psf_sigma=1.6)
    rng = np.random.default_rng(424_242)
    density = draw_structure("nuclei", (64, 64), rng)
    noisy = acq.acquire(acq.blur(density), rng).astype(np.float32)
    sharp, blurred = acq.expected(acq.sharp(density)), acq.expected(acq.blur(density))
    kw = dict(n_samples=2, steps=6, seed=0, psf=gaussian_psf(1.6))
    guided = denoise(noisy, model, sampler="ddim-dc", **kw).mean
    unguided = denoise(noisy, model, sampler="ddim-dc", sampler_params={"guidance": 0.0}, **kw).mean
    assert psnr_fitted(guided, sharp) > max(psnr_fitted(noisy, sharp) + 2, psnr_fitted(unguided, sharp))

    def dc_error(mean):
        fitted = np.polyval(np.polyfit(mean.ravel(), sharp.ravel(), 1), mean)
        return np.sqrt(np.mean((ndimage.gaussian_filter(fitted, 1.6) - blurred) ** 2))

    assert dc_error(guided) < dc_error(unguided)
