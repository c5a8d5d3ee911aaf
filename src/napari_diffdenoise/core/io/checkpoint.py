"""Checkpoints: safetensors weights with the model's JSON metadata in the same file's header.

Loading never unpickles: a file that is not safetensors (a torch ``.pt``/``.pth`` pickle, say)
is refused before anything in it is interpreted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..imaging.normalization import SAMPLE_RANGE
from ..model.model import MEAN_HEAD_GAMMA, DiffusionModel
from ..model.network import NOISE_GAMMA, UNet, UNetConfig
from ..model.schedules import NoiseSchedule
from .bioimageio_package import extracted_checkpoint
from .checkpoint_limits import MAX_STEPS, TILE_RANGE, architecture_problems, value_problems

METADATA_KEY = "napari_diffdenoise"


@dataclass(frozen=True)
class Head:
    """A one-step network a model may carry beside its diffusion network."""

    attribute: str  # the DiffusionModel field holding it
    key: str  # its entry in the checkpoint's metadata
    label: str  # in messages


# tensor-name prefix → the head stored under it
HEADS = {"mean": Head("mean_network", "mean_head", "mean head"),
         "std": Head("std_network", "std_head", "std head"),
         "sample": Head("sample_network", "sample_head", "sample head")}
BUNDLED_PACKAGE = "napari_diffdenoise.models"
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch zip archives and raw pickle protocol ≥ 2


class CheckpointError(ValueError):
    """A file that is not a usable napari-diffdenoise checkpoint."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: DiffusionModel, path: str | os.PathLike, extra_tensors: dict | None = None, half: bool = False
) -> str:
    """Write atomically (temporary file in the same folder, then rename) and return the sha256.
    ``extra_tensors`` (e.g. optimiser state for resuming) are stored under their own names.
    ``half`` stores floating-point weights as float16 (half the size; loading casts back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    buffers = {f"net.{k}" for k, _ in model.network.named_buffers()}
    for prefix, head in HEADS.items():
        network = getattr(model, head.attribute)
        if network is not None:
            tensors.update({f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in network.state_dict().items()})
            buffers |= {f"{prefix}.{k}" for k, _ in network.named_buffers()}
    if half:
        # buffers (the Fourier frequencies of γ) keep full precision: fp16 would shift their phases
        tensors = {k: v.half() if v.is_floating_point() and k not in buffers else v for k, v in tensors.items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().cpu().contiguous()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(model.metadata())})
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:  # a full disk, a read-only folder: nothing half-written stays
        Path(tmp).unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {err}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    model.sha256 = file_sha256(path)
    return model.sha256


def _looks_like_safetensors(path: Path) -> bool:
    """The safetensors layout: a little-endian u64 header length N, then N bytes of JSON."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + header_length <= size


def _check_architecture(path: Path, raw: str) -> None:
    """The checkpoint's metadata as a whole, checked before any tensor is read: bounds on the sizes it
    asks for and on the network they make together, and values that would silently give wrong maps."""
    try:
        meta = json.loads(raw)
        arch = meta["architecture"]
        problems = architecture_problems(arch)
        for head in HEADS.values():
            if meta.get(head.key) is not None:
                problems += architecture_problems(meta[head.key]["architecture"], f"{head.label} ")
        wrong = value_problems(meta)
        steps = meta.get("schedule", {}).get("n_steps")
        if not (isinstance(steps, int) and 1 <= steps <= MAX_STEPS):
            problems.append(f"schedule n_steps = {steps!r} (allowed 1–{MAX_STEPS})")
        tile = meta.get("tile", 256)
        if not (isinstance(tile, int) and TILE_RANGE[0] <= tile <= TILE_RANGE[1]):
            problems.append(f"tile = {tile!r} (allowed {TILE_RANGE[0]}–{TILE_RANGE[1]})")
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path.name} has incomplete or unknown metadata ({err!r})") from err
    if problems:
        raise CheckpointError(f"{path.name} asks for a network this package does not build: {'; '.join(problems)}")
    if wrong:
        raise CheckpointError(f"{path.name} has metadata that would give wrong maps: {'; '.join(wrong)}")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a checkpoint, refusing anything that is not safetensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not _looks_like_safetensors(path):
        with open(path, "rb") as f:
            head = f.read(8)
        if not head.startswith(_PICKLE_MAGIC):
            raise CheckpointError(f"{path.name} is not a safetensors checkpoint")
        raise CheckpointError(
            f"{path.name} looks like a pickled PyTorch file; pickles can run code when loaded, so only "
            "safetensors checkpoints written by napari-diffdenoise are accepted"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            if METADATA_KEY in header:  # refuse an absurd architecture before its tensors are read
                _check_architecture(path, header[METADATA_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path.name} is not a safetensors checkpoint ({err})") from err
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path.name} has no napari-diffdenoise metadata; was it written by this package?")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path.name}: its metadata is not valid JSON ({err})") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path.name}: its metadata is not a JSON object")
    return meta, tensors


def model_from_checkpoint(path: str | os.PathLike) -> DiffusionModel:
    try:
        return _model_from_checkpoint(path)
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{Path(path).name} has incomplete or unknown metadata ({err!r})") from err


def _model_from_checkpoint(path: str | os.PathLike) -> DiffusionModel:
    meta, tensors = read_checkpoint(path)
    arch = dict(meta["architecture"])
    if arch.pop("name", "unet") != "unet":
        raise CheckpointError(f"unknown architecture in {Path(path).name}")
    whole = [k for k, v in tensors.items() if not v.is_floating_point()]
    if whole:  # every weight this package writes is a float (int32 weights loaded, and made maps)
        raise CheckpointError(f"{Path(path).name} holds weights that are not floating-point numbers (in {whole[0]}, "
                              f"{tensors[whole[0]].dtype}): not a checkpoint this package wrote, or a damaged one")
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:  # a copy's damage reads the same (bytes set to 0xFF are NaN in float16)
        raise CheckpointError(f"{Path(path).name} holds NaN or infinite weights (in {bad[0]}"
                              f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the training that wrote it "
                              "diverged, or the file is damaged")
    try:
        schedule = NoiseSchedule.from_dict(meta["schedule"])
    except ValueError as err:
        raise CheckpointError(f"{Path(path).name} has an invalid noise schedule: {err}") from err
    network = UNet(UNetConfig.from_dict(arch))
    state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights in {Path(path).name} do not match its architecture: {err}") from err
    heads = {prefix: _load_head(path, meta, tensors, prefix, head) for prefix, head in HEADS.items()}
    return DiffusionModel(
        network=network.eval(),
        schedule=schedule,
        kind=meta["kind"],
        # checkpoints before the task field said it in their provenance only
        task=meta.get("task", "deconvolve" if meta.get("provenance", {}).get("target") == "sharp" else "denoise"),
        prediction=meta.get("prediction", "eps"),
        percentiles=tuple(meta["normalization"]["percentiles"]),
        value_range=tuple(meta["normalization"].get("value_range", SAMPLE_RANGE)),
        tile=int(meta.get("tile", 256)),
        name=meta.get("name", Path(path).stem),
        sha256=file_sha256(path),
        provenance=meta.get("provenance", {}),
        calibrations=list(meta.get("calibrations", [])),
        mean_estimator=meta.get("mean_estimator", "samples"),
        mean_refinement=meta.get("mean_refinement", "none"),
        mean_network=heads["mean"],
        mean_provenance=(meta.get("mean_head") or {}).get("provenance", {}),
        mean_head_gamma=_mean_head_gamma(path, meta),
        std_network=heads["std"],
        std_provenance=(meta.get("std_head") or {}).get("provenance", {}),
        sample_network=heads["sample"],
        sample_provenance=(meta.get("sample_head") or {}).get("provenance", {}),
    )


def _mean_head_gamma(path, meta: dict) -> float | str:
    """The mean head's γ input as stored: a number, or NOISE_GAMMA."""
    gamma = (meta.get("mean_head") or {}).get("gamma", MEAN_HEAD_GAMMA)
    if gamma != NOISE_GAMMA and not (isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 < gamma < 1):
        raise CheckpointError(f"the mean head's gamma in {Path(path).name} must be a number in (0, 1) or "
                              f"{NOISE_GAMMA!r}; got {gamma!r}")
    return gamma


def _load_head(path, meta: dict, tensors: dict, prefix: str, head: Head) -> UNet | None:
    """One of the model's one-step heads, or None when the checkpoint has none."""
    if meta.get(head.key) is None:
        return None
    arch = dict(meta[head.key]["architecture"])
    if arch.pop("name", "unet") != "unet":
        raise CheckpointError(f"unknown {head.label} architecture in {Path(path).name}")
    network = UNet(UNetConfig.from_dict(arch))
    try:
        network.load_state_dict({k[len(prefix) + 1:]: v.float() for k, v in tensors.items() if k.startswith(f"{prefix}.")})
    except RuntimeError as err:
        raise CheckpointError(f"{head.label} weights in {Path(path).name} do not match its architecture: {err}") from err
    return network.eval()


# in the source of every calibration this project makes for its bundled models (on its own pairs, not a user's
# data): a copy of a bundled model loaded from its file or a BioImage Model Zoo package still holds them as shipped
BUNDLED_CALIBRATION_SOURCE = "bench/calibrate_bundled.py"


def bundled_model_dir() -> Path:
    return Path(str(resources.files(BUNDLED_PACKAGE)))


def list_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in bundled_model_dir().glob("*.safetensors"))


def load_model(name_or_path: str | os.PathLike) -> DiffusionModel:
    """A bundled model by name (see :func:`list_models`), a checkpoint file by path, or a bioimage.io
    package (.zip) this package exported (core.io.bioimageio_export)."""
    candidate = bundled_model_dir() / f"{name_or_path}.safetensors"
    if isinstance(name_or_path, str) and candidate.is_file():
        model = model_from_checkpoint(candidate)
        # its calibrations were made on this project's pairs, not on the user's data (kept so in any copy saved)
        return dataclasses.replace(model, calibrations=[{**c, "shipped": True} for c in model.calibrations])
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            with extracted_checkpoint(path) as checkpoint:
                return load_model(checkpoint)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
            raise CheckpointError(f"{path.name} is not a readable bioimage.io package (a .zip): {err}") from err
    if path.is_file():
        model = model_from_checkpoint(path)
        # a bundled model's copy (its file by path, an exported package) came with the project's calibrations: as
        # the user's own they kept a run on them, where the bundled model calibrates on the image
        return dataclasses.replace(model, calibrations=[
            {**c, "shipped": True} if BUNDLED_CALIBRATION_SOURCE in c.get("source", "") else c
            for c in model.calibrations])
    raise CheckpointError(
        f"{name_or_path!r} is neither a bundled model ({', '.join(list_models()) or 'none installed'}) "
        "nor an existing checkpoint file"
    )
