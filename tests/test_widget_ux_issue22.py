"""What a biologist meets in the Train, Calibrate and Compare widgets (issue #22), in a real viewer."""
import re
import threading
import time

import numpy as np
import pytest

from napari_diffdenoise._widgets import train as train_module
from napari_diffdenoise.core.run import run_cost
from napari_diffdenoise._widgets.model_registry import REGISTRY
from napari_diffdenoise.core.io.checkpoint import save_checkpoint

NEGATIVE_TIME = re.compile(r"[-−]\s*\d+(\.\d+)?\s*(s|min)\b")


@pytest.fixture
def errors(monkeypatch):
    messages = []
    monkeypatch.setattr(train_module, "notify_error", messages.append)
    monkeypatch.setattr(train_module, "show_info", lambda message: None)
    return messages


def _listed(model, path):
    save_checkpoint(model, path)
    REGISTRY.add(path)
    return path


@pytest.fixture
def headed_checkpoint(headed, tmp_path):
    return _listed(headed, tmp_path / "headed.safetensors")


@pytest.fixture
def std_headed_checkpoint(with_std, tmp_path):
    """A model whose default run is its two heads' one pass: a recalibration without samples, in seconds."""
    return _listed(with_std, tmp_path / "std-headed.safetensors")


def _cells(viewer, shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    truth = 5 + 40 * ((yy - shape[-2] / 2) ** 2 + (xx - shape[-1] / 2) ** 2 < (shape[-1] / 4) ** 2)
    return viewer.add_image(rng.poisson(np.broadcast_to(truth, shape)).astype(np.float32), name="noisy cells")


# --- Train, adapting -------------------------------------------------------------------------------------

def test_the_train_widgets_timing_stops_when_the_widget_goes(make_napari_viewer, qtbot, headed_checkpoint,
                                                             monkeypatch):
    """As the Denoise widget's 'Time here': napari waits for the timing thread when it quits."""
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget

    run_cost.forget_timings()
    answers, real = [], run_cost.stoppable
    monkeypatch.setattr(run_cost, "stoppable", lambda ask: real(lambda: answers.append(ask()) or answers[-1]))
    viewer = make_napari_viewer()
    layer = _cells(viewer, (3, 64, 80))
    w = TrainWidget(viewer)
    w.mode.value = NOISY_ONLY
    w.noisy.value, w.start_model.value = layer, str(headed_checkpoint.resolve())
    qtbot.waitUntil(lambda: len(answers) >= 1, timeout=10_000)
    assert w._timings.worker is not None and w.beyond_budget.value == "timing it on this machine…"
    w.native.deleteLater()
    qtbot.waitUntil(lambda: w._timings.worker is None, timeout=20_000)  # it ended, and none waiting started
    assert answers[-1] is True  # stopped when asked, not run to its end
    assert not run_cost._OUTSIDE_NETWORK  # what follows the network calls' rates was never timed


def test_the_train_widget_times_one_request_at_a_time_and_shows_the_latest(make_napari_viewer, qtbot, errors,
                                                                          headed_checkpoint, monkeypatch):
    """Choosing the mode, the layer and the model asked for a timing each, and each ran at once: side by side
    they slowed each other, and the network rates they keep for the session read long. One runs; of those asked
    meanwhile the latest is timed next and shown."""
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget

    lock, state = threading.Lock(), {"running": 0, "most": 0, "shapes": []}

    def slow_estimate(start, data, plane=None, axes=None, patch_size=None, stop=None):
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["shapes"].append(data.shape)
        time.sleep(0.5)
        with lock:
            state["running"] -= 1
        return run_cost.RunCost(pixels=100, n_samples=1, evaluations=1, seconds=float(data.shape[-1]))

    monkeypatch.setattr(train_module, "_estimate", slow_estimate)
    viewer = make_napari_viewer()
    layers = [_cells(viewer, (3, 64, width)) for width in (40, 48, 56, 64)]
    w = TrainWidget(viewer)
    w.start_model.value, w.minutes.value = str(headed_checkpoint.resolve()), 1.0
    w.mode.value = NOISY_ONLY
    for layer in layers:
        w.noisy.value = layer
    qtbot.waitUntil(lambda: w._timings.worker is None and "in all" in w.beyond_budget.value, timeout=20_000)
    assert state["most"] == 1
    assert state["shapes"][-1] == (3, 64, 64) and len(state["shapes"]) <= 3  # the first, maybe one more, the latest
    assert w.beyond_budget.value == f"about 64 s; {run_cost.duration(60 + 64.0)} in all"
    assert not errors


def test_adapting_hides_resume_and_its_time_includes_the_recalibration(make_napari_viewer, qtbot, errors,
                                                                      headed_checkpoint, monkeypatch):
    """The recalibration that follows adapting restores the crops self-calibration picks (at most
    MAX_PIXELS) at the default settings, each with the bright pass over its boxes (counted from the
    layer's first plane): the form says how long that takes here, and the total."""
    from napari_diffdenoise._widgets.train import NOISY_ONLY, PAIRED, TrainWidget
    from napari_diffdenoise.core.training.adapt import iter_recalibrate, recalibration_axes
    from napari_diffdenoise.core.io.checkpoint import load_model
    from napari_diffdenoise.core.run.driving import drive
    from napari_diffdenoise.core.calibration.recalibration_cost import recalibration_cost
    from napari_diffdenoise.core.calibration.residuals import MAX_PIXELS

    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": 2e-6)
    viewer = make_napari_viewer()
    layer = _cells(viewer, (3, 64, 80))
    layer.data[:, 30:32, 50:52] = 5000.0  # a spot far above the rest: the bright pass restores a box around it
    w = TrainWidget(viewer)
    assert not w.resume.native.isHidden()
    w.mode.value = NOISY_ONLY
    assert w.resume.native.isHidden()  # adapting has no resumable state: the box would be ignored
    w.noisy.value, w.start_model.value, w.minutes.value = layer, str(headed_checkpoint.resolve()), 2.0
    qtbot.waitUntil(lambda: "in all" in w.beyond_budget.value, timeout=30_000)
    assert w.beyond_budget.label == "Beyond the budget"
    model = load_model(headed_checkpoint)
    # three noisy frames of one scene: a time series, recalibrated on its frames too
    assert recalibration_axes(np.asarray(layer.data)) == "TYX"
    cost = recalibration_cost(model, layer.data.shape, axes="TYX", sample_plane=layer.data[0])
    assert cost.seconds > recalibration_cost(model, layer.data.shape, axes="TYX").seconds  # the box's runs
    assert cost.pixels >= 3 * 64 * 80 and (cost.n_samples, cost.evaluations) == (8, 10)
    assert cost.seconds >= cost.pixels * 8 * 10 * 2e-6  # tiles cover every pixel, overlapping ones more
    assert f"{cost.pixels:,} px × 8 samples × 10 steps" in w.beyond_budget.tooltip
    assert w.beyond_budget.value == (f"about {run_cost.duration(cost.seconds)}; "
                                     f"{run_cost.duration(120 + cost.seconds)} in all")
    # the pixels are those the recalibration restores
    calibrated = drive(iter_recalibrate(model, np.asarray(layer.data)))[0]
    assert calibrated.calibrations[0]["n_pixels"] == cost.pixels
    # at most MAX_PIXELS: crops of half of it, drawn twice — a 256² crop of each of two big planes, a
    # 362² crop of a single plane a little larger than that half
    assert recalibration_cost(model, (2, 1024, 1024)).pixels == 2 * 2 * 256 * 256 <= MAX_PIXELS
    assert recalibration_cost(model, (400, 400)).pixels == 2 * 362 * 362
    w.mode.value = PAIRED
    assert not w.resume.native.isHidden() and w.beyond_budget.native.isHidden()


def test_the_recalibration_time_is_not_timed_beside_a_run_and_one_that_was_is_taken_again(
        make_napari_viewer, qtbot, errors, headed_checkpoint, monkeypatch, request, tmp_path):
    """A timing sharing the CPU with a run reads long, and the figure is kept: one asked for during a run
    waits for its end, and one going when the run starts is dropped (run_cost.forget_timings) and taken
    again after it."""
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget

    calls, gate, forgotten = [], threading.Event(), []

    def slow_estimate(start, data, plane=None, axes=None, patch_size=None, stop=None):
        calls.append(data.shape)
        time.sleep(0.5)
        return run_cost.RunCost(pixels=100, n_samples=1, evaluations=1, seconds=5.0)

    def gated_adapt(model, noisy, options, output, axes=None, plan=None):
        while not gate.is_set():
            time.sleep(0.01)
        return None
        yield  # a generator, as the worker takes it

    monkeypatch.setattr(train_module, "_estimate", slow_estimate)
    monkeypatch.setattr(train_module, "_adapt_job", gated_adapt)
    monkeypatch.setattr(run_cost, "forget_timings", lambda: forgotten.append(True))
    request.addfinalizer(gate.set)
    viewer = make_napari_viewer()
    layer = _cells(viewer, (3, 64, 80))
    w = TrainWidget(viewer)
    w.output.value = tmp_path / "adapted.safetensors"
    w.batch_size.value, w.patch_size.value = 2, 32
    w.noisy.value, w.start_model.value = layer, str(headed_checkpoint.resolve())
    w.mode.value = NOISY_ONLY  # the recalibration's time is asked for
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)
    w.start()  # while the timing goes on
    qtbot.wait(800)
    assert w._worker is not None
    w.minutes.value = 3.0  # asks for the time again: the run goes on
    assert w.beyond_budget.value == "timed when this run ends" and len(calls) == 1
    gate.set()
    qtbot.waitUntil(lambda: w._worker is None and "in all" in w.beyond_budget.value, timeout=20_000)
    assert forgotten == [True] and len(calls) == 2
    assert w.beyond_budget.value == f"about 5 s; {run_cost.duration(180 + 5.0)} in all"
    assert not errors


def test_adapting_progress_never_shows_negative_time_and_says_what_comes_next(make_napari_viewer, qtbot, errors,
                                                                             std_headed_checkpoint, tmp_path):
    from napari_diffdenoise._widgets.train import NOISY_ONLY, TrainWidget

    viewer = make_napari_viewer()
    layer = _cells(viewer, (128, 128))
    w = TrainWidget(viewer)
    w.mode.value = NOISY_ONLY
    w.noisy.value, w.start_model.value = layer, str(std_headed_checkpoint.resolve())
    w.minutes.value, w.batch_size.value, w.patch_size.value = 0.1, 2, 32
    w.output.value = tmp_path / "adapted.safetensors"
    seen = []
    w.start()
    w._worker.yielded.connect(lambda info: seen.append((w.status.value, w.progress.value)))
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert not errors, errors
    assert w.status.value.startswith("Done"), w.status.value
    statuses = [status for status, _ in seen]
    assert not [s for s in statuses if NEGATIVE_TIME.search(s)], statuses
    adapting = [(s, v) for s, v in seen if s.startswith("adapting")]
    assert adapting and all("then recalibrating" in s for s, _ in adapting)
    # adapting fills the bar only up to the recalibration's share; the recalibration fills the rest
    assert max(v for _, v in adapting) < 1000
    handover = [i for i, s in enumerate(statuses) if s.startswith(train_module.RECALIBRATING)]
    assert handover and statuses[handover[0] + 1 :] and "recalibrating" in statuses[-1]
    # the last step of adapting ends past the budget (it showed "about −8 s left"): adapting is done, not more
    from napari_diffdenoise.core.training.adapt_spec import AdaptProgress

    w._started = time.monotonic() - 30
    w._on_adapt_progress(AdaptProgress(40, None, 0.1, None, seconds=w.minutes.value * 60 + 2))
    assert not NEGATIVE_TIME.search(w.status.value) and "then recalibrating" in w.status.value, w.status.value
    # a series trained on its own frames registers them first, inside the budget: said, no loss (NaN) plotted
    w._shown = 0.0  # the bar of a new run, as _launch starts it (it never runs back within a run)
    points = len(w.plot.train[0])
    w._on_adapt_progress(AdaptProgress(0, None, float("nan"), None, seconds=6.0, registered=(2, 5)))
    assert w.status.value.startswith("registering the series' frames onto their neighbours: 2 of 5"), w.status.value
    assert "nan" not in w.status.value and len(w.plot.train[0]) == points
    w._shown = 0.0  # another run
    w._on_adapt_progress(AdaptProgress(0, None, float("nan"), None, seconds=3.0, judge_targets=(4, 16)))
    assert w.status.value.startswith("registering the held-out frames' neighbours onto them, for the judge: 4 of 16")
    assert len(w.plot.train[0]) == points
    # unpriced (no plan), the judge's targets hold the bar at its start: the budget's clock has not started
    assert w.progress.value == 0
    from napari_diffdenoise.core.training.adapt_cost import BeyondBudget

    budget = w.minutes.value * 60
    # priced, they fill their own share, and the budget's phases go on from it, not back to 0
    w._plan = BeyondBudget(16, 10.0, 3, run_cost.RunCost(1, 0, 0, 30.0), run_cost.RunCost(1, 8, 10, 10.0))
    w._shown = 0.0  # another run
    whole = 10 + budget + 40
    w._on_adapt_progress(AdaptProgress(0, None, float("nan"), None, seconds=5.0, judge_targets=(8, 16)))
    assert w.progress.value == int(1000 * 5 / whole)
    w._on_adapt_progress(AdaptProgress(0, None, float("nan"), None, seconds=25.0, judge_targets=(16, 16)))
    assert w.progress.value == int(1000 * 10 / whole)  # a slower registration than priced stops at its share
    w._on_adapt_progress(AdaptProgress(0, None, float("nan"), None, seconds=2.0, registered=(1, 5)))
    assert w.progress.value == int(1000 * 12 / whole)
    w._on_adapt_progress(AdaptProgress(7, None, 0.1, None, seconds=3.0))
    assert w.progress.value == int(1000 * 13 / whole)
    # then the refined [mean]'s judge, frame by frame: said, the bar moving through its share, no loss plotted
    points = len(w.plot.train[0])
    for done in (1, 2):
        w._on_adapt_progress(AdaptProgress(40, None, 0.1, None, seconds=budget + 5, judged=(done, 3)))
        assert w.status.value.startswith(f"judging the refined [mean] on held-out frames: {done} of 3"), w.status.value
        assert w.progress.value == int(1000 * (10 + budget + 10 * done) / whole)
    assert len(w.plot.train[0]) == points


# --- Train, files and the model list ---------------------------------------------------------------------

@pytest.fixture
def paired(paired_train_widget):
    return paired_train_widget("resume-me")


def test_a_cancel_before_the_first_checkpoint_leaves_nothing_and_says_so(paired, qtbot, errors, tmp_path,
                                                                         monkeypatch):
    """1000 steps: validation every 20, a checkpoint every 50. Cancelled at step 21, after the first
    validation, the run left resume-me-best.safetensors while the status said nothing was written."""
    viewer, w = paired
    w.steps.value = 1000
    real = train_module.run_prepared
    gate = threading.Event()

    def held_at_21(*args, **kwargs):  # the worker waits at step 21 until the cancel is in
        run = real(*args, **kwargs)
        try:
            info = next(run)
            while True:
                yield info
                if info.step == 21:
                    gate.wait(60)
                info = next(run)
        except StopIteration as stop:
            return stop.value
        finally:
            run.close()

    monkeypatch.setattr(train_module, "run_prepared", held_at_21)

    def cancel_at_21(info):
        if info.step == 21:
            w.cancel()
            gate.set()

    w.start()
    w._worker.yielded.connect(cancel_at_21)
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    assert w.status.value.startswith("Cancelled") and "no checkpoint was written" in w.status.value
    assert sorted(p.name for p in tmp_path.glob("resume-me*")) == []
    assert not [path for _, path in REGISTRY.choices() if "resume-me" in path]
    assert not errors, errors


def test_a_run_is_one_entry_in_the_model_list_with_its_best_beside_it(paired, qtbot, errors, tmp_path):
    viewer, w = paired
    w.steps.value = 6  # validations at 5 and 6, a checkpoint at 6
    w.start()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    out, best = tmp_path / "resume-me.safetensors", tmp_path / "resume-me-best.safetensors"
    assert out.is_file() and best.is_file()
    listed = [path for _, path in REGISTRY.choices() if "resume-me" in path]
    assert listed == [str(out.resolve())]
    assert w.status.value.startswith(f"Done: {out}") and best.name in w.status.value
    assert not errors, errors


# --- the loss plot ---------------------------------------------------------------------------------------

def test_the_empty_loss_plot_shows_a_message_and_steps_are_whole_numbers(qapp):
    from napari_diffdenoise._widgets.loss_plot import LossPlot

    def visible_ticks(axis):
        return [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]

    plot = LossPlot()
    plot.draw()
    assert visible_ticks(plot.axes.xaxis) == [] and visible_ticks(plot.axes.yaxis) == []  # no −0.04…0.04 axis
    assert any(t.get_visible() and "appear here" in t.get_text() for t in plot.axes.texts)
    for step, loss in ((1, 0.5), (2, 0.4), (3, 0.35)):
        plot.add(step, loss, None)
    plot.redraw()
    plot.draw()
    low, high = plot.axes.get_xlim()
    shown = [x for x in plot.axes.get_xticks() if low <= x <= high]
    assert len(shown) >= 2 and all(float(x).is_integer() for x in shown), shown
    assert visible_ticks(plot.axes.xaxis) and not any(t.get_visible() and "appear here" in t.get_text()
                                                      for t in plot.axes.texts)
    plot.clear_data()
    plot.draw()
    assert visible_ticks(plot.axes.xaxis) == []


# --- Calibrate and Compare tables ------------------------------------------------------------------------

def _fits(widget, table, width):
    """``table`` laid out in ``widget`` at ``width`` (a narrow dock): no horizontal scrolling, and no
    column narrower than its text."""
    from qtpy.QtWidgets import QApplication

    widget.native.resize(width, 800)
    widget.native.show()
    for _ in range(3):
        QApplication.processEvents()
    native = table.native
    header = native.horizontalHeader()

    def text_width(widget, text):
        return max(widget.fontMetrics().horizontalAdvance(line) for line in text.splitlines())

    shown = [(native.item(r, c).text(), native.itemDelegate().displayText(native.item(r, c).text(), native.locale()))
             for r in range(native.rowCount()) for c in range(native.columnCount())]
    assert all(text == display for text, display in shown), shown  # as written, not reformatted
    cut = []
    for i in range(native.columnCount()):
        texts = [(header, native.horizontalHeaderItem(i).text())]
        texts += [(native, native.item(r, i).text()) for r in range(native.rowCount())]
        if header.sectionSize(i) < max(text_width(widget, text) for widget, text in texts) + 6:
            cut.append(texts[0][1])
    return native.horizontalScrollBar().maximum() == 0 and not cut, cut


def test_calibrate_writes_each_column_one_way_and_shows_the_whole_path(make_napari_viewer, qtbot, tiny_checkpoint,
                                                                        tmp_path, monkeypatch):
    from napari_diffdenoise._widgets import calibrate as calibrate_module
    from napari_diffdenoise._widgets.calibrate import CalibrateWidget

    messages = []
    monkeypatch.setattr(calibrate_module, "notify_error", messages.append)
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.uniform(5, 400, (2, 48, 48)).astype(np.float32)
    viewer.add_image(rng.poisson(truth).astype(np.uint16), name="noisy")
    viewer.add_image(truth, name="truth")
    w = CalibrateWidget(viewer)
    assert w.settings.collapsed and w.results.collapsed  # folded until there is something to read
    REGISTRY.add(tiny_checkpoint)
    w.model.value = str(tiny_checkpoint.resolve())
    w.noisy.value, w.truth.value = viewer.layers["noisy"], viewer.layers["truth"]
    w.steps.value, w.n_samples.value = 2, 3
    folder = tmp_path / "a folder with a rather long name" / "and another one inside it"
    folder.mkdir(parents=True)
    w.output.value = folder / "calibrated.safetensors"
    w.run()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert not messages, messages
    table = w.table.to_dict("split")
    columns = list(table["columns"])
    assert columns[:2] == ["nominal", "held-out"] and len(table["data"]) == 9
    two_decimals = re.compile(r"^(\d\.\d\d|–)$")
    for row in table["data"]:
        nominal, held, factor, width = row
        assert two_decimals.match(nominal) and two_decimals.match(held), row
        assert re.match(r"^\d+\.\d\d$", factor), row
        digits = width.replace(",", "").replace(".", "").lstrip("0")
        assert len(digits) == 3 or (len(digits) > 3 and "." not in width), row  # 3 significant digits, no 1e+03
    native = w.table.native
    assert all(native.horizontalHeaderItem(i).toolTip() for i in range(native.columnCount()))
    assert "intensity" in columns[-1]  # the width's units
    assert not w.results.collapsed
    fits, cut = _fits(w, w.table, 420)
    assert fits, cut
    saved = folder / "calibrated.safetensors"
    assert w.status.value.startswith(f"Saved {saved}") and w.status.native.wordWrap()
    assert "Spearman" not in w.status.value and "ρ" not in w.status.value  # in words; the symbol in the tooltip
    assert "the spread ranks the errors" in w.status.value and "Spearman" in w.status.tooltip
    # an empty Save as says where the file goes, whole
    w.output.value = ""
    from qtpy.QtWidgets import QLineEdit

    assert str(calibrate_module.USER_MODELS_DIR) in w.output.native.findChild(QLineEdit).placeholderText()


def test_compare_fits_the_dock_and_explains_every_column(make_napari_viewer):
    from napari_diffdenoise._widgets.compare import CompareWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    truth = rng.random((3, 64, 64))
    viewer.add_image(truth + rng.normal(0, 0.1, truth.shape), name="result")
    viewer.add_image(truth, name="truth")
    w = CompareWidget(viewer)
    w.result.value, w.truth.value = viewer.layers["result"], viewer.layers["truth"]
    assert w.scores.collapsed
    w.compute()
    assert not w.scores.collapsed
    native = w.table.native
    headers = [native.horizontalHeaderItem(i).text() for i in range(native.columnCount())]
    assert "NRMSE/mean" not in headers and {"PSNR", "SSIM", "MS-SSIM", "NRMSE", "MAE"} <= set(headers)
    assert all(native.horizontalHeaderItem(i).toolTip() for i in range(native.columnCount()))
    fits, cut = _fits(w, w.table, 420)
    assert fits, cut
    # the clipboard gets every digit, the table what fits
    psnr = float(w.as_tsv().splitlines()[-1].split("\t")[1 + headers.index("PSNR")])
    assert w.table.to_dict("split")["data"][-1][headers.index("PSNR")] == f"{psnr:.2f}"


# --- plain words -----------------------------------------------------------------------------------------

SYMBOLS = {("ddim-dc", "guidance"): ("η", "PI-DDPM"), ("ddim-dc", "reg_weight"): ("λ", "PI-DDPM"),
           ("heun", "churn"): ("S_churn", "Karras et al. 2022"), ("heun", "rho"): ("ρ", "Karras et al. 2022"),
           ("mixing", "weight_start"): ("N", "Baikal"), ("mixing", "weight_stop"): ("n", "Baikal"),
           ("mixing", "stop"): ("n", "Baikal"), ("ddim", "eta"): ("η", "Song et al. 2021")}


def test_sampler_labels_are_plain_words_and_the_symbols_live_in_the_tooltips():
    from napari_diffdenoise.core.sampling.sampler_registry import SAMPLERS

    for sampler in SAMPLERS.values():
        labels = [p.label for p in sampler.params]
        assert len(set(labels)) == len(labels), sampler.name
        for p in sampler.params:
            assert p.label and not re.search(r"[α-ωΑ-Ω_]|\([A-Za-z]\)", p.label), (sampler.name, p.label)
    for (name, param), (symbol, source) in SYMBOLS.items():
        spec = {p.name: p for p in SAMPLERS[name].params}[param]
        assert symbol in spec.help and source in spec.help, (name, param, spec.help)


# --- a window that fits a screen -------------------------------------------------------------------------

def test_advanced_parts_fold_and_the_docked_widgets_ask_for_less_height(make_napari_viewer):
    from napari_diffdenoise._widgets.calibrate import CalibrateWidget
    from napari_diffdenoise._widgets.compare import CompareWidget
    from napari_diffdenoise._widgets.train import TrainWidget

    viewer = make_napari_viewer(show=True)  # hidden, a window's layouts do not follow its sections
    viewer.add_image(np.zeros((2, 64, 64), np.float32), name="noisy")
    train, calibrate, compare = TrainWidget(viewer), CalibrateWidget(viewer), CompareWidget(viewer)
    for widget in (train, calibrate, compare):
        viewer.window.add_dock_widget(widget)
    sections = {train: (train.advanced, train.plot_section), calibrate: (calibrate.settings, calibrate.results),
                compare: (compare.about, compare.scores)}
    assert train.patch_size in list(train.advanced.body) and calibrate.steps in list(calibrate.settings.body)

    def height():
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()  # layouts take a folded or unfolded section into account lazily
        return sum(widget.native.sizeHint().height() for widget in sections)

    folded = height()
    assert all(section.collapsed for pair in sections.values() for section in pair)
    for pair in sections.values():
        for section in pair:
            section.header.clicked.emit()  # a click unfolds it
    assert not any(section.collapsed for pair in sections.values() for section in pair)
    unfolded = height()
    # measured under Xvfb: 1729 px for the three before the sections, 985 folded
    assert folded < 0.7 * unfolded, (folded, unfolded)
    print(f"Train + Calibrate + Compare sizeHint height: {folded} px folded, {unfolded} px unfolded")
