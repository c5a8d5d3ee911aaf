"""The bad-input matrix: every row is an input a careful user tried, the surface it went through,
and the message it must get. tests/test_bad_inputs.py runs every row; scripts/bad_input_table.py
writes docs/bad-inputs.md from the same rows and the messages they actually produce."""
from __future__ import annotations

import json
import struct

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.imaging.physics import gaussian_psf
from napari_diffdenoise.core.imaging.simulate import simulate_pair
from napari_diffdenoise.core.io.image_io import open_image


def _tiny():
    import torch

    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    torch.manual_seed(0)
    return DiffusionModel.create(UNetConfig(cond_channels=1, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                            fourier_features=8), NoiseSchedule("cosine", 50), name="tiny", tile=64)


IMAGE = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16)


def _lib(image=IMAGE, **kw):
    return lambda: denoise(image, kw.pop("model", None) or _tiny(), **kw)


def _lazy_zeros(shape):
    import dask.array as da

    return da.zeros(shape, dtype=np.uint16, chunks=(4096, 4096))


def _calibrate_small():
    from napari_diffdenoise import calibrate

    clean = np.full((8, 8), 20.0, np.float32)
    return lambda: calibrate(_tiny(), IMAGE[:8, :8].astype(np.float32), clean, coverage=0.99, n_samples=2, steps=2)


def _checkpoint(tmp, meta_edit=None, nan=False, raw_meta=None):
    """A tiny checkpoint with edited metadata or NaN weights, written to ``tmp``; returns a loader."""
    from safetensors.torch import save_file

    from napari_diffdenoise.core.io.checkpoint import METADATA_KEY

    model = _tiny()
    tensors = {f"net.{k}": v.contiguous() for k, v in model.network.state_dict().items()}
    if nan:
        first = next(k for k in tensors if tensors[k].is_floating_point() and tensors[k].ndim > 1)
        tensors[first] = tensors[first].clone().fill_(float("nan"))
    meta = model.metadata()
    if meta_edit:
        meta_edit(meta)
    path = tmp / "bad.safetensors"
    save_file(tensors, str(path), metadata={METADATA_KEY: raw_meta if raw_meta is not None else json.dumps(meta)})
    return lambda: load_model(path)


def _pickle(tmp):
    path = tmp / "model.pt"
    path.write_bytes(b"\x80\x04" + struct.pack("<Q", 8) + b"not read")
    return lambda: load_model(path)


def _big(meta):
    meta["architecture"]["base_channels"] = 100_000


def _bad_schedule(meta):
    meta["schedule"]["kind"] = "quadratic"


def _cli(tmp, *args):
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp / "in.tif", IMAGE)
    return lambda: main([a.replace("IN", str(tmp / "in.tif")).replace("OUT", str(tmp)) for a in args])


def _cli_file(tmp, name, content, *args):
    """The CLI's denoise on a file ``name`` holding ``content`` (bytes, or a function writing the file)."""
    from napari_diffdenoise.cli import main

    path = tmp / name
    path.write_bytes(content) if isinstance(content, bytes) else content(path)
    return lambda: main(["denoise", str(path), "--out", str(tmp / "out"), *args])


def _cut_hyperstack(path):
    import tifffile

    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 500, (4, 4, 64, 64), dtype=np.uint16), imagej=True,
                     metadata={"axes": "TZYX"})
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])


def _hdf5_not_imaris(path):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("image", data=IMAGE)


def _czi(path):
    from pylibCZIrw import czi

    with czi.create_czi(str(path), exist_ok=True) as writer:
        for c in range(2):
            writer.write(IMAGE, plane={"C": c})
        writer.write_metadata()


def _without_module(name, make):
    """``make``'s call with the module ``name`` unimportable, as when an optional extra is not installed."""
    import sys

    def call():
        saved = sys.modules.get(name)
        sys.modules[name] = None
        try:
            return make()
        finally:
            if saved is None:
                del sys.modules[name]
            else:
                sys.modules[name] = saved
    return call


def _tiny_checkpoint(tmp):
    from napari_diffdenoise.core.io.checkpoint import save_checkpoint

    path = tmp / "tiny.safetensors"
    save_checkpoint(_tiny(), path)
    return str(path)


def _cli_image(tmp, image, *args, **imwrite):
    """The CLI on ``image`` written as IN (a TIFF), with the tiny model."""
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp / "in.tif", image, **imwrite)
    model = _tiny_checkpoint(tmp)
    return lambda: main([a.replace("IN", str(tmp / "in.tif")).replace("OUT", str(tmp / "out")) for a in args]
                        + ["--model", model, "--samples", "1", "--steps", "1"])


def _zarr_input(path, data=None):
    import zarr

    data = np.random.default_rng(1).poisson(5, (3, 32, 32)).astype(np.uint16) if data is None else data
    array = zarr.create_array(str(path), shape=data.shape, chunks=(1,) + data.shape[1:], dtype=data.dtype)
    array[...] = data
    return path


FAST = dict(n_samples=1, steps=1)


def _to_zarr(input_path, output_path, **kw):
    from napari_diffdenoise.core.run.batch import denoise_to_zarr

    return denoise_to_zarr(input_path, output_path, _tiny(), **FAST, **kw)


def _to_tiff(input_path, folder, stem, **kw):
    from napari_diffdenoise.core.run.batch import denoise_to_tiff

    return denoise_to_tiff(input_path, folder, _tiny(), stem=stem, **FAST, **kw)


def _cli_out_is_input(tmp):
    from napari_diffdenoise.cli import main

    source, model = str(_zarr_input(tmp / "in.zarr")), _tiny_checkpoint(tmp)
    return lambda: main(["denoise", source, "--out", source, "--overwrite", "--model", model, "--samples", "1",
                         "--steps", "1"])


def _store_holding_input(tmp):
    import tifffile

    (tmp / "out.zarr").mkdir()
    tifffile.imwrite(tmp / "out.zarr" / "in.tif", IMAGE)
    return lambda: _to_zarr(tmp / "out.zarr" / "in.tif", tmp / "out.zarr", overwrite=True)


def _map_is_input(tmp):
    import tifffile

    tifffile.imwrite(tmp / "x_mean.tif", IMAGE)  # the mean map of stem "x" would be this very file
    return lambda: _to_tiff(tmp / "x_mean.tif", tmp, "x", overwrite=True)


def _write_over_users_folder(tmp):
    from napari_diffdenoise._zarr_io import write_image

    (tmp / "keep.zarr").mkdir()
    (tmp / "keep.zarr" / "notes.txt").write_text("a user's file")
    return lambda: write_image(str(tmp / "keep.zarr"), np.zeros((16, 16), np.float32), {})


def _simulate_over(tmp):
    from napari_diffdenoise.cli import main

    (tmp / "nuclei_noisy.tif").write_bytes(b"the user's own image")
    return lambda: main(["simulate", "--size", "32", "--out", str(tmp)])


def _lib_rl(psf):
    from napari_diffdenoise import denoise

    return lambda: denoise(IMAGE, "richardson-lucy", psf=psf)


def _cli_psf(tmp, psf):
    import tifffile

    tifffile.imwrite(tmp / "psf.tif", psf)
    return _cli(tmp, "deconvolve", "IN", "--psf", str(tmp / "psf.tif"), "--out", "OUT")


def _cli_without_psf(tmp):
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp / "in.tif", IMAGE)
    return lambda: main(["denoise", str(tmp / "in.tif"), "--sampler", "ddim-dc", "--out", str(tmp / "out")])


def _adapt_args(*args):
    def make(tmp):
        import tifffile

        from napari_diffdenoise.cli import main

        tifffile.imwrite(tmp / "small.tif", np.random.default_rng(1).poisson(5, (48, 48)).astype(np.uint16))
        return lambda: main(["adapt", str(tmp / "small.tif"), "--out", str(tmp / "a.safetensors"), "--steps", "1",
                             *args])
    return make


def _simulate_args(*args):
    def make(tmp):
        from napari_diffdenoise.cli import main

        return lambda: main(["simulate", *args, "--out", str(tmp / "out")])
    return make


def _demo_over(tmp):
    from napari_diffdenoise.cli import main

    (tmp / "sample_mean.tif").write_bytes(b"an earlier result")
    return lambda: main(["demo", "--out", str(tmp), "--samples", "1", "--steps", "1"])


def _tiffs(tmp, *images):
    import tifffile

    for name, image in zip("ab", images):
        tifffile.imwrite(tmp / f"{name}.tif", image)


def _resume_other_input(tmp):
    rng = np.random.default_rng(2)
    _tiffs(tmp, rng.poisson(5, (2, 32, 32)).astype(np.uint16), rng.poisson(5, (2, 32, 32)).astype(np.uint16))
    _to_zarr(tmp / "a.tif", tmp / "out.zarr")
    return lambda: _to_zarr(tmp / "b.tif", tmp / "out.zarr")


def _resume_edited_input(tmp):
    rng = np.random.default_rng(2)
    _tiffs(tmp, rng.poisson(5, (2, 32, 32)).astype(np.uint16))
    _to_zarr(tmp / "a.tif", tmp / "out.zarr")
    _tiffs(tmp, rng.poisson(5, (2, 32, 32)).astype(np.uint16))  # edited in place, same shape and dtype
    return lambda: _to_zarr(tmp / "a.tif", tmp / "out.zarr")


def _partial_store_name(tmp):
    import zarr

    from napari_diffdenoise._zarr_io import read_zarr

    _tiffs(tmp, np.random.default_rng(2).poisson(5, (3, 32, 32)).astype(np.uint16))
    _to_zarr(tmp / "a.tif", tmp / "run.zarr")
    zarr.open_group(str(tmp / "run.zarr"), mode="r+")["done"][1] = False  # as a run killed mid-way leaves it
    return lambda: read_zarr(tmp / "run.zarr")[0][1]["name"]


def _self_calibrate_thin():
    from napari_diffdenoise import calibrate

    return lambda: calibrate(_tiny(), IMAGE[:4].astype(np.float32), n_samples=2, steps=2)


def _calibration(factors):
    return [{"settings": {"sampler": "ddim", "params": {"steps": 10, "eta": 1.0}, "mean_estimator": "samples",
                          "n_samples": 8}, "coverages": [0.5, 0.9], "factors": factors,
             "held_out_coverage": [0.5, 0.9], "held_out_width": [1.0, 2.0], "source": "user pairs", "n_pixels": 10}]


def _edit(path, value):
    """A metadata edit: ``path`` is a tuple of keys into the metadata."""
    def edit(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


class _Pairs:
    def batch(self, batch_size, patch_size, rng):
        clean = rng.random((batch_size, 1, patch_size, patch_size)).astype(np.float32) * 2 - 1
        return (clean + 0.3 * rng.standard_normal(clean.shape)).astype(np.float32), clean


TRAIN = dict(batch_size=2, patch_size=32, warmup_steps=1, checkpoint_every=2)


def _train(tmp, steps=2, model=None, resume=False, **config):
    from napari_diffdenoise.core.training.train_config import TrainConfig
    from napari_diffdenoise.core.training.training import iter_train

    run = iter_train(model or _tiny(), _Pairs(), TrainConfig(**{**TRAIN, "steps": steps, **config}),
                     checkpoint_path=tmp / "run.safetensors", resume=resume, device="cpu")
    return [info.step for info in run]


def _cli_train_into_folder(tmp):
    import tifffile

    from napari_diffdenoise.cli import main

    tifffile.imwrite(tmp / "in.tif", IMAGE)
    (tmp / "x.safetensors").mkdir()
    return lambda: main(["train", "--noisy", str(tmp / "in.tif"), "--clean", str(tmp / "in.tif"), "--out",
                         str(tmp / "x.safetensors"), "--overwrite", "--steps", "1"])


RGB = np.random.default_rng(1).poisson(5, (64, 64, 3)).astype(np.float32)


def _train_rgb(tmp):
    from napari_diffdenoise import train

    return lambda: train(RGB, RGB, model=_tiny(), output=tmp / "m.safetensors")


def _adapt_rgb(tmp):
    from napari_diffdenoise import adapt, load_model

    return lambda: adapt(load_model("demo"), RGB, steps=1)


def _tiff_stem_outside(tmp):
    import tifffile

    from napari_diffdenoise import denoise_to_tiff

    tifffile.imwrite(tmp / "in.tif", IMAGE)
    return lambda: denoise_to_tiff(tmp / "in.tif", tmp / "maps", "demo", stem="../x", n_samples=0)


def _tiff_pixel_bad(tmp):
    import tifffile

    from napari_diffdenoise import denoise_to_tiff

    tifffile.imwrite(tmp / "in.tif", IMAGE)
    return lambda: denoise_to_tiff(tmp / "in.tif", tmp / "maps", "demo", stem="in", pixel={"scale": "big"},
                                   n_samples=0)


def _export_into_folder(tmp):
    from napari_diffdenoise.core.io.bioimageio_export import export_bioimageio

    (tmp / "x.zip").mkdir()
    return lambda: export_bioimageio("demo", tmp / "x.zip", overwrite=True)


def _resume_with(tmp, first: dict, again: dict):
    _train(tmp, **first)
    return lambda: _train(tmp, resume=True, **again)


def _other_architecture():
    import torch

    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    torch.manual_seed(0)
    return DiffusionModel.create(UNetConfig(cond_channels=1, base_channels=4, channel_mults=(1, 2), emb_dim=16,
                                            fourier_features=8), NoiseSchedule("cosine", 50), name="tiny", tile=64)


def _unwritable(tmp):
    (tmp / "a-file").write_text("not a folder")
    from napari_diffdenoise.core.training.train_config import TrainConfig
    from napari_diffdenoise.core.training.training import iter_train

    run = iter_train(_tiny(), _Pairs(), TrainConfig(**{**TRAIN, "steps": 2}),
                     checkpoint_path=tmp / "a-file" / "run.safetensors", device="cpu")
    return lambda: next(run)


def _rename_fails(tmp):
    """A second run with --overwrite whose last rename fails (a file locked, a disk error)."""
    import os
    from unittest import mock

    run = _cli_image(tmp, np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.uint16), "denoise", "IN",
                     "--out", "OUT", "--overwrite")
    run()
    real = os.replace

    def entropy_fails(src, dst):
        if str(src).endswith(".partial") and str(dst).endswith("_entropy.tif"):
            raise OSError(5, "Input/output error")
        real(src, dst)

    def again():
        with mock.patch("os.replace", entropy_fails):
            return run()

    return again


# (row id, surface, what the user gave, a function of a temporary folder returning the call, the
# exception type (or "exit 2" for the CLI), a regex the message must match)
ROWS = [
    ("image-none", "library", "image=None", lambda t: _lib(None), TypeError, "got None"),
    ("image-masked", "library", "a numpy masked array", lambda t: _lib(np.ma.masked_less(IMAGE, 2)), TypeError,
     "masked arrays are not supported"),
    ("image-rgb", "library", "an RGB image (64, 64, 3)", lambda t: _lib(np.zeros((64, 64, 3))), ValueError,
     "looks like an RGB"),
    ("image-yxc", "library", "(Y, X, C) with C = 8", lambda t: _lib(np.zeros((64, 64, 8))), ValueError,
     r"looks like \(Y, X, C\) with 8 channels"),
    ("image-empty", "library", "a (0, 16, 16) stack", lambda t: _lib(np.zeros((0, 16, 16))), ValueError, "empty"),
    ("image-tiny", "library", "a 4×4 plane", lambda t: _lib(np.zeros((4, 4))), ValueError, "at least 8×8"),
    ("image-nan", "library", "NaN pixels", lambda t: _lib(np.full((16, 16), np.nan)), ValueError, "NaN"),
    ("image-text", "library", "an array of strings", lambda t: _lib(np.array([["a"] * 16] * 16)), TypeError, "numeric"),
    ("samples-fraction", "library", "n_samples=2.5", lambda t: _lib(n_samples=2.5), ValueError,
     r"n_samples must be a whole number from 0 to 4096; got 2.5"),
    ("seed-none", "library", "seed=None", lambda t: _lib(seed=None), ValueError, "seed must be a whole number"),
    ("seed-negative", "library", "seed=-1", lambda t: _lib(seed=-1), ValueError, r"seed must be a whole number of at least 0; got -1"),
    ("model-none", "library", "model=None", lambda t: (lambda: denoise(IMAGE, None)), TypeError,
     "model must be a DiffusionModel"),
    ("tile-7", "library", "tile=7 with the bundled demo", lambda t: _lib(tile=7, model=load_model("demo")), ValueError,
     "tile must be at least 16 pixels for this model; got 7"),
    ("steps-0", "library", "steps=0", lambda t: _lib(steps=0), ValueError, "steps must be a whole number from 1 to 50; got 0"),
    ("steps-fraction", "library", "steps=2.5", lambda t: _lib(steps=2.5), ValueError, "steps must be a whole number"),
    ("eta-nan", "library", "eta=NaN", lambda t: _lib(eta=float("nan")), ValueError, "eta must be a number from 0 to 1"),
    ("guidance-huge", "library", "ddim-dc guidance=1e30", lambda t: _lib(sampler="ddim-dc", psf=gaussian_psf(1.0),
     sampler_params={"guidance": 1e30}), ValueError, "guidance must be a number from 0 to 100"),
    ("eta-not-taken", "library", "eta for a sampler without η (ddpm)", lambda t: _lib(sampler="ddpm", eta=0.5),
     ValueError, "has no parameter 'eta'"),
    ("psf-unused", "library", "a PSF with ddim", lambda t: _lib(psf=gaussian_psf(1.0)), ValueError,
     "does not use a PSF"),
    ("psf-missing", "library", "ddim-dc without a PSF", lambda t: _lib(sampler="ddim-dc"), ValueError,
     "needs the PSF"),
    ("psf-bead-stack", "library", "RL with a 3D bead stack as the PSF", lambda t: _lib_rl(np.ones((3, 9, 9))),
     ValueError, r"psf must be a 2D image \(Y, X\); got shape \(3, 9, 9\): give one plane of the bead stack"),
    ("psf-path", "library", "psf='bead.tif' (a path)", lambda t: _lib_rl("bead.tif"), ValueError,
     "psf must be an image .*got the path 'bead.tif': read it first"),
    ("psf-offset-negative", "library", "a PSF below 0 (camera offset taken off too far)",
     lambda t: _lib_rl(gaussian_psf(1.0) - 0.01), ValueError, "psf must be non-negative; its smallest value is"),
    ("psf-bead-stack-cli", "CLI", "deconvolve --psf a 3D bead stack",
     lambda t: _cli_psf(t, np.ones((3, 9, 9), np.float32)), "exit 2",
     r"--psf \(psf\) must be a 2D image \(Y, X\); got shape \(3, 9, 9\)"),
    ("psf-missing-cli", "CLI", "denoise --sampler ddim-dc without a PSF", _cli_without_psf, "exit 2",
     "needs the PSF the image was blurred with: give --psf FILE .*--psf-sigma PX, or --na"),
    ("sampler-unknown", "library", "sampler='magic'", lambda t: _lib(sampler="magic"), ValueError, "unknown sampler"),
    ("device-missing", "library", "device='cuda:7' on a machine without it", lambda t: _lib(device="cuda:7"),
     ValueError, "not available"),
    ("coverage-uncalibrated", "library", "coverage=0.9, calibrate_on_image=False on an uncalibrated model",
     lambda t: _lib(coverage=0.9, calibrate_on_image=False), ValueError, "has no calibration"),
    ("calibrate-on-image-word", "library", "calibrate_on_image='yes'",
     lambda t: _lib(coverage=0.9, calibrate_on_image="yes"), TypeError, "calibrate_on_image must be True, False or None"),
    ("second-without-coverage", "library", "second= without coverage", lambda t: _lib(second=IMAGE),
     ValueError, "second is an acquisition the intervals are calibrated against on the image, which this run does not "
                 "calibrate on: it asks for no intervals"),
    ("self-calibrate-tiny", "library", "calibrate(model, noisy) on a 4×32 plane (the noise fit's blocks are 8²)",
     lambda t: _self_calibrate_thin(), ValueError, r"noisy: planes must be at least 8×8 pixels, got \(4, 32\)"),
    ("calibrate-too-few-pixels", "library", "calibrate on an 8×8 pair at coverage 0.99 (λ came out ∞)",
     lambda t: _calibrate_small(), ValueError, "coverage 0.99 needs at least 99 calibration pixels"),
    ("coverage-range", "library", "coverage=1.5", lambda t: _lib(coverage=1.5), ValueError,
     "coverage must be a number from 0.01 to 0.999"),
    ("memory", "library", "K = 64 on a 4097² plane", lambda t: _lib(np.zeros((4097, 4097), np.float32), n_samples=64),
     MemoryError, "needs about .* GiB"),
    ("memory-whole-plane", "library", "a lazy 80000² plane (blocks of 4096², but the plane is read whole)",
     lambda t: _lib(_lazy_zeros((80000, 80000))), MemoryError, "one 80000×80000 plane is read whole and needs about"),
    ("values-overflow", "library", "float64 values ±1e308 (their span overflows)",
     lambda t: _lib(np.where(IMAGE > 4, 1e308, -1e308)), ValueError, "beyond what can be normalised"),
    ("values-unresolvable", "library", "uint64 counts near 2⁶³ with a 9-count signal",
     lambda t: _lib(IMAGE.astype(np.uint64) + np.uint64(2**63)), ValueError, "float64 cannot resolve"),
    ("fb-start-0", "library", "fb with start=0 (the input back, std 0)", lambda t: _lib(
     model=_unpaired(), sampler="fb", sampler_params={"start": 0}), ValueError, "start must be a whole number from 1"),
    ("renoise-no", "library", "repaint renoise='no'", lambda t: _lib(model=_unpaired(), sampler="repaint",
     sampler_params={"renoise": "no"}), ValueError, "renoise must be true or false; got 'no'"),
    ("mixing-stop", "library", "mixing stop above start", lambda t: _lib(model=_unpaired(), sampler="mixing",
     sampler_params={"start": 5, "stop": 8}), ValueError, r"stop \(8\) must not be above start \(5\)"),
    ("ckpt-nan", "checkpoint", "NaN weights", lambda t: _checkpoint(t, nan=True), ValueError,
     "bad.safetensors holds NaN or infinite weights"),
    ("ckpt-huge", "checkpoint", "metadata asking for 100 000 base channels", lambda t: _checkpoint(t, _big),
     ValueError, "bad.safetensors asks for a network this package does not build: base_channels"),
    ("ckpt-json", "checkpoint", "metadata that is not JSON", lambda t: _checkpoint(t, raw_meta="{not json"),
     ValueError, "bad.safetensors has incomplete or unknown metadata"),
    ("ckpt-schedule", "checkpoint", "an invalid schedule", lambda t: _checkpoint(t, _bad_schedule), ValueError,
     "bad.safetensors has an invalid noise schedule"),
    ("ckpt-pickle", "checkpoint", "a pickled PyTorch file", lambda t: _pickle(t), ValueError, "pickled"),
    ("cli-param-text", "CLI", "--sampler-param steps=abc", lambda t: _cli(t, "denoise", "IN", "--out", "OUT",
     "--sampler-param", "steps=abc"), "exit 2", r"--steps \(steps\) must be a whole number"),
    ("cli-pixel-0", "CLI", "deconvolve --na 0.8 --pixel 0", lambda t: _cli(t, "deconvolve", "IN", "--na", "0.8",
     "--pixel", "0", "--out", "OUT"), "exit 2", "--pixel must be a positive number; got 0"),
    ("cli-psf-sigma-0", "CLI", "--psf-sigma 0", lambda t: _cli(t, "deconvolve", "IN", "--psf-sigma", "0", "--out",
     "OUT"), "exit 2", "--psf-sigma must be a positive number; got 0"),
    # issue 19: nothing lost
    ("cli-out-is-input", "CLI", "denoise in.zarr --out in.zarr --overwrite", _cli_out_is_input, "exit 2",
     "the output .*in.zarr is the input"),
    ("zarr-out-is-input", "library", "denoise_to_zarr(in.zarr, in.zarr, overwrite=True)",
     lambda t: (lambda: _to_zarr(_zarr_input(t / "in.zarr"), t / "in.zarr", overwrite=True)), ValueError,
     "is the input .*in.zarr, or lies inside it or holds it"),
    ("zarr-out-holds-input", "library", "denoise_to_zarr(out.zarr/in.tif, out.zarr, overwrite=True)",
     _store_holding_input, ValueError, "would destroy the image being read"),
    ("tiff-out-inside-input", "library", "denoise_to_tiff(in.zarr, in.zarr/maps)",
     lambda t: (lambda: _to_tiff(_zarr_input(t / "in.zarr"), t / "in.zarr" / "maps", "in")), ValueError,
     "lies inside it or holds it"),
    ("tiff-map-is-input", "library", "denoise_to_tiff(x_mean.tif, its folder, stem='x', overwrite=True)",
     _map_is_input, ValueError, "the map .*x_mean.tif would be written over the input .*x_mean.tif"),
    ("writer-not-ours", "napari writer", "save a layer as keep.zarr, a folder holding the user's files",
     _write_over_users_folder, ValueError, "keep.zarr already exists and is not an OME-Zarr store napari-diffdenoise"),
    ("simulate-existing", "CLI", "simulate --out a folder holding nuclei_noisy.tif", _simulate_over, "exit 2",
     "nuclei_noisy.tif already exist.*--overwrite"),
    ("adapt-val-fraction", "CLI", "adapt --val-fraction 2", _adapt_args("--val-fraction", "2"), "exit 2",
     r"--val-fraction \(val_fraction\) must be a number from 0 to 0.45; got 2.0"),
    ("adapt-small-image", "CLI", "adapt a 48² image with the default 64 px patches", _adapt_args(), "exit 2",
     r"48×48 px is too small for 64 px patches .*use a smaller patch size \(--patch-size\)"),
    ("simulate-size-0", "CLI", "simulate --size 0", _simulate_args("--size", "0"), "exit 2",
     r"--size must be 16 to 8192 px; got 0"),
    ("simulate-seed-negative", "CLI", "simulate --seed -1", _simulate_args("--seed", "-1"), "exit 2",
     r"--seed must be 0 or more; got -1"),
    ("simulate-pair-shape", "library", "simulate_pair('nuclei', (5, 5))",
     lambda t: (lambda: simulate_pair("nuclei", (5, 5))), ValueError, r"shape must be two sides of 16 to 8192 px; got \(5, 5\)"),
    ("demo-existing", "CLI", "demo --out a folder holding sample_mean.tif", _demo_over, "exit 2",
     "sample_mean.tif already exist.*--overwrite"),
    # issue 19: nothing silently wrong
    ("resume-other-input", "library", "resume out.zarr with another input of the same shape and dtype",
     _resume_other_input, ValueError, r"holds a run on another input \(.*a.tif\), not .*b.tif"),
    ("resume-edited-input", "library", "resume out.zarr after the input was edited in place",
     _resume_edited_input, ValueError, "the input's content has changed since"),
    ("reader-partial", "napari reader", "open a store whose run was killed after 2 of 3 planes", _partial_store_name,
     "returns", r"run \[mean\] \(partial: 2/3 planes\)"),
    ("ckpt-range-reversed", "checkpoint", "value_range [1.5, -1.5]",
     lambda t: _checkpoint(t, _edit(("normalization", "value_range"), [1.5, -1.5])), ValueError,
     r"would give wrong maps: normalization value_range = \[1.5, -1.5\] \(two finite numbers, low < high\)"),
    ("ckpt-range-flat", "checkpoint", "value_range [1, 1]",
     lambda t: _checkpoint(t, _edit(("normalization", "value_range"), [1, 1])), ValueError, "value_range = \\[1, 1\\]"),
    ("ckpt-percentiles", "checkpoint", "percentiles [99.8, 1]",
     lambda t: _checkpoint(t, _edit(("normalization", "percentiles"), [99.8, 1])), ValueError,
     "percentiles = .*0 ≤ low < high ≤ 100"),
    ("ckpt-calibration-nan", "checkpoint", "a calibration factor NaN",
     lambda t: _checkpoint(t, _edit(("calibrations",), _calibration([1.0, float("nan")]))), ValueError,
     "calibration 1 factors = \\[1.0, nan\\].*finite factors"),
    ("ckpt-calibration-inf", "checkpoint", "a calibration factor ∞",
     lambda t: _checkpoint(t, _edit(("calibrations",), _calibration([1.0, float("inf")]))), ValueError,
     "calibration 1 factors = \\[1.0, inf\\]"),
    ("ckpt-estimator", "checkpoint", "mean_estimator 'median'",
     lambda t: _checkpoint(t, _edit(("mean_estimator",), "median")), ValueError, "mean_estimator = 'median'"),
    ("ckpt-refinement", "checkpoint", "mean_refinement 'sharpen'",
     lambda t: _checkpoint(t, _edit(("mean_refinement",), "sharpen")), ValueError,
     "mean_refinement = 'sharpen' \\(one of none, pilot-wiener, pilot-wiener-if-bright\\)"),
    ("ckpt-too-many-parameters", "checkpoint", "every size within its bound, 250 M parameters together",
     lambda t: _checkpoint(t, _edit(("architecture",), {"name": "unet", "cond_channels": 1, "base_channels": 256,
                                                       "channel_mults": [1, 2, 4, 4], "blocks_per_level": 1,
                                                       "emb_dim": 128, "fourier_features": 8, "dropout": 0.0,
                                                       "space_to_depth": 2})), ValueError,
     "a network of 250 M parameters \\(allowed up to 200 M"),
    # issue 19: the CLI and the library agree
    ("cli-model-bad-zip", "CLI", "--model bad.zip (not a zip)", lambda t: (
        (t / "bad.zip").write_bytes(b"hello"), _cli(t, "denoise", "IN", "--out", "OUT", "--model", str(t / "bad.zip"))
    )[1], "exit 2", "bad.zip is not a readable bioimage.io package"),
    ("cli-tiff-tiny", "CLI", "denoise a 4×4 TIFF", lambda t: _cli_image(t, np.zeros((4, 4), np.uint16), "denoise",
     "IN", "--out", "OUT"), "exit 2", r"planes must be at least 8×8 pixels, got \(4, 4\)"),
    ("cli-tiff-complex", "CLI", "denoise a complex TIFF", lambda t: _cli_image(t, np.ones((16, 16), np.complex64),
     "denoise", "IN", "--out", "OUT.zarr"), "exit 2", "images must be numeric .*got dtype complex64"),
    ("cli-tiff-rgb", "CLI", "denoise a (64, 64, 3) TIFF stored as grey planes",
     lambda t: _cli_image(t, np.zeros((64, 64, 3), np.uint16), "denoise", "IN", "--out", "OUT",
                          photometric="minisblack"), "exit 2", r"shape \(64, 64, 3\) looks like an RGB"),
    # issue 22: the microscopes' files
    ("file-format-unknown", "CLI", "denoise a .png", lambda t: _cli_file(t, "cells.png", b"PNG"), "exit 2",
     r"cells.png: expected a TIFF \(.tif, .tiff\), an OME-Zarr / zarr store \(.zarr\) or a microscope's file "
     r"\(.czi, .ims, .lif, .nd2\)"),
    ("tiff-imagej-cut", "CLI", "denoise an ImageJ hyperstack cut to 60 % of its bytes (a partial copy)",
     lambda t: _cli_file(t, "cut.tif", _cut_hyperstack), "exit 2",
     r"cut.tif looks truncated or damaged: its ImageJ metadata says 16 planes, 1 can be read"),
    ("czi-damaged", "CLI", "denoise a .czi that is not one", lambda t: _cli_file(t, "cut.czi", b"ZISRAWFILE cut"),
     "exit 2", r"cut.czi could not be read as a .czi file"),
    ("czi-axes", "CLI", "denoise a CYX .czi with --axes ZYX", lambda t: _cli_file(t, "two.czi", _czi, "--axes", "ZYX"),
     "exit 2", r"--axes \(axes\) ZYX disagrees with the file's axes CYX; leave --axes out for .czi files"),
    ("nd2-no-plugin", "library", "open_image of an .nd2 without the formats extra",
     lambda t: ((t / "scan.nd2").write_bytes(b"nd2"), _without_module("bioio_nd2", lambda: open_image(t / "scan.nd2"))
                )[1], ValueError,
     r'needs bioio and its plugin bioio-nd2, which are not installed; install them with pip install '
     r'"napari-diffdenoise\[formats\]"'),
    ("ims-not-hdf5", "CLI", "denoise an .ims that is not HDF5", lambda t: _cli_file(t, "x.ims", b"not hdf5"),
     "exit 2", "x.ims is not an Imaris file: it is not HDF5"),
    ("ims-not-imaris", "CLI", "denoise an HDF5 .ims without Imaris's layout",
     lambda t: _cli_file(t, "x.ims", _hdf5_not_imaris), "exit 2",
     "x.ims is HDF5 but not an Imaris file \\(it lacks DataSet/ResolutionLevel 0 or DataSetInfo/Image\\)"),
    ("tiff-rgb-colour", "CLI", "denoise an RGB colour TIFF (interleaved YXS)",
     lambda t: _cli_image(t, np.zeros((32, 32, 3), np.uint8), "denoise", "IN", "--out", "OUT", photometric="rgb"),
     "exit 2", (r"the TIFF holds 8-bit RGB colour pixels \(axes YXS\), a picture rather than a microscope's counts; "
                r"convert it to grey levels, or save each channel as its own plane")),
    ("tile-text", "library", 'tile="64"', lambda t: _lib(tile="64"), ValueError,
     "tile must be a whole number of pixels, at least 4 for this model; got '64'"),
    ("tile-0", "library", "tile=0", lambda t: _lib(tile=0), ValueError, "tile must be at least 4 pixels for this model; got 0"),
    ("tile-fraction", "library", "tile=40.7", lambda t: _lib(tile=40.7), ValueError,
     "tile must be a whole number of pixels.*got 40.7"),
    ("batch-pixels-negative", "library", "batch_pixels=-5", lambda t: _lib(batch_pixels=-5), ValueError,
     "batch_pixels must be a whole number of at least 1; got -5"),
    ("keep-samples-text", "library", 'keep_samples="no"', lambda t: _lib(keep_samples="no"), ValueError,
     "keep_samples must be true or false; got 'no'"),
    ("steps-conflict", "library", 'steps=3 and sampler_params={"steps": 5}',
     lambda t: _lib(steps=3, sampler_params={"steps": 5}), ValueError,
     r"steps=3 and sampler_params\['steps'\]=5 disagree"),
    ("percentiles-reversed", "library", "percentiles=(99, 1)", lambda t: _lib(percentiles=(99, 1)), ValueError,
     r"percentiles must be two numbers \(low, high\) with 0 ≤ low < high ≤ 100; got \(99, 1\)"),
    # the entropy map's definitions (core.io.maps.ENTROPY_KINDS)
    ("entropy-unknown", "library", 'entropy="shannon"', lambda t: _lib(entropy="shannon"), ValueError,
     r"entropy must be one of \('negentropy', 'quantised'\); got 'shannon'"),
    # issue 19: training
    ("train-ema-negative", "training", "ema_decay=-0.5", lambda t: (lambda: _train(t, ema_decay=-0.5)), ValueError,
     "ema_decay must be a number from 0 \\(no EMA\\) to below 1; got -0.5"),
    ("train-resume-architecture", "training", "resume a run with a network of other widths",
     lambda t: (_train(t), lambda: _train(t, resume=True, steps=4, model=_other_architecture()))[1], ValueError,
     "run.state.safetensors was written for another architecture than the model given \\(base_channels 8 → 4\\)"),
    ("train-out-folder-cli", "CLI", "train --out a folder named x.safetensors, --overwrite", _cli_train_into_folder,
     "exit 2", "--out .*x.safetensors is a folder; give a file name ending in .safetensors"),
    ("export-out-folder", "library", "export to a folder named x.zip, overwrite=True", _export_into_folder,
     ValueError, "x.zip is a folder; give the package a file name ending in .zip"),
    ("train-rgb", "training", "train(noisy, clean) on RGB (Y, X, 3) arrays", _train_rgb, ValueError,
     r"noisy image 0: shape \(64, 64, 3\) looks like an RGB\(A\) image"),
    ("adapt-rgb", "training", "adapt(model, an RGB (Y, X, 3) array)", _adapt_rgb, ValueError,
     r"noisy image 0: shape \(64, 64, 3\) looks like an RGB\(A\) image"),
    ("tiff-pixel-not-sizes", "library", "denoise_to_tiff(…, pixel={'scale': 'big'})", _tiff_pixel_bad, ValueError,
     r"pixel must be None or \{\"scale\": \{axis: size > 0\}"),
    ("tiff-stem-outside", "library", "denoise_to_tiff(…, stem='../x')", _tiff_stem_outside, ValueError,
     "stem must be a file name with no folder in it; got '../x'"),
    ("train-resume-learning-rate", "training", "resume with another learning rate",
     lambda t: _resume_with(t, {"learning_rate": 1e-3}, {"learning_rate": 5e-3, "steps": 4}), ValueError,
     "other settings \\(learning_rate 0.001 → 0.005\\)"),
    ("train-resume-fewer-steps", "training", "resume a 4-step run with steps=3",
     lambda t: _resume_with(t, {"steps": 4}, {"steps": 3}), ValueError,
     "has already trained 4 steps; resume with steps \\(--steps\\) of at least 4 \\(got 3\\)"),
    ("train-unwritable", "training", "an output folder that cannot take files", _unwritable, OSError,
     "cannot write the checkpoints to .*a-file \\(a file of that name is in the way\\)"),
    ("tiff-rename-fails", "CLI", "denoise --overwrite over earlier maps, the entropy map's rename failing",
     _rename_fails, "exit 2", "Input/output error.*the earlier files, if any, are as they were"),
]


def _unpaired():
    import torch

    from napari_diffdenoise.core.model.model import DiffusionModel
    from napari_diffdenoise.core.model.network import UNet, UNetConfig
    from napari_diffdenoise.core.model.schedules import NoiseSchedule

    torch.manual_seed(0)
    return DiffusionModel(UNet(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                          fourier_features=8)), NoiseSchedule("cosine", 50), kind="unpaired", tile=64)


def outcome(row, tmp, capsys=None) -> tuple[str, str]:
    """(what happened, the message) for one row."""
    _, _, _, make, expected, _ = row
    call = make(tmp)
    try:
        code = call()
    except Exception as err:
        return type(err).__name__, str(err)
    if expected == "returns":  # a row whose right behaviour is a result that says what it is
        return "returns", str(code)
    if expected == "exit 2":
        err = capsys.readouterr().err if capsys is not None else ""
        return f"exit {code}", err.strip().removeprefix("error: ")
    return "no error", ""
