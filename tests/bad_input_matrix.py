"""The bad-input matrix: every row is an input a careful user tried, the surface it went through,
and the message it must get. tests/test_bad_inputs.py runs every row; scripts/bad_input_table.py
writes docs/bad-inputs.md from the same rows and the messages they actually produce."""
from __future__ import annotations

import json
import struct

import numpy as np

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.physics import gaussian_psf


def _tiny():
    import torch

    from napari_diffdenoise.core.model import DiffusionModel
    from napari_diffdenoise.core.network import UNetConfig
    from napari_diffdenoise.core.schedules import NoiseSchedule

    torch.manual_seed(0)
    return DiffusionModel.create(UNetConfig(cond_channels=1, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                            fourier_features=8), NoiseSchedule("cosine", 50), name="tiny", tile=64)


IMAGE = np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16)


def _lib(image=IMAGE, **kw):
    return lambda: denoise(image, kw.pop("model", None) or _tiny(), **kw)


def _checkpoint(tmp, meta_edit=None, nan=False, raw_meta=None):
    """A tiny checkpoint with edited metadata or NaN weights, written to ``tmp``; returns a loader."""
    from safetensors.torch import save_file

    from napari_diffdenoise.core.checkpoint import METADATA_KEY

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
    ("sampler-unknown", "library", "sampler='magic'", lambda t: _lib(sampler="magic"), ValueError, "unknown sampler"),
    ("device-missing", "library", "device='cuda:7' on a machine without it", lambda t: _lib(device="cuda:7"),
     ValueError, "not available"),
    ("coverage-uncalibrated", "library", "coverage=0.9 on an uncalibrated model", lambda t: _lib(coverage=0.9),
     ValueError, "has no calibration"),
    ("coverage-range", "library", "coverage=1.5", lambda t: _lib(coverage=1.5), ValueError,
     "coverage must be a number from 0.01 to 0.999"),
    ("memory", "library", "K = 64 on a 4097² plane", lambda t: _lib(np.zeros((4097, 4097), np.float32), n_samples=64),
     MemoryError, "needs about .* GiB"),
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
     "--sampler-param", "steps=abc"), "exit 2", "steps must be a whole number"),
    ("cli-pixel-0", "CLI", "deconvolve --na 0.8 --pixel 0", lambda t: _cli(t, "deconvolve", "IN", "--na", "0.8",
     "--pixel", "0", "--out", "OUT"), "exit 2", "--pixel must be positive; got 0"),
    ("cli-psf-sigma-0", "CLI", "--psf-sigma 0", lambda t: _cli(t, "deconvolve", "IN", "--psf-sigma", "0", "--out",
     "OUT"), "exit 2", "--psf-sigma must be positive; got 0"),
]


def _unpaired():
    import torch

    from napari_diffdenoise.core.model import DiffusionModel
    from napari_diffdenoise.core.network import UNet, UNetConfig
    from napari_diffdenoise.core.schedules import NoiseSchedule

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
    if expected == "exit 2":
        err = capsys.readouterr().err if capsys is not None else ""
        return f"exit {code}", err.strip().removeprefix("error: ")
    return "no error", ""
