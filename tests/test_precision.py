"""precision='bfloat16': the networks compute in bfloat16 (autocast), the maps stay within a stated
tolerance of float32's, and the run says so in its record."""
import warnings

import numpy as np
import pytest
import torch

from napari_diffdenoise.core.run.restore import denoise, make_settings
from napari_diffdenoise.core.run.run_record import fingerprint_settings, metadata_settings, settings_record
from napari_diffdenoise.core.run.run_spec import PRECISION, PRECISIONS


def test_bfloat16_runs_the_networks_in_bfloat16_and_keeps_the_maps_within_a_hundredth():
    from napari_diffdenoise.core.imaging.demo_data import sample_stack
    from napari_diffdenoise.core.io.checkpoint import load_model

    model = load_model("demo")  # a trained model: an untrained one amplifies any rounding step after step
    plane = sample_stack((64, 64))[0][0]
    seen = []
    forward = model.network.forward

    def spy(y, gamma, cond=None):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(y, gamma, cond)

    model.network.forward = spy
    run = {"n_samples": 2, "steps": 3, "seed": 4, "device": "cpu"}
    exact = denoise(plane, model, **run)
    assert seen and not any(seen)
    seen.clear()
    fast = denoise(plane, model, **run, precision="bfloat16")
    assert seen and all(seen)
    span = float(np.subtract(*np.percentile(exact.mean, [99.9, 0.1])))
    moved = {name: float(np.abs(getattr(fast, name) - getattr(exact, name)).max()) / span
             for name in ("mean", "std", "entropy")}
    # bfloat16 keeps 8 bits of mantissa: the maps move, within the 1 % the declaration states
    assert all(m < 0.01 for m in moved.values()) and max(moved.values()) > 0, moved
    again = denoise(plane, model, **run, precision="bfloat16")
    np.testing.assert_array_equal(again.mean, fast.mean)  # the same seed, the same maps
    assert fast.mean.dtype == exact.mean.dtype


def test_the_record_names_bfloat16_and_a_float32_record_is_what_it_was(tiny_model):
    exact = settings_record(make_settings(tiny_model, n_samples=2, steps=3))
    fast = settings_record(make_settings(tiny_model, n_samples=2, steps=3, precision="bfloat16"))
    assert "precision" not in metadata_settings(exact) and "precision" not in fingerprint_settings(exact)
    assert metadata_settings(fast)["precision"] == "bfloat16"
    # a store of one format does not resume in the other: its planes would not agree
    assert fingerprint_settings(fast) != fingerprint_settings(exact)


def test_an_unknown_format_and_bfloat16_on_an_apple_gpu_are_refused(tiny_model):
    from napari_diffdenoise.core.run.restore import _precision_rule

    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\); got 'fp16'"):
        make_settings(tiny_model, precision="fp16")
    with pytest.raises(ValueError, match="precision='bfloat16' runs on the CPU or a CUDA GPU"):
        _precision_rule("bfloat16", torch.device("mps"))
    _precision_rule("bfloat16", torch.device("cuda"))  # accepted where autocast has it


def test_the_cli_and_the_denoise_widget_offer_the_declared_formats(make_napari_viewer):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget
    from napari_diffdenoise.cli import build_parser

    args = build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--precision", "bfloat16"])
    assert args.precision == "bfloat16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["denoise", "in.tif", "--out", "out", "--precision", "fp16"])
    w = DenoiseWidget(make_napari_viewer())
    assert [value for _, value in w.precision.choices] == list(PRECISIONS) if isinstance(w.precision.choices[0], tuple) \
        else list(w.precision.choices) == list(PRECISIONS)
    assert w.precision.value == PRECISION.default == "float32"
    w.precision.value = "bfloat16"
    assert w._settings(None)["precision"] == "bfloat16"


def test_the_time_estimate_times_each_format_on_its_own(tiny_model):
    from napari_diffdenoise.core.run.run_cost import _rate_key

    assert _rate_key(tiny_model, make_settings(tiny_model), "network") != \
        _rate_key(tiny_model, make_settings(tiny_model, precision="bfloat16"), "network")


def test_bfloat16_on_a_cpu_without_bf16_arithmetic_warns_that_it_is_slower(tiny_model, monkeypatch):
    """Allowed (the maps are the same), but emulated: 4.5–9× slower than float32 on this project's test CPUs."""
    import warnings

    from napari_diffdenoise.core.run import run_settings

    monkeypatch.setattr(run_settings, "cpu_has_bfloat16", lambda: False)
    with pytest.warns(UserWarning, match=r"precision='bfloat16' on this CPU, which has no bfloat16 arithmetic .*: the "
                                         r"networks' bfloat16 is emulated, 4\.5–9× slower than float32"):
        make_settings(tiny_model, precision="bfloat16", device="cpu")
    monkeypatch.setattr(run_settings, "cpu_has_bfloat16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_settings(tiny_model, precision="bfloat16", device="cpu")
        make_settings(tiny_model, device="cpu")


def test_float32_runs_enter_no_autocast_which_torch_before_2_5_refuses_on_apple_gpus(monkeypatch):
    """torch < 2.5 raises for torch.autocast("mps", …) even with enabled=False: a float32 run must not call it."""
    from napari_diffdenoise.core.model.devices import bfloat16_autocast

    def refused(device_type, **_):
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")

    monkeypatch.setattr(torch, "autocast", refused)
    with bfloat16_autocast(torch.device("mps"), False):
        pass
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'mps'"):
        bfloat16_autocast(torch.device("mps"), True)


def test_a_v_prediction_keeps_gamma_in_float32_under_bfloat16(tiny_model):
    """ε̂ = √(1 − γ)·y_t + √γ·v̂: with γ rounded to bfloat16 (steps of 2⁻⁸ below 1) γ = 0.999 read as 1 and
    the y_t term vanished at the least noisy steps."""
    import dataclasses

    model = dataclasses.replace(tiny_model, prediction="v")
    model.network = lambda y, gamma, cond=None: torch.zeros_like(y, dtype=torch.bfloat16)  # v̂ = 0
    y_t = torch.ones(1, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eps = model.predict_eps(y_t, torch.tensor([0.999]))
    np.testing.assert_allclose(eps.float().numpy(), np.sqrt(0.001), rtol=1e-3)


def test_bfloat16_on_a_gpu_older_than_ampere_warns(monkeypatch):
    from napari_diffdenoise.core.run import run_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.warns(UserWarning, match=r"compute capability 7\.0, below 8\.0"):
        run_settings._precision_rule("bfloat16", torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_settings._precision_rule("bfloat16", torch.device("cuda", 0))
        run_settings._precision_rule("float32", torch.device("cuda", 0))


def test_the_current_gpu_is_named_by_its_index(monkeypatch):
    """Models copied to a device are kept per device name: "cuda" would name whichever GPU is current."""
    from napari_diffdenoise.core.model.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
