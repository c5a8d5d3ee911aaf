"""A diffusion model as the rest of the package sees it: network + schedule + its metadata."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..imaging.normalization import DEFAULT_PERCENTILES, SAMPLE_RANGE
from ..imaging.pilot_wiener import ALWAYS, IF_BRIGHT
from .network import NOISE_GAMMA, UNet, UNetConfig, noise_gamma
from .schedules import NoiseSchedule

MODEL_KINDS = ("paired", "unpaired")
TASKS = ("denoise", "deconvolve")
# the estimates of the [mean] a model may declare (DiffusionModel.mean_estimator); a run also takes
# "auto", which resolves to the model's (core.run.run_spec.MEAN_ESTIMATORS)
MODEL_MEAN_ESTIMATORS = ("head", "x0", "samples")
# what may refine a mean head's [mean] (DiffusionModel.mean_refinement)
MEAN_REFINEMENTS = ("none", ALWAYS, IF_BRIGHT)
MEAN_HEAD_GAMMA = 0.5  # a blind head's noise-level input: any constant; its embedding acts as a learnt bias
PREDICTIONS = ("eps", "v")


@dataclass
class DiffusionModel:
    network: UNet
    schedule: NoiseSchedule
    kind: str = "paired"  # "paired" (conditioned on the noisy image) or "unpaired" (unconditional)
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES  # normalisation used in training
    tile: int = 256  # the tile the network was trained for and runs fastest on a CPU
    name: str = "untitled"
    sha256: str = ""  # of the checkpoint file it came from; empty for an unsaved model
    provenance: dict = field(default_factory=dict)  # how it was trained
    # what the raw network output means: "eps" (ε, as in the seed paper) or "v" = √γ·ε − √(1−γ)·y₀
    # (Salimans & Ho 2022). Samplers always receive ε (see :meth:`predict_eps`).
    prediction: str = "eps"
    # the range x̂0 is clipped to while sampling, in model units: (−1.5, 1.5) for denoising; a
    # deconvolving model's sharp targets reach far above the blurred image's +1
    value_range: tuple[float, float] = SAMPLE_RANGE
    # conformal calibrations of the uncertainty (core.run.conformal.Calibration.to_dict), one per
    # sampler setting they were measured for; fine-tuning drops them (the spread changes)
    calibrations: list = field(default_factory=list)
    # the [mean] estimate this model recommends (MODEL_MEAN_ESTIMATORS): "head" when it carries a
    # mean head, "x0" once its noisiest level was trained as the posterior mean, else "samples"
    mean_estimator: str = "samples"
    # a one-step network trained on the MSE to the clean image (CARE-style, Weigert et al. 2018): the
    # estimate of E[clean | noisy] in one evaluation. Unconditional U-Net; the noisy image is its input.
    mean_network: UNet | None = None
    mean_provenance: dict = field(default_factory=dict)
    # the mean head's γ input: a constant (a blind head) or NOISE_GAMMA (each input's own noise level,
    # network.noise_gamma: one head across a 2500× photon range, docs/training.md 'Bright camera frames')
    mean_head_gamma: float | str = MEAN_HEAD_GAMMA
    # what refines the mean head's [mean] once it is made (MEAN_REFINEMENTS, core.imaging.pilot_wiener): ALWAYS where
    # adapting showed it better on the user's own series (core.training.adapt_criteria.refinement_judge), IF_BRIGHT
    # on bright planes (the bundled demo's head, with which the threshold was measured)
    mean_refinement: str = "none"
    # a one-step network for the mean head's expected squared error (core.model.std_head): a std map in one
    # evaluation; conditioned on the noisy image and the mean head's estimate
    std_network: UNet | None = None
    std_provenance: dict = field(default_factory=dict)
    # a one-step posterior sampler distilled from the diffusion sampler (core.sampling.sample_head): a sample
    # in one evaluation from a noise field, conditioned on the noisy image and the mean head's estimate
    sample_network: UNet | None = None
    sample_provenance: dict = field(default_factory=dict)

    # what the model restores: "deconvolve" for a model trained on blurred → sharp pairs (PI-DDPM),
    # which is then sampled with PSF guidance by default; inherited by models fine-tuned from it
    task: str = "denoise"

    @property
    def default_sampler(self) -> str:
        """The sampler a run uses when none is named (the library, the CLI and the widget alike)."""
        if self.kind == "unpaired":
            return "fb"
        if self.task == "deconvolve":
            return "ddim-dc"
        # the default preset's first choice (core.run.run_presets): a sample per network evaluation, drawn by
        # the sample head about the mean head's estimate, when the model carries both
        return "one-step" if self.sample_network is not None and self.mean_network is not None else "ddim"

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; use one of {MODEL_KINDS}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; use one of {TASKS}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; use one of {PREDICTIONS}")
        expected = 1 if self.kind == "paired" else 0
        if self.network.config.cond_channels != expected:
            raise ValueError(f"a {self.kind} model needs cond_channels={expected}")

    @classmethod
    def create(cls, config: UNetConfig | None = None, schedule: NoiseSchedule | None = None, kind: str = "paired", **kw):
        config = config or UNetConfig(cond_channels=1 if kind == "paired" else 0)
        return cls(UNet(config), schedule or NoiseSchedule(), kind=kind, **kw)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def predict_eps(self, y_t: torch.Tensor, gamma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """ε̂(y_t, γ, cond) whatever the network's parametrisation; γ has one value per batch item."""
        out = self.network(y_t, gamma, cond if self.kind == "paired" else None)
        if self.prediction == "eps":
            return out
        # in float32 whatever the network ran in: γ rounded to bfloat16 (steps of 2⁻⁸ below 1) reads 0.999 as 1
        # and drops the √(1 − γ)·y_t term at the least noisy steps
        g = gamma.float().view(-1, 1, 1, 1)
        return (1 - g).sqrt() * y_t + g.sqrt() * out  # ε from v (Salimans & Ho 2022, §4)

    def predict_mean(self, noisy: torch.Tensor) -> torch.Tensor:
        """The mean head's estimate of the clean image, in model units, from the normalised noisy image."""
        if self.mean_network is None:
            raise ValueError(f"model {self.name!r} has no mean head; use mean='samples'")
        if self.mean_head_gamma == NOISE_GAMMA:
            gamma = noise_gamma(noisy)
        else:
            gamma = torch.full((len(noisy),), float(self.mean_head_gamma), device=noisy.device)
        return self.mean_network(noisy, gamma)

    def metadata(self) -> dict:
        return {
            "format": "napari-diffdenoise/1",
            "kind": self.kind,
            "task": self.task,
            "prediction": self.prediction,
            "architecture": {"name": "unet", **self.network.config.to_dict()},
            "schedule": self.schedule.to_dict(),
            "normalization": {"method": "percentile", "percentiles": list(self.percentiles), "range": [-1, 1],
                              "value_range": list(self.value_range)},
            "tile": self.tile,
            "name": self.name,
            "provenance": self.provenance,
            "calibrations": self.calibrations,
            "mean_estimator": self.mean_estimator,
            # written only when set: every checkpoint before it, and its file's sha256, stays as it was
            **({"mean_refinement": self.mean_refinement} if self.mean_refinement != "none" else {}),
            **({"mean_head": {"architecture": {"name": "unet", **self.mean_network.config.to_dict()},
                              "gamma": self.mean_head_gamma, "provenance": self.mean_provenance}}
               if self.mean_network is not None else {}),
            **({"std_head": {"architecture": {"name": "unet", **self.std_network.config.to_dict()},
                             "provenance": self.std_provenance}}
               if self.std_network is not None else {}),
            **({"sample_head": {"architecture": {"name": "unet", **self.sample_network.config.to_dict()},
                                "provenance": self.sample_provenance}}
               if self.sample_network is not None else {}),
        }
