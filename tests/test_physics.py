import numpy as np
import pytest
from scipy import ndimage

from napari_diffdenoise.core.imaging.metrics import psnr_fitted
from napari_diffdenoise.core.imaging.physics import airy_psf, confocal_psf, gaussian_psf
from napari_diffdenoise.core.imaging.simulate import draw_structure, gaussian_psf_sigma
from napari_diffdenoise.core.run.deconvolution import richardson_lucy


@pytest.mark.parametrize("psf", [gaussian_psf(1.5), airy_psf(0.8, 520, 65), confocal_psf(1.2, 488, 520, 40)])
def test_psfs_are_normalised_centred_and_symmetric(psf):
    assert psf.ndim == 2 and psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1
    assert psf.sum() == pytest.approx(1, abs=1e-5) and psf.min() >= 0
    c = psf.shape[0] // 2
    assert psf[c, c] == psf.max()
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-6)


def test_airy_width_matches_the_gaussian_approximation():
    na, wl, px = 0.8, 520.0, 50.0
    psf = airy_psf(na, wl, px)
    y, x = np.mgrid[: psf.shape[0], : psf.shape[1]] - psf.shape[0] // 2
    # second moment of the central lobe ~ the Gaussian σ of Zhang et al.
    lobe = np.hypot(y, x) < 0.61 * wl / na / px
    sigma = np.sqrt((psf[lobe] * (y[lobe] ** 2)).sum() / psf[lobe].sum())
    assert sigma == pytest.approx(gaussian_psf_sigma(na, wl, px), rel=0.25)


def test_confocal_is_narrower_than_widefield():
    wide, conf = airy_psf(1.2, 520, 40), confocal_psf(1.2, 488, 520, 40, pinhole_airy_units=0.5)
    size = min(wide.shape[0], conf.shape[0])

    def crop(k):
        o = (k.shape[0] - size) // 2
        return k[o: o + size, o: o + size]

    assert crop(conf).max() > crop(wide).max()


def test_richardson_lucy_sharpens_a_blurred_image():
    truth = draw_structure("puncta", (96, 96), seed=3)
    psf = gaussian_psf(2.0)
    blurred = ndimage.convolve(truth, psf.astype(np.float64), mode="reflect") * 100 + 10
    restored = richardson_lucy(blurred, psf, iterations=30)
    assert restored.dtype == np.float32 and restored.shape == blurred.shape
    assert psnr_fitted(restored, truth) > psnr_fitted(blurred, truth) + 1
    stack = richardson_lucy(np.stack([blurred, blurred]), psf, iterations=2)
    assert stack.shape == (2, 96, 96)


def test_bad_physics_inputs_are_refused():
    with pytest.raises(ValueError, match="NA"):
        airy_psf(2.0, 520, 65)
    for sigma in (0, -1, np.inf, 1e6):  # σ = 10⁶ px asked for a 931 TiB kernel
        with pytest.raises(ValueError, match=r"PSF width σ \(--psf-sigma, psf_sigma\) must be above 0 and at most 20"):
            gaussian_psf(sigma)
    with pytest.raises(ValueError, match="the PSF would span .* check the optics"):
        airy_psf(1.2, 520, 1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        richardson_lucy(np.ones((16, 16)), -np.ones((3, 3)))
    with pytest.raises(ValueError, match="2 to 5 dimensions"):
        richardson_lucy(np.ones((2, 1, 2, 2, 16, 16)), gaussian_psf(1))
    tzyx = richardson_lucy(np.ones((2, 2, 16, 16)), gaussian_psf(1))  # any of T, C, Z before the plane
    assert tzyx.shape == (2, 2, 16, 16)


def test_a_simulated_acquisition_refuses_what_no_camera_records():
    from napari_diffdenoise.core.imaging.simulate import Acquisition, NoiseModel

    for bad in ({"peak_photons": np.nan}, {"peak_photons": 0}, {"psf_sigma": -1}, {"psf_sigma": np.inf},
                {"read_noise": -1}):
        with pytest.raises(ValueError, match="must be"):
            Acquisition(**bad)
    assert Acquisition(psf_sigma=0).psf_sigma == 0  # no blur
    with pytest.raises(ValueError, match="PSF width"):
        NoiseModel(psf_sigma=np.nan)
