"""Things a run declares once (issue #20): the record of its settings, the number of steps, the
training configuration, the version. Each test here failed on the code that declared them twice."""
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_diffdenoise.core.calibration.calibration_run import run_settings
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.io.image_io import open_image
from napari_diffdenoise.core.run import plane_runs, run_record
from napari_diffdenoise.core.run.batch import _fingerprint, input_content_hash
from napari_diffdenoise.core.run.conformal import Calibration
from napari_diffdenoise.core.run.plane_runs import _metadata
from napari_diffdenoise.core.run.restore import make_settings, plane_run
from napari_diffdenoise.core.run.run_record import RECORDED, Recorded, calibration_key, settings_record


def _legacy_fingerprint(source, model, s) -> dict:
    """batch._fingerprint as it was written before the record (2026-12-01): stores it wrote must resume."""
    psf = None if s.psf is None else hashlib.sha256(np.ascontiguousarray(s.psf, np.float64).tobytes()).hexdigest()
    path = None if source.path is None else str(Path(source.path).resolve())
    return {"input_path": path, "input_content_sha256": input_content_hash(source),
            "input_shape": list(source.shape), "input_dtype": str(np.dtype(source.data.dtype)), "axes": source.axes,
            "model_sha256": model.sha256, "sampler": s.sampler.name, "params": s.params, "n_samples": s.n_samples,
            "seed": s.seed, "mean_estimator": s.mean_estimator, "tile": s.tile, "overlap": s.overlap,
            "percentiles": list(s.percentiles), "coverage": s.coverage, "psf_sha256": psf,
            "block": s.block, "block_overlap": s.block_overlap, "entropy": s.entropy}


def _legacy_metadata_settings(s) -> dict:
    """The settings part of plane_runs._metadata as it was written before the record."""
    return {
        "sampler": s.sampler.name, **s.params, "sampler_params": s.params, "mean_estimator": s.mean_estimator,
        "n_samples": s.n_samples, "seed": s.seed, "device": str(s.device), "tile": s.tile, "overlap": s.overlap,
        "percentiles": list(s.percentiles), "entropy": s.entropy,
        **({"psf_shape": list(np.shape(s.psf))} if s.psf is not None else {}),
        **({"guidance": s.guidance, "guidance_weight": s.guidance_weight} if s.guidance is not None else {}),
        **({"coverage": s.coverage} if s.coverage is not None else {}),
    }


def _legacy_run_settings(metadata: dict) -> dict:
    return {"sampler": metadata["sampler"], "params": metadata["sampler_params"],
            "mean_estimator": metadata["mean_estimator"], "n_samples": metadata["n_samples"]}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, np.random.default_rng(0).poisson(5, (2, 40, 48)).astype(np.uint16))
    return open_image(path)


def _calibrated(model, **settings):
    """The model with a calibration (made up) for these settings, as calibrate() would store it."""
    s = make_settings(model, **settings)
    metadata = _metadata(model, s, 0, 0, 0.0, {})
    calibration = Calibration(run_settings(metadata), [0.5, 0.9], [1.0, 2.0], [0.5, 0.9], [1.0, 2.0], "test", 100)
    return dataclasses.replace(model, calibrations=[calibration.to_dict()])


RUNS = [
    {},
    {"n_samples": 3, "steps": 2, "seed": 4, "tile": 32, "overlap": 4, "percentiles": (1.0, 99.0), "block": 512,
     "block_overlap": 16, "entropy": "quantised", "mean": "samples"},
    {"sampler": "ddim-dc", "psf": gaussian_psf(1.2)},
    {"psf": gaussian_psf(1.0), "guidance": "dc", "guidance_weight": 0.5},
    {"sampler": "heun", "steps": 3},
    {"low_frequencies": "model"},  # what every run was before the step: its stores must resume
]


@pytest.mark.parametrize("settings", RUNS)
def test_the_record_gives_what_each_view_held_before(tiny_model, source, settings):
    """Stores and calibrations written before the record are still recognised, and the metadata
    keeps every key (and value) it had."""
    s = make_settings(tiny_model, **settings)
    expected = _legacy_fingerprint(source, tiny_model, s)
    if s.guidance is not None:  # the legacy fingerprint lacked it, so a guided store resumed under any guidance
        expected |= {"guidance": s.guidance, "guidance_weight": s.guidance_weight}
    # planes held to the data's smooth part (core.run.low_frequency, the default since 2026-12-03) differ from a
    # store's made before: such a store resumes under low_frequencies="model", its fingerprint unchanged
    if s.low_frequencies != "model":
        expected |= {"low_frequencies": s.low_frequencies}
    assert _fingerprint(source, plane_run(tiny_model, s)) == expected
    metadata = _metadata(tiny_model, s, 0, 0, 0.0, {})
    legacy = _legacy_metadata_settings(s)
    assert {k: metadata[k] for k in legacy} == legacy
    assert run_settings(metadata) == _legacy_run_settings(metadata)


def test_a_calibration_stored_before_the_record_is_found(tiny_model):
    model = _calibrated(tiny_model, n_samples=4, steps=3)
    s = make_settings(model, n_samples=4, steps=3, coverage=0.9)
    assert s.calibration is not None and s.calibration.settings["params"] == s.params
    with pytest.raises(ValueError, match="no calibration"):
        make_settings(model, n_samples=4, steps=5, coverage=0.9)


def test_a_setting_added_to_the_record_reaches_fingerprint_calibration_key_and_metadata(tiny_model, source,
                                                                                        monkeypatch):
    """Declaring a setting once (one Recorded line) changes all three views when its value changes."""
    value = {"now": 1}
    monkeypatch.setattr(run_record, "RECORDED", (*RECORDED, Recorded("flux", lambda s: value["now"], calibration=True)))
    s = make_settings(tiny_model, n_samples=4, steps=3)
    before = (_fingerprint(source, plane_run(tiny_model, s)), calibration_key(settings_record(s)),
              _metadata(tiny_model, s, 0, 0, 0.0, {}))
    assert before[0]["flux"] == before[1]["flux"] == before[2]["flux"] == 1
    calibration = Calibration(run_settings(before[2]), [0.5, 0.9], [1.0, 2.0], [0.5, 0.9], [1.0, 2.0], "t", 100)
    assert calibration.matches(before[1])
    value["now"] = 2
    after = (_fingerprint(source, plane_run(tiny_model, s)), calibration_key(settings_record(s)),
             _metadata(tiny_model, s, 0, 0, 0.0, {}))
    assert all(a != b for a, b in zip(before, after))
    assert not calibration.matches(after[1])


def test_calibration_keys_are_always_in_the_metadata(tiny_model):
    """run_settings reads the calibration key back from the metadata: every key must be there."""
    for settings in RUNS:
        record = settings_record(make_settings(tiny_model, **settings))
        assert all(f.shown(record) for f in RECORDED if f.calibration)


def _unpaired_model():
    import torch

    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNet, UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    torch.manual_seed(0)
    return DiffusionModel(UNet(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                          fourier_features=8)), NoiseSchedule("cosine", 20), kind="unpaired", tile=32)


def _steps_both_ways(model, path, tmp_path, **settings) -> tuple[int, int]:
    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.run.batch import denoise_to_tiff

    in_memory = denoise(tifffile.imread(path), model, **settings).metadata["n_steps"]
    to_files, _ = denoise_to_tiff(path, tmp_path / "out", model, stem="x", overwrite=True, **settings)
    return in_memory, to_files["n_steps"]


@pytest.fixture
def small_tif(tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
    return path


def _every_sampler(tiny_model):
    from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS

    unpaired = _unpaired_model()
    for name, info in SAMPLERS.items():
        model = tiny_model if "paired" in info.model_kinds else unpaired
        settings = {"sampler": name, "n_samples": 2}
        if "steps" in info.defaults(model.schedule):
            settings["steps"] = 2
        if info.needs_psf:
            settings["psf"] = gaussian_psf(1.0)
        yield model, settings


@pytest.fixture
def all_heads(with_std):
    """The tiny paired model with every head (mean, std, sample), so that every paired sampler runs on it."""
    import torch

    from napari_diffdenoise.core.model.network import UNet, UNetConfig

    torch.manual_seed(3)
    with_std.sample_network = UNet(UNetConfig(cond_channels=2, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                              fourier_features=8)).eval()
    return with_std


def test_the_number_of_steps_agrees_in_memory_and_to_files_for_every_sampler(all_heads, small_tif, tmp_path):
    for model, settings in _every_sampler(all_heads):
        in_memory, to_files = _steps_both_ways(model, small_tif, tmp_path, **settings)
        assert in_memory == to_files == plane_runs.network_steps(model, make_settings(model, **settings)), settings


def test_the_number_of_steps_has_one_source(tiny_model, small_tif, tmp_path, monkeypatch):
    monkeypatch.setattr(plane_runs, "network_steps", lambda model, s: 12345)
    assert _steps_both_ways(tiny_model, small_tif, tmp_path, n_samples=2, steps=2) == (12345, 12345)


def test_the_number_of_steps_counts_every_network_pass_of_every_sampler_and_mean(all_heads, small_tif):
    """On a plane of one tile the K samples go through the network together, so each sequential step
    is one network evaluation: the steps recorded are the evaluations made, whichever sampler draws
    (the sample head too, which draws about the mean head's estimate) and wherever the mean comes from."""
    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.run.run_spec import MEAN_ESTIMATORS

    plane = tifffile.imread(small_tif)
    for model, settings in _every_sampler(all_heads):
        means = [m for m in MEAN_ESTIMATORS if m != "auto"] if model is all_heads else ["samples"]
        runs = [(mean, "samples") for mean in means] + ([("head", "head")] if model is all_heads else [])
        for mean, std in runs:
            meta = denoise(plane, model, mean=mean, std=std, **settings).metadata
            assert meta["n_steps"] == meta["network_evaluations"], (settings, mean, std)


def test_denoise_calibrate_adapt_and_train_share_one_cancel_convention(headed):
    """Each raises Cancelled when cancel() returns True, and stops at the first check."""
    from napari_diffdenoise import Cancelled, adapt, calibrate, denoise, train
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair
    from napari_diffdenoise.core.training.train_config import TrainConfig

    noisy, clean = simulate_pair("nuclei", (160, 160), Acquisition(peak_photons=10), seed=3)
    calls = {
        "denoise": lambda cancel: denoise(noisy, headed, n_samples=2, steps=2, cancel=cancel),
        "denoise, calibrating on the image first": lambda cancel: denoise(
            noisy, headed, n_samples=2, steps=2, coverage=0.9, calibrate_on_image=True, cancel=cancel),
        "calibrate": lambda cancel: calibrate(headed, noisy, clean, [0.5, 0.9], n_samples=2, steps=2, cancel=cancel),
        "adapt": lambda cancel: adapt(headed, noisy, minutes=None, steps=3, recalibrate=False, cancel=cancel),
        "train": lambda cancel: train(noisy[None], clean[None], model=headed, cancel=cancel,
                                      config=TrainConfig(steps=3, batch_size=2, patch_size=32)),
    }
    for name, call in calls.items():
        asked = []
        with pytest.raises(Cancelled):
            call(lambda asked=asked: asked.append(1) or True)
        assert len(asked) == 1, name
