"""The entropy map: by default how far the samples are from one bell curve (core.io.maps.negentropy),
which the std cannot tell; the seed paper's quantised entropy on request."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.uncertainty import pixel_entropy
from napari_diffdenoise.core.io.maps import layer_kwargs, layer_metadata, negentropy

K = 8


def _columns(*columns) -> torch.Tensor:
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)  # (K, pixels)


def test_two_groups_of_samples_score_higher_than_one_bell_curve_with_the_same_std():
    bell = stats.norm.ppf((np.arange(K) + 0.5) / K)  # K evenly spread Gaussian quantiles
    bell /= bell.std()
    groups = np.array([-1.0] * 4 + [1.0] * 4)  # std 1 as well
    values = negentropy(_columns(0.1 * bell, 0.1 * groups))
    # two equal groups: ½ − ln(h) + ln(½ + ½·exp(−2/h²)) nats, h = 1.06·8^(−1/5)
    h = 1.06 * K ** -0.2
    expected = (0.5 - math.log(h) + math.log(0.5 + 0.5 * math.exp(-2 / h ** 2))) / math.log(2)
    assert values[1].item() == pytest.approx(expected, abs=1e-4)
    assert values[1].item() == pytest.approx(0.262, abs=0.001)
    assert values[0].item() < 0.05
    # the std cannot tell them apart
    assert torch.allclose(_columns(bell, groups).std(dim=0, correction=0), torch.ones(2))


def test_the_map_is_free_of_the_spread_but_the_quantised_one_is_not():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=K)
    samples = _columns(*(scale * shape for scale in (0.02, 0.2, 1.0)))
    values = negentropy(samples)
    assert torch.allclose(values, values[0].expand(3), atol=1e-5)
    quantised = pixel_entropy(samples)
    assert quantised[0] < quantised[2]


def test_samples_that_agree_have_no_shape():
    samples = _columns(np.full(K, 0.3), np.full(K, -1.5))
    assert negentropy(samples).tolist() == [0.0, 0.0]


def test_gaussian_draws_stay_near_zero_and_two_groups_stand_out():
    rng = np.random.default_rng(1)
    bell = negentropy(torch.tensor(rng.normal(size=(K, 4000))))
    groups = negentropy(torch.tensor(rng.normal(0, 0.2, (K, 4000)) + rng.choice([-1.5, 1.5], (K, 4000))))
    assert float(bell.median()) < 0.05 and float(groups.median()) > 0.2
    assert float((bell >= 0).all()) and bell.dtype == torch.float32


def test_denoise_makes_the_chosen_entropy_and_records_it(tiny_model):
    image = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    default = denoise(image, tiny_model, n_samples=4, steps=2, seed=1, keep_samples=True)
    seed_paper = denoise(image, tiny_model, n_samples=4, steps=2, seed=1, entropy="quantised")
    assert default.metadata["entropy"] == "negentropy" and seed_paper.metadata["entropy"] == "quantised"
    np.testing.assert_array_equal(default.std, seed_paper.std)  # the same samples
    assert seed_paper.entropy.max() <= 2 + 1e-6 and not np.allclose(default.entropy, seed_paper.entropy)
    # the kept samples, in any affine units, give the same map: it depends on their shape alone
    expected = negentropy(torch.tensor(default.samples, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(default.entropy, expected, atol=2e-3)
    assert layer_kwargs("entropy", default.metadata)["contrast_limits"] == (0.0, 0.5)
    assert layer_kwargs("entropy", seed_paper.metadata)["contrast_limits"] == (0.0, 2.0)
    assert "bell curve" in layer_metadata("entropy", default.metadata)["definition"]
    assert "256 equal bins" in layer_metadata("entropy", seed_paper.metadata)["definition"]


@pytest.mark.parametrize("value", ["shannon", None, ["quantised"]])
def test_an_unknown_entropy_is_refused_naming_the_choices(tiny_model, value):
    with pytest.raises(ValueError, match=r"entropy must be one of \('negentropy', 'quantised'\); got"):
        denoise(np.ones((16, 16)), tiny_model, n_samples=2, steps=1, entropy=value)


def test_the_widget_offers_both_definitions_and_styles_each(make_napari_viewer, tiny_checkpoint, qtbot):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    w.model_file.value = tiny_checkpoint
    w.n_samples.value, w.steps.value = 4, 2
    viewer.add_image(np.random.default_rng(1).poisson(5, (32, 32)).astype(np.float32), name="cells")
    w.image.value = viewer.layers["cells"]
    assert w.entropy.value == "negentropy" and "bell curve" in w.entropy.tooltip
    for kind, limits in (("negentropy", (0.0, 0.5)), ("quantised", (0.0, 2.0))):
        w.entropy.value = kind
        w.run()
        qtbot.waitUntil(lambda: w._worker is None and "cells [entropy]" in viewer.layers, timeout=60_000)
        layer = viewer.layers["cells [entropy]"]
        assert layer.metadata["napari_diffdenoise"]["entropy"] == kind
        assert tuple(layer.contrast_limits) == limits and layer.colormap.name == "viridis"
        for result in [other for other in viewer.layers if other.name != "cells"]:  # the next run takes these names
            viewer.layers.remove(result)
