import math

import numpy as np
import pytest

from napari_diffdenoise.core.model.schedules import NoiseSchedule, respaced_timesteps, sample_gammas


def test_cosine_matches_closed_form_where_beta_is_not_clipped():
    T, s = 200, 8e-3
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alphas = NoiseSchedule("cosine", T, offset=s).alphas_cumprod
    for t in (0, 10, 100, 190):  # ᾱ index t is after t+1 steps
        assert alphas[t] == pytest.approx(f(t + 1) / f(0), rel=1e-12)
    assert NoiseSchedule("cosine", T).betas.max() <= 0.999 + 1e-12
    assert np.all(np.diff(alphas) < 0)


def test_linear_is_product_of_one_minus_beta():
    sched = NoiseSchedule("linear", 1000, beta_start=1e-4, beta_end=0.02)
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(sched.alphas_cumprod, np.cumprod(1 - betas), rtol=1e-12)
    np.testing.assert_allclose(sched.betas, betas, rtol=1e-9)


def test_respacing_starts_at_last_step_and_descends():
    steps = respaced_timesteps(200, 10)
    assert len(steps) == 10 and steps[0] == 199 and np.all(np.diff(steps) < 0) and steps[-1] >= 0
    np.testing.assert_array_equal(respaced_timesteps(200, 200), np.arange(199, -1, -1))
    with pytest.raises(ValueError):
        respaced_timesteps(200, 0)


def test_training_gammas_lie_between_neighbouring_alphas():
    sched = NoiseSchedule("cosine", 50)
    g = sample_gammas(sched, 10_000, np.random.default_rng(0))
    assert g.min() >= sched.alphas_cumprod[-1] and g.max() <= 1.0
    # continuous: many distinct values, not only the 50 discrete ones
    assert len(np.unique(g)) > 5000


def test_schedule_round_trips_and_rejects_unknown_kinds():
    sched = NoiseSchedule("linear", 100)
    assert NoiseSchedule.from_dict(sched.to_dict()) == sched
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule("sigmoid")


def test_noise_level_one_gives_a_finite_embedding():
    """Regression: γ within 3e-8 of 1 rounds to 1.0 in float32, and log(1 − γ) was −inf."""
    import torch

    from napari_diffdenoise.core.model.network import gamma_to_log_snr

    assert torch.isfinite(gamma_to_log_snr(torch.tensor([1.0, 0.0, 0.5]))).all()
    g = sample_gammas(NoiseSchedule("cosine", 10), 100_000, np.random.default_rng(0))
    assert (g.astype(np.float32) < 1).all()


@pytest.mark.parametrize("n_train, n", [(200, 7), (1000, 3), (1000, 999), (37, 11)])
def test_respacing_has_exactly_the_requested_steps(n_train, n):
    steps = respaced_timesteps(n_train, n)
    assert len(steps) == n and steps.min() >= 0 and steps[0] == n_train - 1 and len(set(steps)) == n


def test_linear_defaults_are_ho_et_al():
    from napari_diffdenoise.core.model.schedules import linear_alphas_cumprod

    np.testing.assert_allclose(linear_alphas_cumprod(1000), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-12)


def test_training_gammas_pick_every_step_evenly_and_stop_short_of_one():
    sched = NoiseSchedule("cosine", 20)
    g = sample_gammas(sched, 40_000, np.random.default_rng(1))
    # each γ falls in the interval (ᾱ_t, ᾱ_{t−1}) of its step; every step gets 1/T of the draws
    bins = np.searchsorted(-sched.alphas_cumprod_prev, -g, side="right") - 1
    counts = np.bincount(np.clip(bins, 0, 19), minlength=20)
    assert counts.min() > 0.8 * 2000 and counts.max() < 1.2 * 2000

    class Extreme:  # the top of the top interval: γ would be exactly 1, an infinite SNR
        def integers(self, low, high, size=None):
            return np.zeros(size, dtype=int)

        def random(self, n):
            return np.ones(n)

    assert np.all(sample_gammas(sched, 3, Extreme()) == 1 - 1e-6)


def test_schedules_refuse_no_steps_and_respacing_names_its_range():
    with pytest.raises(ValueError, match="a schedule needs at least one step"):
        NoiseSchedule("cosine", 0)
    assert NoiseSchedule("cosine", 1).alphas_cumprod.shape == (1,)
    with pytest.raises(ValueError, match="steps must be between 1 and 200, got 201"):
        respaced_timesteps(200, 201)
    with pytest.raises(ValueError, match="steps must be between 1 and 200, got 0"):
        respaced_timesteps(200, 0)
    np.testing.assert_array_equal(respaced_timesteps(200, 1), [199])
    np.testing.assert_array_equal(respaced_timesteps(10, 4), [9, 7, 4, 2])  # 10 − ⌊10·i/4⌋ − 1


def test_the_cosine_default_offset_and_the_clipped_last_step():
    T, s = 200, 8e-3
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    sched = NoiseSchedule("cosine", T)
    assert sched.offset == 8e-3 and sched.to_dict()["offset"] == 8e-3
    assert sched.alphas_cumprod[0] == pytest.approx(f(1) / f(0), rel=1e-12)
    assert sched.betas[-1] == pytest.approx(0.999, rel=1e-12)  # cos² reaches 0 at t = T: β clipped
    np.testing.assert_allclose(sched.alphas_cumprod_prev[1:], sched.alphas_cumprod[:-1])
    assert sched.alphas_cumprod_prev[0] == 1.0 and sched.betas[0] == pytest.approx(1 - sched.alphas_cumprod[0])
