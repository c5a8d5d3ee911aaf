"""A run's settings are declared once (core.run.run_spec, issue #20): make_settings, the CLI's run
options and the Denoise widget's controls all take type, default, bounds, choices and help from
there. Each test fails when one of them says something the declaration does not."""
import dataclasses
import inspect

import pytest

from napari_diffdenoise import cli, denoise
from napari_diffdenoise.core.run import run_keywords, run_spec
from napari_diffdenoise.core.run.batch import denoise_to_tiff, denoise_to_zarr
from napari_diffdenoise.core.run.restore import iter_denoise, make_settings, plane_run
from napari_diffdenoise.core.run.run_keywords import RunSpec
from napari_diffdenoise.core.run.run_spec import RUN_SETTINGS, RunParam, cli_settings, run_setting

# flagged settings the Denoise form sets elsewhere: the sampler and its steps and η from the sampler's own
# declaration (core.sampling.sampler_registry), guidance not at all (a library and CLI option)
NOT_IN_THE_FORM = {"sampler", "steps", "eta", "guidance", "guidance_weight"}


def _denoise_parser():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices["denoise"]


def _option(parser, flag):
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("setting", cli_settings(), ids=lambda s: s.name)
def test_each_cli_run_option_is_its_declaration(setting):
    action = _option(_denoise_parser(), setting.flag)
    assert action.dest == setting.name
    assert action.default == setting.default
    assert action.help.replace("%%", "%").startswith(setting.help)
    if setting.type in (int, float):
        assert action.type is setting.type
    # None among a setting's choices stands for its default, which the CLI gives by leaving the option out
    assert list(action.choices or ()) == [c for c in setting.options() if c is not None]


def test_the_cli_passes_every_run_option_on_by_its_declared_name():
    args = _denoise_parser().parse_args(["in.tif"])
    given = cli._settings_from_args(args)
    assert set(given) - {"sampler_params"} <= {s.name for s in RUN_SETTINGS}
    assert {s.name for s in cli_settings()} <= set(given)
    assert all(given[s.name] == s.default for s in cli_settings())


def test_a_setting_added_to_the_declaration_appears_in_the_cli(monkeypatch):
    flux = RunParam("flux", float, 2.0, 0.0, 5.0, flag="--flux", label="Flux", help="How bright the flux is")
    monkeypatch.setattr(run_spec, "RUN_SETTINGS", (*RUN_SETTINGS, flux))
    parser = _denoise_parser()
    assert "--flux" in parser.format_help() and "How bright the flux is" in parser.format_help()
    args = parser.parse_args(["in.tif", "--flux", "3"])
    assert args.flux == 3.0 and cli._settings_from_args(args)["flux"] == 3.0


def test_the_cli_hands_the_library_one_run_spec_built_from_its_options(monkeypatch, tmp_path):
    """The CLI's settings reach the library as the RunSpec a caller would build, not loose keywords."""
    from napari_diffdenoise.core.run import batch

    calls = []
    monkeypatch.setattr(batch, "denoise_to_tiff", lambda *args, **kwargs: calls.append(kwargs) or ({}, []))
    assert cli.main(["denoise", "in.tif", "--out", str(tmp_path), "--samples", "3", "--seed", "7",
                     "--sampler-param", "eta=0.5"]) == 0
    (given,) = calls
    assert given["spec"] == RunSpec(n_samples=3, seed=7, sampler_params={"eta": 0.5})
    assert not set(given) & {s.name for s in RUN_SETTINGS}, "every setting is in the spec, none beside it"


# each function's parameters of its own, before and after the run's settings
OWN_PARAMETERS = {
    "make_settings": (["model", "spec"], []),
    "denoise": (["image", "model", "spec", "axes"], ["progress", "cancel", "calibrate_on_image", "second", "method_params"]),
    "iter_denoise": (["image", "model", "settings", "spec", "axes"], ["on_tile", "method_params"]),
    "plane_run": (["model", "settings", "spec"], ["method_params"]),
    "denoise_to_zarr": (["input_path", "output_path", "model", "spec", "axes", "overwrite", "workers", "scheduler",
                         "threads"], ["progress", "method_params"]),
    "denoise_to_tiff": (["input_path", "folder", "model", "stem", "spec", "axes", "overwrite", "pixel", "threads"],
                        ["progress", "method_params"])}
RUN_ENTRIES = [make_settings, denoise, iter_denoise, plane_run, denoise_to_zarr, denoise_to_tiff]


@pytest.mark.parametrize("name", ["denoise_to_zarr", "denoise_to_tiff"])
def test_the_packages_file_runs_are_the_run_layers_with_where_intervals_are_calibrated(name):
    """napari_diffdenoise's file runs (core.calibration.on_image) take the run layer's parameters and the two
    that say where the intervals are calibrated, as its denoise does."""
    import napari_diffdenoise

    run_layer = list(inspect.signature(globals()[name]).parameters)
    assert list(inspect.signature(getattr(napari_diffdenoise, name)).parameters) == \
        [*run_layer[:-1], "calibrate_on_image", "second", run_layer[-1]]


@pytest.mark.parametrize("function", RUN_ENTRIES, ids=lambda f: f.__name__)
def test_the_signatures_list_exactly_the_declared_settings_and_their_own(function):
    """help(), IDEs and inspect show every setting at its default, in the declaration's order,
    without a list kept by hand beside it."""
    parameters = inspect.signature(function).parameters
    before, after = OWN_PARAMETERS[function.__name__]
    assert list(parameters) == before + [s.name for s in RUN_SETTINGS] + after
    for setting in RUN_SETTINGS:
        assert parameters[setting.name].kind is inspect.Parameter.KEYWORD_ONLY, setting.name
        assert parameters[setting.name].default == setting.default, setting.name


def test_a_run_spec_holds_exactly_the_declared_settings():
    fields = dataclasses.fields(RunSpec)
    assert [(f.name, f.default) for f in fields] == [(s.name, s.default) for s in RUN_SETTINGS]


def test_a_run_spec_round_trips_through_json_and_runs_with_keywords_over_it(tiny_model):
    import numpy as np

    spec = RunSpec(n_samples=1, steps=1, mean="samples", percentiles=[1, 99], sampler_params={"eta": 0.5})
    assert RunSpec.from_json(spec.to_json()) == spec and spec.percentiles == (1, 99)
    assert make_settings(tiny_model, spec=spec, seed=3) == make_settings(tiny_model, **{**spec.settings(), "seed": 3})
    restored = denoise(np.ones((16, 16)), tiny_model, spec=spec, n_samples=2)
    assert restored.metadata["n_samples"] == 2 and restored.metadata["eta"] == 0.5
    with pytest.raises(TypeError, match="n_sample"):
        RunSpec(n_sample=2)
    with pytest.raises(TypeError, match=r"spec=RunSpec"):
        make_settings(tiny_model, spec={"n_samples": 2})


def test_a_setting_added_to_the_declaration_reaches_the_signature(monkeypatch):
    flux = RunParam("flux", float, 2.0, 0.0, 5.0, label="Flux", help="How bright the flux is")
    monkeypatch.setattr(run_keywords, "RUN_SETTINGS", (*RUN_SETTINGS, flux))

    def run(model, *, progress=None, **given):
        return given

    parameters = inspect.signature(run_keywords.run_signature(after=("progress",))(run)).parameters
    assert list(parameters)[-2:] == ["flux", "progress"] and parameters["flux"].default == 2.0
    assert run_keywords.run_values({"flux": 3.0}, "run")["flux"] == 3.0


def test_a_setting_left_out_takes_its_declared_default(tiny_model):
    assert make_settings(tiny_model) == make_settings(tiny_model, **{s.name: s.default for s in RUN_SETTINGS})


def test_an_unknown_keyword_is_refused_naming_it_and_the_settings(tiny_model):
    import numpy as np

    with pytest.raises(TypeError, match=r"make_settings\(\) got unexpected keyword argument\(s\) 'n_sample';") as err:
        make_settings(tiny_model, n_sample=4)
    assert all(s.name in str(err.value) for s in RUN_SETTINGS)
    with pytest.raises(TypeError, match=r"denoise\(\) got unexpected keyword argument\(s\) n_sample: .*n_samples"):
        denoise(np.ones((16, 16)), tiny_model, n_sample=4)


def test_each_entry_point_refuses_an_unknown_keyword_naming_itself_and_what_it_takes(tiny_model, tmp_path):
    import numpy as np
    import tifffile

    image = tmp_path / "in.tif"
    tifffile.imwrite(image, np.ones((16, 16), np.float32))
    calls = {"iter_denoise": lambda **k: next(iter_denoise(np.ones((16, 16)), tiny_model, **k)),
             "plane_run": lambda **k: plane_run(tiny_model, **k),
             "denoise_to_zarr": lambda **k: denoise_to_zarr(image, tmp_path / "out.zarr", tiny_model, **k),
             "denoise_to_tiff": lambda **k: denoise_to_tiff(image, tmp_path, tiny_model, stem="out", **k)}
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"^{name}\(\) got unexpected keyword argument\(s\) n_sample: ") as err:
            call(n_sample=4)
        assert all(s.name in str(err.value) for s in RUN_SETTINGS), name
    assert not list(tmp_path.glob("out*")), "a refused run wrote nothing"


def test_iter_denoise_takes_a_spec_and_refuses_keywords_beside_made_settings(tiny_model):
    import numpy as np

    from napari_diffdenoise.core.run.driving import drive

    spec = RunSpec(n_samples=1, steps=1, mean="samples", seed=2)
    restored, _ = drive(iter_denoise(np.ones((16, 16)), tiny_model, spec=spec, seed=5))
    assert restored.metadata["n_samples"] == 1 and restored.metadata["seed"] == 5
    with pytest.raises(TypeError, match=r"^iter_denoise\(\) takes settings .* not both; got settings and seed$"):
        next(iter_denoise(np.ones((16, 16)), tiny_model, make_settings(tiny_model), seed=5))
    with pytest.raises(TypeError, match=r"^plane_run\(\) takes settings .* not both; got settings and spec$"):
        plane_run(tiny_model, make_settings(tiny_model), spec=spec)


def _checked_numbers():
    return [s for s in RUN_SETTINGS if s.checked and s.type in (int, float)]


@pytest.mark.parametrize("setting", _checked_numbers(), ids=lambda s: s.name)
def test_make_settings_refuses_what_the_declaration_refuses(tiny_model, setting):
    assert setting.high is not None or setting.low is not None, setting.name
    value = (setting.high + 1) if setting.high is not None else (setting.low - 1)
    with pytest.raises(ValueError, match=rf"^{setting.name} must be .*; got {value!r}$"):
        make_settings(tiny_model, **{setting.name: value})


@pytest.mark.parametrize("setting", [s for s in RUN_SETTINGS if s.checked and s.options()], ids=lambda s: s.name)
def test_make_settings_refuses_a_choice_the_declaration_does_not_offer(tiny_model, setting):
    with pytest.raises(ValueError, match=rf"^{setting.name} must be one of \({setting.options()[0]!r}"):
        make_settings(tiny_model, **{setting.name: "nonsense"})


@pytest.fixture
def widget(make_napari_viewer):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    return DenoiseWidget(make_napari_viewer())


def test_the_denoise_form_offers_each_flagged_setting_or_says_where_it_is_set(widget):
    assert set(widget.run_controls) == {s.name for s in cli_settings()} - NOT_IN_THE_FORM | {"keep_samples"}


def test_the_denoise_form_passes_each_of_its_run_controls_to_the_run(widget):
    widget.low_frequencies.value = "model"  # a value other than the default, so that a dropped one shows
    settings = widget._settings(None)
    for name, control in widget.run_controls.items():
        assert name in settings and settings[name] == control.value or name == "coverage", name
    assert settings["low_frequencies"] == "model"


def test_each_denoise_control_is_its_declaration(widget):
    from magicgui.widgets import CheckBox, ComboBox

    for name, control in widget.run_controls.items():
        setting = run_setting(name)
        start = setting.default if setting.form_default is None else setting.form_default
        assert control.tooltip.startswith(setting.help), name
        if isinstance(control, CheckBox):
            assert control.text == setting.label and control.value == start, name
            continue
        assert control.label == setting.label, name
        if isinstance(control, ComboBox):
            assert control.value == start, name
            if setting.options():  # an open setting (the device) lists what this machine has
                assert control.choices == tuple(setting.options()), name
                shown = [control.native.itemText(i) for i in range(control.native.count())]
                assert shown == [label for label, _ in setting.labelled_options()], name
            continue
        off = setting.optional and setting.default is None  # 0 in the form: none
        assert control.value == (0 if start is None else start), name
        assert control.min == (0 if off or setting.low is None else setting.low), name
        assert control.max == (setting.most_offered if setting.most_offered is not None else setting.high), name
        if setting.step is not None:
            assert control.step == setting.step, name


def test_the_sampler_control_is_its_declaration(widget):
    sampler = run_setting("sampler")
    assert widget.sampler.label == sampler.label and widget.sampler.tooltip.startswith(sampler.help)
