"""The Denoise widget's steps, η, sampler-parameter and preset controls come from the samplers'
declarations, and its status line speaks of the settings on show (issue #20), in a real viewer
(run under Xvfb)."""
from napari_diffdenoise._widgets.run_controls import follow_param
from napari_diffdenoise.core.sampler_registry import SAMPLERS
from napari_diffdenoise.core.schedules import NoiseSchedule


def test_a_box_that_follows_a_parameter_takes_its_decimals(qapp):
    """A box made for one sampler parameter and reused for another kept two decimals: the ddim-dc prior
    weight's default 0.015 became 0.01, and 0.015 could not be typed."""
    from magicgui.widgets import FloatSpinBox

    reg_weight = SAMPLERS["ddim-dc"].spec("reg_weight")
    box = FloatSpinBox(name="reg_weight")
    follow_param(box, reg_weight, NoiseSchedule("cosine", 200))
    assert box.value == 0.015
    box.value = 0.025
    assert box.value == 0.025
