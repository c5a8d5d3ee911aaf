"""Train the bundled paired demo model on simulated structures (the recipe in docs/training.md).

    python -m bench.train_bundled --steps 4000 --out bench/runs/demo

Writes <out>/model.safetensors (last), model-best.safetensors, the resumable state, and
history.json; re-running with --resume continues an interrupted run. Then
``python -m bench.train_bundled --ship bench/runs/demo/model.safetensors`` stores the chosen
checkpoint in float16 as the package's bundled ``demo`` model.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from napari_diffdenoise.core.checkpoint import bundled_model_dir, load_model, save_checkpoint
from napari_diffdenoise.core.model import DiffusionModel
from napari_diffdenoise.core.network import UNetConfig, count_parameters
from napari_diffdenoise.core.pairs import SimulatedPairs
from napari_diffdenoise.core.schedules import NoiseSchedule
from napari_diffdenoise.core.training import TrainConfig, iter_train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=192)
    parser.add_argument("--out", type=Path, default=Path("bench/runs/demo"))
    parser.add_argument("--prediction", choices=["eps", "v"], default="v")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--ship", type=Path, help="store this checkpoint as the bundled 'demo' model and exit")
    parser.add_argument("--tile", type=int, default=512,
                        help="inference tile stored with the shipped model: on a CPU one 512² tile costs less than "
                             "the 3×3 overlapping 256² tiles a 512² plane would need (docs/benchmarks/speed.md)")
    args = parser.parse_args(argv)

    if args.ship:
        model = load_model(args.ship)
        model.name = "demo"
        model.tile = args.tile
        sha = save_checkpoint(model, bundled_model_dir() / "demo.safetensors", half=True)
        print(f"shipped {args.ship} as demo ({sha[:12]})")
        return

    torch.manual_seed(0)
    config = UNetConfig(cond_channels=1, base_channels=args.base_channels)
    model = DiffusionModel.create(config, NoiseSchedule("cosine", 200), name="demo", prediction=args.prediction)
    print(f"parameters: {count_parameters(model.network):,}", flush=True)
    t0 = time.perf_counter()
    source = SimulatedPairs(pool_size=args.pool_size, seed=0)
    val_batch = SimulatedPairs(pool_size=16, seed=10_000).batch(32, args.patch_size)
    print(f"simulated the training pool in {time.perf_counter() - t0:.0f} s", flush=True)
    train_config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, learning_rate=args.lr,
        checkpoint_every=250, validate_every=100,
    )
    run = iter_train(
        model, source, train_config, val_batch=val_batch, checkpoint_path=args.out / "model.safetensors",
        resume=args.resume, provenance={"data": "simulated: nuclei, filaments, membranes, puncta; peak 2-200 photons"},
    )
    args.out.mkdir(parents=True, exist_ok=True)
    history = []
    for info in run:
        if info.step % 50 == 0 or info.step == info.total_steps:
            row = {"step": info.step, "train_loss": info.train_loss, "val_loss": info.val_loss, "lr": info.lr,
                   "seconds": round(info.seconds, 1)}
            history.append(row)
            print(json.dumps(row), f"eta {info.eta_seconds / 60:.1f} min", flush=True)
            (args.out / "log.json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
