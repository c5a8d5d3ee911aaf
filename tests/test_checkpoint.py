import json

import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise, list_models, load_model, save_checkpoint
from napari_diffdenoise.core.io.checkpoint import CheckpointError, read_checkpoint


def test_round_trip_gives_identical_results(tiny_model, tmp_path, noisy_stack):
    path = tmp_path / "m.safetensors"
    sha = save_checkpoint(tiny_model, path)
    loaded = load_model(path)
    assert loaded.sha256 == sha and len(sha) == 64
    assert loaded.schedule == tiny_model.schedule and loaded.kind == "paired" and loaded.tile == 64
    assert loaded.network.config == tiny_model.network.config
    a = denoise(noisy_stack, tiny_model, n_samples=2, steps=3)
    b = denoise(noisy_stack, loaded, n_samples=2, steps=3)
    np.testing.assert_array_equal(a.mean, b.mean)


def test_metadata_is_readable_json_with_provenance(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_model.provenance = {"data": "unit test"}
    save_checkpoint(tiny_model, path)
    meta, tensors = read_checkpoint(path)
    assert meta["architecture"]["base_channels"] == 8 and meta["schedule"]["kind"] == "cosine"
    assert meta["normalization"]["percentiles"] == [1.0, 99.8] and meta["provenance"]["data"] == "unit test"
    assert all(k.startswith("net.") for k in tensors)
    json.dumps(meta)


def test_half_precision_checkpoint_is_half_the_size_and_loads_as_float32(tiny_model, tmp_path):
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    save_checkpoint(tiny_model, full)
    save_checkpoint(tiny_model, half, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert next(load_model(half).network.parameters()).dtype == torch.float32


def test_pickled_checkpoints_are_refused_without_unpickling(tiny_model, tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save(tiny_model.network.state_dict(), path)  # a zip pickle under a trusted-looking name
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(path)
    raw = tmp_path / "raw.pt"
    import pickle

    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(raw)


def test_other_files_are_refused_with_a_clear_message(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a safetensors"):
        load_model(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="no napari-diffdenoise metadata"):
        load_model(foreign)
    with pytest.raises(CheckpointError, match="neither a bundled model"):
        load_model("no-such-model")


def test_saving_is_atomic_and_leaves_no_temporary_files(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(tiny_model, path)
    save_checkpoint(tiny_model, path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_bundled_demo_model_is_listed_and_loads():
    assert "demo" in list_models()
    model = load_model("demo")
    assert model.kind == "paired" and model.sha256
    assert model.provenance.get("package_version")


def test_a_header_length_that_starts_like_a_pickle_is_still_accepted(tiny_model, tmp_path):
    """Regression: safetensors files begin with their header length; a length whose low byte is
    0x80 (the pickle protocol marker) was once refused as a pickle."""
    path = tmp_path / "m.safetensors"
    for pad in range(256):
        tiny_model.provenance = {"pad": "x" * pad}
        save_checkpoint(tiny_model, path)
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    assert load_model(path).provenance["pad"] == "x" * pad


def test_metadata_that_does_not_describe_a_model_is_a_clear_error(tiny_model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "broken.safetensors"
    save_file({"net.x": torch.zeros(1)}, path, metadata={"napari_diffdenoise": json.dumps({"kind": "paired"})})
    with pytest.raises(CheckpointError, match="incomplete or unknown metadata"):
        load_model(path)


def test_half_checkpoints_keep_buffers_in_full_precision(tiny_model, tmp_path):
    path = tmp_path / "half.safetensors"
    save_checkpoint(tiny_model, path, half=True)
    _, tensors = read_checkpoint(path)
    assert tensors["net.fourier.freqs"].dtype == torch.float32
    assert tensors["net.stem.weight"].dtype == torch.float16


@pytest.mark.parametrize("config", [
    dict(cond_channels=1, base_channels=32, channel_mults=(1, 2, 2, 4)),  # the bundled size
    dict(cond_channels=0, base_channels=8, channel_mults=(1, 2), blocks_per_level=2, space_to_depth=1, emb_dim=16),
    dict(cond_channels=1, base_channels=4, channel_mults=(3,), blocks_per_level=3, space_to_depth=4, emb_dim=7,
         fourier_features=5),
])
def test_the_parameter_bound_counts_what_the_network_would_have(config):
    from napari_diffdenoise.core.io.checkpoint_limits import unet_parameter_count
    from napari_diffdenoise.core.model.network import UNet, UNetConfig, count_parameters

    arch = {**UNetConfig(**config).to_dict(), "channel_mults": list(config["channel_mults"])}
    assert unet_parameter_count(arch) == count_parameters(UNet(UNetConfig(**config)))


def test_the_bundled_models_pass_the_metadata_checks():
    for name in list_models():
        model = load_model(name)
        assert model.value_range[0] < model.value_range[1]


def test_a_checkpoint_holds_each_mean_estimator_a_run_resolves_to_and_not_auto(headed, tmp_path):
    """The estimators a model may store are the library's (run_spec.MEAN_ESTIMATORS) less "auto",
    which is a run's request for the model's own: one added there loads here."""
    from napari_diffdenoise.core.run.run_spec import MEAN_ESTIMATORS

    for estimator in MEAN_ESTIMATORS:
        headed.mean_estimator = estimator
        path = tmp_path / f"{estimator}.safetensors"
        save_checkpoint(headed, path)
        if estimator == "auto":
            with pytest.raises(ValueError, match="mean_estimator = 'auto'"):
                load_model(path)
        else:
            assert load_model(path).mean_estimator == estimator
