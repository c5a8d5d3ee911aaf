"""The command line, ``napari-diffdenoise <command>``: its commands are the subparsers :func:`build_parser` declares."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    from .core.run.methods import METHODS

    p.add_argument("--model", default="demo", help="bundled model name or checkpoint path (default: demo); or a "
                   "method that needs no model: " + "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()))
    from .core.sampling.sampler_registry import SAMPLERS

    lines = []
    for info in SAMPLERS.values():
        takes = ", ".join(f"{q.name} ({q.accepted(_NOMINAL)})" for q in info.params) or "no parameters"
        lines.append(f"{info.name} [{'/'.join(info.model_kinds)}]: {takes}")
    p.add_argument("--sampler-param", action="append", default=[], metavar="NAME=VALUE",
                   help="a sampler's parameter (repeatable). " + "; ".join(lines) + ". Bounds given as T are the "
                        "model's step count")
    _add_run_settings(p)
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    _add_psf_args(p)
    _add_method_args(p)


def _add_method_args(p: argparse.ArgumentParser) -> None:
    """One option per parameter a method declares (core.run.methods), for --model <method>."""
    from .core.run.methods import METHODS

    for method in METHODS.values():
        for param in method.params:
            p.add_argument(f"--{param.name.replace('_', '-')}", dest=param.name, default=None,
                           type=param.type if param.type in (int, float) else None,
                           help=f"{method.name}: {param.help} (default: {param.default})".replace("%", "%%"))


def _add_run_settings(p: argparse.ArgumentParser) -> None:
    """One option per run setting the declaration gives a flag (core.run.run_spec): its type, default,
    choices and help come from there."""
    from .core.run.run_spec import cli_settings

    for setting in cli_settings():
        default = setting.default
        shown = "" if default is None else f" (default: {default})"
        help_text = (setting.help + shown).replace("%", "%%")  # argparse formats help with %
        if setting.type is bool:
            p.add_argument(setting.flag, dest=setting.name, action="store_true", help=help_text)
            continue
        p.add_argument(setting.flag, dest=setting.name, default=default, help=help_text,
                       type=setting.type if setting.type in (int, float) else None,
                       choices=[c for c in setting.options() if c is not None] or None)  # None: the default


_NOMINAL = type("NominalSchedule", (), {"n_steps": "T"})()  # for help text: bounds that depend on the model


def _add_psf_args(p: argparse.ArgumentParser) -> None:
    from .core.run.run_spec import PSF_SIGMA

    p.add_argument("--psf", help="PSF image (any format the input may be in, e.g. TIFF)")
    p.add_argument("--na", type=float, help="numerical aperture (Airy PSF from the optics)")
    p.add_argument("--wavelength", type=float, default=520.0, help="emission wavelength, nm")
    p.add_argument("--pixel", type=float, default=100.0, help="pixel size in the sample, nm")
    p.add_argument("--confocal", action="store_true", help="confocal PSF: excitation × (emission ∗ pinhole)")
    p.add_argument("--excitation", type=float, default=488.0, help="confocal: excitation wavelength, nm")
    p.add_argument("--pinhole", type=float, default=1.0, help="confocal: pinhole diameter in Airy units")
    p.add_argument("--psf-sigma", type=float, help=PSF_SIGMA.help.replace("%", "%%"))


def _psf_from_args(args):
    """The PSF from a file, the optics (Airy / confocal) or a Gaussian σ; None when none is given."""
    from .core.imaging import physics

    for name in ("pixel", "wavelength", "excitation", "pinhole", "na", "psf_sigma"):
        value = getattr(args, name, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number; got {value}")
    if args.na is not None and args.na > physics.MOST_NA:
        raise ValueError(f"--na must be at most {physics.MOST_NA:g} (oil immersion); got {args.na}")
    if args.psf:
        return np.squeeze(read_image(args.psf)[0])
    if args.na:
        if args.confocal:
            return physics.confocal_psf(args.na, args.excitation, args.wavelength, args.pixel, args.pinhole)
        return physics.airy_psf(args.na, args.wavelength, args.pixel)
    if args.psf_sigma:
        return physics.gaussian_psf(args.psf_sigma)
    return None


def _parse_value(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _parse_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--sampler-param takes NAME=VALUE, got {pair!r}")
        params[name] = _parse_value(value)
    return params


_PROGRESS_LINE_OPEN = [False]  # whether a progress line has been written, which ends without a newline


def _progress_line(text: str) -> None:
    """``text`` on stderr with no newline, over the line before it where it starts with '\r'."""
    print(text, end="", file=sys.stderr, flush=True)
    _PROGRESS_LINE_OPEN[0] = True


def _fitted(text: str, kept: str = "") -> str:
    """``text`` then ``kept`` as one line a terminal does not wrap: ``text`` cut (with '…') to leave ``kept`` whole,
    the rest padded to clear a longer line before it. A calibration's progress, its part named, ran to 100–120
    characters, and each update of a wrapped line left a new one. Not a terminal (a log): as it is."""
    import shutil

    if not sys.stderr.isatty():
        return text + kept
    width = shutil.get_terminal_size().columns - 1
    room = max(width - len(kept), 10)
    return (text if len(text) <= room else text[:room - 1] + "…").ljust(room) + kept


def _progress_printer():
    last, start = [-1.0], time.monotonic()

    def show(info):
        pct = round(100 * info.fraction, 1)
        if pct != last[0]:
            last[0] = pct
            elapsed = time.monotonic() - start
            left = f"  {_clock(elapsed * (1 - info.fraction) / info.fraction)} left" if info.fraction > 0.01 else ""
            _progress_line("\r" + _fitted(f"  {info.where}", f"  {pct:5.1f}%{left}".ljust(18)))

    return show


def _restore(image, args, psf=None, axes=None):
    from . import denoise

    spec, method_params = _run_from_args(args, psf)
    result = denoise(image, args.model, spec=spec, axes=axes, progress=_progress_printer(), **method_params)
    print(file=sys.stderr)
    return result


def read_image(path, axes: str | None = None) -> tuple[np.ndarray, object]:
    """(image in memory, its ImageSource) from any file core.io.image_io opens: TIFF, OME-Zarr, or a
    microscope's .czi, .nd2, .lif, .ims (the formats extra)."""
    from .core.io.image_io import open_image

    source = open_image(path, axes)
    return np.asarray(source.data), source


def output_stem(input_path: str | Path) -> str:
    """The input's whole name without its format's ending: a.1.tif → a.1, .hidden.tif → .hidden,
    cell.czi → cell."""
    from .core.io.microscope_files import BIOIO_PLUGINS

    name = Path(input_path).name
    for ending in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".ome.zarr", ".zarr", *BIOIO_PLUGINS, ".ims"):
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return name


def cmd_demo(args) -> int:
    """Restore a bundled simulated sample and report the gain over the noisy input: the low-light
    stack with the ``demo`` model, or the blurred widefield stack with the ``widefield`` model,
    PSF-guided, beside Richardson–Lucy."""

    from .core.imaging.demo_data import sample_stack, widefield_stack
    from .core.imaging.metrics import psnr_fitted
    from .core.io.preview import contact_sheet
    from .core.run.deconvolution import richardson_lucy

    psf, extra = None, {}
    if args.sample == "widefield":
        noisy, clean, psf = widefield_stack()
        args.model = "widefield" if args.model == "demo" else args.model
        extra["Richardson-Lucy"] = richardson_lucy(noisy, psf, iterations=20)
        stem, what = "widefield", "blurred (Gaussian PSF σ = 1.6 px), ~30 photons at peak"
    else:
        noisy, clean = sample_stack()
        stem, what = "sample", "~8 photons at peak"
    out = Path(args.out)
    # the PSF goes to a sampler that takes one: the model's default (ddim-dc for widefield) or the one asked
    from .core.io.checkpoint import load_model
    from .core.io.maps import map_names
    from .core.run.restore import make_settings
    from .core.sampling.sampler_registry import SAMPLERS

    model = load_model(args.model)
    psf = psf if SAMPLERS[args.sampler or model.default_sampler].needs_psf else None
    # the maps this run will make (core.io.maps), known before any work so that none is written over
    names = map_names(make_settings(model, spec=_run_from_args(args, psf)[0]))
    from .core.io.tiff_maps import refuse_existing

    refuse_existing([out / f"{stem}_{n}.tif" for n in (*names, "noisy", "truth")]
                     + [out / f"{stem}_overview.png", out / (f"{stem}_report.json" if stem != "sample" else "report.json")],
                     args.overwrite)
    print(f"sample: {noisy.shape[0]} planes of {noisy.shape[1]}×{noisy.shape[2]}, {what}", file=sys.stderr)
    t0 = time.perf_counter()
    args.model = model
    result = _restore(noisy, args, psf)
    seconds = time.perf_counter() - t0
    from .core.io.tiff_maps import record_json, write_maps

    paths = write_maps(out, stem, result.maps, metadata=result.metadata, overwrite=args.overwrite)
    paths += write_maps(out, stem, {"noisy": noisy, "truth": clean}, overwrite=args.overwrite)
    rows, report = [], []
    for z in range(len(noisy)):
        gain = psnr_fitted(result.mean[z], clean[z]) - psnr_fitted(noisy[z], clean[z])
        report.append({"plane": z, "psnr_noisy": psnr_fitted(noisy[z], clean[z]),
                       "psnr_mean": psnr_fitted(result.mean[z], clean[z]), "gain_db": gain,
                       **{f"psnr_{k}": psnr_fitted(v[z], clean[z]) for k, v in extra.items()}})
        rows.append([("noisy", noisy[z]), (f"mean ({gain:+.1f} dB)", result.mean[z]),
                     *[(f"{k} ({psnr_fitted(v[z], clean[z]) - report[-1]['psnr_noisy']:+.1f} dB)", v[z])
                       for k, v in extra.items()],
                     *[(name, m[z]) for name, m in result.maps.items() if name not in ("mean", "lower", "upper")],
                     ("truth", clean[z])])
    png = contact_sheet(rows, out / f"{stem}_overview.png")
    report_path = out / f"{stem}_report.json" if stem != "sample" else out / "report.json"
    report_path.write_text(json.dumps(json.loads(record_json({"seconds": seconds, "planes": report,
                                                              **result.metadata})), indent=1))
    for r in report:
        print(f"plane {r['plane']}: PSNR noisy {r['psnr_noisy']:.2f} dB → mean {r['psnr_mean']:.2f} dB "
              f"({r['gain_db']:+.2f} dB)")
    print(f"{seconds:.1f} s; wrote {', '.join(str(p) for p in [*paths, png, report_path])}")
    return 0


def _settings_from_args(args) -> dict:
    """The make_settings keywords the sampling options give, and a method's own parameters for
    --model <method> (core.run.methods)."""
    from .core.run.methods import METHODS, find_method
    from .core.run.run_spec import cli_settings

    settings = {**{setting.name: getattr(args, setting.name) for setting in cli_settings()},
                "sampler_params": _parse_params(args.sampler_param), "psf": _psf_from_args(args)}
    method = find_method(args.model)
    given = {p.name: getattr(args, p.name) for m in METHODS.values() for p in m.params
             if getattr(args, p.name, None) is not None}
    if method is None and given:
        raise ValueError(f"--{', --'.join(given)} belong(s) to {', '.join(METHODS)}, not to a diffusion model: "
                         "leave it out, or choose --model " + " or ".join(METHODS))
    if method is not None and method.needs_psf and settings["psf"] is None:
        raise ValueError(f"{method.name} needs a PSF: --psf FILE, --na with --wavelength and --pixel, or --psf-sigma")
    return {**settings, **given}


def _run_from_args(args, psf=None):
    """(the run's settings the options give as one :class:`~.core.run.run_keywords.RunSpec`, a method's
    own parameters): the library checks the very value the CLI built, as it would a caller's."""
    from .core.run.run_keywords import RunSpec, split_run_settings

    settings, method_params = split_run_settings(_settings_from_args(args))
    return RunSpec(**{**settings, **({"psf": psf} if psf is not None else {})}), method_params


def _batch_printer():
    last = [0.0]

    def show(info):
        now = time.monotonic()
        if now - last[0] < 0.5 and info.fraction < 1:
            return
        last[0] = now
        left = f", {_clock(info.seconds_left)} left" if info.seconds_left is not None else ""
        _progress_line("\r" + _fitted(f"  {info.planes_done}/{info.n_planes} planes  {100 * info.fraction:5.1f}%  "
                                      f"{info.text}", left.ljust(16)))

    return show


def _clock(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _is_zarr_output(path: str) -> bool:
    return path.rstrip("/\\").lower().endswith(".zarr")


def _intervals_model(args, keep: contextlib.ExitStack):
    """The model the run takes: ``args.model`` as given, or calibrated on the input where
    core.calibration.on_image.calibrates_on_image says so (a bundled model's calibrations were made on other
    data: core.calibration.on_image.iter_model_for_files, which writes it for --workers), saying which."""
    from .core.calibration.on_image import calibrates_on_image, iter_model_for_files
    from .core.calibration.self_calibration import said_of_second
    from .core.io.checkpoint import load_model
    from .core.run.driving import drive
    from .core.run.methods import find_method

    if args.coverage is None:
        if args.calibrate_on_image:
            raise ValueError("--self-calibrate calibrates intervals: give --coverage too (e.g. --coverage 0.9)")
        if args.second is not None:
            raise ValueError("--second is an acquisition the intervals are calibrated against: give --coverage too")
        return args.model
    if find_method(args.model) is not None:
        return args.model
    model = load_model(args.model)
    settings = _run_from_args(args)[0].settings()
    if not calibrates_on_image(model, settings, args.calibrate_on_image):
        if args.second is not None:
            from .core.calibration.on_image import not_on_image_because

            fix = "--self-calibrate instead of --stored-calibration" if args.calibrate_on_image is False else \
                "--self-calibrate too"
            raise ValueError("--second is what the intervals are calibrated against on the image, which this run does "
                             f"not calibrate on: {not_on_image_because(model, settings, args.calibrate_on_image)}. "
                             f"Give {fix}")
        print(f"intervals from the model's calibration: {_stored_source(model, args)}", file=sys.stderr)
        return args.model
    from .core.calibration.on_image import check_coverage_on_image

    check_coverage_on_image(args.coverage, model.schedule)  # before the calibration's tens of seconds, not after them
    printer, announced = _progress_printer(), []

    def progress(info) -> None:  # said once the calibration has begun: a resumed store's is taken, not made
        if not announced:
            print(f"self-calibrating on {args.input}" + (f" and against {args.second} (a second acquisition of the "
                                                          "same field)" if args.second is not None else ""),
                  file=sys.stderr)
            announced.append(True)
        printer(info)

    started = time.perf_counter()
    resume = args.out if _is_zarr_output(args.out) and not args.overwrite else None
    made, _ = drive(iter_model_for_files(model, args.input, settings, axes=args.axes, calibrate_on_image=True,
                                         second=args.second, workers=args.workers, scheduler=args.scheduler, keep=keep,
                                         resume=resume), progress)
    if not made.resumed:
        args.calibrating_seconds = time.perf_counter() - started  # the run's own seconds leave it out
        print(file=sys.stderr)
    print(f"calibration: {made.source}", file=sys.stderr)  # the calibration's source names the planes
    if made.axes_guessed and "T" not in made.axes:
        print(f"  (the file does not say what its axes are: read as {made.axes}; a time series is calibrated on "
              f"its frames too when --axes names T, e.g. --axes {made.axes.replace('Z', 'T', 1)})", file=sys.stderr)
    if made.second_differs is not None:
        print(f"  {said_of_second(made.second_differs)}", file=sys.stderr)
    return made.model


def _stored_source(model, args) -> str:
    from .core.run.run_settings import make_settings

    return make_settings(model, **_run_from_args(args)[0].settings()).calibration.source


def cmd_denoise(args) -> int:
    """Any image open_image reads in; TIFF maps in a folder, or an OME-Zarr store written plane by plane (resumable,
    optionally on a dask.distributed cluster). Intervals (--coverage) are calibrated on the input unless the model
    holds a calibration of the user's own (core.calibration.on_image)."""
    from .core.io.output_lock import one_run_into
    from .core.run.batch import check_outputs_free, check_threads
    from .core.run.cpu_share import same_bits, torch_threads

    stem = None if _is_zarr_output(args.out) else output_stem(args.input)
    # refused outputs are refused before the calibration on the image (tens of seconds), not after it
    check_outputs_free(args.input, args.out, stem=stem, overwrite=args.overwrite)
    # the file's maps are the same bits on every run, the calibration they are scaled by too (resumes check them);
    # the output is this run's from its calibration on
    check_threads(args.threads)  # before it is set for the calibration
    # the calibration on the image takes the run's --threads too (it took torch's default whatever they said)
    with one_run_into(args.out, stem, handed_on=True), contextlib.ExitStack() as keep, same_bits(), \
            torch_threads(args.threads):
        args.model = _intervals_model(args, keep)
        return _denoise_files(args)


def _denoise_files(args) -> int:
    spec, method_params = _run_from_args(args)
    if _is_zarr_output(args.out):
        from .core.run.batch import denoise_to_zarr

        meta = denoise_to_zarr(args.input, args.out, args.model, spec=spec, axes=args.axes, overwrite=args.overwrite,
                               workers=args.workers, scheduler=args.scheduler, threads=args.threads,
                               progress=_batch_printer(), **method_params)
        print(file=sys.stderr)
        resumed = f" ({meta['planes_resumed']} done by an earlier run)" if meta["planes_resumed"] else ""
        print(f"wrote {args.out}: {meta['n_planes']} planes{resumed}{_took(meta, args)}")
        _say_of_the_run(meta)
        return 0
    if args.workers is not None or args.scheduler is not None:
        raise ValueError("--workers and --scheduler write an OME-Zarr store: give --out a path ending in .zarr")
    from .core.run.batch import denoise_to_tiff

    # the maps keep the input's pixel sizes and channel names (denoise_to_tiff's default)
    meta, paths = denoise_to_tiff(args.input, args.out, args.model, stem=output_stem(args.input), spec=spec,
                                  axes=args.axes, overwrite=args.overwrite, threads=args.threads,
                                  progress=_batch_printer(), **method_params)
    print(file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in paths) + _took(meta, args))
    if meta.get("earlier_maps_removed"):
        print(f"removed {', '.join(meta['earlier_maps_removed'])}: an earlier run's maps of this input, which this "
              "run does not make (--overwrite replaces the whole set)", file=sys.stderr)
    _say_of_the_run(meta)
    return 0


def _took(meta: dict, args) -> str:
    """' in X s' of a file run, and the calibration on the image before it where there was one (a small image's
    calibration takes longer than its run, and the run's seconds alone read as the whole wait)."""
    calibrating = getattr(args, "calibrating_seconds", None)
    took = f" in {meta['seconds']:.1f} s" if "seconds" in meta else ""
    return took + (f", after {calibrating:.1f} s calibrating on the image" if calibrating is not None else "")


def _say_of_the_run(meta: dict) -> None:
    """What the run's record says of its hot pixels and of its [mean]'s refinement, on stderr."""
    from .core.imaging.hot_pixels import said
    from .core.imaging.pilot_wiener import said as refinement_said

    found = said(meta)
    if found:
        print(found + " (--hot-pixels replace: their neighbours' median)", file=sys.stderr)
    refined = refinement_said(meta)
    if refined:
        print(refined, file=sys.stderr)


def cmd_simulate(args) -> int:
    from .core.imaging.simulate import SIDES, Acquisition, simulate_pair
    from .core.io.tiff_maps import write_maps

    if not SIDES[0] <= args.size <= SIDES[1]:
        raise ValueError(f"--size must be {SIDES[0]} to {SIDES[1]} px; got {args.size}")
    if args.seed < 0:
        raise ValueError(f"--seed must be 0 or more; got {args.seed}")
    acq = Acquisition(peak_photons=args.photons, psf_sigma=args.psf_sigma)
    noisy, clean = simulate_pair(args.kind, (args.size, args.size), acq, seed=args.seed)
    out = Path(args.out)
    write_maps(out, args.kind, {"noisy": noisy, "clean": clean}, overwrite=args.overwrite)
    print(f"wrote {out}/{args.kind}_noisy.tif and _clean.tif")
    return 0


def _read_stack(paths: list[str] | None):
    return None if not paths else [read_image(p)[0] for p in paths]


def checkpoint_out(out: str | Path, inputs, overwrite: bool) -> Path:
    """``--out`` of a command that writes a checkpoint (train, adapt): a .safetensors file, none of the files
    the run reads (``inputs``: images, a model file), and not one already there unless ``overwrite``. With
    --overwrite and its input as --out, train once wrote its checkpoint over the clean image it trained on."""
    from .core.training.run_files import best_path, state_path

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors; got {out.name}")
    if out.is_dir():  # with --overwrite the run went on to its first checkpoint and failed on writing it there
        raise ValueError(f"--out {out} is a folder; give a file name ending in .safetensors")
    written = {p.resolve() for p in (out, best_path(out), state_path(out))}
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve() in written:
            raise ValueError(f"--out {out} would write over {given}, which this run reads; choose another --out")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
    return out


def _say_held_out(images, val_fraction: float, patch_size: int) -> None:
    """How much of ``images`` the validation strips hold out: at least a patch a plane, more than the fraction asks
    on a small plane. Nothing where the training refuses the fraction or the planes (its check says which)."""
    from .core.training.datasets import held_out_share
    from .core.training.finetune import VAL_FRACTION

    try:
        share = held_out_share(images, VAL_FRACTION.check(val_fraction, None), patch_size) if val_fraction else None
    except ValueError:
        return
    if share is not None:
        more = "" if share < val_fraction + 0.01 else ", more than --val-fraction asks"
        print(f"validation: {share:.0%} of the pixels held out (the last rows, or columns, of each plane: at least one "
              f"{patch_size} px patch{more})", file=sys.stderr)


def cmd_train(args) -> int:
    """Fine-tune (or train from scratch) on paired images, or on clean images with simulated noise.
    Under ``torchrun --nproc_per_node N`` the N processes share every batch (DDP, core.training.distributed)."""
    from . import NoiseModel, train
    from .core.training import distributed
    from .core.training.run_files import best_path
    from .core.training.train_config import scaled_config

    # (an existing --out without --overwrite or --resume: the training's own refusal names its best and state files)
    checkpoint_out(args.out, [*(args.noisy or []), *(args.clean or []), args.model], True)
    args.device = distributed.init_from_env(args.device)
    main_rank = distributed.is_main()

    noisy, clean = _read_stack(args.noisy), _read_stack(args.clean)
    config = scaled_config(args.steps, batch_size=args.batch_size, patch_size=args.patch_size,
                           learning_rate=args.learning_rate, ema_decay=args.ema_decay, seed=args.seed)
    noise = NoiseModel(photons=tuple(args.photons), psf_sigma=args.psf_sigma)

    said = []

    def show(info):
        if not main_rank:
            return
        if not said:  # once the training has taken its data and settings: said before, it came ahead of refusals
            said.append(True)
            _say_held_out(clean if clean is not None else noisy, args.val_fraction, config.patch_size)
        if info.step % max(1, info.total_steps // 100) == 0 or info.step == info.total_steps:
            val = f"  val {info.val_loss:.4f}" if info.val_loss is not None else ""
            _progress_line(f"\r  step {info.step}/{info.total_steps}  loss {info.train_loss:.4f}{val}  "
                           f"{info.eta_seconds / 60:.1f} min left")

    start = None if args.model == "scratch" else args.model
    result = train(noisy, clean, model=start, noise_model=noise, config=config, val_fraction=args.val_fraction,
                   output=args.out, resume=args.resume, device=args.device, kind=args.kind, progress=show,
                   overwrite=args.overwrite)
    if main_rank:
        print(file=sys.stderr)
        beside = best_path(Path(args.out))
        best = ("no validation (--val-fraction 0): no -best file" if result.best_val_loss is None else
                f"best validation loss {result.best_val_loss:.5g}, its weights beside it as {beside.name}"
                if beside.exists() else f"best validation loss {result.best_val_loss:.5g}; its weights are not "
                f"beside it ({beside.name} is missing: removed, or never written)")
        print(f"wrote {args.out} ({best})")
    return 0


def cmd_adapt(args) -> int:
    """Adapt a model to noisy images alone (core.training.adapt) and save it."""
    from .core.io.checkpoint import save_checkpoint
    from .core.training.adapt import adapt, judge_shortfall

    out = checkpoint_out(args.out, [*args.noisy, args.model], args.overwrite)
    read = [read_image(p) for p in args.noisy]
    images = [image for image, _ in read]
    # one file whose axes it names: the recalibration takes each of its channels on its own, a T axis's frames too
    axes = read[0][1].axes if len(read) == 1 and not read[0][1].axes_guessed else None
    last = [-1.0]

    def show(info):
        if info.message:  # the verdict, printed with the file written below
            return
        if info.phase:  # before the steps, a series' registrations (a line each); after them, the refined [mean]'s judge
            start = "\r" if info.before_steps else "\n"
            _progress_line(f"{start}  {info.phase}  {info.seconds:.0f} s")
            if info.before_steps and info.before_steps[0] == info.before_steps[1]:
                print(file=sys.stderr)  # the steps' line starts with \r: it would overwrite this one
        elif info.seconds - last[0] >= 1 or info.step == info.total_steps:
            last[0] = info.seconds
            total = f"/{info.total_steps}" if info.total_steps else ""
            val = f"  validation {info.val_loss:.5f}" if info.val_loss is not None else ""
            _progress_line(f"\r  step {info.step}{total}  loss {info.train_loss:.5f}{val}  {info.seconds:.0f} s")

    from .core.io.checkpoint import load_model
    from .core.training.adapt_spec import check_adapt

    # the arguments first, as the widget checks them: the note below was computed with a patch size then refused
    start = load_model(args.model)
    check_adapt(start, images if len(images) > 1 else images[0],
                minutes=None if args.steps else args.minutes, steps=args.steps, patch_size=args.patch_size,
                val_fraction=args.val_fraction)
    shortfall = judge_shortfall(images if len(images) > 1 else images[0], patch_size=args.patch_size,
                                val_fraction=args.val_fraction)
    if shortfall is not None:  # said before the minutes are spent, not only in the verdict after them
        print(f"note: {shortfall}", file=sys.stderr)
    model = adapt(start, images if len(images) > 1 else images[0], minutes=None if args.steps else args.minutes,
                  steps=args.steps, seed=args.seed, recalibrate=not args.no_recalibrate, axes=axes, progress=show,
                  device=args.device, patch_size=args.patch_size, val_fraction=args.val_fraction,
                  frame_pairs=args.frame_pairs)
    print(file=sys.stderr)
    model.name = out.stem
    save_checkpoint(model, out)
    noise = model.provenance["adapted"]["noise_model"]
    adapted = model.provenance["adapted"]
    print(f"wrote {out}: noise model var = {noise['gain']:.4g}·level {noise['floor']:+.4g}; {adapted['steps']} steps; "
          + adapted.get("decision", {}).get("message", f"kept step {adapted['best_step']}"))
    return 0


def cmd_export(args) -> int:
    """A bioimage.io model package (spec 0.5) of the model's one-pass posterior mean."""
    from .core.io.bioimageio_export import export_bioimageio

    sample = read_image(args.sample)[0] if args.sample else None
    if sample is not None and sample.ndim > 2:
        sample = sample.reshape((-1,) + sample.shape[-2:])[0]
    path = export_bioimageio(args.model, args.out, sample=sample, overwrite=args.overwrite)
    print(f"wrote {path}: check it with `bioimageio test {path}`; napari-diffdenoise loads it back as a model")
    return 0


def cmd_models(args) -> int:
    from . import list_models, load_model

    for name in list_models():
        m = load_model(name)
        print(f"{name}: {m.kind}, {m.network.config.base_channels} base channels, schedule {m.schedule.kind} "
              f"T={m.schedule.n_steps}, sha256 {m.sha256[:12]}")
    return 0


def _formats() -> str:
    """The input formats, for the help texts."""
    from .core.io.microscope_files import BIOIO_PLUGINS, FORMATS_EXTRA

    return f"TIFF, OME-Zarr, or a microscope's {', '.join([*BIOIO_PLUGINS, '.ims'])} ({FORMATS_EXTRA})"


def build_parser() -> argparse.ArgumentParser:
    formats = _formats()
    parser = argparse.ArgumentParser(
        prog="napari-diffdenoise",
        description="Restore noisy fluorescence images with diffusion models, with pixel-wise uncertainty; "
                    "`napari-diffdenoise <command> --help` for each command.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="restore a bundled simulated sample; write TIFF maps and a PNG overview")
    p.add_argument("--sample", choices=["low-light", "widefield"], default="low-light",
                   help="low-light: denoise with the demo model; widefield: PSF-guided deconvolution with the "
                        "widefield model, beside Richardson-Lucy")
    p.add_argument("--out", default="demo_output")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("denoise", help="denoise an image (any of the axes T, C, Z, Y, X); write "
                                       "<name>_mean/_std/_entropy.tif, or an OME-Zarr store")
    p.add_argument("input", help=f"the image: {formats}; a zarr array works too")
    p.add_argument("--out", default=".",
                   help="a folder for TIFF maps, or a path ending in .zarr for an OME-Zarr store written plane by "
                        "plane (a killed run resumes where it stopped)")
    p.add_argument("--axes", default=None,
                   help="the input's axes, e.g. TZYX (default: from the file's metadata, else ZYX/TZYX/TCZYX by the "
                        "number of dimensions)")
    p.add_argument("--workers", type=int, default=None,
                   help="run the planes on a local dask.distributed cluster of N processes (OME-Zarr output)")
    p.add_argument("--scheduler", default=None,
                   help="run the planes on a running dask.distributed cluster at this address, e.g. "
                        "tcp://10.0.0.5:8786; every worker must see the input and --out paths")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per plane (default: torch's, no more than the CPUs this process may use, "
                        "a container's CPU quota included); the same count gives "
                        "bit-identical results wherever the planes run")
    from .core.calibration.self_calibration import CALIBRATION_PLANES

    where = p.add_mutually_exclusive_group()
    where.add_argument("--self-calibrate", dest="calibrate_on_image", action="store_const", const=True,
                       help="with --coverage: calibrate the intervals on this image first, from residuals against an "
                            "independent noisy view (consecutive frames when the input has a T axis, else recorrupted "
                            f"copies of up to {CALIBRATION_PLANES} planes), each channel of a C axis on its own; costs "
                            "about one extra run of those planes per channel. The default unless the model holds a "
                            "calibration of your own (made on your truth or your images), the run is guided, or it "
                            "deconvolves (a deconvolving model or a PSF: residuals against the blurred image count "
                            "the blur as error, so such a run takes its stored calibration and is refused without "
                            "one unless this is given)")
    where.add_argument("--stored-calibration", dest="calibrate_on_image", action="store_const", const=False,
                       help="with --coverage: take the model's stored calibration for these settings (a bundled "
                            "model's was made on other data) instead of calibrating on this image")
    p.add_argument("--second", default=None, metavar="FILE",
                   help="with --coverage: another acquisition of the same field (the input's shape, its noise "
                        "independent of the input's): the intervals are also calibrated against it, the wider "
                        "interval kept at each level; one more run of the calibrated planes")
    _add_sampling_args(p)
    p.set_defaults(func=cmd_denoise)
    p = sub.add_parser("simulate", help="write a simulated noisy/clean pair as TIFFs")
    p.add_argument("--kind", default="nuclei", choices=["nuclei", "filaments", "membranes", "puncta", "rings"])
    p.add_argument("--photons", type=float, default=10.0, help="expected photons at the brightest pixel")
    p.add_argument("--psf-sigma", type=float, default=1.2, help="Gaussian PSF σ in pixels")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".")
    p.add_argument("--overwrite", action="store_true", help="replace the pair's files if they exist")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("train", help="fine-tune a model on paired images, or on clean images with simulated noise")
    p.add_argument("--noisy", nargs="+", help=f"low-light images (2 to 5 dims: every plane is a training image; "
                                              f"{formats}); omit for clean-only training")
    p.add_argument("--clean", nargs="+", required=True, help="clean images, paired with --noisy in order")
    p.add_argument("--kind", default="paired", choices=["paired", "unpaired"],
                   help="unpaired: an unconditional model learnt from --clean only (guided sampling, Baikal)")
    p.add_argument("--model", default="default",
                   help="start from this bundled name or checkpoint, or 'scratch' (default: demo if paired; widefield "
                        "for clean images with --psf-sigma above 0; demo-unpaired for --kind unpaired)")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors); -best and .state files go beside it")
    from .core.imaging.simulate import NoiseModel

    for flag, option in training_flags().items():
        p.add_argument(flag, dest=option.name, type=option.type, default=option.default,
                       help=f"{option.help} (default {option.default:g})".replace("%", "%%"))
    simulated = NoiseModel()
    p.add_argument("--photons", type=float, nargs=2, default=simulated.photons,
                   help="clean-only: simulated peak photons")
    p.add_argument("--psf-sigma", type=float, default=simulated.psf_sigma,
                   help="clean-only: extra blur of the noisy side (px)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's files at --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("adapt", help="adapt a model to your noisy images alone (no clean image needed)")
    p.add_argument("noisy", nargs="+", help=f"noisy images (2 to 5 dims) of the data the model is for: {formats}")
    p.add_argument("--out", required=True, help="the adapted model (.safetensors)")
    p.add_argument("--model", default="demo", help="the model to start from (default: demo; it needs a mean head)")
    from .core.training.adapt_spec import FRAME_PAIRS, MINUTES

    p.add_argument("--minutes", type=float, default=MINUTES.default,
                   help=f"{MINUTES.help} (default {MINUTES.default:g})")
    p.add_argument("--steps", type=int, help="a fixed step count instead of minutes (reproducible under --seed)")
    for flag in ("--patch-size", "--val-fraction"):  # what a small image needs
        option = training_flags()[flag]
        p.add_argument(flag, dest=option.name, type=option.type, default=option.default,
                       help=f"{option.help} (default {option.default:g})".replace("%", "%%"))
    p.add_argument("--frame-pairs", action=argparse.BooleanOptionalAction, default=FRAME_PAIRS,
                   help="a time series with frames to train on beside those held out to judge: train on each frame "
                        "against its neighbours registered onto it (Noise2Noise), not on recorrupted pairs of it "
                        f"(default {'on' if FRAME_PAIRS else 'off'}; see docs/method.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-recalibrate", action="store_true",
                   help="skip recalibrating the intervals on the image's own residuals (recorrupted pairs of it) after adapting")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_adapt)
    p = sub.add_parser("deconvolve", help="Richardson-Lucy deconvolution of an image, plane by plane (no model "
                                          "needed): denoise --model richardson-lucy, writing <name>_mean.tif")
    p.add_argument("input", help=f"the image: {formats}")
    _add_psf_args(p)
    _add_method_args(p)
    p.add_argument("--axes", default=None, help="the input's axes, e.g. TZYX (default: from the file)")
    p.add_argument("--out", default=".")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    from .core.run.methods import RICHARDSON_LUCY
    from .core.run.run_spec import cli_settings

    # what denoise reads of the options deconvolve does not offer: their defaults, which a method takes
    p.set_defaults(func=cmd_denoise, model=RICHARDSON_LUCY.name, sampler_param=[], calibrate_on_image=None, second=None,
                   workers=None, scheduler=None, threads=None, **{setting.name: setting.default for setting in cli_settings()})
    p = sub.add_parser("export", help="export a model to the BioImage Model Zoo format (a .zip, spec 0.5)")
    p.add_argument("--model", default="demo", help="bundled model name or checkpoint path (it needs a mean head)")
    p.add_argument("--out", required=True, help="the package, ending in .zip")
    p.add_argument("--sample", help="an image (e.g. a TIFF) for the package's test image and cover (default: the "
                                    "bundled demo)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("models", help="list the bundled models")
    p.set_defaults(func=cmd_models)
    return parser


def training_flags() -> dict:
    """{flag: the training setting it sets (core.training.finetune)}, for train (all) and adapt (some)."""
    from .core.training.finetune import BATCH_SIZE, EMA_DECAY, LEARNING_RATE, PATCH_SIZE, STEPS, VAL_FRACTION

    return {"--steps": STEPS, "--batch-size": BATCH_SIZE, "--patch-size": PATCH_SIZE, "--lr": LEARNING_RATE,
            "--ema": EMA_DECAY, "--val-fraction": VAL_FRACTION}


def in_the_clis_words(message: str) -> str:
    """A library message about a run or training setting, named by its keyword ("n_samples must be …"), with the
    option that sets it on the command line (RunParam.flag, training_flags): "--samples (n_samples) must be …"."""
    from .core.run.run_spec import cli_settings, named_as

    flags = {setting.name: setting.flag for setting in cli_settings()}
    flags.update({option.name: flag for flag, option in training_flags().items()})
    # options of one command each, not run or training settings: a PSF file (_add_psf_args), adapt's budget, the
    # seed of train and adapt, the simulated photons of clean-only training
    flags.update(psf="--psf", minutes="--minutes", seed="--seed", photons="--photons")
    renamed = named_as(message, flags)
    if renamed != message:
        return renamed
    if message.startswith("noisy: "):  # the calibration's keyword for the image; here it is the input file
        return "the input image: " + message[len("noisy: "):]
    # a sampler or method that needs the PSF: the library's message names its keyword and functions
    needs = re.match(r"(.*? needs )(?:the PSF the image was blurred with \(psf=…\)|psf=…, the point spread function)",
                     message)
    if needs:
        return (f"{needs.group(1)}the PSF the image was blurred with: give --psf FILE (a measured bead image), "
                "--psf-sigma PX, or --na with --wavelength and --pixel (--confocal for a confocal PSF)")
    return message


def _terminated(signum, frame):
    """SIGTERM (a batch scheduler's time limit, `kill`) stops a run as Ctrl-C does: its writers clean up on the way
    out (it left a TIFF run's hidden part-written maps, as large as the stack)."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    _PROGRESS_LINE_OPEN[0] = False  # this command's own lines
    here = threading.current_thread() is threading.main_thread()  # signal handlers are the main thread's alone
    previous = signal.signal(signal.SIGTERM, _terminated) if here else None
    try:
        return args.func(args)
    except (ValueError, OSError, TypeError, RuntimeError) as err:
        # on a line of its own after a progress line, which ends with '\r' ("0.1 min lefterror: …" was missed)
        opened = "\n" if _PROGRESS_LINE_OPEN[0] else ""
        print(f"{opened}error: {in_the_clis_words(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the writers have cleaned up on the way out (temporary files, a store's open plane)
        print("\ninterrupted (Ctrl-C, or a SIGTERM)", file=sys.stderr)
        return 130
    finally:
        if here:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
