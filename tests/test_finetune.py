import copy

import numpy as np
import pytest
import torch

from napari_diffdenoise import NoiseModel, TrainConfig, load_model, train
from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair
from napari_diffdenoise.core.training.datasets import ArrayPairs, CleanWithSimulatedNoise
from napari_diffdenoise.core.training.finetune import iter_train_on

CFG = dict(batch_size=4, patch_size=32, warmup_steps=2, validate_every=5)


@pytest.fixture(scope="module")
def pair():
    noisy, clean = zip(*(simulate_pair("nuclei", (96, 96), Acquisition(peak_photons=10), seed=s) for s in (1, 2)))
    return np.stack(noisy), np.stack(clean)


def test_fine_tuning_on_pairs_lowers_the_loss_and_records_provenance(tiny_model, pair, tmp_path):
    out = tmp_path / "mine.safetensors"
    result = train(*pair, model=tiny_model, config=TrainConfig(steps=40, learning_rate=3e-3, **CFG), output=out)
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert len(vals) == 8 and vals[-1] < 0.9 * vals[0]
    saved = load_model(out)
    prov = saved.provenance
    assert saved.name == "mine" and prov["step"] == 40 and prov["package_version"]
    assert prov["data"]["mode"] == "paired" and prov["data"]["train_shapes"][0][1] == 96
    assert prov["training"]["patch_size"] == 32
    assert (tmp_path / "mine-best.safetensors").is_file()


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_model, pair, tmp_path):
    cfg = TrainConfig(steps=8, checkpoint_every=3, **CFG)
    straight = train(*pair, model=copy.deepcopy(tiny_model), config=cfg, output=tmp_path / "a.safetensors")
    run = iter_train_on(*pair, model=copy.deepcopy(tiny_model), config=cfg, output=tmp_path / "b.safetensors")
    for info in run:
        if info.step == 5:
            run.close()  # killed after step 5; the last checkpoint is from step 3
    resumed_steps = []
    resumed = train(*pair, model=copy.deepcopy(tiny_model), config=cfg, output=tmp_path / "b.safetensors", resume=True,
                    progress=lambda i: resumed_steps.append(i.step))
    assert resumed_steps == [4, 5, 6, 7, 8]
    for (name, a), b in zip(straight.model.network.state_dict().items(), resumed.model.network.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_validation_pixels_never_appear_in_training_patches():
    ramp = np.tile(np.arange(120, dtype=np.float32)[:, None], (1, 64))  # value = row index
    noisy = ramp + np.random.default_rng(1).normal(0, 0.5, ramp.shape)  # the same image twice is refused
    source = ArrayPairs(noisy, ramp, patch_size=16, val_fraction=0.25, percentiles=(0, 100))
    split_value = source.val_parts[0][1].min()  # first validation row, in model units
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, clean = source.batch(8, 16, rng)
        assert clean.max() < split_value
    val_noisy, val_clean = source.validation_batch(16)
    assert val_clean.min() >= split_value and len(val_clean) == (30 // 16) * (64 // 16)


def test_training_batches_are_really_augmented():
    ramp = np.tile(np.arange(64, dtype=np.float32)[None, :], (64, 1))  # increases along x only
    source = ArrayPairs(ramp + np.random.default_rng(1).normal(0, 0.5, ramp.shape), ramp, patch_size=16, val_fraction=0)
    _, clean = source.batch(64, 16, np.random.default_rng(0))
    directions = set()
    for patch in clean[:, 0]:
        dy, dx = np.sign(patch[-1, 0] - patch[0, 0]), np.sign(patch[0, -1] - patch[0, 0])
        directions.add((dy, dx))
    assert directions == {(0, 1), (0, -1), (1, 0), (-1, 0)}


def test_clean_only_training_synthesises_low_light_noise(tiny_model, pair, tmp_path):
    _, clean = pair
    source = CleanWithSimulatedNoise(clean, 32, NoiseModel(photons=(3, 5)), val_fraction=0.2)
    noisy, target = source.batch(8, 32, np.random.default_rng(0))
    assert np.abs(noisy - target).mean() > 0.1  # ~4 photons at peak: visibly noisy
    result = train(None, clean, model=tiny_model, noise_model=NoiseModel(photons=(3, 5)),
                   config=TrainConfig(steps=3, **CFG), output=tmp_path / "c.safetensors")
    assert load_model(tmp_path / "c.safetensors").provenance["data"]["mode"] == "clean + simulated noise"
    assert len(result.history) == 3


@pytest.mark.parametrize(
    "noisy, clean, kwargs, message",
    [
        (np.zeros((64, 64)), np.zeros((64, 80)), {}, "must match"),
        ([np.zeros((64, 64))] * 2, [np.zeros((64, 64))], {}, "pair up"),
        (np.zeros((40, 40)), np.zeros((40, 40)), {}, "too small"),
        (np.zeros((2, 1, 1, 2, 64, 64)), np.zeros((2, 1, 1, 2, 64, 64)), {}, "2 to 5 dims"),
        (np.zeros((64, 64)), None, {}, "needs clean"),
        (None, None, {}, "no training images"),
        (np.zeros((64, 64)), np.zeros((64, 64)), {"val_fraction": 0.7}, "val_fraction must be a number from 0 to 0.45"),
        (None, np.zeros((64, 64)), {"noise_model": "bad"}, None),
    ],
)
def test_bad_selections_are_refused_before_any_work(tiny_model, noisy, clean, kwargs, message):
    if message is None:
        with pytest.raises(ValueError, match="photons must be two positive"):
            NoiseModel(photons=(5, 1))
        return
    with pytest.raises(ValueError, match=message):
        train(noisy, clean, model=tiny_model, config=TrainConfig(steps=1, batch_size=2, patch_size=32), **kwargs)


def test_an_unpaired_model_trains_on_clean_images_and_denoises_with_guidance(pair, tmp_path):
    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    noisy, clean = pair
    torch.manual_seed(0)
    start = DiffusionModel.create(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2)),
                                  NoiseSchedule("cosine", 50), kind="unpaired", prediction="v")
    out = tmp_path / "prior.safetensors"
    result = train(None, clean, model=start, kind="unpaired", config=TrainConfig(steps=30, learning_rate=3e-3, **CFG),
                   output=out)
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert vals[-1] < vals[0]
    prior = load_model(out)
    assert prior.kind == "unpaired" and prior.provenance["data"]["mode"] == "clean only (unpaired)"
    restored = denoise(noisy[0], prior, sampler="fb", n_samples=2, sampler_params={"start": 5})
    assert restored.mean.shape == noisy[0].shape
    with pytest.raises(ValueError, match="clean images only"):
        train(noisy, clean, model=start, kind="unpaired", config=TrainConfig(steps=1, **CFG))
    with pytest.raises(ValueError, match="starting model is paired"):
        train(None, clean, model="demo", kind="unpaired", config=TrainConfig(steps=1, **CFG))


def test_clean_only_with_a_psf_blurs_the_noisy_side_only(pair):
    from scipy import ndimage

    _, clean = pair
    source = CleanWithSimulatedNoise(clean, 32, NoiseModel(photons=(1e4, 1e4), psf_sigma=2.0), val_fraction=0)
    noisy, target = source.batch(16, 32, np.random.default_rng(1))
    # at 10⁴ photons the noise is small: the noisy side is the target blurred by the PSF, not the target
    inner = (slice(None), 0, slice(8, -8), slice(8, -8))
    reblurred = np.stack([ndimage.gaussian_filter(t[0], 2.0) for t in target])[:, None]
    assert np.abs(reblurred - noisy)[inner].mean() < 0.5 * np.abs(target - noisy)[inner].mean()


def test_unpaired_batches_cover_squeezed_contrast(pair):
    from napari_diffdenoise.core.training.datasets import CleanPatches

    _, clean = pair
    source = CleanPatches(clean, 32, val_fraction=0)
    first, second = source.batch(64, 32, np.random.default_rng(2))
    np.testing.assert_array_equal(first, second)
    spans = first.max(axis=(1, 2, 3)) - first.min(axis=(1, 2, 3))
    assert spans.min() < 0.8 < spans.max()  # squeezed and full-range crops both occur
    assert first.min() >= -1.5


def test_resume_with_other_data_or_settings_is_refused(tiny_model, pair, tmp_path):
    cfg = TrainConfig(steps=4, checkpoint_every=2, **CFG)
    out = tmp_path / "run.safetensors"
    run = iter_train_on(*pair, model=copy.deepcopy(tiny_model), config=cfg, output=out)
    for info in run:
        if info.step == 2:
            run.close()
    with pytest.raises(ValueError, match=r"other settings \(batch_size 4 → 2"):
        train(*pair, model=copy.deepcopy(tiny_model), config=TrainConfig(steps=4, **{**CFG, "batch_size": 2}),
              output=out, resume=True)
    noisy, clean = pair
    with pytest.raises(ValueError, match=r"the training images \(their shapes or mode differ\)"):
        train(noisy[..., :-16], clean[..., :-16], model=copy.deepcopy(tiny_model), config=cfg, output=out, resume=True)
    # other images of the same shapes were trained on as a mix of both, with no word said
    with pytest.raises(ValueError, match=r"the training images \(the same shapes, other pixels\)"):
        train(noisy[..., ::-1], clean[..., ::-1], model=copy.deepcopy(tiny_model), config=cfg, output=out, resume=True)
    assert load_model(out).provenance["step"] == 2  # the refused runs changed nothing
    train(noisy, clean, model=copy.deepcopy(tiny_model), config=cfg, output=out, resume=True)  # the same data goes on
    assert load_model(out).provenance["step"] == 4


def test_every_plane_of_a_tczyx_array_is_a_training_image():
    from napari_diffdenoise.core.imaging.axes import as_planes

    movie = np.arange(2 * 3 * 16 * 16, dtype=np.float32).reshape(2, 3, 16, 16)
    planes = as_planes(movie, "noisy")
    assert len(planes) == 6 and all(p.shape == (16, 16) for p in planes)
    np.testing.assert_array_equal(planes[4], movie[1, 1])  # in row-major order over T and Z


def test_a_clean_image_that_is_the_noisy_one_is_refused(tiny_model, pair):
    """The same image given as noisy and clean (a layer duplicated, a file twice) trained in silence into a model
    that keeps the noise; so did a copy rescaled, which the clean side's affine fit maps back onto the noisy."""
    noisy, clean = pair
    config = TrainConfig(steps=1, batch_size=2, patch_size=32)
    for same in (noisy, 3.0 * noisy.astype(np.float64) + 7.0):
        with pytest.raises(ValueError, match="clean plane 0 holds the noisy plane's pixels"):
            train(noisy, same, model=tiny_model, config=config)
    train(noisy, clean, model=tiny_model, config=config)  # a real pair of the field trains
    dark = noisy.copy()
    dark[0] = 0  # a plane that caught no light: a constant is every clean plane's fit, not a copy of it
    train(dark, clean, model=tiny_model, config=config)


def test_values_beyond_float32_are_said_so_not_called_infinite():
    """A float64 image of finite values near 1e303 was refused as holding "NaN or infinite values", after numpy's
    overflow warning from the cast to float32."""
    import warnings

    from napari_diffdenoise.core.imaging.axes import as_planes

    huge = np.full((2, 32, 32), 1e303)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        with pytest.raises(ValueError, match=r"noisy image 0 holds values up to 1e\+303, beyond what float32 holds"):
            as_planes(huge, "noisy")
    with pytest.raises(ValueError, match="contains NaN or infinite values"):
        as_planes(np.array([[np.inf, 1.0], [1.0, 1.0]]), "noisy")
    assert as_planes(np.full((32, 32), 1e30), "noisy")[0].dtype == np.float32


@pytest.mark.parametrize("kind", ["paired", "unpaired"])
def test_a_flat_clean_image_is_refused(tiny_model, kind):
    """train took a constant clean image (clean only, or for an unpaired prior) that adapt refuses as too flat."""
    start = None if kind == "unpaired" else tiny_model
    with pytest.raises(ValueError, match="clean plane 0 is flat: 7 at both of its"):
        train(None, np.full((64, 64), 7.0), model=start, kind=kind, config=TrainConfig(steps=1, batch_size=2,
                                                                                        patch_size=32))
