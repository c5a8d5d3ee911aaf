"""The Denoise widget folds what a biologist rarely changes, and says what its controls do in plain
words (issue #22), in a real viewer (run under Xvfb)."""
import re

import numpy as np
import pytest

from napari_diffdenoise._widgets import denoise as denoise_module
from napari_diffdenoise._widgets.denoise import DenoiseWidget
from napari_diffdenoise.core.run.methods import RICHARDSON_LUCY
from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS

# a symbol or a one-letter abbreviation in a label: "Randomness (η)", "Samples (K)", "PSF σ (px)"
JARGON = re.compile(r"[α-ωΑ-Ω_]|\([A-Za-z]\)")
# Half of a 1080-px laptop screen: the folded Denoise form and a second folded widget (Train's asks for
# about 440 px) then fit one over the other. Measured under Xvfb: 642 px before the sections, 417 px folded
# (with the Axes row of a 3D layer); the margin allows for another font.
FOLDED_HEIGHT = 540


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(denoise_module, "notify_error", messages.append)
    return messages


@pytest.fixture
def docked(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # hidden, a window's layouts do not follow its sections
    viewer.add_image(np.zeros((2, 64, 64), np.float32), name="noisy")
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def _height(widget) -> int:
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()  # layouts take a folded or unfolded section into account lazily
    return widget.native.sizeHint().height()


def _shown(control) -> bool:
    """Whether the user sees it (a folded section's controls keep their own visibility)."""
    return control.native.isVisible()


def test_secondary_controls_fold_and_unfold_with_their_values(docked, errors):
    _, w = docked
    # demo's default sampler, one-step, takes no steps and no η: those rows stay hidden, unfolded or not
    sampling = (w.n_samples, w.mean_estimator, w.seed, w.device)
    layers = (w.coverage, w.entropy, w.keep_samples)
    always = (w.image, w.axes, w.model, w.preset, w.sampler, w.run_button, w.preview_button, w.progress)
    assert w.sampling.collapsed and w.layers_section.collapsed  # folded by default
    assert all(_shown(c) for c in always) and not any(_shown(c) for c in sampling + layers + (w.steps, w.eta))
    folded = _height(w)
    assert folded < FOLDED_HEIGHT, folded

    w.n_samples.value, w.keep_samples.value = 3, True  # a value set while unfolded stays set
    w.sampling.header.clicked.emit()  # a click on the header unfolds it
    assert not w.sampling.collapsed and all(_shown(c) for c in sampling)
    assert not any(_shown(c) for c in layers + (w.steps, w.eta))
    w.layers_section.header.clicked.emit()
    assert all(_shown(c) for c in layers) and _shown(w.self_calibrate)  # intervals by default, calibrated here
    w.coverage.value = 0
    assert not _shown(w.self_calibrate)  # no intervals: nothing to calibrate
    w.coverage.value = 0.9
    assert _shown(w.self_calibrate)
    unfolded = _height(w)
    assert unfolded > folded + 8 * 20, (folded, unfolded)  # the nine or so rows were folded away
    w.sampling.header.clicked.emit()
    assert w.sampling.collapsed and not _shown(w.steps) and w.n_samples.value == 3 and w.keep_samples.value
    assert w._settings(None)["n_samples"] == 3 and w._settings(None)["keep_samples"]  # folded, still used
    assert not errors


def test_modes_show_and_hide_their_controls_inside_the_sections(docked, errors):
    _, w = docked
    w.sampling.collapsed = w.layers_section.collapsed = False
    # Richardson-Lucy: no sampling, no uncertainty layers; the sections go with their controls
    w.model.value = RICHARDSON_LUCY.name
    assert w.sampling.native.isHidden() and w.layers_section.native.isHidden()
    assert _shown(w.method_params["iterations"]) and _shown(w.psf_source) and not _shown(w.n_samples)
    w.model.value = "demo"
    assert not w.sampling.native.isHidden() and not w.layers_section.native.isHidden()
    assert not w.sampling.collapsed and _shown(w.n_samples) and not _shown(w.steps) and not _shown(w.eta)  # one-step
    w.sampler.value = "ddim"
    assert _shown(w.steps) and _shown(w.eta)
    assert not _shown(w.sampler_params)  # ddim has no parameters of its own: no empty gap under Randomness
    # a sampler's own parameters show in the section, under their declared labels
    w.sampler.value = "dpm++2m"
    assert _shown(w.steps) and not _shown(w.eta)
    w.model.value = "demo-unpaired"
    info = SAMPLERS[w.sampler.value]
    own = [p for p in info.params if p.name not in denoise_module.MAIN_FORM_PARAMS]
    assert own and _shown(w.sampler_params)
    assert [(c.name, c.label) for c in w.sampler_params] == [(p.name, p.label) for p in own]
    assert all(_shown(c) for c in w.sampler_params)
    w.sampling.collapsed = True
    assert not any(_shown(c) for c in w.sampler_params) and len(w.sampler_params) == len(own)
    w.model.value = "widefield"  # a deconvolving model: the PSF stays in the main form, unfolded or not
    assert w.sampler.value == "ddim-dc" and _shown(w.psf_source) and w.sampling.collapsed
    assert not errors


def _labels(container):
    """Every form label in the widget, sections' and sampler parameters' included."""
    from magicgui.widgets import Container

    for child in container:
        label = getattr(child, "label", "")
        if label and not isinstance(child, Container):
            yield label
        if isinstance(child, Container):
            yield from _labels(child)


def test_labels_are_plain_words_from_the_samplers_declaration(docked, errors):
    _, w = docked
    seen = set()
    for model in ("demo", "demo-unpaired", "widefield"):
        w.model.value = model
        for sampler in [s for s in w.sampler.choices if s in SAMPLERS]:
            w.sampler.value = sampler
            declared = {p.name: p.label for p in SAMPLERS[sampler].params}
            if "steps" in declared:
                assert w.steps.label == declared["steps"]
            if "eta" in declared:
                assert w.eta.label == declared["eta"] and w.eta.tooltip == SAMPLERS[sampler].spec("eta").help
            labels = list(_labels(w))
            assert not [label for label in labels if JARGON.search(label)], labels
            seen.update(labels)
    w.model.value = RICHARDSON_LUCY.name  # the PSF rows
    labels = list(_labels(w))
    assert not [label for label in labels if JARGON.search(label)], labels
    assert {"Randomness", "Samples", "PSF width (px)"} <= seen | set(labels)
    # the symbols stay in the tooltips, with where they come from
    assert "η" in w.eta.tooltip and "K" in w.n_samples.tooltip and "σ" in w.psf_sigma.tooltip
    assert not errors
