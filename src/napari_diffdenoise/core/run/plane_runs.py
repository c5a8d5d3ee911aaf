"""What a run does to each plane (:func:`plane_run`): a model's run or a method's, each made from
settings or from the run's keywords (checked here), with the record its metadata keeps and the
network passes it makes per plane.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

from .._version import __version__
from ..io.maps import map_names
from ..model.model import DiffusionModel
from .methods import Method, MethodSettings, find_method, method_maps, method_record, method_settings
from .plane_loop import PlaneResult, PlaneRun
from .plane_sampling import device_model, restore_plane
from .run_keywords import RunSpec, run_signature, settings_given, split_run_settings
from .run_record import fingerprint_settings, metadata_settings, settings_record
from .run_settings import Settings, make_settings

# the provenance key of a checkpoint written for one run (core.calibration.on_image, for a local cluster's workers):
# the sha256 of the model it copies, calibrated on the run's input
CALIBRATED_COPY_OF = "calibrated_copy_of"


INTERVAL_FACTORS = "interval_factors"  # a store's fingerprint's entry for the calibration its intervals are scaled by


def model_identity(model: DiffusionModel) -> str:
    """The sha256 a run records and resumes its store under: its checkpoint's, or for a copy calibrated for the
    run, the source's (the copy's file holds its calibration's date, and the calibration is fingerprinted by its
    factors), as a copy calibrated in this process keeps it."""
    return model.provenance.get(CALIBRATED_COPY_OF) or model.sha256


def _metadata(model: DiffusionModel, s: Settings, evaluations: int, n_steps: int, seconds: float, extra: dict) -> dict:
    return {
        "model": model.name,
        "model_sha256": model_identity(model),
        "model_kind": model.kind,
        **s.params,  # each sampler parameter on its own too, as the metadata has always had them
        **metadata_settings(settings_record(s)),
        "n_steps": n_steps,
        "network_evaluations": evaluations,
        **({"interval_factor_per_channel": [s.calibration.factor(s.coverage, (0,) * s.calibration.channel_axis + (c,))
                                            for c in range(len(s.calibration.channel_factors))]}
           if s.coverage is not None and s.calibration.channel_factors else {}),
        **({"interval_factor": s.calibration.factor(s.coverage),
            "calibration_source": s.calibration.source,
            **s.calibration.record(s.coverage)}
           if s.coverage is not None else {}),
        **extra,
        "seconds": round(seconds, 3),
        "package_version": __version__,
    }


def network_passes(model: DiffusionModel, s: Settings) -> dict[str, int]:
    """{network: its sequential passes per plane} for the networks a run calls (DiffusionModel
    attributes): the network the sampler steps (the diffusion network, or the head it draws with)
    its evaluations per sample, none without samples; one pass for each one-pass network: the mean
    head, x̂₀ (the diffusion network), the std head, the heads' once per symmetry they are averaged
    over. Each pass of the sampled network runs K samples."""
    passes = {s.sampler.head or "network": s.sampler.n_evaluations(model.schedule, s.params) if s.n_samples else 0}
    # a sampler that draws with a head draws about the mean head's estimate, made first whatever the
    # mean is taken from (mean="head" reuses it)
    mean_head = s.mean_estimator == "head" or bool(s.n_samples and s.sampler.head is not None)
    passes["mean_network"] = s.symmetries * int(mean_head)
    passes["network"] = passes.get("network", 0) + (s.mean_estimator == "x0")
    passes["std_network"] = s.symmetries * int(s.std_estimator == "head")
    return {network: n for network, n in passes.items() if n}


def network_steps(model: DiffusionModel, s: Settings) -> int:
    """The run's sequential network steps per plane, as its metadata records them (:func:`network_passes`)."""
    return sum(network_passes(model, s).values())


def run_keywords_given(function: Callable, model, spec: RunSpec | None, given: dict) -> dict:
    """The run's keywords ``function`` was given: ``spec``'s settings, those given beside it over
    them. For a model's run a name that is no run setting (core.run.run_spec) is refused here, naming
    ``function`` and what it takes from its signature: a misspelt keyword would otherwise be dropped
    and the run made with the default the caller meant to change. A method's own parameters are
    checked by its declaration (:func:`~.methods.method_settings`)."""
    given = settings_given(spec, given, function.__name__)
    unknown = split_run_settings(given)[1]
    if find_method(model) is None and unknown:
        takes = [name for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY]
        raise TypeError(f"{function.__name__}() got unexpected keyword argument(s) {', '.join(sorted(unknown))}: "
                        "only a method (core.run.methods.METHODS) takes parameters of its own; a model's run takes "
                        f"{', '.join(takes)}")
    return given


def refuse_settings_with_keywords(function: Callable, settings, spec: RunSpec | None, given: dict) -> None:
    # made settings are the run's whole description: a keyword beside them would be dropped unseen
    named = sorted(given) + (["spec"] if spec is not None else [])
    if settings is not None and named:
        raise TypeError(f"{function.__name__}() takes settings (made by make_settings or method_settings) or the run's "
                        f"keywords, not both; got settings and {', '.join(named)}")


@run_signature(rest="method_params")
def plane_run(model: DiffusionModel | Method | str, settings: Settings | MethodSettings | None = None, *,
              spec: RunSpec | None = None, **given) -> PlaneRun:
    """The run of ``model`` (a DiffusionModel, or a method or its name) with ``settings``, or the
    run's keywords (core.run.run_spec; ``spec`` gives them as one value) and a method's own parameters."""
    refuse_settings_with_keywords(plane_run, settings, spec, given)
    kwargs = run_keywords_given(plane_run, model, spec, given)
    method = find_method(model)
    if method is not None:
        ms = settings if settings is not None else method_settings(method, **kwargs)

        def method_plane(plane, number, position, dtype, on_tile):
            maps = method_maps(plane, ms, dtype)
            yield 1, 1  # one step a plane: a cancel lands between planes
            return PlaneResult(tuple(position), maps, None, 0, False, 0)

        def method_metadata(evaluations, seconds, extra):
            return {**method_record(ms), **extra, "seconds": round(seconds, 3), "package_version": __version__}

        return PlaneRun(list(method.maps), method_plane, {"method": method.name}, method_record(ms), method_metadata, ms)
    s = settings if settings is not None else make_settings(model, **kwargs)
    moved = []  # the model on the run's device, made at the first plane (a cluster's coordinator needs none)

    def model_plane(plane, number, position, dtype, on_tile):
        if not moved:
            moved.append(device_model(model, s.device, network_passes(model, s)))
        return restore_plane(plane, moved[0], s, number, position, dtype, on_tile)

    n_steps = network_steps(model, s)
    fingerprint = {"model_sha256": model_identity(model), **fingerprint_settings(settings_record(s))}
    if s.coverage is not None:  # a store resumed under another calibration would hold intervals of two widths
        fingerprint[INTERVAL_FACTORS] = [s.calibration.factors, s.calibration.channel_factors]
    return PlaneRun(map_names(s), model_plane, {"model": model.name, "model_sha256": model_identity(model)}, fingerprint,
                    lambda evaluations, seconds, extra: _metadata(model, s, evaluations, n_steps, seconds, extra), s)
