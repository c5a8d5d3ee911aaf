"""Image → planes → (tiled) sampling of K samples → mean, std and entropy maps.

:func:`iter_denoise` is a generator that yields a :class:`Progress` after every network step and
returns a :class:`Restoration`; napari's worker drives it (its quit() lands at the next yield),
and :func:`denoise` drives it with plain callbacks.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from .consistency import DataConsistency
from .devices import default_batch_pixels, resolve_device
from .driving import drive
from .model import DiffusionModel
from .normalization import IntensityMap
from .physics import check_psf
from .sampler_registry import get_sampler
from .tiling import make_tiles
from .uncertainty import summarise

DEFAULT_STEPS = 10
DEFAULT_OVERLAP_FRACTION = 0.25  # REFERENCE "Fast sampling": ~25 % overlap blends cleanly


class Cancelled(Exception):
    """Raised by :func:`denoise` when ``cancel()`` returned True; nothing is returned."""


@dataclass
class Progress:
    plane: int  # 0-based plane being processed
    n_planes: int
    step: int  # sampling steps done in this plane
    n_steps: int

    @property
    def fraction(self) -> float:
        return (self.plane + self.step / self.n_steps) / self.n_planes


@dataclass
class Restoration:
    mean: np.ndarray  # DDPM-avg, in the input's intensity units, float32
    std: np.ndarray  # pixel-wise std over the K samples, in the input's intensity units
    entropy: np.ndarray  # pixel-wise Shannon entropy of the quantised samples, in bits
    metadata: dict = field(default_factory=dict)
    samples: np.ndarray | None = None  # (K, *shape) in input units, only with keep_samples=True


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # reflect needs the pad smaller than the size; replicate covers tiny planes
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class TiledEpsilon:
    """ε̂(y, γ) on a whole plane, evaluated tile by tile and blended with weights summing to one.
    The K samples of one tile go through the network in batches of ``batch_pixels`` pixels."""

    def __init__(self, model: DiffusionModel, cond: torch.Tensor | None, shape, tile: int, overlap: int, batch_pixels: int):
        self.model = model
        self.multiple = model.network.config.size_multiple
        self.tiles = make_tiles(shape, tile, overlap)
        self.batch_pixels = batch_pixels
        device = next(model.network.parameters()).device
        self.weights = [torch.from_numpy(t.weight).to(device) for t in self.tiles]
        # conditions are cropped and padded once; they do not change over the steps
        self.conds = [None if cond is None else _pad_to_multiple(cond[(...,) + t.slices], self.multiple)[0] for t in self.tiles]
        self.evaluations = 0

    @torch.inference_mode()
    def __call__(self, y: torch.Tensor, gamma: float) -> torch.Tensor:
        out = torch.zeros_like(y)
        k = y.shape[0]
        for tile, weight, cond in zip(self.tiles, self.weights, self.conds):
            crop, (h, w) = _pad_to_multiple(y[(...,) + tile.slices], self.multiple)
            batch = max(1, self.batch_pixels // (crop.shape[-2] * crop.shape[-1]))
            for i in range(0, k, batch):
                part = crop[i : i + batch].contiguous(memory_format=torch.channels_last)
                c = None if cond is None else cond.expand(len(part), -1, -1, -1).contiguous(memory_format=torch.channels_last)
                gammas = torch.full((len(part),), gamma, device=y.device)
                eps = self.model.predict_eps(part, gammas, c)[..., :h, :w]
                out[i : i + batch][(...,) + tile.slices] += eps * weight
                self.evaluations += 1
        return out


def _check_image(image) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"images must be numeric; got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(
            f"expected a 2D (Y, X) plane or a 3D (Z, Y, X) stack, got shape {array.shape}; "
            "split channels or time points first"
        )
    if min(array.shape[-2:]) < 8:
        raise ValueError(f"planes must be at least 8×8 pixels, got {array.shape[-2:]}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the image contains NaN or infinite values")
    return array


def check_settings(model: DiffusionModel, sampler: str, n_samples: int, steps: int | None, eta: float, device: str,
                   sampler_params: dict | None = None, psf=None):
    """Refuse settings that cannot work, before any work starts: (sampler info, params, device)."""
    info = get_sampler(sampler, model.kind)
    if info.needs_psf and psf is None:
        raise ValueError(f"sampler {sampler!r} needs the PSF the image was blurred with (psf=…): e.g. "
                         "physics.gaussian_psf(sigma_px), airy_psf(…) or a measured bead image")
    if psf is not None and not info.needs_psf:
        raise ValueError(f"sampler {sampler!r} does not use a PSF; choose 'ddim-dc' for PSF-guided sampling")
    if psf is not None:
        check_psf(psf)
    if n_samples < 1:
        raise ValueError("n_samples must be at least 1")
    given = dict(sampler_params or {})
    if "steps" in info.defaults(model.schedule):  # the DDIM family: steps and eta are plain arguments
        given.setdefault("steps", steps or DEFAULT_STEPS)
        given.setdefault("eta", eta)
    params = info.parameters(model.schedule, given)
    return info, params, resolve_device(device)


def plane_seed(seed: int, plane: int) -> int:
    """Independent noise per plane, reproducible from the user's seed alone."""
    return int(np.random.SeedSequence([seed, plane]).generate_state(1)[0])


def iter_denoise(
    image,
    model: DiffusionModel,
    *,
    sampler: str = "ddim",
    n_samples: int = 8,
    steps: int | None = None,
    eta: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    percentiles: tuple[float, float] | None = None,
    batch_pixels: int | None = None,
    keep_samples: bool = False,
    sampler_params: dict | None = None,
    psf=None,
) -> Generator[Progress, None, Restoration]:
    """See :func:`denoise`."""
    array = _check_image(image)
    info, params, dev = check_settings(model, sampler, n_samples, steps, eta, device, sampler_params, psf)
    n_steps = info.n_evaluations(model.schedule, params)
    tile = tile or model.tile
    tile -= tile % model.network.config.size_multiple
    overlap = int(tile * DEFAULT_OVERLAP_FRACTION) if overlap is None else overlap
    batch_pixels = batch_pixels or default_batch_pixels(dev)
    percentiles = tuple(percentiles or model.percentiles)
    model.network.to(dev).eval().to(memory_format=torch.channels_last)  # in place: the tiles use model.network

    planes = array[None] if array.ndim == 2 else array
    means, stds, entropies, kept = [], [], [], []
    t0 = time.perf_counter()
    evaluations = 0
    # no grad-mode context may span a yield: grad mode is thread-local, and a suspended generator would
    # leave its thread (napari's pooled worker, or the caller's) in inference mode
    for z, plane in enumerate(planes):
        imap = IntensityMap.from_percentiles(plane, percentiles)
        observed = torch.from_numpy(imap.to_model(plane))[None, None].to(dev)
        cond = observed if model.kind == "paired" else None
        eps_fn = TiledEpsilon(model, cond, plane.shape, tile, overlap, batch_pixels)
        extra = {"observation": observed} if info.needs_observation else {}
        if info.needs_psf:
            extra["consistency"] = DataConsistency(observed, psf)
        gen = torch.Generator().manual_seed(plane_seed(seed, z))
        # noise is drawn on the CPU so a seed gives the same samples on every device
        noise_fn = lambda shape: torch.randn(shape, generator=gen).to(dev)
        y_T = noise_fn((n_samples, 1) + plane.shape)
        run = info.function(eps_fn, model.schedule, y_T, noise_fn, clip=model.value_range, **params, **extra)
        try:
            while True:
                step = next(run)
                yield Progress(z, len(planes), step.index + 1, n_steps)
        except StopIteration as stop:
            samples = stop.value[:, 0]
        evaluations += eps_fn.evaluations
        with torch.inference_mode():
            mean, std, entropy = (t.float().cpu().numpy() for t in summarise(samples, model.value_range))
        means.append(imap.to_input(mean))
        stds.append(imap.scale_to_input(std))
        entropies.append(entropy.astype(np.float32))
        if keep_samples:
            kept.append(imap.to_input(samples.float().cpu().numpy()))
    shape = array.shape
    metadata = {
        "model": model.name,
        "model_sha256": model.sha256,
        "model_kind": model.kind,
        "sampler": sampler,
        **params,
        "n_steps": n_steps,
        "n_samples": n_samples,
        "seed": seed,
        "device": str(dev),
        "tile": tile,
        "overlap": overlap,
        "percentiles": list(percentiles),
        "network_evaluations": evaluations,
        **({"psf_shape": list(np.shape(psf))} if psf is not None else {}),
        "seconds": round(time.perf_counter() - t0, 3),
        "package_version": __version__,
    }
    samples_out = None
    if keep_samples:
        samples_out = np.stack(kept, axis=1).reshape((n_samples,) + shape)
    return Restoration(
        np.stack(means).reshape(shape), np.stack(stds).reshape(shape), np.stack(entropies).reshape(shape), metadata,
        samples_out,
    )


def denoise(
    image,
    model: DiffusionModel | str,
    *,
    sampler: str = "ddim",
    n_samples: int = 8,
    steps: int | None = None,
    eta: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    percentiles: tuple[float, float] | None = None,
    batch_pixels: int | None = None,
    keep_samples: bool = False,
    sampler_params: dict | None = None,
    psf=None,
    progress: Callable[[Progress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Restoration:
    """Restore a 2D (Y, X) plane or a 3D (Z, Y, X) stack (one plane at a time) with K samples.

    Parameters
    ----------
    model: a :class:`DiffusionModel`, a bundled model name or a checkpoint path.
    sampler: for paired models "ddim" (fast, ``steps`` and ``eta``), "ddpm" (the seed procedure:
        all T steps) or "ddim-dc" (DDIM pulled towards K∗ŷ = image, needs ``psf``); for unpaired
        models "fb", "mixing", "repaint" or "repaint-baikal". Sampler parameters go in
        ``sampler_params`` (see ``core.sampler_registry.SAMPLERS``).
    psf: the point spread function (2D array, any scale; normalised to sum 1) for "ddim-dc".
    n_samples: K, the number of samples averaged; std and entropy are taken over them.
    steps: DDIM steps (default 10); ignored by "ddpm".
    eta: DDIM stochasticity, 0 (deterministic given the starting noise) to 1 (ancestral).
    seed: the same seed gives the same output on the same device.
    tile, overlap: tile size and overlap in pixels (default: the model's tile, 25 % overlap).
    percentiles: normalisation percentiles (default: those the model was trained with).
    progress: called with a :class:`Progress` after every network step.
    keep_samples: also return the K samples themselves (``.samples``, K × the input's shape).
    cancel: polled after every step; returning True raises :class:`Cancelled`.

    Returns a :class:`Restoration` whose ``mean``, ``std`` and ``entropy`` have the input's shape.
    """
    if not isinstance(model, DiffusionModel):
        from .checkpoint import load_model

        model = load_model(model)
    run = iter_denoise(
        image, model, sampler=sampler, n_samples=n_samples, steps=steps, eta=eta, seed=seed, device=device,
        tile=tile, overlap=overlap, percentiles=percentiles, batch_pixels=batch_pixels, keep_samples=keep_samples,
        sampler_params=sampler_params, psf=psf,
    )
    result, cancelled = drive(run, progress, cancel)
    if cancelled:
        raise Cancelled("denoising was cancelled")
    return result
