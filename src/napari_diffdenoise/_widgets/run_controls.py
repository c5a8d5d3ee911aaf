"""Form controls for a run's settings, each made from its declaration (core.run_spec.RunParam):
bounds, step, default, choices, label and tooltip are the declaration's, so the form cannot
offer what the library refuses or explain a setting differently from the CLI."""
from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from ..core.run_spec import RunParam
from ..core.sampler_registry import Param
from ..core.schedules import NoiseSchedule

# what an optional number's control shows for "none": its lowest value (0 intervals' coverage: no intervals)
NONE_HINT = " 0: none."


def control_for(setting: RunParam, **overrides):
    """The control for ``setting``; ``overrides`` replace what the form must decide itself (e.g. the
    device choices this machine has)."""
    kwargs = dict(label=setting.label or setting.name, value=setting.default, tooltip=setting.help)
    if setting.type is bool:
        kind = CheckBox
        kwargs["text"] = kwargs.pop("label")  # a check box reads as a sentence beside its box
    elif setting.type is str:
        kind = ComboBox
        kwargs["choices"] = setting.labelled_options()
    else:
        kind = SpinBox if setting.type is int else FloatSpinBox
        low = setting.low
        high = setting.most_offered if setting.most_offered is not None else setting.high
        if setting.optional and setting.default is None:  # the control's 0 stands for None
            low, kwargs["value"] = 0, 0
            kwargs["tooltip"] += NONE_HINT
        kwargs.update(min=low if low is not None else 0, max=high)
        if setting.step is not None:
            kwargs["step"] = setting.step
    kwargs.update(overrides)
    return kind(**kwargs)


def control_value(setting: RunParam, value):
    """The setting's value from its control's: 0 is None for an optional number without a default."""
    if setting.optional and setting.default is None and setting.type in (int, float) and value <= 0:
        return None
    return value


def follow_param(control, spec: Param, schedule: NoiseSchedule, value=None) -> None:
    """Make ``control`` the sampler parameter ``spec`` (core.sampler_registry.Param) for a model with
    this ``schedule``: its label, help and bounds (a bound of T is the model's step count), holding
    ``value`` (the declared default when None) brought within them. One control follows the
    declaration of whichever sampler and model are chosen, so it never offers what that run refuses."""
    control.label, control.tooltip = spec.label or spec.name, spec.help
    value = spec.default_for(schedule) if value is None else value
    if spec.type in (int, float):
        low, high = spec.bounds(schedule)
        control.min = 0 if low is None else low
        if high is not None:
            control.max = high
        value = min(max(value, control.min), control.max)
    control.value = value
