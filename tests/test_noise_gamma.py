"""A mean head told each input's own noise level (core.model.network.noise_gamma): the estimate it
gets, how a model feeds it, and that a checkpoint keeps which input its head was trained with."""
import json

import numpy as np
import pytest
import torch

from napari_diffdenoise import load_model, save_checkpoint
from napari_diffdenoise.core.io.checkpoint import CheckpointError, read_checkpoint
from napari_diffdenoise.core.model.network import NOISE_GAMMA, noise_gamma


def test_the_noise_input_follows_the_pixel_noise_and_ignores_smooth_structure():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96] / 96.0
    ramp = 2 * yy - 0.5 * xx  # a plane: the Laplacian difference does not see it
    images = torch.from_numpy(np.stack([ramp + s * rng.standard_normal(ramp.shape) for s in (0.0, 0.02, 0.1, 0.3)])
                              .astype(np.float32))[:, None]
    sigma = np.sqrt(1 / noise_gamma(images).numpy() - 1)
    assert sigma[0] < 1e-3  # the ramp alone: noiseless (the floor is 1e-4)
    np.testing.assert_allclose(sigma[1:], [0.02, 0.1, 0.3], rtol=0.05)


def test_a_head_told_the_noise_level_gets_each_inputs_own_and_keeps_that_through_a_checkpoint(headed, tmp_path):
    headed.mean_head_gamma = NOISE_GAMMA
    torch.manual_seed(2)
    with torch.no_grad():  # an untrained head answers 0 to anything (its last layer starts at zero)
        for parameter in headed.mean_network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    path = tmp_path / "noise.safetensors"
    save_checkpoint(headed, path)
    again = load_model(path)
    assert again.mean_head_gamma == NOISE_GAMMA
    seen = []
    again.mean_network.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    rng = np.random.default_rng(1)
    x = torch.from_numpy(np.stack([s * rng.standard_normal((32, 32)) for s in (0.01, 0.3)]).astype(np.float32))[:, None]
    with torch.no_grad():
        told = again.predict_mean(x)
    torch.testing.assert_close(seen[0], noise_gamma(x))
    assert seen[0][0] > 0.99 and seen[0][1] < 0.95
    with torch.no_grad():  # the input matters: the same head fed the blind constant answers otherwise
        blind = load_model(path)
        blind.mean_head_gamma = 0.5
        assert not torch.allclose(blind.predict_mean(x), told)
    # a blind head's checkpoint says its constant
    headed.mean_head_gamma = 0.5
    save_checkpoint(headed, tmp_path / "blind.safetensors")
    assert load_model(tmp_path / "blind.safetensors").mean_head_gamma == 0.5


@pytest.mark.parametrize("gamma", ["loud", 1.5, True])
def test_a_checkpoint_whose_head_gamma_is_neither_a_fraction_nor_noise_is_refused(headed, tmp_path, gamma):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_checkpoint(headed, path)
    meta, tensors = read_checkpoint(path)
    meta["mean_head"]["gamma"] = gamma
    save_file(tensors, path, metadata={"napari_diffdenoise": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="mean head's gamma .* must be a number in \\(0, 1\\) or 'noise'"):
        load_model(path)
