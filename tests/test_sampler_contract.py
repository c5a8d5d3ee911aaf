"""A contract every registered sampler passes automatically (the diffusers SchedulerCommonTest idea):
shapes, determinism under a seed, the evaluation count it declares, moments on Gaussian data where
the answer is known, and cancellation within a step. A sampler registered later is covered too."""
import math

import numpy as np
import pytest
import torch
from test_samplers import MU, S, make_noise, optimal_eps, run

from napari_diffdenoise import denoise, list_samplers, register_sampler
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.sampling.consistency import DataConsistency
from napari_diffdenoise.core.sampling.params import Param
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS
from napari_diffdenoise.core.sampling.samplers import SamplerStep

SCHED = NoiseSchedule("cosine", 200)


def extras(info, n):
    out = {}
    if info.needs_observation:
        out["observation"] = torch.full((n,), MU, dtype=torch.float64)
    if info.needs_psf:
        out["consistency"] = DataConsistency(torch.zeros(1, 1, 16, 16), gaussian_psf(1.0))
    return out


class Counting:
    def __init__(self, eps_fn):
        self.eps_fn, self.calls = eps_fn, 0

    def __call__(self, y, gamma):
        self.calls += 1
        return self.eps_fn(y, gamma)


@pytest.mark.parametrize("name", [n for n in list_samplers() if not SAMPLERS[n].needs_psf])
def test_every_sampler_counts_its_evaluations_and_is_deterministic(name):
    info = SAMPLERS[name]
    params = info.parameters(SCHED, {"steps": 4} if "steps" in info.defaults(SCHED) else None)
    outs = []
    for _ in range(2):
        eps = Counting(optimal_eps)
        noise = make_noise(3)
        steps = []
        gen = info.function(eps, SCHED, noise((64,)), noise, clip=None, **params, **extras(info, 64))
        try:
            while True:
                steps.append(next(gen))
        except StopIteration as stop:
            outs.append(stop.value)
        expected = info.n_evaluations(SCHED, params)
        assert eps.calls == expected == len(steps), name
        assert all(isinstance(s, SamplerStep) and s.n_steps == expected for s in steps), name
        assert [s.index for s in steps] == list(range(expected)), name
    assert outs[0].shape == (64,)
    torch.testing.assert_close(outs[0], outs[1])  # same seed, same samples


# the samplers meant to draw from the posterior (or follow its probability-flow ODE) and the steps at
# which their output moments on Gaussian data are within the tolerances below
# (few-step deterministic solvers shrink the spread: dpm++2m at 10 steps gives 0.15 for 0.2, which
# the sampler benchmark measures as calibration)
MOMENT_SETTINGS = {"ddpm": {}, "ddim": {"steps": 200, "eta": 0.0}, "dpm++2m": {"steps": 100},
                   "dpm++2m-sde": {"steps": 50}, "heun": {"steps": 60}}


@pytest.mark.parametrize("name, params", MOMENT_SETTINGS.items())
def test_samplers_reproduce_the_moments_of_gaussian_data(name, params):
    info = SAMPLERS[name]
    noise = make_noise(0)
    x = run(info.function(optimal_eps, SCHED, noise((40_000,)), noise, clip=None, **info.parameters(SCHED, params)))
    assert x.mean().item() == pytest.approx(MU, abs=0.01), name
    assert x.std().item() == pytest.approx(S, rel=0.06), name


def test_a_deterministic_solver_maps_noise_by_the_exact_flow():
    """For Gaussian data the probability-flow ODE is linear: y_T ↦ MU + S·y_T (up to terms in
    1/s_max, s_max ≈ 4000 here). DPM-Solver++(2M) at 100 steps lands on it; a sign error in its
    second-order term does not."""
    info = SAMPLERS["dpm++2m"]
    noise = make_noise(1)
    y_T = noise((1000,))
    x = run(info.function(optimal_eps, SCHED, y_T, noise, clip=None, steps=100))
    expected = MU + S * y_T
    assert torch.corrcoef(torch.stack([x, y_T]))[0, 1] > 0.999
    torch.testing.assert_close(x, expected, atol=0.01, rtol=0)


def test_a_sampler_registered_from_outside_appears_in_denoise_the_cli_and_its_checks(tiny_model):
    def euler(eps_fn, schedule, y_T, noise_fn, *, steps=3, scale=1.0, clip=None):
        """Plain Euler on the probability-flow ODE in EDM's variables."""
        from napari_diffdenoise.core.sampling.solvers import _levels, denoiser

        s = _levels(schedule, steps)
        d = denoiser(eps_fn, clip)
        x = y_T / math.sqrt(1 / (1 + s[0] ** 2))
        for i in range(steps):
            x0 = d(x, s[i])
            x = x + (s[i + 1] - s[i]) * (x - x0) / s[i] * scale
            yield SamplerStep(i, steps, x0)
        return x

    register_sampler("euler-test", euler, evaluations=lambda schedule, p: p["steps"],
                     params=(Param("steps", int, 3, 1, "T"), Param("scale", float, 1.0, 0.5, 2.0)),
                     description="a user's sampler")
    try:
        assert "euler-test" in list_samplers("paired") and "euler-test" not in list_samplers("unpaired")
        image = np.random.default_rng(0).poisson(5, (32, 32))
        result = denoise(image, tiny_model, sampler="euler-test", n_samples=2, steps=2, mean="samples")
        assert result.metadata["sampler"] == "euler-test" and result.metadata["steps"] == 2
        assert result.metadata["network_evaluations"] == 2
        with pytest.raises(ValueError, match="scale must be a number from 0.5 to 2; got 5"):
            denoise(image, tiny_model, sampler="euler-test", sampler_params={"scale": 5})
        with pytest.raises(ValueError, match="has no parameter 'eta'"):
            denoise(image, tiny_model, sampler="euler-test", eta=0.5)
        from napari_diffdenoise.cli import build_parser

        args = build_parser().parse_args(["denoise", "x.tif", "--sampler", "euler-test"])
        assert args.sampler == "euler-test"
        with pytest.raises(ValueError, match="already registered"):
            register_sampler("euler-test", euler, evaluations=lambda s, p: 1)
    finally:
        SAMPLERS.pop("euler-test", None)


@pytest.mark.parametrize("sampler, params, message", [
    ("ddim", {"steps": 0}, "steps must be a whole number from 1 to 50; got 0"),
    ("ddim", {"steps": 2.5}, "steps must be a whole number"),
    ("ddim", {"steps": "5"}, "steps must be a whole number"),
    ("ddim", {"eta": float("nan")}, "eta must be a number from 0 to 1"),
    ("ddim-dc", {"guidance": 1e30}, "guidance must be a number from 0 to 100"),
    ("ddim-dc", {"regulariser": "l3"}, "regulariser must be one of 'none', 'l1', 'l2'"),
])
def test_sampler_parameters_are_checked_by_their_declared_type_and_range(tiny_model, sampler, params, message):
    psf = gaussian_psf(1.0) if sampler == "ddim-dc" else None
    with pytest.raises(ValueError, match=message):
        denoise(np.ones((16, 16)), tiny_model, sampler=sampler, sampler_params=params, psf=psf)


def test_unpaired_parameters_are_checked_against_each_other():
    with pytest.raises(ValueError, match="renoise must be true or false; got 'no'"):
        SAMPLERS["repaint"].parameters(SCHED, {"renoise": "no"})
    with pytest.raises(ValueError, match=r"stop \(30\) must not be above start \(20\)"):
        SAMPLERS["mixing"].parameters(SCHED, {"start": 20, "stop": 30})
    with pytest.raises(ValueError, match="start must be a whole number from 1 to 200"):
        SAMPLERS["fb"].parameters(SCHED, {"start": -1})


def test_every_parameter_spec_has_a_valid_default_and_an_explanation():
    for info in SAMPLERS.values():
        for spec in info.params:
            assert spec.check(spec.default_for(SCHED), SCHED) == spec.default_for(SCHED), (info.name, spec.name)
            assert spec.help, (info.name, spec.name)
