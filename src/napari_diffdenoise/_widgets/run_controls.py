"""Form controls for a run's settings (core.run.run_spec.RunParam) and for the samplers' and methods'
parameters (core.sampling.params.Param), each made from its declaration: bounds, step, default,
choices, label and tooltip are the declaration's, so the form cannot offer what the library refuses,
round what it accepts or explain a setting differently from the CLI."""
from __future__ import annotations

from decimal import Decimal

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox

from ..core.run.run_spec import RunParam
from ..core.sampling.params import T, Param
from ..core.model.schedules import NoiseSchedule

# what an optional number's control shows for "none": its lowest value (0 intervals' coverage: no intervals)
NONE_HINT = " In this form: 0 for none."


def control_for(setting: RunParam, **overrides):
    """The control for ``setting``; ``overrides`` replace what the form must decide itself (e.g. the
    device choices this machine has)."""
    start = setting.default if setting.form_default is None else setting.form_default
    kwargs = dict(label=setting.label or setting.name, value=start, tooltip=setting.help)
    if setting.type is bool:
        kind = CheckBox
        kwargs["text"] = kwargs.pop("label")  # a check box reads as a sentence beside its box
    elif setting.type is str or setting.options():  # names, or numbers from a list
        kind = ComboBox
        kwargs["choices"] = setting.labelled_options()
    else:
        kind = SpinBox if setting.type is int else FloatSpinBox
        low = setting.low
        high = setting.most_offered if setting.most_offered is not None else setting.high
        if setting.optional and setting.default is None:  # the control's 0 stands for None
            low, kwargs["value"] = 0, start if start is not None else 0
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


def param_widget(spec: Param, schedule: NoiseSchedule | None):
    """The control for a sampler's or a method's parameter ``spec`` (core.sampling.params.Param),
    for a model with this ``schedule`` (None: no model yet; a bound of T waits for one)."""
    common = dict(name=spec.name, label=spec.label or spec.name)
    if spec.type is bool:
        control = CheckBox(**common)
    elif spec.type is str:
        control = ComboBox(choices=list(spec.choices), **common)
    else:
        control = (SpinBox if spec.type is int else FloatSpinBox)(min=0, max=_OPEN_END[spec.type], **common)
    follow_param(control, spec, schedule)
    return control


# a number's control needs an upper end: where the declaration has none, one past any sensible use
_OPEN_END = {int: 10**6, float: 1e6}


def _bounds(spec: Param, schedule: NoiseSchedule | None) -> tuple:
    if schedule is None:
        return tuple(None if bound == T else bound for bound in (spec.low, spec.high))
    return spec.bounds(schedule)


def float_step(spec: Param, low: float, high: float, default) -> float:
    """The declared step, else a hundredth of the range, or finer when the default has more decimals:
    a spin box shows as many decimals as its step has, and would round a default of 0.015 to 0.01
    with a step of 0.01."""
    if spec.step is not None:
        return spec.step
    step = (high - low) / 100
    exponent = Decimal(str(default)).normalize().as_tuple().exponent if default else 0
    if isinstance(exponent, int) and exponent < 0:
        step = min(step, 10.0 ** exponent)
    return max(step, 1e-6)


def follow_param(control, spec: Param, schedule: NoiseSchedule | None, value=None) -> None:
    """Make ``control`` the parameter ``spec`` (core.sampling.params.Param) for a model with this
    ``schedule``: its label, help, bounds (a bound of T is the model's step count) and step, so as
    many decimals as it needs, holding ``value`` (the declared default when None) brought within
    them. One control follows the declaration of whichever sampler and model are chosen, so it never
    offers what that run refuses nor rounds what it accepts."""
    control.label, control.tooltip = spec.label or spec.name, spec.help
    if spec.type is bool:
        control.text = control.label  # a check box's words are beside it
    default = spec.default_for(schedule)
    value = default if value is None else value
    if spec.type in (int, float):
        low, high = _bounds(spec, schedule)
        low = 0 if low is None else low
        high = control.max if high is None else high
        control.max, control.min = high, low  # in this order a spin box never holds a min above its max
        if spec.type is float:  # before the value: a box with too few decimals rounds what it is given
            control.step = float_step(spec, low, high, default)
        elif spec.step is not None:  # a whole number in steps of its own (a patch side, a multiple of 16)
            control.step = spec.step
        value = min(max(value, control.min), control.max)
    control.value = value


def follow_shared_param(control, spec: Param, schedule: NoiseSchedule | None, followed: dict) -> None:
    """:func:`follow_param` for a control that several samplers fill (steps, η): the value set stays
    (brought within the new bounds) while the chosen sampler declares the same parameter as the one
    the control followed, so a change of sampler or model keeps what the user set; a parameter
    declared anew (heun's steps) starts at its default. ``followed`` holds, by control name, the
    declaration each control follows now."""
    follow_param(control, spec, schedule, control.value if followed.get(control.name) == spec else None)
    followed[control.name] = spec
