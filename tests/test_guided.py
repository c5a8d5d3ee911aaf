"""Unpaired samplers guided by the observation, on a Gaussian prior with the exact ε-predictor."""
import numpy as np
import pytest
import torch
from test_samplers import MU, S, make_noise, optimal_eps, run

from napari_diffdenoise import denoise
from napari_diffdenoise.core.model.model import DiffusionModel
from napari_diffdenoise.core.model.network import UNet
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.sampling.guided import forward_backward, mixing, repaint
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS, get_sampler, samplers_for

SCHED = NoiseSchedule("cosine", 100)
N = 40_000


def obs_far_from_prior():
    return torch.full((N,), MU + 0.6, dtype=torch.float64)  # an observation the prior finds unlikely


def test_forward_backward_with_n_zero_returns_the_input():
    obs = torch.linspace(-1, 1, 50, dtype=torch.float64)
    out = run(forward_backward(optimal_eps, SCHED, torch.zeros(50, dtype=torch.float64), make_noise(0),
                               observation=obs, start=0))
    torch.testing.assert_close(out, obs)


def test_forward_backward_from_pure_noise_samples_the_prior():
    out = run(forward_backward(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(1),
                               observation=obs_far_from_prior(), start=SCHED.n_steps, clip=None))
    assert out.mean().item() == pytest.approx(MU, abs=0.01) and out.std().item() == pytest.approx(S, rel=0.08)


def test_larger_n_moves_further_from_the_observation_towards_the_prior():
    obs = obs_far_from_prior()
    means = [run(forward_backward(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(2),
                                  observation=obs, start=n, clip=None)).mean().item() for n in (5, 30, 70)]
    assert MU + 0.6 > means[0] > means[1] > means[2] > MU - 0.01


def test_mixing_pulls_the_result_towards_the_observation():
    obs = obs_far_from_prior()
    kw = dict(observation=obs, start=70, stop=5, clip=None)
    fb = run(forward_backward(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(3), observation=obs,
                              start=70, clip=None)).mean().item()
    weak = run(mixing(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(3), weight_start=0.05,
                      weight_stop=0.01, **kw)).mean().item()
    strong = run(mixing(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(3), weight_start=0.5,
                        weight_stop=0.3, **kw)).mean().item()
    assert fb < weak < strong < MU + 0.6


def test_true_repaint_keeps_the_spread_that_baikals_variant_loses():
    obs = obs_far_from_prior()
    kw = dict(observation=obs, start=60, block=10, repeats=3, mix_weight=0.0, mix_stop=0, clip=None)
    true = run(repaint(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(4), renoise=True, **kw))
    paper = run(repaint(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(4), renoise=False, **kw))
    one = run(repaint(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(4), renoise=True,
                      **{**kw, "repeats": 1}))
    # with R = 1 RePaint is Forward-Backward; re-noising between repeats keeps the posterior's spread,
    # restarting blocks from already denoised states shrinks it (extra denoising passes)
    fb = run(forward_backward(optimal_eps, SCHED, torch.zeros(N, dtype=torch.float64), make_noise(4), observation=obs,
                              start=60, clip=None))
    torch.testing.assert_close(one, fb)
    assert paper.std().item() < 0.8 * true.std().item()


def test_evaluation_counts_match_the_steps_taken():
    for name in ("fb", "mixing", "repaint", "repaint-baikal"):
        info = SAMPLERS[name]
        params = info.parameters(SCHED)
        steps = list(info.function(optimal_eps, SCHED, torch.zeros(10, dtype=torch.float64), make_noise(0),
                                   observation=torch.zeros(10, dtype=torch.float64), clip=None, **params))
        assert len(steps) == info.n_evaluations(SCHED, params) == steps[-1].n_steps, name


def test_samplers_are_offered_only_for_the_model_kind_they_fit():
    assert samplers_for("paired") == ["ddim", "ddpm", "ddim-dc", "one-step", "dpm++2m", "dpm++2m-sde", "heun"]
    assert samplers_for("unpaired") == ["fb", "mixing", "repaint", "repaint-baikal"]
    with pytest.raises(ValueError, match="does not work with a paired model"):
        get_sampler("repaint", "paired")
    with pytest.raises(ValueError, match="does not work with an unpaired model"):
        get_sampler("ddim-dc", "unpaired")
    with pytest.raises(ValueError, match="no parameter"):
        SAMPLERS["fb"].parameters(SCHED, {"steps": 3})
    with pytest.raises(ValueError, match="start must be a whole number from 1 to"):
        SAMPLERS["fb"].parameters(SCHED, {"start": 1000})


def test_an_unpaired_model_denoises_through_the_public_api():
    from napari_diffdenoise.core.model.network import UNetConfig

    torch.manual_seed(0)
    model = DiffusionModel(UNet(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2))), SCHED,
                           kind="unpaired", tile=64)
    image = np.random.default_rng(0).poisson(5, (40, 40))
    for name in ("fb", "mixing", "repaint", "repaint-baikal"):
        result = denoise(image, model, sampler=name, n_samples=2, sampler_params={"start": 4}, seed=1)
        assert result.mean.shape == image.shape and np.isfinite(result.mean).all()
        assert result.metadata["sampler"] == name and result.metadata["start"] == 4
    # N = 0 would return the input with std 0 and entropy 0, claiming total certainty: refused
    with pytest.raises(ValueError, match="start must be a whole number from 1 to 100; got 0"):
        denoise(image, model, sampler="fb", n_samples=2, sampler_params={"start": 0})
    with pytest.raises(ValueError, match="does not work with an unpaired model"):
        denoise(image, model, sampler="ddim")


@pytest.mark.parametrize("params, message", [({"block": 0}, "block must be a whole number from 1"),
                                             ({"repeats": 0}, "repeats must be a whole number from 1"),
                                             ({"mix_weight": 1.5}, "mix_weight must be a number from 0 to 1")])
def test_guided_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        SAMPLERS["repaint"].parameters(SCHED, params)
