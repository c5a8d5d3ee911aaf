"""The few-step solvers in closed form. With ε̂ ≡ 0 the denoiser is the identity (D(x; s) = x), so a
deterministic step leaves the state where it is and whatever moves it is the stochastic part, whose
size each paper states; with the Gaussian data of test_samplers the exact flow is known and the
states a solver passes through can be read back from the clean estimates it yields."""
import math

import pytest
import torch
from test_samplers import MU, S, optimal_eps

from napari_diffdenoise.core.model.schedules import NoiseSchedule, respaced_timesteps
from napari_diffdenoise.core.sampling.solvers import EDM_S_MAX, denoiser, dpmpp_2m, dpmpp_2m_sde, edm_heun, noise_level

SCHED = NoiseSchedule("cosine", 200)


def zero_eps(y, gamma):
    return torch.zeros_like(y)


def ones(shape):
    return torch.ones(shape, dtype=torch.float64)


def collect(gen):
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        return steps, stop.value


def levels(steps):
    """s at the trailing respaced timesteps, as the DPM-Solver++ samplers take them."""
    alphas = SCHED.alphas_cumprod
    return [noise_level(float(alphas[t])) for t in respaced_timesteps(SCHED.n_steps, steps)] + [0.0]


def test_the_noise_level_and_the_denoiser_of_an_eps_model():
    assert noise_level(0.8) == pytest.approx(0.5) and noise_level(0.5) == pytest.approx(1.0)
    seen = []

    def eps_fn(y, gamma):
        seen.append((y.clone(), gamma))
        return torch.full_like(y, 0.5)

    x = torch.tensor([4.0, -4.0], dtype=torch.float64)
    d = denoiser(eps_fn, None)
    torch.testing.assert_close(d(x, 2.0), x - 2.0 * 0.5)  # x̂₀ = x − s·ε̂
    y, gamma = seen[0]
    assert gamma == pytest.approx(1 / 5)  # γ = 1/(1 + s²)
    torch.testing.assert_close(y, x * math.sqrt(1 / 5))  # the network sees y = x·√γ
    torch.testing.assert_close(denoiser(eps_fn, (-1.0, 1.0))(x, 2.0), torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_dpmpp_2m_sde_adds_the_stated_noise_and_its_second_order_term():
    steps = 4
    s = levels(steps)
    y_T = torch.tensor([0.25], dtype=torch.float64)
    yielded, final = collect(dpmpp_2m_sde(zero_eps, SCHED, y_T, ones, steps=steps, clip=None))
    states = [step.x0_hat.item() for step in yielded]  # D is the identity: x̂₀ is the state
    expected, previous, h_last = [y_T.item() * math.sqrt(1 + s[0] ** 2)], None, None
    for i in range(steps - 1):
        h = math.log(s[i] / s[i + 1])
        keep = 1 - math.exp(-2 * h)
        x = expected[-1]  # (s_{i+1}/s_i)·e^{−h}·x + (1 − e^{−2h})·x = x: the deterministic part stays
        if previous is not None:
            x += 0.5 * keep * (h / h_last) * (expected[-1] - previous)
        previous, h_last = expected[-1], h
        expected.append(x + s[i + 1] * math.sqrt(keep))  # z ≡ 1
    assert states == pytest.approx(expected, rel=1e-9)
    assert final.item() == pytest.approx(expected[-1], rel=1e-9)  # the last step, to s = 0, is x̂₀
    no_noise = collect(dpmpp_2m_sde(zero_eps, SCHED, y_T, lambda shape: torch.zeros(shape, dtype=torch.float64),
                                    steps=steps, clip=None))[1]
    assert no_noise.item() == pytest.approx(expected[0], rel=1e-12)


def edm_levels(steps, rho=7.0):
    alphas = SCHED.alphas_cumprod
    s_max, s_min = min(EDM_S_MAX, noise_level(float(alphas[-1]))), noise_level(float(alphas[0]))
    return [(s_max ** (1 / rho) + i / (steps - 1) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
            for i in range(steps)] + [0.0]


def test_edm_heun_evaluates_at_its_churned_levels_and_adds_the_churn_noise():
    steps, churn = 4, 0.6
    s = edm_levels(steps)
    assert s[0] == EDM_S_MAX and s[-2] == pytest.approx(noise_level(float(SCHED.alphas_cumprod[0])))
    asked = []

    def eps_fn(y, gamma):
        asked.append(math.sqrt(1 / gamma - 1))
        return torch.zeros_like(y)

    y_T = torch.tensor([0.5], dtype=torch.float64)
    yielded, final = collect(edm_heun(eps_fn, SCHED, y_T, ones, steps=steps, churn=churn, clip=None))
    boost = 1 + churn / steps  # below the cap of √2
    hats = [min(level * boost, EDM_S_MAX) for level in s[:-1]]
    # each step: the network at ŝ_i, then (Heun's correction) at s_{i+1}, except the last (Euler to 0)
    expected_levels = [x for i in range(steps) for x in ([hats[i], s[i + 1]] if i + 1 < steps else [hats[i]])]
    assert asked == pytest.approx(expected_levels, rel=1e-6)
    assert [step.index for step in yielded] == list(range(2 * steps - 1))
    assert all(step.n_steps == 2 * steps - 1 for step in yielded)
    # D is the identity, so the Heun steps leave x alone: it is the start (y_T·s_max) plus the noise
    # that lifts each level to its ŝ (none at s_max, already the highest)
    added = sum(math.sqrt(h * h - level * level) for h, level in zip(hats, s[:-1]))
    assert final.item() == pytest.approx(0.5 * EDM_S_MAX + added, rel=1e-9)
    capped = collect(edm_heun(zero_eps, SCHED, y_T, ones, steps=steps, churn=100.0, clip=None))[1]
    lifted = sum(math.sqrt(min(level * math.sqrt(2), EDM_S_MAX) ** 2 - level ** 2) for level in s[:-1])
    assert capped.item() == pytest.approx(0.5 * EDM_S_MAX + lifted, rel=1e-9)  # at most √2 × each level


def test_edm_heun_with_one_step_is_one_evaluation_at_s_max():
    asked = []

    def eps_fn(y, gamma):
        asked.append(gamma)
        return torch.full_like(y, 0.5)

    y_T = torch.tensor([0.2], dtype=torch.float64)
    yielded, final = collect(edm_heun(eps_fn, SCHED, y_T, ones, steps=1, clip=None))
    assert asked == pytest.approx([1 / (1 + EDM_S_MAX ** 2)]) and len(yielded) == 1
    # one Euler step from s_max to 0 lands on x̂₀ = x − s_max·ε̂
    assert final.item() == pytest.approx(0.2 * EDM_S_MAX - EDM_S_MAX * 0.5)


def flow_errors(yielded, s, first_of):
    """|x_i − x(s_i)| / √(S² + s_i²) at each level the solver passes, for Gaussian data, whose flow is
    x(s) = MU + √(S² + s²)·z; x_i is read back from the yielded x̂₀ = D(x_i; s_i) = MU + S²/(S² + s²)·(x_i − MU)."""
    states = [MU + (yielded[first_of(i)].x0_hat - MU) * (S ** 2 + s[i] ** 2) / S ** 2 for i in range(len(s) - 1)]
    z = (states[0] - MU) / math.sqrt(S ** 2 + s[0] ** 2)
    return [float((x - MU - math.sqrt(S ** 2 + level ** 2) * z).abs().max()) / math.sqrt(S ** 2 + level ** 2)
            for x, level in zip(states, s)]


Y_T = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)


def test_dpmpp_2m_stays_on_the_exact_flow_of_gaussian_data():
    errors = flow_errors(collect(dpmpp_2m(optimal_eps, SCHED, Y_T, None, steps=10, clip=None))[0], levels(10),
                         lambda i: i)
    # measured: 1e-3 after the first step, 1.4e-2 before the last (second order: 2.4e-4 at 20 steps)
    assert max(errors[1:6]) < 6e-3 and max(errors) < 0.05


def test_deterministic_heun_stays_on_the_exact_flow_of_gaussian_data():
    errors = flow_errors(collect(edm_heun(optimal_eps, SCHED, Y_T, None, steps=10, clip=None))[0], edm_levels(10),
                         lambda i: 2 * i)
    assert max(errors[1:5]) < 1e-3  # measured: 2.8e-6 … 4.5e-4 down to s ≈ 0.9
