"""A one-step posterior sampler distilled from the diffusion sampler (issue #21's "fewer evaluations
per sample"): train it, measure it beside the sampler on real images, ship it.

    python -m bench.sample_head train --minutes 40 --out bench/runs/sample-head
    python -m bench sample_head --net bench/runs/sample-head/sample_head.safetensors   # eval: the page
    python -m bench.sample_head ship --net bench/runs/sample-head/sample_head.safetensors

The teacher is the bundled model's default sampler (DDIM, 10 steps, η = 1) run on crops of its own
training mix (simulated structures and semi-synthetic pairs from clean real images,
bench/real_pairs.py); its samples are drawn once into a pool, and the head (core/sample_head.py: its
architecture, inputs and loss) learns to draw like it by the energy score, the mean head frozen.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from napari_diffdenoise.core.checkpoint import load_model
from napari_diffdenoise.core.network import UNet, count_parameters
from napari_diffdenoise.core.run_settings import DEFAULT_SAMPLER_SETTINGS
from napari_diffdenoise.core.sample_head import SAMPLE_HEAD_CONFIG as CONFIG
from napari_diffdenoise.core.sample_head import draw, multiscale_energy_score
from napari_diffdenoise.core.samplers import ddim

from .common import write_report

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def teacher_samples(model, noisy: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n samples of the default sampler per crop, (B, n, H, W), in model units."""
    params = DEFAULT_SAMPLER_SETTINGS["sampler_params"]
    b = len(noisy)
    cond = noisy.repeat_interleave(n, 0)

    def eps_fn(y, gamma):
        return model.predict_eps(y, torch.full((len(y),), gamma), cond)

    def noise_fn(shape):
        return torch.randn(shape, generator=generator)

    run = ddim(eps_fn, model.schedule, noise_fn((b * n, 1) + tuple(noisy.shape[-2:])), noise_fn,
               clip=model.value_range, **params)
    try:
        while True:
            next(run)
    except StopIteration as stop:
        return stop.value.reshape(b, n, *noisy.shape[-2:])


@torch.inference_mode()
def make_pool(model, source, size: int, patch: int, n: int, path: Path, chunk: int = 32) -> dict:
    """noisy, mean (the mean head's) and the teacher's n samples for ``size`` crops, saved to ``path``
    as it grows so that a killed run resumes."""
    pool = {k: v for k, v in load_file(str(path)).items()} if path.is_file() else {}
    done = len(pool.get("noisy", ()))
    rng = np.random.default_rng(1000 + done)
    generator = torch.Generator().manual_seed(2000 + done)
    t0 = time.perf_counter()
    while done < size:
        noisy, _clean = (torch.from_numpy(a) for a in source.batch(chunk, patch, rng))
        mean = model.predict_mean(noisy)
        teacher = teacher_samples(model, noisy, n, generator)
        part = {"noisy": noisy[:, 0], "mean": mean[:, 0], "teacher": teacher}
        pool = {k: torch.cat([pool[k], v]) if k in pool else v for k, v in part.items()}
        done = len(pool["noisy"])
        save_file({k: v.contiguous() for k, v in pool.items()}, str(path))
        print(json.dumps({"pool": done, "seconds": round(time.perf_counter() - t0)}), flush=True)
    return pool


def augment(batch: list[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    """The same flip and quarter turn for every array of the batch (the teacher is trained on both)."""
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = [torch.rot90(a, k, dims=(-2, -1)) for a in batch]
    return [a.flip(-1) for a in out] if flip else out


def spread_ratio(net: UNet, noisy, mean, teacher, m: int = 8) -> float:
    """The median over pixels of the student's sample std over the teacher's."""
    with torch.no_grad():
        z = torch.randn((len(noisy) * m, 1) + tuple(noisy.shape[-2:]), generator=torch.Generator().manual_seed(5))
        s = draw(net, z, noisy[:, None].repeat_interleave(m, 0), mean[:, None].repeat_interleave(m, 0))
        s = s.reshape(len(noisy), m, *noisy.shape[-2:])
    return float((s.std(dim=1) / teacher.std(dim=1).clamp_min(1e-6)).median())


def train(args):
    from .real_pairs import mixed_source
    from .training_data import simulated_source

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model)
    model.network.float().eval()
    model.mean_network.float().eval()
    simulated, _ = simulated_source("paired", "blurred", 192, args.patch)
    source, _ = mixed_source(args.real, "paired", simulated, args.patch, 0.5)
    args.out.mkdir(parents=True, exist_ok=True)
    pool = make_pool(model, source, args.pool, args.patch, args.teacher_samples, args.out / "pool.safetensors")
    n_val = min(128, len(pool["noisy"]) // 4)
    val = [pool[k][:n_val] for k in ("noisy", "mean", "teacher")]
    train_idx = np.arange(n_val, len(pool["noisy"]))
    net = UNet(CONFIG)
    print(f"sample head: {count_parameters(net):,} parameters; pool {len(train_idx)} + {n_val} held out", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    t0, step, log = time.perf_counter(), 0, []
    budget = args.minutes * 60
    m = args.student_samples
    while time.perf_counter() - t0 < budget:
        frac = (time.perf_counter() - t0) / budget
        for group in opt.param_groups:
            group["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.from_numpy(rng.choice(train_idx, args.batch, replace=False))
        noisy, mean, teacher = augment([pool["noisy"][idx], pool["mean"][idx], pool["teacher"][idx]], rng)
        z = torch.randn((len(idx) * m, 1) + tuple(noisy.shape[-2:]))
        student = draw(net, z, noisy[:, None].repeat_interleave(m, 0), mean[:, None].repeat_interleave(m, 0))
        loss = multiscale_energy_score(student.reshape(len(idx), m, *noisy.shape[-2:]), teacher)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            net.eval()
            with torch.no_grad():
                z = torch.randn((n_val * m, 1) + tuple(val[0].shape[-2:]), generator=torch.Generator().manual_seed(3))
                s = draw(net, z, val[0][:, None].repeat_interleave(m, 0), val[1][:, None].repeat_interleave(m, 0))
                val_loss = float(multiscale_energy_score(s.reshape(n_val, m, *val[0].shape[-2:]), val[2]))
            ratio = spread_ratio(net, *val)
            net.train()
            log.append({"step": step, "loss": loss.item(), "val_energy": val_loss, "spread_ratio": ratio,
                        "seconds": round(time.perf_counter() - t0)})
            print(json.dumps(log[-1]), flush=True)
            save_file(net.state_dict(), str(args.out / "sample_head.safetensors"),
                      metadata={"config": json.dumps(CONFIG.to_dict()), "steps": str(step)})
            (args.out / "log.json").write_text(json.dumps(log))


def load_net(path: Path) -> UNet:
    net = UNet(CONFIG)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="eval", choices=["train", "eval", "ship"],
                        help="eval (the default) writes docs/benchmarks/sample_head.md")
    parser.add_argument("--real", type=Path, default=REAL, help="the real data folder (bench/real_pairs.py)")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--out", type=Path, default=Path("bench/runs/sample-head"))
    parser.add_argument("--net", type=Path, help="a trained sample head (eval: default the model's own; ship: required)")
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--pool", type=int, default=3072, help="crops the teacher samples once")
    parser.add_argument("--teacher-samples", type=int, default=4)
    parser.add_argument("--student-samples", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    {"train": train}[args.command](args)


if __name__ == "__main__":
    main()
