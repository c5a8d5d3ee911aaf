"""One parameter declared once (:class:`Param`): its type, default, bounds and a plain-words
explanation, from which its check, its CLI option and its widget control are derived. Samplers declare
theirs (core.sampling.sampler_registry), and so do methods, training and adaptation."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ..model.schedules import NoiseSchedule

T = "T"  # a bound that stands for the model's number of training steps


def _number(bound):
    return bound if bound is None or isinstance(bound, str) else f"{bound:g}"


@dataclass(frozen=True)
class Param:
    """One sampler parameter: its type, default, accepted values and a plain-words explanation."""

    name: str
    type: type  # int, float, bool or str
    default: object  # a value, or a function of the model's NoiseSchedule
    low: float | None = None  # inclusive bounds for numbers; T means the model's step count
    high: float | str | None = None
    choices: tuple = ()  # the accepted strings, for type str
    help: str = ""  # tooltip and CLI help: what it does, in plain words
    label: str = ""  # the form label; the name when empty
    step: float | None = None  # a form's step for a float; None: worked out from its default and bounds

    def default_for(self, schedule: NoiseSchedule):
        return self.default(schedule) if callable(self.default) else self.default

    def bounds(self, schedule: NoiseSchedule) -> tuple[float | None, float | None]:
        def resolve(b):
            return schedule.n_steps if b == T else b

        return resolve(self.low), resolve(self.high)

    def accepted(self, schedule: NoiseSchedule) -> str:
        """What this parameter accepts, as a phrase for error messages and help."""
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low, high = (_number(b) for b in self.bounds(schedule))
        kind = "a whole number" if self.type is int else "a number"
        if low is not None and high is not None:
            return f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} of at least {low}"
        if high is not None:
            return f"{kind} of at most {high}"
        return kind

    def check(self, value, schedule: NoiseSchedule):
        """The value converted to this parameter's type, or a ValueError naming it, the value given
        and what would be accepted."""
        given = value

        def refuse():
            return ValueError(f"{self.name} must be {self.accepted(schedule)}; got {given!r}")

        if self.type is bool:
            if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
                return bool(value)
            raise refuse()
        if self.type is str:
            if isinstance(value, str) and value in self.choices:
                return value
            raise refuse()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise refuse()
        if self.type is int:
            if not float(value).is_integer():
                raise refuse()
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise refuse()
        low, high = self.bounds(schedule)
        if (low is not None and value < low) or (high is not None and value > high):
            raise refuse()
        return value
