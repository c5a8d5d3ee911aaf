"""The CARE baseline: the same U-Net as the bundled model, trained to map the noisy image to the
clean one in a single step (Weigert et al. 2018), on the same simulated data, for the same budget.

It answers the question a reader of the quality tables asks first: does sampling a diffusion
model beat a plain supervised network of the same size trained just as long? The network is the
unconditional variant of ours (the noisy image is its only input; the noise-level embedding gets
a constant), trained on the MSE to the clean target: the estimate of E[clean | noisy], which is
what PSNR rewards.

    python -m bench.care --steps 4000 --out bench/runs/care            # the CPU recipe's budget
    python -m bench.care --minutes 7 --workers 7 --out $OUT/care        # a GPU run (docs/training.md)

Writes <out>/care.safetensors — a package checkpoint whose mean head is the CARE network (EMA weights,
last step), trained by the package's own loop (iter_train, objective "mean") — with its -best and
.state files beside it, and log.json. The benchmarks look for it in bench/data/care.safetensors (see
bench/data/README.md); that file is still of the earlier format (bare weights), which load() reads too.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from napari_diffdenoise.core.imaging.normalization import DEFAULT_PERCENTILES, IntensityMap
from napari_diffdenoise.core.model.devices import resolve_device
from napari_diffdenoise.core.model.network import UNet, UNetConfig, count_parameters
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.run.restore import _pad_to_multiple
from napari_diffdenoise.core.training.train_config import TrainConfig

from .training_data import simulated_source

DEFAULT_PATH = Path(__file__).parent / "data" / "care.safetensors"
_GAMMA = 0.5  # any constant: the embedding of a fixed noise level acts as a learnt bias


def predict(network: UNet, noisy: torch.Tensor) -> torch.Tensor:
    return network(noisy, torch.full((len(noisy),), _GAMMA, device=noisy.device))


def train(source, config: TrainConfig, out: Path, unet: UNetConfig, device: str = "auto", val_batch=None,
          init: Path | None = None) -> UNet:
    """Through the package's one training loop (core.training.training.iter_train, objective "mean"): the CARE
    network is the mean head of a checkpoint in the package's format, whose diffusion network is a
    small untrained placeholder (paired models must have one; nothing here uses it)."""
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint
    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.training.training import iter_train

    torch.manual_seed(config.seed)
    placeholder = UNetConfig(cond_channels=1, base_channels=8, channel_mults=(1,), emb_dim=16, fourier_features=8)
    model = DiffusionModel.create(placeholder, NoiseSchedule("cosine", 200), name="care")
    model.mean_network = load(init) if init else UNet(unet)
    model.mean_estimator = "head"
    out.mkdir(parents=True, exist_ok=True)
    run = iter_train(model, source, replace(config, objective="mean"), val_batch=val_batch,
                     checkpoint_path=out / "care.safetensors", device=device, overwrite=True,
                     provenance={"baseline": "CARE (Weigert et al. 2018): one step, MSE to the clean image"})
    try:
        while True:
            info = next(run)
            if info.step % 50 == 0 or info.step == info.total_steps:
                print(json.dumps({"step": info.step, "train_loss": info.train_loss, "val_loss": info.val_loss,
                                  "seconds": round(info.seconds, 1)}), flush=True)
    except StopIteration as stop:
        result = stop.value
    save_checkpoint(result.model, out / "care.safetensors")
    (out / "log.json").write_text(json.dumps(result.history))
    return result.model.mean_network.eval()


def load(path: Path = DEFAULT_PATH, device: str = "cpu") -> UNet:
    """The baseline network (float32, eval mode): the mean head of a package checkpoint, or a file of
    the earlier format (bare U-Net weights, which bench/data/care.safetensors still is); safetensors
    only, nothing is unpickled."""
    with safe_open(str(path), framework="pt") as f:
        earlier = "unet" in (f.metadata() or {})
    if not earlier:
        from napari_diffdenoise.core.io.checkpoint import load_model

        return load_model(path).mean_network.to(resolve_device(device)).eval()
    with safe_open(str(path), framework="pt") as f:
        unet = UNetConfig.from_dict(json.loads(f.metadata()["unet"]))
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    network = UNet(unet)
    network.load_state_dict(state)
    return network.to(resolve_device(device)).eval()


def gamma(path: Path = DEFAULT_PATH):
    """The γ input the head of ``path`` was trained with (DiffusionModel.mean_head_gamma): a package
    checkpoint says; a file of the earlier format is a blind head."""
    from napari_diffdenoise.core.io.checkpoint import load_model
    from napari_diffdenoise.core.model.model import MEAN_HEAD_GAMMA

    with safe_open(str(path), framework="pt") as f:
        earlier = "unet" in (f.metadata() or {})
    return MEAN_HEAD_GAMMA if earlier else load_model(path).mean_head_gamma


def info(path: Path = DEFAULT_PATH) -> dict:
    """The training record stored with the weights, without its loss history."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "info" not in metadata:  # a package checkpoint
        from napari_diffdenoise.core.io.checkpoint import load_model

        record = load_model(path).provenance
    else:
        record = json.loads(metadata["info"])
    return {"training": record.get("training"), "final": (record.get("history") or [None])[-1]}


def file_sha256(path: Path) -> str:
    from napari_diffdenoise.core.io.checkpoint import file_sha256 as sha

    return sha(path)


def restore(network: UNet, image: np.ndarray) -> np.ndarray:
    """One 2D plane in, its prediction in the input's units out (the model's percentile map)."""
    imap = IntensityMap.from_percentiles(image, DEFAULT_PERCENTILES)
    dev = next(network.parameters()).device
    x = torch.from_numpy(imap.to_model(image).astype(np.float32))[None, None].to(dev)
    padded, (h, w) = _pad_to_multiple(x, network.config.size_multiple)
    with torch.inference_mode():
        out = predict(network, padded)[0, 0, :h, :w].float().cpu().numpy()
    return imap.to_input(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--minutes", type=float, help="a time budget instead of --steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pool-size", type=int, default=192)
    parser.add_argument("--workers", type=int, default=0, help="simulator processes feeding the network")
    parser.add_argument("--out", type=Path, default=Path("bench/runs/care"))
    parser.add_argument("--init", type=Path, help="start from this baseline's weights (a second budget)")
    args = parser.parse_args(argv)
    source, val_batch = simulated_source("paired", "blurred", args.pool_size, args.patch_size, args.workers)
    unet = UNetConfig(cond_channels=0)
    print(f"parameters: {count_parameters(UNet(unet)):,}", flush=True)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
                         learning_rate=args.lr, warmup_steps=args.warmup, data_workers=args.workers,
                         time_budget_s=args.minutes * 60 if args.minutes else None)
    train(source, config, args.out, unet, val_batch=val_batch, init=args.init)


if __name__ == "__main__":
    main()
