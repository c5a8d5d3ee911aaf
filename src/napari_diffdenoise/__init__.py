"""Diffusion-model denoising of fluorescence microscopy with pixel-wise uncertainty.

The public API is importable without Qt or napari::

    from napari_diffdenoise import load_model, denoise, list_models
"""
from .core._version import __version__
from .core.calibration.calibration import calibrate
from .core.calibration.on_image import denoise, denoise_to_tiff, denoise_to_zarr
from .core.imaging.simulate import NoiseModel
from .core.io.bioimageio_export import export_bioimageio, import_bioimageio
from .core.io.checkpoint import list_models, load_model, save_checkpoint
from .core.io.maps import LayerStyle, register_map
from .core.model.model import DiffusionModel
from .core.run.restore import Cancelled, Progress, Restoration
from .core.run.run_keywords import RunSpec
from .core.sampling.params import Param
from .core.sampling.sampler_registry import list_samplers, register_sampler
from .core.training.adapt import adapt
from .core.training.finetune import train
from .core.training.train_config import TrainConfig

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
