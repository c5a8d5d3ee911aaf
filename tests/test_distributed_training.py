"""DDP training launched by torchrun (gloo, 2 CPU processes) follows one process with the same global batch."""
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_diffdenoise import load_model
from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

torch_distributed = pytest.importorskip("torch.distributed")


def _train(tmp_path, tiny_checkpoint, out, processes: int):
    command = [sys.executable, "-m", "napari_diffdenoise.cli", "train", "--noisy", str(tmp_path / "n.tif"),
               "--clean", str(tmp_path / "c.tif"), "--model", str(tiny_checkpoint), "--out", str(out),
               "--batch-size", "4", "--patch-size", "32", "--steps", "12", "--ema", "0", "--device", "cpu"]
    if processes > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m",
                        "napari_diffdenoise.cli"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**__import__("os").environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_gloo_processes_give_the_loss_curve_of_one_with_the_same_global_batch(tmp_path, tiny_checkpoint):
    noisy, clean = simulate_pair("filaments", (96, 96), Acquisition(peak_photons=5), seed=1)
    tifffile.imwrite(tmp_path / "n.tif", noisy)
    tifffile.imwrite(tmp_path / "c.tif", clean)
    _train(tmp_path, tiny_checkpoint, tmp_path / "one.safetensors", 1)
    two = _train(tmp_path, tiny_checkpoint, tmp_path / "two.safetensors", 2)
    assert two.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    assert load_model(tmp_path / "two.safetensors").provenance["processes"] == 2
    one_model, two_model = load_model(tmp_path / "one.safetensors"), load_model(tmp_path / "two.safetensors")
    one_losses = np.array([r["train_loss"] for r in one_model.provenance["history"]])
    two_losses = np.array([r["train_loss"] for r in two_model.provenance["history"]])
    assert len(one_losses) == len(two_losses) == 12
    # the same curve up to the order of float sums (gradients averaged across ranks, not summed in one)
    np.testing.assert_allclose(two_losses, one_losses, rtol=1e-4)
    for (name, a), (_, b) in zip(one_model.network.state_dict().items(), two_model.network.state_dict().items()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5, err_msg=name)
    assert sorted(p.name for p in tmp_path.iterdir() if "two" in p.name) == [
        "two-best.safetensors", "two.safetensors", "two.state.safetensors"]


def test_each_rank_takes_its_own_equal_slice_of_the_global_batch():
    from napari_diffdenoise.core.training.distributed import rank_slice

    batch = np.arange(8)
    parts = [batch[rank_slice(8, rank, 4)] for rank in range(4)]
    np.testing.assert_array_equal(np.concatenate(parts), batch)
    assert all(len(p) == 2 for p in parts)
    with pytest.raises(ValueError, match="batch_size \\(6\\) must be a multiple of the number of processes \\(4\\)"):
        rank_slice(6, 0, 4)


def test_a_reduction_over_nccl_lies_on_this_ranks_gpu_and_over_gloo_on_the_cpu(monkeypatch):
    """NCCL refuses CPU tensors ("No backend type associated with device type cpu"): the loss averaged over
    ranks on GPUs must be put on the rank's GPU, which no CPU test can launch, so the choice is tested."""
    import torch

    from napari_diffdenoise.core.training.distributed import collective_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert collective_device("nccl") == torch.device("cuda", 3)
    assert collective_device("gloo") == torch.device("cpu")


def test_several_processes_on_an_apple_gpu_are_refused_before_joining(monkeypatch):
    from napari_diffdenoise.core.training.distributed import init_from_env

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"device: training on several processes .*\(device='mps'\)"):
        init_from_env("mps")
