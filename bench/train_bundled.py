"""Train a bundled model on simulated structures (the recipes in docs/training.md).

    python -m bench.train_bundled --steps 4000 --out bench/runs/demo                  # paired denoiser
    python -m bench.train_bundled --kind unpaired --steps 2500 --out bench/runs/demo-unpaired
    python -m bench.train_bundled --target sharp --init bench/runs/demo/model.safetensors \
        --steps 2000 --out bench/runs/widefield                                        # PI-DDPM pairs
    python -m bench.train_bundled --init demo-f2df213.safetensors --real DATA --lr 2e-4 --minutes 45 \
        --out bench/runs/real-prior/demo     # half of every batch from clean real images (bench/real_pairs.py)
    python -m bench.train_bundled --init demo-f2df213.safetensors --real DATA --objective mean ...  # its mean head

Writes <out>/model.safetensors (last), model-best.safetensors, the resumable state, and
log.json; re-running with --resume continues an interrupted run. Then
``python -m bench.train_bundled --ship bench/runs/demo/model.safetensors --name demo`` stores the
chosen checkpoint in float16 as the package's bundled model of that name.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from napari_diffdenoise.core.io.checkpoint import bundled_model_dir, load_model, save_checkpoint
from napari_diffdenoise.core.model.devices import resolve_device
from napari_diffdenoise.core.model.model import DiffusionModel
from napari_diffdenoise.core.model.network import NOISE_GAMMA, UNetConfig, count_parameters
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.training.pairs import TARGETS
from napari_diffdenoise.core.training.train_config import MEAN_LOSSES, TrainConfig
from napari_diffdenoise.core.training.training import iter_train

from . import care
from .training_data import PEAK_RANGE, simulated_source


def blend_weights(network, base, weight: float) -> dict:
    """``weight`` × ``network``'s parameters + (1 − ``weight``) × ``base``'s, in float32 (same architecture)."""
    if not 0 <= weight <= 1:
        raise ValueError(f"--mean-weight must be from 0 to 1; got {weight}")
    if base is None:
        raise ValueError("--mean-weight below 1 blends with the --ship checkpoint's own mean head, and it has none")
    mine, theirs = network.state_dict(), base.state_dict()
    return {k: weight * v.float() + (1 - weight) * theirs[k].float() if v.is_floating_point() else v
            for k, v in mine.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=192)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="simulator processes feeding the network (a GPU needs them)")
    parser.add_argument("--minutes", type=float, help="a time budget instead of --steps")
    parser.add_argument("--out", type=Path, default=Path("bench/runs/demo"))
    parser.add_argument("--prediction", choices=["eps", "v"], default="v")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kind", choices=["paired", "unpaired"], default="paired")
    parser.add_argument("--target", choices=TARGETS, default="blurred",
                        help="paired only: 'sharp' trains denoising + deconvolution (PI-DDPM's pairs)")
    parser.add_argument("--value-max", type=float, default=None,
                        help="upper x̂0 clip in model units (default 1.5; 12 for --target sharp)")
    parser.add_argument("--mean-fraction", type=float, default=0.0,
                        help="fraction of each batch that trains the one-evaluation posterior mean (TrainConfig)")
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights (same architecture)")
    parser.add_argument("--real", type=Path, metavar="DATA",
                        help="mix semi-synthetic pairs from the clean real images in this folder into every batch "
                             "(bench/real_pairs.py; the held-out validation images are never used)")
    parser.add_argument("--real-fraction", type=float, default=0.5, help="with --real: the real share of each batch")
    parser.add_argument("--real-min-cap", type=float, default=10.0,
                        help="with --real: use only planes whose photon cap (bench/real_pairs.photon_cap) is at least this")
    parser.add_argument("--objective", choices=["diffusion", "mean"], default="diffusion",
                        help="'mean': fine-tune the mean head of --init alone (its diffusion network is kept as it is)")
    parser.add_argument("--peak-max", type=float, default=PEAK_RANGE[1],
                        help="the training acquisitions' highest peak photon count (log-uniform from "
                             f"{PEAK_RANGE[0]:g}; real tiles stay under their own cap)")
    parser.add_argument("--mean-loss", choices=MEAN_LOSSES, default="mse",
                        help="the mean head's loss: 'relative' weighs each patch by its noisy input's error, so "
                             "bright (high-photon) patches count as much as dim ones")
    parser.add_argument("--relative-power", type=float, default=1.0,
                        help="with --mean-loss relative: the input error's power in the weight (below 1 leans "
                             "toward dim patches)")
    parser.add_argument("--mean-gamma", choices=["keep", "noise"], default="keep",
                        help="with --objective mean: 'noise' tells the head each input's own noise level through its "
                             "γ input (core.model.network.noise_gamma) instead of the --init head's constant")
    parser.add_argument("--name", default=None, help="model name (default: the --out folder's name)")
    parser.add_argument("--ship", type=Path, help="store this checkpoint as a bundled model (named --name) and exit")
    parser.add_argument("--mean-head", type=Path,
                        help="with --ship: attach this one-step network (bench/care.py's format) as the model's mean "
                             "head, the default estimate of the [mean] layer")
    parser.add_argument("--mean-weight", type=float, default=1.0,
                        help="with --mean-head: ship this share of its weights plus the rest of the --ship "
                             "checkpoint's own head's (a weight-space blend of a fine-tuned head and its "
                             "start, after Wortsman et al., 'Robust fine-tuning of zero-shot models', CVPR 2022)")
    parser.add_argument("--mean-recipe", default="bench/care.py (docs/training.md, 'The CARE baseline')",
                        help="with --mean-head: how the head was trained, stored in its provenance")
    parser.add_argument("--tile", type=int, default=512,
                        help="inference tile stored with the shipped model: on a CPU one 512² tile costs less than "
                             "the 3×3 overlapping 256² tiles a 512² plane would need (docs/benchmarks/speed.md)")
    args = parser.parse_args(argv)

    if args.ship:
        name = args.name or "demo"
        model = load_model(args.ship)
        model.name = name
        model.tile = args.tile
        if args.mean_head:
            blend = {}
            head, head_gamma = care.load(args.mean_head), care.gamma(args.mean_head)
            if args.mean_weight != 1.0:
                if head_gamma != model.mean_head_gamma:
                    parser.error(f"--mean-weight: the --mean-head's γ input ({head_gamma!r}) is not the --ship "
                                 f"head's ({model.mean_head_gamma!r}); heads fed differently do not blend")
                blend = {"weight": args.mean_weight, "rest_from_sha256": care.file_sha256(args.ship)}
                head.load_state_dict(blend_weights(head, model.mean_network, args.mean_weight))
            model.mean_network, model.mean_head_gamma = head, head_gamma
            model.mean_provenance = {"recipe": args.mean_recipe, "source_sha256": care.file_sha256(args.mean_head),
                                     **({"blend": blend} if blend else {}), **care.info(args.mean_head)}
            model.mean_estimator = "head"
        sha = save_checkpoint(model, bundled_model_dir() / f"{name}.safetensors", half=True)
        print(f"shipped {args.ship} as {name} ({sha[:12]})")
        return

    torch.manual_seed(0)
    name = args.name or args.out.name
    if args.kind == "unpaired" and args.target != "blurred":
        parser.error("--target sharp needs a paired model: the noisy image is its condition")
    value_max = args.value_max or (12.0 if args.target == "sharp" else 1.5)
    config = UNetConfig(cond_channels=1 if args.kind == "paired" else 0, base_channels=args.base_channels)
    model = DiffusionModel.create(config, NoiseSchedule("cosine", 200), kind=args.kind, name=name,
                                  prediction=args.prediction, value_range=(-1.5, value_max),
                                  task="deconvolve" if args.target == "sharp" else "denoise")
    if args.init:
        start = load_model(args.init)
        model.network.load_state_dict({k: v.float() for k, v in start.network.state_dict().items()})
        if args.objective == "mean":  # the head is what trains; the diffusion network rides along unchanged
            if start.mean_network is None:
                parser.error("--objective mean needs an --init checkpoint with a mean head")
            model.mean_network = start.mean_network.float()
            model.mean_estimator, model.mean_provenance = start.mean_estimator, dict(start.mean_provenance or {})
            model.mean_head_gamma = NOISE_GAMMA if args.mean_gamma == "noise" else start.mean_head_gamma
    elif args.objective == "mean":
        parser.error("--objective mean fine-tunes the mean head of an --init checkpoint")
    print(f"parameters: {count_parameters(model.network):,}", flush=True)
    peak_range = (PEAK_RANGE[0], args.peak_max)
    source, val_batch = simulated_source(args.kind, args.target, args.pool_size, args.patch_size, args.workers,
                                         peak_range)
    data = (f"simulated: nuclei, filaments, membranes, puncta; peak {peak_range[0]:g}-{peak_range[1]:g} photons; "
            "Gaussian PSF sigma 0.8-2 px")
    if args.real:
        import numpy as np

        from .real_pairs import HELD_OUT, mixed_source

        source, real_val = mixed_source(args.real, args.kind, source, args.patch_size, args.real_fraction,
                                        min_cap=args.real_min_cap)
        val_batch = tuple(np.concatenate([a[:16], b]) for a, b in zip(val_batch, real_val))  # 16 simulated + 16 real
        data += (f"; mixed {args.real_fraction:.0%} per batch with semi-synthetic pairs from clean real images "
                 f"(bench/real_pairs.py, planes with a photon cap >= {args.real_min_cap:g}: {', '.join(source.real.names)}); "
                 f"held out: {', '.join(HELD_OUT)}")
    train_config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, learning_rate=args.lr,
        # fed by workers (a GPU), 250 steps take seconds: a 36 MB state file that often would be I/O, not safety
        warmup_steps=args.warmup, checkpoint_every=250 if args.workers == 0 else 1000, validate_every=100,
        data_workers=args.workers, mean_fraction=args.mean_fraction, time_budget_s=args.minutes * 60 if args.minutes else None,
        objective=args.objective, mean_loss=args.mean_loss, relative_power=args.relative_power,
    )
    run = iter_train(
        model, source, train_config, val_batch=val_batch, checkpoint_path=args.out / "model.safetensors",
        resume=args.resume, provenance={
            "data": data, "pool_size": len(source.pool), "device": str(resolve_device("auto")),
            "target": "clean only (unpaired)" if args.kind == "unpaired" else args.target,
            "init": str(args.init) if args.init else None},
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
