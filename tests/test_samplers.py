import math

import pytest
import torch

from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.sampling.sampler_registry import get_sampler
from napari_diffdenoise.core.sampling.samplers import ddim, ddpm

MU, S = 0.3, 0.2  # data x0 ~ N(MU, S²) per pixel


def optimal_eps(y, gamma):
    """E[ε | y_t] for Gaussian data: the perfect ε-predictor."""
    return math.sqrt(1 - gamma) * (y - math.sqrt(gamma) * MU) / (gamma * S**2 + 1 - gamma)


def run(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def make_noise(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=g, dtype=torch.float64)


def exact_moments(sched, steps, eta):
    """Mean and variance of the discrete sampler's output for Gaussian data, by propagating the
    affine-Gaussian update y_prev = k·y + m + σ·z step by step (no sampling)."""
    from napari_diffdenoise.core.model.schedules import respaced_timesteps

    alphas = sched.alphas_cumprod
    ts = respaced_timesteps(sched.n_steps, steps)
    mean, var = 0.0, 1.0
    for i, t in enumerate(ts):
        g = alphas[t]
        gp = alphas[ts[i + 1]] if i + 1 < len(ts) else 1.0
        sigma = eta * math.sqrt((1 - gp) / (1 - g) * (1 - g / gp)) if i + 1 < len(ts) else 0.0
        c = math.sqrt(1 - g) / (g * S**2 + 1 - g)
        dx0 = (1 - math.sqrt(1 - g) * c) / math.sqrt(g)
        r = math.sqrt(max(1 - gp - sigma**2, 0.0))
        k = math.sqrt(gp) * dx0 + r * c
        m = math.sqrt(gp) * math.sqrt(1 - g) * c * MU - r * c * math.sqrt(g) * MU
        mean, var = k * mean + m, k * k * var + sigma**2
    return mean, var


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_ancestral_ddpm_recovers_gaussian_mean_and_variance(kind):
    sched = NoiseSchedule(kind, 200)
    noise = make_noise(0)
    x = run(ddpm(optimal_eps, sched, noise((40_000,)), noise, clip=None))
    # the data's own moments, up to the discretisation bias of T = 200 steps …
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(S, rel=0.06)
    # … and exactly those of the discrete chain, up to sampling error
    mean, var = exact_moments(sched, 200, eta=1.0)
    assert x.mean().item() == pytest.approx(mean, abs=0.004)
    assert x.var().item() == pytest.approx(var, rel=0.03)


@pytest.mark.parametrize("steps, eta", [(20, 0.0), (10, 0.5)])
def test_few_step_ddim_matches_its_exact_moments_on_gaussian_data(steps, eta):
    sched = NoiseSchedule("cosine", 200)
    noise = make_noise(1)
    x = run(ddim(optimal_eps, sched, noise((40_000,)), noise, steps=steps, eta=eta, clip=None))
    mean, var = exact_moments(sched, steps, eta)
    assert x.mean().item() == pytest.approx(mean, abs=0.004)
    assert x.var().item() == pytest.approx(var, rel=0.03)
    assert mean == pytest.approx(MU, abs=0.01)  # few steps keep the mean; they shrink the spread
    assert var < S**2


def test_ddim_eta0_is_deterministic_given_start_and_eta1_is_not():
    sched = NoiseSchedule("cosine", 50)
    y_T = make_noise(2)((1000,))
    a = run(ddim(optimal_eps, sched, y_T, make_noise(3), steps=10, eta=0.0))
    b = run(ddim(optimal_eps, sched, y_T, make_noise(4), steps=10, eta=0.0))
    c = run(ddim(optimal_eps, sched, y_T, make_noise(4), steps=10, eta=1.0))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_sampler_yields_one_step_per_network_evaluation():
    calls = []
    sched = NoiseSchedule("cosine", 50)
    eps = lambda y, g: (calls.append(g), torch.zeros_like(y))[1]
    steps = list(ddim(eps, sched, torch.zeros(4), make_noise(0), steps=7))
    assert len(steps) == len(calls) == 7 and steps[-1].index == 6
    assert calls == sorted(calls)  # γ increases: from noise towards data


def test_clip_bounds_the_clean_estimate():
    sched = NoiseSchedule("cosine", 50)
    steps = list(ddim(lambda y, g: -y, sched, torch.full((10,), 3.0), make_noise(0), steps=5, clip=(-1.0, 1.0)))
    assert all(s.x0_hat.abs().max() <= 1.0 for s in steps)


def test_unknown_or_unfit_samplers_are_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("euler", "paired")
    with pytest.raises(ValueError, match="does not work with an unpaired model"):
        get_sampler("ddim", "unpaired")


def test_v_parametrisation_gives_back_the_true_noise(tiny_model):
    from napari_diffdenoise.core.model.model import DiffusionModel

    model = DiffusionModel(tiny_model.network, tiny_model.schedule, prediction="v")
    y0, eps = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    gamma = torch.tensor([0.01, 0.5, 0.99])
    g = gamma.view(-1, 1, 1, 1)
    y_t = g.sqrt() * y0 + (1 - g).sqrt() * eps
    v = g.sqrt() * eps - (1 - g).sqrt() * y0
    model.network.forward = lambda y, gam, cond=None: v  # a perfect v-predictor
    torch.testing.assert_close(model.predict_eps(y_t, gamma, torch.zeros_like(y_t)), eps, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown prediction"):
        DiffusionModel(tiny_model.network, tiny_model.schedule, prediction="x0")
