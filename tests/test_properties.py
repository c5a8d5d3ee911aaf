"""Property-based checks (hypothesis) over shapes, dtypes and parameter values: whatever a user
passes, denoise either returns finite maps of the input's shape or raises a ValueError/TypeError
whose message names what was wrong; it never crashes inside numpy or torch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_diffdenoise import denoise
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.sampling.params import Param
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS

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
        assert (lo is None or checked >= lo) and (hi is None or checked <= hi)
        assert kind is int or np.isfinite(checked)
    if kind is str:
        assert checked in ("a", "b")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_declared_default_passes_its_own_check(name):
    schedule = NoiseSchedule("cosine", 50)
    info = SAMPLERS[name]
    assert info.parameters(schedule) == info.defaults(schedule)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["steps", "eta", "n", "start"]),
       value=st.one_of(st.text(alphabet="0123456789.-eaxnNIf", max_size=6), st.sampled_from(["true", "no", "1e400"])))
def test_the_cli_answers_any_sampler_parameter_with_a_result_or_a_message(tmp_path_factory, tiny_checkpoint, name, value):
    import contextlib
    import io

    import tifffile

    from napari_diffdenoise.cli import main

    folder = tmp_path_factory.mktemp("cli")
    tifffile.imwrite(folder / "in.tif", np.random.default_rng(0).poisson(5, (16, 16)).astype(np.uint16))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["denoise", str(folder / "in.tif"), "--out", str(folder), "--model", str(tiny_checkpoint),
                     "--samples", "2", "--sampler-param", f"{name}={value}"])
    if code == 0:
        assert (folder / "in_mean.tif").is_file()
    else:
        assert code == 2 and err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()
        assert name in err.getvalue()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.integers(-2, 3), batch=st.integers(-1, 3), patch=st.sampled_from([0, 8, 16, 24, 32, 48]),
       val=st.floats(-0.2, 0.6))
def test_train_either_trains_or_names_the_problem(tiny_model, steps, batch, patch, val):
    from napari_diffdenoise import TrainConfig, train

    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 20, (64, 64)).astype(np.float32)
    try:
        result = train(rng.poisson(clean).astype(np.float32), clean, model=tiny_model, val_fraction=val,
                       config=TrainConfig(steps=steps, batch_size=batch, patch_size=patch, warmup_steps=1))
    except ValueError as err:
        assert any(w in str(err) for w in ("steps", "batch_size", "patch_size", "val_fraction", "small")), str(err)
        return
    assert result.model is not None and len(result.history) == steps
