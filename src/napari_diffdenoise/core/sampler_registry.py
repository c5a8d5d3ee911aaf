"""Which samplers exist, which model kinds they fit, their parameters and defaults."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import dc_sampling, guided, samplers
from .consistency import REGULARISERS
from .schedules import NoiseSchedule


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    function: Callable
    model_kinds: tuple[str, ...]
    description: str
    defaults: Callable[[NoiseSchedule], dict] = lambda schedule: {}
    needs_observation: bool = False  # guided by the noisy image itself (unconditional models)
    tooltips: dict = field(default_factory=dict)
    needs_psf: bool = False  # steered by data consistency with a known PSF (PI-DDPM)

    def parameters(self, schedule: NoiseSchedule, given: dict | None = None) -> dict:
        """Defaults for this model's schedule, overridden by ``given``; unknown names are refused."""
        params = self.defaults(schedule)
        unknown = set(given or {}) - set(params)
        if unknown:
            raise ValueError(f"sampler {self.name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(params)}")
        params.update(given or {})
        for key in ("start", "steps"):
            if key in params and not (0 if key == "start" else 1) <= params[key] <= schedule.n_steps:
                raise ValueError(f"{key} must be between {0 if key == 'start' else 1} and {schedule.n_steps}, "
                                 f"got {params[key]}")
        for key in ("eta", "weight_start", "weight_stop", "mix_weight"):
            if key in params and not 0 <= params[key] <= 1:
                raise ValueError(f"{key} must be between 0 and 1, got {params[key]}")
        for key in ("block", "repeats"):
            if key in params and params[key] < 1:
                raise ValueError(f"{key} must be at least 1, got {params[key]}")
        for key in ("guidance", "reg_weight"):
            if key in params and params[key] < 0:
                raise ValueError(f"{key} must not be negative, got {params[key]}")
        if "regulariser" in params and params["regulariser"] not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}, got {params['regulariser']!r}")
        return params

    def n_evaluations(self, schedule: NoiseSchedule, params: dict) -> int:
        if self.name == "ddpm":
            return schedule.n_steps
        if self.name in ("ddim", "ddim-dc"):
            return params["steps"]
        if self.name.startswith("repaint"):
            start, block = params["start"], params["block"]
            return sum(min(block, top + 1) for top in range(start - 1, -1, -block)) * params["repeats"]
        return params["start"]


START_TIP = ("N: how far the image is diffused before denoising back; more removes more noise and invents more "
             "(docs/benchmarks/unpaired.md: best near 20 of 200 at 10-30 photons, 40 at 3)")
REPAINT_TIPS = {"start": START_TIP, "block": "U: steps per block", "repeats": "R: runs of each block",
                "mix_weight": "weight of the diffused image mixed in before each step",
                "mix_stop": "no mixing below this step", "renoise": "re-noise between repeats (true RePaint)"}
# η: the best mean PSNR of the sweep in docs/benchmarks/physics.md, on tuning images apart from the
# table's (η = 1 and 2 were within 0.05 dB; 4 and more lose at 10 photons)
DC_GUIDANCE = 2.0


def _scaled(schedule: NoiseSchedule, steps_of_1000: int) -> int:
    """Baikal's defaults are for T = 1000; keep the same fraction of this model's T."""
    return max(1, round(steps_of_1000 * schedule.n_steps / 1000))


SAMPLERS: dict[str, SamplerInfo] = {
    "ddim": SamplerInfo("ddim", samplers.ddim, ("paired",), "DDIM on a respaced schedule: few steps, fast (default)",
                        lambda s: {"steps": 10, "eta": 0.0}),
    "ddpm": SamplerInfo("ddpm", samplers.ddpm, ("paired",), "Ancestral DDPM over all T steps: the seed procedure, slow"),
    "ddim-dc": SamplerInfo("ddim-dc", dc_sampling.ddim_dc, ("paired",),
                           "DDIM steered towards data consistency with a known PSF (PI-DDPM): for deconvolving models",
                           lambda s: {"steps": 10, "eta": 0.0, "guidance": DC_GUIDANCE, "regulariser": "none",
                                      "reg_weight": 0.015}, True,
                           {"guidance": "η: strength of the pull towards K∗ŷ = observation (0 = plain DDIM)",
                            "regulariser": "extra prior on ŷ: l1 favours a dark background, l2 small values",
                            "reg_weight": "λ: weight of the regulariser (PI-DDPM: 0.015 with L1)"},
                           needs_psf=True),
    "fb": SamplerInfo("fb", guided.forward_backward, ("unpaired",),
                      "Forward-Backward: diffuse the image to step N, then denoise back (Baikal)",
                      lambda s: {"start": _scaled(s, 100)}, True,
                      {"start": START_TIP}),
    "mixing": SamplerInfo("mixing", guided.mixing, ("unpaired",),
                          "Forward-Backward, mixing the diffused image back in at every step down to n (Baikal)",
                          lambda s: {"start": _scaled(s, 100), "stop": _scaled(s, 20), "weight_start": 0.3,
                                     "weight_stop": 0.01}, True,
                          {"start": START_TIP, "stop": "n: the step below which no more mixing happens",
                           "weight_start": "mixing weight at N", "weight_stop": "mixing weight at n"}),
    "repaint": SamplerInfo("repaint", guided.repaint, ("unpaired",),
                           "True RePaint: blocks of U steps repeated R times, re-noised between repeats",
                           lambda s: {"start": _scaled(s, 60), "block": _scaled(s, 10), "repeats": 3,
                                      "mix_weight": 0.5, "mix_stop": _scaled(s, 50), "renoise": True}, True,
                           REPAINT_TIPS),
    "repaint-baikal": SamplerInfo("repaint-baikal", guided.repaint, ("unpaired",),
                                  "Repaint as in Baikal's code: blocks repeated without re-noising",
                                  lambda s: {"start": _scaled(s, 60), "block": _scaled(s, 10), "repeats": 3,
                                             "mix_weight": 0.5, "mix_stop": _scaled(s, 50), "renoise": False}, True,
                                  REPAINT_TIPS),
}


def get_sampler(name: str, model_kind: str) -> SamplerInfo:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    info = SAMPLERS[name]
    if model_kind not in info.model_kinds:
        usable = sorted(n for n, s in SAMPLERS.items() if model_kind in s.model_kinds)
        raise ValueError(f"sampler {name!r} does not work with a {model_kind} model; use one of {usable}")
    return info


def samplers_for(model_kind: str) -> list[str]:
    return [n for n, s in SAMPLERS.items() if model_kind in s.model_kinds]
