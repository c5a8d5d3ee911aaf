"""The model shipped in the package really restores (small crops keep this fast)."""
import numpy as np
import pytest

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.metrics import psnr_fitted
from napari_diffdenoise.core.simulate import Acquisition, simulate_pair


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_demo_model_is_small_and_recorded(demo):
    from napari_diffdenoise.core.checkpoint import bundled_model_dir

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
    with pytest.raises(ValueError, match="does not work with a unpaired model"):
        denoise(noisy, prior, sampler="ddim")
