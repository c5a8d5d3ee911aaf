"""The camera-noise model (issue #20): the simulator, the training pairs, adaptation and calibration
describe a camera's noise with one type. The pinned values were taken before that refactoring: a seed
must keep giving the same images, which the tests and benchmarks that compare runs rely on."""
import numpy as np
import pytest

from napari_diffdenoise.core.imaging.camera_noise import CameraNoise, estimate_noise, simulate_like
from napari_diffdenoise.core.imaging.simulate import Acquisition, random_acquisition, simulate_pair
from napari_diffdenoise.core.training.datasets import CleanWithSimulatedNoise, NoiseModel
from napari_diffdenoise.core.training.pairs import SimulatedPairs


def _pin(array) -> list[float]:
    """The sum and four pixels: a changed random stream or model moves all of them."""
    flat = np.asarray(array, dtype=np.float64).ravel()
    return [float(flat.sum()), *(float(v) for v in flat[[0, 7, 100, -1]])]


def _close(array, pinned):
    assert _pin(array) == pytest.approx(pinned, rel=1e-6, abs=1e-6)


def test_a_seed_gives_the_images_it_gave_before():
    noisy, clean = simulate_pair("nuclei", (48, 48), Acquisition(peak_photons=10), seed=3)
    _close(noisy, [249535.85691833496, 109.29644012451172, 110.4169921875, 108.79473876953125, 105.65105438232422])
    _close(clean, [249512.10331726074, 107.34740447998047, 108.52568817138672, 109.03785705566406, 105.95864868164062])
    noisy, clean = simulate_pair("filaments", (40, 40), Acquisition(peak_photons=5, psf_sigma=0, offset=0), seed=1)
    _close(noisy, [4287.129836610518, 4.218326568603516, -0.7712487578392029, -1.5836200714111328, 3.120887517929077])
    _close(clean, [4243.829317331314, 2.0, 2.0, 2.0, 2.0])
    drawn = random_acquisition(np.random.default_rng(5))
    assert [drawn.peak_photons, drawn.background_photons, drawn.read_noise, drawn.psf_sigma, drawn.offset] == \
        pytest.approx([81.47715258993375, 14.711719684924802, 1.214503450220354, 0.8647168428579878, 0.0], rel=1e-12)

    fit = estimate_noise([noisy])
    assert (fit.gain, fit.floor) == pytest.approx((0.0, 5.012931610436252), rel=1e-9)
    _close(simulate_like(clean, fit, np.random.default_rng(0)),
           [4212.460534252459, 2.2815046310424805, 4.120474338531494, 3.12548565864563, 1.3084501028060913])


def test_training_pairs_from_a_seed_are_what_they_were():
    _, clean = simulate_pair("filaments", (40, 40), Acquisition(peak_photons=5, psf_sigma=0, offset=0), seed=1)
    source = CleanWithSimulatedNoise([clean * 3 + 1], 16, NoiseModel(photons=(3, 30), psf_sigma=1.5), val_fraction=0.5,
                                     seed=2)
    noisy, target = source.batch(2, 16, np.random.default_rng(4))
    _close(noisy, [-178.69506860722322, 0.012196413241326809, -0.3093431293964386, -0.5726009011268616,
                   -0.5454800128936768])
    _close(target, [-182.13411187939346, -0.8663118481636047, -0.8668472766876221, 0.7516756653785706,
                    0.6029461026191711])
    _close(source.validation_batch(16)[0], [-181.22163143067155, -0.43579038977622986, -0.2845371961593628,
                                            -0.8272272348403931, -0.9170161485671997])
    noisy, target = SimulatedPairs(image_size=32, pool_size=2, seed=1).batch(2, 16, np.random.default_rng(9))
    _close(noisy, [-126.64299265007139, -0.4008292853832245, -0.08633739501237869, -0.23953810334205627,
                   -0.46578842401504517])
    _close(target, [-130.12417293619365, -0.37541598081588745, -0.2521878480911255, -0.3247513771057129,
                    -0.37128302454948425])


def test_the_simulated_camera_is_the_camera_noise_a_fit_finds_in_its_images():
    """Acquisition.camera_noise is what adaptation and calibration would fit to the simulator's image:
    both speak of the one CameraNoise."""
    acquisition = Acquisition(peak_photons=200, background_photons=2, read_noise=3, psf_sigma=0, offset=100)
    assert acquisition.camera_noise == CameraNoise.poisson_gaussian(read_noise=3, offset=100) == \
        CameraNoise(1.0, -91.0, read_variance=9.0)
    ramp = np.tile(np.linspace(0, 1, 256), (256, 1))
    fitted = estimate_noise([acquisition.acquire(ramp, np.random.default_rng(0))])
    levels = acquisition.expected(np.array([0.1, 0.5, 0.9]))
    assert fitted.variance(levels) == pytest.approx(acquisition.camera_noise.variance(levels), rel=0.15)


def test_a_noise_model_draws_the_simulators_acquisitions():
    model = NoiseModel(photons=(3, 30), psf_sigma=1.5)
    drawn = model.draw(np.random.default_rng(1))
    assert isinstance(drawn, Acquisition) and 3 <= drawn.peak_photons <= 30 and drawn.offset == 0
    assert (drawn.background_photons, drawn.read_noise, drawn.psf_sigma) == (model.background, model.read_noise, 1.5)
    assert (NoiseModel().background, NoiseModel().read_noise) == (Acquisition().background_photons,
                                                                  Acquisition().read_noise)


def test_the_fitted_camera_knows_the_photon_noise_skew():
    """The third moment (what recorrupted calibration draws must match, core.calibration.residuals)
    is the photon noise's: gain × (variance − read variance), fitted from the image alone."""
    acquisition = Acquisition(peak_photons=6, background_photons=2, read_noise=1.5, psf_sigma=0, offset=100)
    levels = acquisition.expected(np.array([0.1, 0.5, 0.9]))
    # a Poisson count's third cumulant is its mean: 2.6, 5, 7.4 photons at these levels
    assert acquisition.camera_noise.third_moment(levels) == pytest.approx([2.6, 5.0, 7.4])
    ramp = np.tile(np.linspace(0, 1, 256), (256, 1))
    fitted = [estimate_noise([acquisition.acquire(ramp, np.random.default_rng(seed))]) for seed in range(3)]
    assert [f.read_variance for f in fitted] == pytest.approx([2.25] * 3, abs=0.8)
    assert np.mean([f.third_moment(levels) for f in fitted], axis=0) == pytest.approx([2.6, 5.0, 7.4], rel=0.3)
    flat = np.full((256, 256), 100.0) + 3.0 * np.random.default_rng(0).standard_normal((256, 256))
    assert estimate_noise([flat]).third_moment(np.array([100.0])) == pytest.approx([0.0], abs=1.0)
