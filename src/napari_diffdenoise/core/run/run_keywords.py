"""A run's settings as keywords and as one value, both built from their declaration (core.run.run_spec):
the signature a function that takes them shows (:func:`run_signature`), the values it is given
with the defaults filled in and an unknown name refused (:func:`run_values`), and :class:`RunSpec`,
the settings of a run as one frozen value that round-trips through JSON.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable

import numpy as np

from .run_spec import RUN_SETTINGS


def run_keywords() -> list[inspect.Parameter]:
    """Each run setting (core.run.run_spec) as the keyword a function that takes it shows, at its declared
    default."""
    return [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default,
                              annotation=s.type | None if s.optional else s.type) for s in RUN_SETTINGS]


def run_signature(*, after: tuple[str, ...] = (), rest: str | None = None) -> Callable[[Callable], Callable]:
    """Gives a function that takes the run settings through ``**`` the signature that shows each of
    them (what help(), IDEs and inspect.signature read), so that none is listed by hand: its own
    parameters, the run keywords, then its parameters named in ``after``; ``rest`` names a ``**``
    that stays for keywords of another kind (a method's own parameters)."""
    def declare(function: Callable) -> Callable:
        own = [p for p in inspect.signature(function).parameters.values() if p.kind is not p.VAR_KEYWORD]
        parameters = [p for p in own if p.name not in after] + run_keywords() + [p for p in own if p.name in after]
        if rest is not None:
            parameters.append(inspect.Parameter(rest, inspect.Parameter.VAR_KEYWORD))
        function.__signature__ = inspect.signature(function).replace(parameters=parameters)
        return function

    return declare


def split_run_settings(given: dict) -> tuple[dict, dict]:
    """(the run settings among ``given``, the other keywords)."""
    names = {s.name for s in RUN_SETTINGS}
    return {k: v for k, v in given.items() if k in names}, {k: v for k, v in given.items() if k not in names}


def run_values(given: dict, caller: str) -> dict:
    """Every run setting's value, the one given or else its declared default. A name that is no
    setting is refused, naming it and the accepted ones: a misspelt keyword would otherwise be
    dropped, and the run made with the default the caller meant to change."""
    settings, unknown = split_run_settings(given)
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, sorted(unknown)))}; "
                        f"a run's settings are {', '.join(s.name for s in RUN_SETTINGS)}")
    return {s.name: settings.get(s.name, s.default) for s in RUN_SETTINGS}


def _as_json_value(value):
    # a PSF is an array, percentiles a tuple: JSON holds both as lists, which the checks accept back
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value


def _plain(value):
    """A value that compares by content: arrays and lists become nested tuples."""
    if isinstance(value, (np.ndarray, list, tuple)):
        return tuple(_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value))
    return value


class _RunSpecMethods:
    def settings(self) -> dict:
        """The settings by name, as :func:`make_settings` and ``denoise`` take them."""
        return {s.name: getattr(self, s.name) for s in RUN_SETTINGS}

    def to_json(self) -> str:
        """The settings as a JSON object (the PSF and percentiles as lists)."""
        return json.dumps({name: _as_json_value(value) for name, value in self.settings().items()})

    @classmethod
    def from_json(cls, text: str):
        """The spec :meth:`to_json` wrote; a name that is no setting is refused."""
        return cls(**json.loads(text))

    def replace(self, **overrides):
        """This spec with the settings named in ``overrides`` changed."""
        return dataclasses.replace(self, **overrides)

    def __post_init__(self):
        # a frozen spec compares by content; the PSF and percentiles as nested tuples, whatever was given
        for name in ("psf", "percentiles"):
            object.__setattr__(self, name, _plain(getattr(self, name)))


# A run's settings as one value, built from the declaration (core.run.run_spec): made without a model,
# unchecked until make_settings resolves it against one; a name that is no setting is refused by
# its constructor, as by make_settings.
RunSpec = dataclasses.make_dataclass(
    "RunSpec", [(s.name, s.type | None if s.optional else s.type, dataclasses.field(default=s.default))
                for s in RUN_SETTINGS],
    bases=(_RunSpecMethods,), frozen=True, kw_only=True)
RunSpec.__module__ = __name__  # make_dataclass takes module= only from Python 3.12
RunSpec.__doc__ = ("A run's settings (core.run.run_spec) as one frozen value, made with their keywords, e.g. "
                   "``RunSpec(n_samples=4, coverage=0.9)``, the rest at their defaults: ``denoise(image, model, "
                   "spec=spec, seed=1)`` runs them, keywords given beside it taking precedence; :meth:`to_json` "
                   "and :meth:`from_json` write and read it. Checked against a model when it runs "
                   "(:func:`make_settings`).")


def settings_given(spec, given: dict, caller: str) -> dict:
    """The settings of ``spec`` (a :class:`RunSpec` or None), the keywords ``given`` beside it overriding them."""
    if spec is None:
        return given
    if not isinstance(spec, RunSpec):
        raise TypeError(f"{caller}() takes spec=RunSpec(…) (core.run.run_keywords); got {spec!r}")
    return {**spec.settings(), **given}
