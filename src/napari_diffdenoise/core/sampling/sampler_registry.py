"""Which samplers exist, which model kinds they fit, and their parameters, declared once.

A sampler is one generator function (the signature of :mod:`.samplers`) plus one call to
:func:`register_sampler` that declares its parameters as :class:`~.params.Param` specs and its cost in
network evaluations. Validation (:meth:`SamplerInfo.parameters`), the CLI's ``--sampler`` choices
and ``--sampler-param`` help, the Denoise widget's controls and the result's metadata are all
derived from those specs, so a sampler registered from a user's own code shows up everywhere.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..model.schedules import NoiseSchedule
from . import dc_sampling, guided, sample_head, samplers, solvers
from .consistency import REGULARISERS
from .params import Param, T


@dataclass(frozen=True)
class SamplerInfo:
    name: str
    function: Callable
    model_kinds: tuple[str, ...]
    description: str
    params: tuple[Param, ...] = ()
    # network evaluations per sample for the given parameters: the sampler's own count
    evaluations: Callable[[NoiseSchedule, dict], int] = lambda schedule, params: schedule.n_steps
    needs_observation: bool = False  # guided by the noisy image itself (unconditional models)
    needs_psf: bool = False  # steered by data consistency with a known PSF (PI-DDPM)
    # rules between parameters (e.g. stop below start); raises ValueError naming them
    relations: Callable[[dict], None] | None = None
    extra: dict = field(default_factory=dict)
    # the model's one-step network it draws with instead of the diffusion network (a DiffusionModel
    # attribute, e.g. "sample_network"); None: it steps the diffusion network
    head: str | None = None

    def fits(self, model) -> bool:
        """Whether it can run with ``model``: its kind, and the head it draws with when it needs one."""
        return model.kind in self.model_kinds and (self.head is None or getattr(model, self.head, None) is not None)

    def spec(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self, schedule: NoiseSchedule) -> dict:
        return {p.name: p.default_for(schedule) for p in self.params}

    @property
    def tooltips(self) -> dict:
        return {p.name: p.help for p in self.params}

    def parameters(self, schedule: NoiseSchedule, given: dict | None = None) -> dict:
        """Defaults for this model's schedule, overridden by ``given``, each checked against its
        spec; unknown names are refused."""
        given = dict(given or {})
        names = [p.name for p in self.params]
        unknown = sorted(set(given) - set(names))
        if unknown:
            takes = f"it takes {names}" if names else "it takes none"
            raise ValueError(f"sampler {self.name!r} has no parameter(s) {unknown}; {takes}")
        params = {p.name: p.check(given[p.name], schedule) if p.name in given else p.default_for(schedule)
                  for p in self.params}
        if self.relations is not None:
            self.relations(params)
        return params

    def n_evaluations(self, schedule: NoiseSchedule, params: dict) -> int:
        return int(self.evaluations(schedule, params))


SAMPLERS: dict[str, SamplerInfo] = {}


def register_sampler(
    name: str,
    function: Callable,
    *,
    params: tuple[Param, ...] | list[Param] = (),
    evaluations: Callable[[NoiseSchedule, dict], int],
    model_kinds: tuple[str, ...] = ("paired",),
    description: str = "",
    needs_observation: bool = False,
    needs_psf: bool = False,
    relations: Callable[[dict], None] | None = None,
    head: str | None = None,
    replace: bool = False,
) -> SamplerInfo:
    """Make ``function`` available as sampler ``name`` in :func:`denoise`, the CLI and the widget.

    ``function(eps_fn, schedule, y_T, noise_fn, *, clip, **params)`` is a generator yielding a
    :class:`~.samplers.SamplerStep` after each network evaluation and returning the final sample
    (see :mod:`.samplers`); ``params`` declares every keyword it takes besides ``clip`` (and
    ``observation`` / ``consistency`` when ``needs_observation`` / ``needs_psf``);
    ``evaluations(schedule, params)`` is how many times it calls ``eps_fn`` per sample. With ``head``
    (a DiffusionModel attribute holding a one-step network) ``eps_fn`` is that network run over the
    plane instead of the diffusion network, and only models carrying it can use the sampler.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a sampler needs a name; got {name!r}")
    if name in SAMPLERS and not replace:
        raise ValueError(f"a sampler named {name!r} is already registered; pass replace=True to replace it")
    info = SamplerInfo(name, function, tuple(model_kinds), description, tuple(params), evaluations,
                       needs_observation, needs_psf, relations, head=head)
    SAMPLERS[name] = info
    return info


def list_samplers(model_kind: str | None = None) -> list[str]:
    """Names of the registered samplers, those that fit ``model_kind`` ("paired"/"unpaired") if given."""
    return [n for n, s in SAMPLERS.items() if model_kind is None or model_kind in s.model_kinds]


samplers_for = list_samplers


def samplers_for_model(model) -> list[str]:
    """Names of the registered samplers that can run with ``model`` (its kind, and the heads it carries)."""
    return [n for n, s in SAMPLERS.items() if s.fits(model)]


def get_sampler(name: str, model_kind: str) -> SamplerInfo:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    info = SAMPLERS[name]
    if model_kind not in info.model_kinds:
        article = "an" if model_kind[:1] in "aeiou" else "a"
        raise ValueError(f"sampler {name!r} does not work with {article} {model_kind} model; "
                         f"use one of {sorted(list_samplers(model_kind))}")
    return info


# --- the package's own samplers -------------------------------------------------------------------
def _scaled(steps_of_1000: int):
    """Baikal's defaults are for T = 1000; keep the same fraction of this model's T."""
    return lambda schedule: max(1, round(steps_of_1000 * schedule.n_steps / 1000))


STEPS = Param("steps", int, 10, 1, T, help="Network evaluations per sample: more is slower and a little sharper",
              label="Steps")
# η = 1 by default: at equal cost it ranks the errors at least as well as η = 0 and gives narrower
# calibrated intervals from 10 steps on (docs/benchmarks/samplers.md); η = 0 is no posterior sampler
ETA = Param("eta", float, 1.0, 0.0, 1.0, label="Randomness", step=0.1,
            help="How much fresh noise each step adds: 1 draws honest posterior samples (the spread is the "
                 "uncertainty), 0 follows one deterministic path per starting noise (η of DDIM, Song et al. 2021)")
# at least 1: N = 0 would hand back the noisy image with std 0, a claim of total certainty
START = Param("start", int, _scaled(100), 1, T, label="Diffusion depth",
              help="How far the image is diffused before denoising back: more removes more noise and invents "
                   "more (best near 20 of 200 at 10-30 photons, 40 at 3: see the unpaired benchmark). "
                   "N in Baikal's forward-backward sampler")
# η: the best mean PSNR of the physics benchmark's sweep on tuning images apart from its table's
# (η = 1 and 2 were within 0.05 dB; 4 and more lose at 10 photons)
DC_GUIDANCE = 2.0


def _mixing_relations(p: dict) -> None:
    if p["stop"] > p["start"]:
        raise ValueError(f"stop ({p['stop']}) must not be above start ({p['start']}): mixing runs from start down to stop")


def _repaint_evaluations(schedule, p):
    start, block = p["start"], p["block"]
    return sum(min(block, top + 1) for top in range(start - 1, -1, -block)) * p["repeats"]


def _register_builtins() -> None:
    steps_only = lambda schedule, p: p["steps"]
    register_sampler("ddim", samplers.ddim, params=(STEPS, ETA), evaluations=steps_only,
                     description="DDIM on a respaced schedule: few steps, fast (default)")
    register_sampler("ddpm", samplers.ddpm, evaluations=lambda schedule, p: schedule.n_steps,
                     description="Ancestral DDPM over all T steps: the seed procedure, slow")
    register_sampler(
        "ddim-dc", dc_sampling.ddim_dc, needs_psf=True, evaluations=steps_only,
        description="DDIM steered towards data consistency with a known PSF (PI-DDPM): for deconvolving models",
        params=(STEPS, ETA,
                Param("guidance", float, DC_GUIDANCE, 0.0, 100.0, label="Match to the blurred image",
                      help="How strongly each step is pulled towards an estimate that, blurred by the PSF, matches "
                           "the image: 0 = no pull, plain DDIM; more follows the data, and its noise, more closely. "
                           "The guidance strength η of PI-DDPM's annealed data-consistency step (docs/method.md)"),
                Param("regulariser", str, "none", choices=tuple(REGULARISERS), label="Background preference",
                      help="Extra preference for the estimate: l1 favours a dark background (sparse objects), l2 "
                           "small values; none for neither. The regulariser R of PI-DDPM"),
                Param("reg_weight", float, 0.015, 0.0, 10.0, label="Preference strength",
                      help="How much the background preference counts against matching the image: the weight λ "
                           "of PI-DDPM's regulariser (the paper uses 0.015 with l1)")))
    register_sampler("one-step", sample_head.one_step, evaluations=lambda schedule, p: 1, head="sample_network",
                     description="One network evaluation per sample: the sample head, distilled from DDIM's "
                                 "samples (core/sampling/sample_head.py); for models that carry it")
    register_sampler("dpm++2m", solvers.dpmpp_2m, params=(STEPS,), evaluations=steps_only,
                     description="DPM-Solver++(2M): a second-order deterministic solver (Lu et al. 2022)")
    register_sampler("dpm++2m-sde", solvers.dpmpp_2m_sde, params=(STEPS,), evaluations=steps_only,
                     description="DPM-Solver++(2M) SDE: the stochastic variant, a posterior sampler (Lu et al. 2022)")
    register_sampler(
        "heun", solvers.edm_heun, evaluations=solvers.heun_evaluations,
        description="EDM's stochastic Heun sampler (Karras et al. 2022, Alg. 2)",
        params=(Param("steps", int, 5, 1, T, label="Steps", help="Noise levels visited; each but the last costs two "
                      "network evaluations"),
                Param("churn", float, 0.0, 0.0, 10.0, label="Extra randomness",
                      help="Noise added back at each level before stepping on: 0 is the deterministic Heun "
                           "sampler, more gives more varied samples. S_churn of EDM (Karras et al. 2022, Alg. 2)"),
                Param("rho", float, 7.0, 1.0, 20.0, label="Finer steps near the end",
                      help="How much the steps crowd towards the last, low-noise levels, where fine detail is "
                           "drawn: 1 spaces them evenly. ρ of EDM's noise levels (Karras et al. 2022, Eq. 5; "
                           "their default 7)")))

    register_sampler("fb", guided.forward_backward, params=(START,), model_kinds=("unpaired",), needs_observation=True,
                     evaluations=lambda s, p: p["start"],
                     description="Forward-Backward: diffuse the image to step N, then denoise back (Baikal)")
    register_sampler(
        "mixing", guided.mixing, model_kinds=("unpaired",), needs_observation=True,
        evaluations=lambda s, p: p["start"], relations=_mixing_relations,
        description="Forward-Backward, mixing the diffused image back in at every step down to n (Baikal)",
        params=(START,
                Param("stop", int, _scaled(20), 0, T, label="Mixing stops at step",
                      help="The step below which the image is no longer mixed back in (n in Baikal's mixing sampler)"),
                Param("weight_start", float, 0.3, 0.0, 1.0, label="Image mixed in, first step",
                      help="How much of the diffused image is mixed in at the first step (0…1; the weight at step "
                           "N in Baikal's mixing sampler); it falls linearly to the last mixing step's"),
                Param("weight_stop", float, 0.01, 0.0, 1.0, label="Image mixed in, last step",
                      help="How much of the diffused image is mixed in at the last mixing step (0…1; the weight at "
                           "step n in Baikal's mixing sampler)")))
    repaint_params = (
        Param("start", int, _scaled(60), 1, T, label=START.label, help=START.help),
        Param("block", int, _scaled(10), 1, T, label="Steps per block",
              help="Steps in each block that is repeated (U of RePaint, Lugmayr et al. 2022)"),
        Param("repeats", int, 3, 1, 100, label="Repeats per block",
              help="How many times each block is run: more harmonises the image better and costs more (R of RePaint, "
                   "Lugmayr et al. 2022)"),
        Param("mix_weight", float, 0.5, 0.0, 1.0, label="Image mixed in",
              help="How much of the diffused image is mixed in before each step (0…1)"),
        Param("mix_stop", int, _scaled(50), 0, T, label="Mixing stops at step", help="No mixing below this step"))
    register_sampler("repaint", guided.repaint, model_kinds=("unpaired",), needs_observation=True,
                     evaluations=_repaint_evaluations,
                     params=(*repaint_params, Param("renoise", bool, True, label="Re-noise between repeats",
                                                    help="True RePaint re-noises between repeats; Baikal's code does not")),
                     description="True RePaint: blocks of U steps repeated R times, re-noised between repeats")
    register_sampler("repaint-baikal", guided.repaint, model_kinds=("unpaired",), needs_observation=True,
                     evaluations=_repaint_evaluations,
                     params=(*repaint_params, Param("renoise", bool, False, label="Re-noise between repeats",
                                                    help="True RePaint re-noises between repeats; Baikal's code does not")),
                     description="Repaint as in Baikal's code: blocks repeated without re-noising")


_register_builtins()
