"""Diffusion-model denoising of fluorescence microscopy with pixel-wise uncertainty.

The public API is importable without Qt or napari::

    from napari_diffdenoise import load_model, denoise, list_models
"""
from .core._version import __version__
from .core.adapt import adapt
from .core.batch import denoise_to_tiff, denoise_to_zarr
from .core.bioimageio_export import export_bioimageio, import_bioimageio
from .core.calibration import calibrate
from .core.checkpoint import list_models, load_model, save_checkpoint
from .core.finetune import train
from .core.maps import LayerStyle, register_map
from .core.model import DiffusionModel
from .core.restore import Cancelled, Progress, Restoration, denoise
from .core.run_keywords import RunSpec
from .core.sampler_registry import Param, list_samplers, register_sampler
from .core.simulate import NoiseModel
from .core.training import TrainConfig

__all__ = [
    "Cancelled",
    "DiffusionModel",
    "LayerStyle",
    "NoiseModel",
    "Param",
    "Progress",
    "Restoration",
    "RunSpec",
    "TrainConfig",
    "__version__",
    "adapt",
    "calibrate",
    "denoise",
    "denoise_to_tiff",
    "denoise_to_zarr",
    "export_bioimageio",
    "import_bioimageio",
    "list_models",
    "list_samplers",
    "load_model",
    "register_map",
    "register_sampler",
    "save_checkpoint",
    "train",
]
