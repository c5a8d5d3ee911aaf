"""The CARE baseline: the same U-Net as the bundled model, trained to map the noisy image to the
clean one in a single step (Weigert et al. 2018), on the same simulated data, for the same budget.

It answers the question a reader of the quality tables asks first: does sampling a diffusion
model beat a plain supervised network of the same size trained just as long? The network is the
unconditional variant of ours (the noisy image is its only input; the noise-level embedding gets
a constant), trained on the MSE to the clean target: the estimate of E[clean | noisy], which is
what PSNR rewards.

    python -m bench.care --steps 4000 --out bench/runs/care            # the CPU recipe's budget
    python -m bench.care --minutes 7 --workers 7 --out $OUT/care        # a GPU run (docs/training.md)

Writes <out>/care.safetensors (EMA weights, last step) and log.json. The benchmarks look for it in
bench/data/care.safetensors (see bench/data/README.md).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_diffdenoise.core.devices import resolve_device
from napari_diffdenoise.core.network import UNet, UNetConfig, count_parameters
from napari_diffdenoise.core.normalization import DEFAULT_PERCENTILES, IntensityMap
from napari_diffdenoise.core.restore import _pad_to_multiple
from napari_diffdenoise.core.schedules import NoiseSchedule
from napari_diffdenoise.core.training import StepBudget, TrainConfig, _Ema, lr_at, step_batches

from .train_bundled import simulated_source

DEFAULT_PATH = Path(__file__).parent / "data" / "care.safetensors"
_GAMMA = 0.5  # any constant: the embedding of a fixed noise level acts as a learnt bias


def predict(network: UNet, noisy: torch.Tensor) -> torch.Tensor:
    return network(noisy, torch.full((len(noisy),), _GAMMA, device=noisy.device))


def train(source, config: TrainConfig, out: Path, unet: UNetConfig, device: str = "auto", val_batch=None,
          init: Path | None = None) -> UNet:
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    net = (load(init) if init else UNet(unet)).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = _Ema(net, config.ema_decay)
    budget = StepBudget(config.time_budget_s, config.warmup_steps) if config.time_budget_s is not None else None
    run_config = replace(config, steps=10**9) if budget is not None else config  # until the budget fixes it
    batches = step_batches(source, NoiseSchedule("cosine", 200), run_config)
    history, t0, step = [], time.perf_counter(), 0
    out.mkdir(parents=True, exist_ok=True)
    while step < run_config.steps:
        noisy, clean, _, _ = (torch.from_numpy(a).to(dev) for a in next(batches))
        for group in opt.param_groups:
            group["lr"] = lr_at(step, run_config)
        loss = torch.mean((predict(net, noisy) - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        opt.step()
        ema.update(net, step)
        step += 1
        fixed_steps = budget.steps(step) if budget is not None else None  # as iter_train spends a budget
        if fixed_steps is not None:
            run_config = replace(run_config, steps=fixed_steps)
        if step % 50 == 0 or step == run_config.steps:
            row = {"step": step, "train_loss": loss.item(), "seconds": round(time.perf_counter() - t0, 1)}
            if val_batch is not None:
                with torch.inference_mode():
                    v_noisy, v_clean = (torch.from_numpy(a).to(dev) for a in val_batch)
                    row["val_loss"] = float(torch.mean((predict(ema.shadow, v_noisy) - v_clean) ** 2))
            history.append(row)
            print(json.dumps(row), flush=True)
        if step % 1000 == 0 or step == run_config.steps:
            save(ema.shadow, unet, out / "care.safetensors", {"training": asdict(run_config), "history": history})
            (out / "log.json").write_text(json.dumps(history))
    return ema.shadow.eval()


def save(network: UNet, unet: UNetConfig, path: Path, info: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"unet": json.dumps(unet.to_dict()), "info": json.dumps(info)})
    tmp.replace(path)


def load(path: Path = DEFAULT_PATH, device: str = "cpu") -> UNet:
    """The baseline network (float32, eval mode); safetensors only, nothing is unpickled."""
    with safe_open(str(path), framework="pt") as f:
        unet = UNetConfig.from_dict(json.loads(f.metadata()["unet"]))
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    network = UNet(unet)
    network.load_state_dict(state)
    return network.to(resolve_device(device)).eval()


def info(path: Path = DEFAULT_PATH) -> dict:
    """The training record stored with the weights, without its loss history."""
    with safe_open(str(path), framework="pt") as f:
        record = json.loads(f.metadata()["info"])
    return {"training": record.get("training"), "final": (record.get("history") or [None])[-1]}


def file_sha256(path: Path) -> str:
    from napari_diffdenoise.core.checkpoint import file_sha256 as sha

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
