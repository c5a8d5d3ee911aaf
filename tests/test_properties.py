"""Property-based checks (hypothesis) over shapes, dtypes and parameter values: whatever a user
passes, denoise either returns finite maps of the input's shape or raises a ValueError/TypeError
whose message names what was wrong; it never crashes inside numpy or torch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_diffdenoise import denoise
from napari_diffdenoise.core.sampler_registry import SAMPLERS, Param
from napari_diffdenoise.core.schedules import NoiseSchedule

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64]
PARAMETER_NAMES = ("n_samples", "steps", "eta", "seed", "image", "planes", "shape", "empty", "numeric", "RGB", "channels")

shapes = st.one_of(st.tuples(st.integers(0, 40), st.integers(0, 40)),
                   st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 40)))
values = st.one_of(st.integers(-3, 60), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3),
                   st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes, dtype=st.sampled_from(DTYPES), n_samples=values, steps=values, eta=values, seed=values)
def test_denoise_returns_maps_or_names_the_problem(tiny_model, shape, dtype, n_samples, steps, eta, seed):
    image = (np.random.default_rng(0).random(shape) * 50).astype(dtype)
    try:
        result = denoise(image, tiny_model, n_samples=n_samples, steps=steps, eta=eta, seed=seed, mean="samples")
    except (ValueError, TypeError) as err:
        assert any(name in str(err) for name in PARAMETER_NAMES), str(err)
        return
    assert result.mean.shape == image.shape and np.isfinite(result.mean).all()
    assert result.std.shape == image.shape and (result.std >= 0).all()
    assert (result.entropy >= 0).all()


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([int, float, bool, str]), value=values,
       low=st.one_of(st.none(), st.integers(-5, 5)), high=st.one_of(st.none(), st.integers(6, 20), st.just("T")))
def test_a_parameter_spec_accepts_only_values_of_its_type_and_range(kind, value, low, high):
    spec = Param("p", kind, None, low, high, choices=("a", "b") if kind is str else ())
    schedule = NoiseSchedule("cosine", 50)
    try:
        checked = spec.check(value, schedule)
    except ValueError as err:
        assert str(err).startswith("p must be ") and repr(value) in str(err)
        return
    assert isinstance(checked, kind)
    if kind in (int, float):
        lo, hi = spec.bounds(schedule)
        assert (lo is None or checked >= lo) and (hi is None or checked <= hi) and np.isfinite(checked)
    if kind is str:
        assert checked in ("a", "b")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_declared_default_passes_its_own_check(name):
    schedule = NoiseSchedule("cosine", 50)
    info = SAMPLERS[name]
    assert info.parameters(schedule) == info.defaults(schedule)
