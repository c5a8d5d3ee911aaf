"""The speed / quality presets, declared once: the sampling settings each one sets, for the models
that can run them. The Denoise widget's preset box (its labels and which preset the form shows) and
the library's default run (core.model.model.DiffusionModel.default_sampler) follow them; the CLI has no
preset option and takes the default.

A preset lists its settings in order of preference; a model takes the first whose sampler it can
run (core.sampling.sampler_registry.SamplerInfo.fits). With a sample head the fast and default presets draw
one network evaluation per sample (core/sampling/sample_head.py); the DDIM sampler they were before stays as
the thorough preset and for models without the head. η is the sampler's default (1) throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..sampling.sampler_registry import SAMPLERS
from .run_settings import DEFAULT_SAMPLER_SETTINGS, FAST_SAMPLER_SETTINGS


def _steps_samples(settings: dict) -> dict:
    """{"steps", "n_samples"} of a sampler-settings declaration: an option any sampler with steps can take."""
    return {"steps": settings["sampler_params"]["steps"], "n_samples": settings["n_samples"]}


def _declares_steps(sampler: str) -> bool:
    info = SAMPLERS.get(sampler)
    return info is not None and "steps" in {p.name for p in info.params}


@dataclass(frozen=True)
class Preset:
    """A preset's options, in order of preference. An option naming a sampler sets it; one without
    (steps and samples) fits any sampler that declares steps: the form keeps its sampler, and the
    library takes the model's default sampler when it declares steps, else DDIM."""

    name: str
    options: tuple[dict, ...]

    def option(self, model) -> dict:
        """The first option ``model`` can run; ValueError when it can run none (an unpaired model)."""
        option = self._first_fitting(model)
        if option is None:
            raise ValueError(f"preset {self.name!r} has no setting model {getattr(model, 'name', model)!r} can run")
        return option

    def fits(self, model) -> bool:
        return self._first_fitting(model) is not None

    def _first_fitting(self, model) -> dict | None:
        for option in self.options:
            info = SAMPLERS.get(option.get("sampler", "ddim"))
            if info is not None and info.fits(model) and (info.head is None or model.mean_network is not None):
                return dict(option)
        return None

    def settings(self, model) -> dict:
        """This preset's denoise() settings for ``model``, its sampler named."""
        option = self.option(model)
        if "sampler" not in option:
            option["sampler"] = model.default_sampler if _declares_steps(model.default_sampler) else "ddim"
        return option

    def matches(self, model, sampler: str, steps: int | None, n_samples: int, symmetries: int | None = None) -> bool:
        """Whether a form's sampler, steps, samples and symmetries are this preset's for ``model`` (None, or
        a model it cannot run: the last option, which needs no head). An option that names no symmetries
        takes the automatic count (None)."""
        option = self.option(model) if model is not None and self.fits(model) else dict(self.options[-1])
        if symmetries != option.get("symmetries"):
            return False
        if "sampler" in option:
            return (sampler, n_samples) == (option["sampler"], option["n_samples"]) and (
                "steps" not in option or steps == option["steps"])
        return _declares_steps(sampler) and (steps, n_samples) == (option["steps"], option["n_samples"])

    def label(self, model=None) -> str:
        """"name: its work" for ``model``; for no model, the option a model without heads takes."""
        return f"{self.name}: {work(self.option(model) if model is not None else self.options[-1])}"


def work(option: dict) -> str:
    """What a preset's option costs, in words: steps × samples (and the heads' one pass where it sets it)."""
    passes = ", one pass of the heads" if option.get("symmetries") == 1 else ""
    if "steps" in option:
        return f"{option['steps']} steps × {option['n_samples']} samples{passes}"
    return f"{option['n_samples']} samples, one step each{passes}"


def preset_samplers(model) -> set[str]:
    """The samplers the presets name for ``model`` (those without steps, whose presets set them)."""
    return {p.option(model)["sampler"] for p in PRESETS if p.fits(model) and "sampler" in p.option(model)}


ONE_STEP = "one-step"
# the fast preset's heads make one pass: averaged over the default's symmetries they took most of its time
# (docs/benchmarks/speed.md), which a user asking for speed does not want; the other options leave the
# count to the run (4 with the mean head, core.run.run_spec.SYMMETRIES)
PRESETS = (
    Preset("fast", ({"sampler": ONE_STEP, "n_samples": 4, "symmetries": 1}, _steps_samples(FAST_SAMPLER_SETTINGS))),
    Preset("default", ({"sampler": ONE_STEP, "n_samples": 8}, _steps_samples(DEFAULT_SAMPLER_SETTINGS))),
    Preset("thorough", ({"steps": 20, "n_samples": 16},)),
)
DEFAULT_PRESET = "default"


def preset(name: str) -> Preset:
    for p in PRESETS:
        if p.name == name:
            return p
    raise ValueError(f"preset must be one of {[p.name for p in PRESETS]}; got {name!r}")
