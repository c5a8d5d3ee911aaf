"""Few-step solvers written against a denoiser D(x; s) = x̂₀, in EDM's variable x = y/√γ = x₀ + s·n
with s = √((1 − γ)/γ) (Karras et al. 2022, §2). An ε-predicting model conditioned on γ is such a
denoiser through x̂₀ = x − s·ε̂(x·√γ, γ), γ = 1/(1 + s²) (:func:`denoiser`), the adapter
k-diffusion uses for discrete DDPMs. Each sampler has the signature of :mod:`.samplers` and
yields after every network evaluation.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator

import torch

from ..model.schedules import NoiseSchedule, respaced_timesteps
from .samplers import EpsFn, NoiseFn, SamplerStep

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def noise_level(gamma: float) -> float:
    """s = √((1 − γ)/γ): the noise std of x = y/√γ."""
    return math.sqrt((1 - gamma) / gamma)


def denoiser(eps_fn: EpsFn, clip: tuple[float, float] | None) -> Denoiser:
    """D(x; s) = x − s·ε̂(x·√γ, γ), clipped to the model's value range."""
    def d(x: torch.Tensor, s: float) -> torch.Tensor:
        gamma = 1 / (1 + s * s)
        x0 = x - s * eps_fn(x * math.sqrt(gamma), gamma)
        return x0.clamp(*clip) if clip is not None else x0

    return d


def _levels(schedule: NoiseSchedule, steps: int) -> list[float]:
    """s at the respaced ("trailing") timesteps DDIM uses, then 0: the same first step at t = T−1."""
    alphas = schedule.alphas_cumprod
    return [noise_level(float(alphas[t])) for t in respaced_timesteps(schedule.n_steps, steps)] + [0.0]


def _multistep(levels: list[float], d: Denoiser, y_T: torch.Tensor, update) -> Generator[SamplerStep, None, torch.Tensor]:
    """The loop both DPM-Solver++(2M) variants share, in x = y/α with λ = −log s: ``update(x, D_i,
    D_{i−1} or None, s_i, s_{i+1}, h, h_{i−1})`` takes x to the next level, h = λ_{i+1} − λ_i; the
    last step (to s = 0) is the denoiser's output itself."""
    steps = len(levels) - 1
    x = y_T * math.sqrt(1 + levels[0] ** 2)  # y/√γ at the first level
    previous, h_last = None, None
    for i in range(steps):
        x0 = d(x, levels[i])
        if levels[i + 1] == 0:
            x = x0
        else:
            h = math.log(levels[i] / levels[i + 1])
            x = update(x, x0, previous, levels[i], levels[i + 1], h, h_last)
            h_last = h
        previous = x0
        yield SamplerStep(i, steps, x0)
    return x


def dpmpp_2m(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, steps: int = 10,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in x = y/α with λ = −log s: x_{i+1} =
    (s_{i+1}/s_i)·x_i − (e^{−h} − 1)·D̃, h = λ_{i+1} − λ_i, D̃ = (1 + 1/2r)·D_i − (1/2r)·D_{i−1},
    r = h_{i−1}/h_i; first order on the first step and on the last (to s = 0). Deterministic."""
    def update(x, x0, previous, s_i, s_next, h, h_last):
        blend = x0 if previous is None else x0 + (x0 - previous) * h / (2 * h_last)  # D + (D − D₋₁)/2r
        return (s_next / s_i) * x - math.expm1(-h) * blend

    return (yield from _multistep(_levels(schedule, steps), denoiser(eps_fn, clip), y_T, update))


def dpmpp_2m_sde(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, steps: int = 10,
    clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, §4 of the SDE variant; k-diffusion's midpoint form with
    η = 1): x_{i+1} = (s_{i+1}/s_i)·e^{−h}·x_i + (1 − e^{−2h})·D_i + ½(1 − e^{−2h})·(D_i − D_{i−1})/r
    + s_{i+1}·√(1 − e^{−2h})·z. Fresh noise at every step makes it a posterior sampler."""
    def update(x, x0, previous, s_i, s_next, h, h_last):
        keep = -math.expm1(-2 * h)
        x = (s_next / s_i) * math.exp(-h) * x + keep * x0
        if previous is not None:
            x = x + 0.5 * keep * (h / h_last) * (x0 - previous)
        return x + s_next * math.sqrt(keep) * noise_fn(tuple(x.shape)).to(x)

    return (yield from _multistep(_levels(schedule, steps), denoiser(eps_fn, clip), y_T, update))


EDM_S_MAX = 80.0  # EDM's σ_max: the cosine schedule's own noisiest level (s ≈ 4000) makes a few-step Heun's
# first trapezoid span four decades, and its correction at the low end then dominates the step


def heun_evaluations(schedule: NoiseSchedule, params: dict) -> int:
    return 2 * params["steps"] - 1


def edm_heun(
    eps_fn: EpsFn, schedule: NoiseSchedule, y_T: torch.Tensor, noise_fn: NoiseFn, *, steps: int = 5,
    churn: float = 0.0, rho: float = 7.0, clip: tuple[float, float] | None = (-1.0, 1.0),
) -> Generator[SamplerStep, None, torch.Tensor]:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2): levels s_i = (s_max^{1/ρ} + i/(N−1)·
    (s_min^{1/ρ} − s_max^{1/ρ}))^ρ from s_max = min(80, the schedule's noisiest) to its cleanest
    level, then 0; it starts, as EDM does, from pure noise of std s_max. At each
    level noise is added back up to ŝ = s_i·(1 + min(churn/N, √2 − 1)), never above s_max (the
    network has not seen higher), then a Heun step to s_{i+1}; the last step is Euler (2N − 1
    evaluations). churn = 0 is the deterministic Heun sampler."""
    alphas = schedule.alphas_cumprod
    s_max, s_min = min(EDM_S_MAX, noise_level(float(alphas[-1]))), noise_level(float(alphas[0]))
    if steps == 1:
        levels = [s_max, 0.0]
    else:
        inv = 1 / rho
        levels = [(s_max**inv + i / (steps - 1) * (s_min**inv - s_max**inv)) ** rho for i in range(steps)] + [0.0]
    d = denoiser(eps_fn, clip)
    x = y_T * s_max
    total, done = heun_evaluations(schedule, {"steps": steps}), 0
    boost = min(churn / steps, math.sqrt(2) - 1)
    for i in range(steps):
        s_cur, s_next = levels[i], levels[i + 1]
        s_hat = min(s_cur * (1 + boost), s_max)
        if s_hat > s_cur:
            x = x + math.sqrt(s_hat**2 - s_cur**2) * noise_fn(tuple(x.shape)).to(x)
        x0 = d(x, s_hat)
        done += 1
        yield SamplerStep(done - 1, total, x0)
        slope = (x - x0) / s_hat
        x_next = x + (s_next - s_hat) * slope
        if s_next > 0:
            x0_next = d(x_next, s_next)
            done += 1
            yield SamplerStep(done - 1, total, x0_next)
            x_next = x + (s_next - s_hat) * 0.5 * (slope + (x_next - x0_next) / s_next)
        x = x_next
    return x
