"""A one-step posterior sampler distilled from the diffusion sampler (issue #21's "fewer evaluations
per sample"): train it, measure it beside the sampler on real images, ship it.

    python -m bench.sample_head train --minutes 40 --out bench/runs/sample-head
    python -m bench sample_head --net bench/runs/sample-head/sample_head.safetensors   # eval: the page
    python -m bench.sample_head ship --net bench/runs/sample-head/sample_head.safetensors

The teacher is the bundled model's default sampler (DDIM, 10 steps, η = 1) run on crops of its own
training mix (simulated structures and semi-synthetic pairs from clean real images,
bench/real_pairs.py); its samples are drawn once into a pool, and the head (core/sampling/sample_head.py: its
architecture, inputs and loss) learns to draw like it by the energy score, the mean head frozen.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from napari_diffdenoise.core.io.checkpoint import load_model
from napari_diffdenoise.core.model.network import UNet, count_parameters
from napari_diffdenoise.core.run.run_settings import DEFAULT_SAMPLER_SETTINGS
from napari_diffdenoise.core.sampling.sample_head import SAMPLE_HEAD_CONFIG as CONFIG
from napari_diffdenoise.core.sampling.sample_head import draw, multiscale_energy_score
from napari_diffdenoise.core.sampling.samplers import ddim

from .common import head_file_steps, markdown_table, optimiser_step, ship_head, write_report

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
BELL_95 = 0.2  # bits: the negentropy one bell curve of K = 8 samples stays below 95 % of the time


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
    config = dataclasses.replace(CONFIG, base_channels=args.base_channels) if args.base_channels else CONFIG
    net = UNet(config)
    print(f"sample head: {count_parameters(net):,} parameters; pool {len(train_idx)} + {n_val} held out", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    t0, step, log = time.perf_counter(), 0, []
    budget = args.minutes * 60
    m = args.student_samples
    while time.perf_counter() - t0 < budget:
        frac = (time.perf_counter() - t0) / budget
        idx = torch.from_numpy(rng.choice(train_idx, args.batch, replace=False))
        noisy, mean, teacher = augment([pool["noisy"][idx], pool["mean"][idx], pool["teacher"][idx]], rng)
        z = torch.randn((len(idx) * m, 1) + tuple(noisy.shape[-2:]))
        student = draw(net, z, noisy[:, None].repeat_interleave(m, 0), mean[:, None].repeat_interleave(m, 0))
        loss = multiscale_energy_score(student.reshape(len(idx), m, *noisy.shape[-2:]), teacher)
        optimiser_step(opt, net, loss, args.lr, frac)
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
                      metadata={"config": json.dumps(config.to_dict()), "steps": str(step)})
            (args.out / "log.json").write_text(json.dumps(log))


def load_net(path: Path) -> UNet:
    """A trained head, its architecture from the file's own metadata."""
    from safetensors import safe_open

    from napari_diffdenoise.core.model.network import UNetConfig

    with safe_open(str(path), "pt") as f:
        config = UNetConfig.from_dict(json.loads((f.metadata() or {})["config"]))
    net = UNet(config)
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def ship(args):
    """Attach the sample head to the bundled model (float16, as the package stores its models); the
    calibrations stay: the heads' route is keyed without the sampler, and the sampler's own ones are
    the DDIM sampler's."""
    if args.net is None:
        raise SystemExit("ship needs --net: the sample head file to attach")
    ship_head(args.model, "sample_network", load_net(args.net), args.net, {
        "recipe": "bench/sample_head.py train (docs/training.md, 'The sample head')",
        "teacher": {"sampler": DEFAULT_SAMPLER_SETTINGS["sampler"], **DEFAULT_SAMPLER_SETTINGS["sampler_params"]},
        "data": "the teacher's samples of crops of the bundled model's training mix: simulated structures and "
                "semi-synthetic pairs from clean real images (bench/real_pairs.py), 50 % each"}, "val_energy")


def evaluate(args):
    from scipy import stats

    from napari_diffdenoise.core.run.restore import denoise

    from .std_head import oracle_width, real_cases

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if args.net:
        model = dataclasses.replace(model, sample_network=load_net(args.net))
    where = (f"{args.net.name}, {head_file_steps(args.net)} steps" if args.net else
             f"the one `{args.model}` ships, {model.sample_provenance.get('steps', '?')} steps")
    rows, records = [], []
    for label, noisy, truth, _camera, _static, tau2, _registered in real_cases(args.real, args.size):
        runs, seconds = {}, {}
        # the samplers named: with the sample head attached, the model's own default is the student
        for name, kw in (("teacher", {"std": "samples", "sampler": "ddim"}),
                         ("teacher, seed 1", {"std": "samples", "sampler": "ddim", "seed": 1}),
                         ("student", {"std": "samples", "sampler": "one-step"}),
                         ("default", {"sampler": "ddim"}), ("default, one-step", {"sampler": "one-step"})):
            t0 = time.perf_counter()
            runs[name] = denoise(noisy, model, **{"seed": 0, **kw})
            seconds[name] = time.perf_counter() - t0
        err = np.abs(runs["teacher"].mean - truth).astype(np.float64).ravel()
        # a frame truth's own noise is not asked to be covered (as bench/std_head.py and real_calibration.py)
        tau2 = np.broadcast_to(tau2, truth.shape).ravel()
        t, t1, st = runs["teacher"], runs["teacher, seed 1"], runs["student"]

        def rho(a, b):
            return float(stats.spearmanr(np.ravel(a), np.ravel(b))[0])

        rec = {"case": label, "rho_teacher": rho(t.std, err), "rho_student": rho(st.std, err),
               "width_ratio": (oracle_width(err, st.interval_unit.ravel(), tau2=tau2)
                               / oracle_width(err, t.interval_unit.ravel(), tau2=tau2)),
               "spread_ratio": float(np.median(st.std / np.maximum(t.std, 1e-12))),
               "entropy_rho_teacher_seeds": rho(t1.entropy, t.entropy), "entropy_rho_student": rho(st.entropy, t.entropy),
               "flagged_teacher": float(np.mean(t.entropy > BELL_95)), "flagged_student": float(np.mean(st.entropy > BELL_95)),
               "std_head_identical": bool(np.array_equal(runs["default"].std, runs["default, one-step"].std)),
               "seconds": seconds}
        records.append(rec)
        print(json.dumps(rec), flush=True)
        rows.append([label, rec["rho_teacher"], rec["rho_student"], rec["width_ratio"], rec["spread_ratio"],
                     rec["entropy_rho_teacher_seeds"], rec["entropy_rho_student"], rec["flagged_teacher"],
                     rec["flagged_student"], seconds["default"], seconds["default, one-step"]])
    rows.append(["median", *[float(np.median([r[j] for r in rows])) for j in range(1, 11)]])
    same = all(r["std_head_identical"] for r in records)
    body = (f"Model `{args.model}`; sample head: {where} ({count_parameters(model.sample_network):,} parameters). "
            f"Centre crops of {args.size}², the held-out real cases of bench/real_calibration.py (re-acquired at 3, 10 "
            "and 30 photons with exact truth; lysosome frame 30 against the mean of frames 29 and 31). The teacher is "
            "the default sampler (DDIM, 10 steps, η = 1, K = 8); the student the sample head, sampler 'one-step', "
            "K = 8. ρ: Spearman of the samples' std (std='samples') with the mean's |error|. Width: the oracle width "
            "of the 90 % interval mean ± λ·unit from the samples (λ chosen on the truth; a frame truth's own noise, "
            "which no interval for the signal is asked to cover, accounted for as in bench/real_calibration.py), "
            "student over teacher. "
            "Spread: the median over pixels of the student's sample std over the teacher's. Entropy: the default "
            f"entropy map (negentropy, bits): Spearman with the teacher's (seed 0) for the teacher at seed 1 (what "
            f"agreement the map's own sampling noise allows) and for the student; flagged: the share of pixels above "
            f"{BELL_95} bits, the 95th percentile for one bell curve at K = 8 (docs/benchmarks/entropy.md). "
            "Seconds: the default run (mean, std and intervals from the heads, entropy from the samples) with each "
            "sampler, on this machine as the bench ran. With the heads' std the std and intervals are "
            f"{'identical' if same else 'NOT identical'} under both samplers on every case.\n\n"
            + markdown_table(["case", "ρ teacher", "ρ student", "width student / teacher", "spread student / teacher",
                              "entropy ρ teacher seeds", "entropy ρ student", "flagged teacher", "flagged student",
                              "default s (DDIM)", "default s (one-step)"], rows))
    write_report("sample_head", "A one-step sampler distilled from DDIM, beside it on real images", body,
                 {"records": records})


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
    parser.add_argument("--base-channels", type=int, default=0,
                        help="train: the head's width (0: core.sampling.sample_head.SAMPLE_HEAD_CONFIG's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    {"train": train, "eval": evaluate, "ship": ship}[args.command](args)


if __name__ == "__main__":
    main()
