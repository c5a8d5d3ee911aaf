"""The sample head (core.sampling.sample_head): its loss, the one-step sampler it runs, and the model that
carries it."""
import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint
from napari_diffdenoise.core.run.run_spec import DEFAULT_SYMMETRIES
from napari_diffdenoise.core.sampling.sample_head import draw, energy_score, multiscale_energy_score
from napari_diffdenoise.core.sampling.sampler_registry import samplers_for_model


@pytest.fixture
def sampled(with_sample_head):
    return with_sample_head


@pytest.fixture
def plane():
    return np.random.default_rng(0).poisson(np.tile(np.linspace(2, 40, 64), (64, 1))).astype(np.uint16)


def test_the_energy_score_is_lowest_for_samples_drawn_like_the_teachers():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn((4, 64, 8, 8), generator=g)
    same = torch.randn((4, 64, 8, 8), generator=g)
    scores = {"same": energy_score(same, teacher), "narrow": energy_score(0.5 * same, teacher),
              "wide": energy_score(2 * same, teacher), "shifted": energy_score(same + 0.5, teacher),
              "collapsed": energy_score(same.mean(1, keepdim=True).expand(-1, 64, -1, -1) * 0, teacher)}
    assert min(scores, key=scores.get) == "same"
    # for N(0, 1) against itself the score is E|X − Y|/2 = 1/√π
    assert float(scores["same"]) == pytest.approx(1 / np.sqrt(np.pi), rel=0.05)
    assert float(multiscale_energy_score(same, teacher)) > float(scores["same"])
    with pytest.raises(ValueError, match="at least 2 student samples"):
        energy_score(same[:, :1], teacher)


def test_one_step_draws_k_samples_in_one_pass_of_the_sample_head(sampled, plane):
    # the network's own mean (the step that holds its smooth part to the data's is core.run.low_frequency's)
    result = denoise(plane, sampled, sampler="one-step", n_samples=4, seed=0, keep_samples=True, low_frequencies="model",
                    symmetries=1)
    # the mean head, the sample head (its K draws in one batch) and the std head: one call each (one pass of the
    # heads, not one per symmetry: core.model.symmetries)
    assert result.metadata["network_evaluations"] == 3 and result.metadata["sampler"] == "one-step"
    # each sample is the mean head's estimate plus the head's residual for its noise field, computed here by hand
    imap = IntensityMap.from_percentiles(plane)
    x = torch.from_numpy(imap.to_model(plane))[None, None]
    with torch.no_grad():
        mean = sampled.predict_mean(x).clamp(*sampled.value_range)
        at_zero = draw(sampled.sample_network, torch.zeros_like(x), x, mean).clamp(*sampled.value_range)
    assert result.samples.shape == (4, 64, 64) and result.samples.std(axis=0).mean() > 0
    np.testing.assert_allclose(result.mean, np.maximum(imap.to_input(mean[0, 0].numpy()), 0), rtol=1e-5, atol=1e-3)
    assert not np.allclose(result.samples[0], imap.to_input(at_zero[0, 0].numpy()))  # z was drawn, not zero
    again = denoise(plane, sampled, sampler="one-step", n_samples=4, seed=0, keep_samples=True, low_frequencies="model",
                    symmetries=1)
    np.testing.assert_array_equal(again.samples, result.samples)
    other = denoise(plane, sampled, sampler="one-step", n_samples=4, seed=1, keep_samples=True, low_frequencies="model",
                    symmetries=1)
    assert not np.array_equal(other.samples, result.samples)
    # the std and intervals are the std head's, whatever draws the samples
    np.testing.assert_array_equal(result.std, denoise(plane, sampled, n_samples=0, symmetries=1).std)


def test_one_step_is_offered_and_run_only_where_it_can_be(sampled, with_std, plane):
    assert "one-step" in samplers_for_model(sampled)
    with pytest.raises(ValueError, match="guidance='dc' steers the diffusion network's steps"):
        denoise(plane, sampled, sampler="one-step", guidance="dc", psf=np.ones((3, 3)) / 9)
    sampled.sample_network = None
    assert "one-step" not in samplers_for_model(sampled) and "ddim" in samplers_for_model(sampled)
    with pytest.raises(ValueError, match="sampler 'one-step' draws with a sample head .* model 'tiny' has none: "
                                         "use one of \\['ddim'"):
        denoise(plane, sampled, sampler="one-step")


def test_the_sample_head_is_saved_and_loaded(sampled, tmp_path, plane):
    path = tmp_path / "m.safetensors"
    save_checkpoint(sampled, path)
    loaded = load_model(path)
    assert loaded.sample_provenance == {"recipe": "test"}
    assert loaded.metadata()["sample_head"]["architecture"]["cond_channels"] == 2
    for a, b in zip(sampled.sample_network.state_dict().values(), loaded.sample_network.state_dict().values()):
        assert torch.equal(a, b)
    runs = [denoise(plane, m, sampler="one-step", n_samples=2, seed=0).entropy for m in (loaded, sampled)]
    np.testing.assert_array_equal(*runs)


def test_the_time_here_counts_k_calls_of_the_sample_head_each_network_timed_on_its_own(sampled, monkeypatch):
    from napari_diffdenoise.core.run import run_cost

    rates = {"network": 1e-5, "mean_network": 1e-6, "std_network": 2e-6, "sample_network": 3e-6}
    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": rates[network])
    monkeypatch.setattr(run_cost, "outside_network", lambda model, settings, given: (0.0, 0.0))  # its own test
    one_step = run_cost.restoration_cost(sampled, (64, 64), sampler="one-step", n_samples=8)
    assert one_step.evaluations == 1
    # the heads' pass once per symmetry they are averaged over (core.model.symmetries)
    heads = DEFAULT_SYMMETRIES * (1e-6 + 2e-6)
    assert one_step.seconds == pytest.approx(64 * 64 * (8 * 3e-6 + heads))
    ddim = run_cost.restoration_cost(sampled, (64, 64), sampler="ddim", n_samples=8, steps=10)
    assert ddim.seconds == pytest.approx(64 * 64 * (80 * 1e-5 + heads))
    # the rate of a head is timed on that head: a real timing of each differs
    monkeypatch.undo()
    monkeypatch.setattr(run_cost, "_SECONDS_PER_PIXEL", {})
    s = run_cost.make_settings(sampled, sampler="one-step", device="cpu")
    assert all(run_cost.seconds_per_pixel(sampled, s, network) > 0
               for network in ("network", "mean_network", "std_network", "sample_network"))
    monkeypatch.setattr(run_cost, "_OUTSIDE_NETWORK", {})
    run_cost.restoration_cost(sampled, (64, 64), sampler="one-step", device="cpu")  # times the run's overhead too
    assert len(run_cost._SECONDS_PER_PIXEL) == 4 and run_cost.is_timed(sampled, sampler="one-step", device="cpu")


def test_the_default_run_is_the_default_preset_one_step_with_the_heads_and_ddim_without(sampled, plane):
    import dataclasses

    from napari_diffdenoise.core.run.run_presets import PRESETS, preset

    tiny_model = dataclasses.replace(sampled, sample_network=None)
    default = preset("default")
    assert sampled.default_sampler == default.settings(sampled)["sampler"] == "one-step"
    assert tiny_model.default_sampler == default.settings(tiny_model)["sampler"] == "ddim"
    result = denoise(plane, sampled, seed=0)
    assert result.metadata["sampler"] == "one-step" and result.metadata["n_samples"] == 8
    # the sample head's one batch, the mean and std heads' pass once per symmetry
    assert result.metadata["network_evaluations"] == 1 + 2 * DEFAULT_SYMMETRIES
    assert [p.label(sampled) for p in PRESETS] == ["fast: 4 samples, one step each, one pass of the heads",
                                                   "default: 8 samples, one step each",
                                                   "thorough: 20 steps × 16 samples"]
    assert [p.label(tiny_model) for p in PRESETS] == ["fast: 3 steps × 4 samples", "default: 10 steps × 8 samples",
                                                      "thorough: 20 steps × 16 samples"]
    with pytest.raises(ValueError, match="preset must be one of \\['fast', 'default', 'thorough'\\]; got 'quick'"):
        preset("quick")


def test_steps_or_guidance_without_a_sampler_take_ddim_and_a_named_one_step_still_refuses_them(sampled, plane):
    assert denoise(plane, sampled, steps=2, n_samples=2, seed=0).metadata["sampler"] == "ddim"
    assert denoise(plane, sampled, sampler_params={"eta": 0.5}, steps=2, n_samples=2).metadata["sampler"] == "ddim"
    guided = denoise(plane, sampled, guidance="dc", psf=np.ones((3, 3)) / 9, steps=2, n_samples=2)
    assert guided.metadata["sampler"] == "ddim"
    with pytest.raises(ValueError, match="sampler 'one-step' has no parameter 'steps'; it takes none"):
        denoise(plane, sampled, sampler="one-step", steps=2)


def test_a_sampler_parameter_no_sampler_takes_is_not_blamed_on_ddim():
    """demo's own sampler takes no parameters, and any given switch the run to DDIM: a parameter DDIM does not
    take either was refused as "sampler 'ddim' has no parameter(s)", a sampler the user never chose."""
    import numpy as np

    from napari_diffdenoise import denoise

    noisy = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\['foo'\] belong to no sampler this run could take: the model's own, "
                                         r"'one-step', takes \[\], and 'ddim' .* takes \['steps', 'eta'\]"):
        denoise(noisy, "demo", sampler_params={"foo": 1})
    with pytest.raises(ValueError, match=r"sampler 'ddim' has no parameter\(s\) \['foo'\]"):
        denoise(noisy, "demo", sampler="ddim", sampler_params={"foo": 1})
