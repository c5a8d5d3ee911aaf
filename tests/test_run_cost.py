"""What a run costs, said before it runs (core.run.run_cost) and shown in the Denoise widget."""
import numpy as np
import pytest

from napari_diffdenoise.core.calibration import recalibration_cost as recalibration
from napari_diffdenoise.core.calibration.recalibration_cost import recalibration_cost
from napari_diffdenoise.core.run import run_cost
from napari_diffdenoise.core.run.run_cost import duration, restoration_cost
from napari_diffdenoise.core.run.run_spec import DEFAULT_SYMMETRIES

PER_PIXEL = 1e-6  # seconds per pixel and network call, in place of the timing


@pytest.fixture
def fixed_rate(monkeypatch):
    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": PER_PIXEL)
    monkeypatch.setattr(run_cost, "outside_network", lambda model, settings, given: (0.0, 0.0))
    monkeypatch.setattr(recalibration, "outside_network", lambda model, settings, given: (0.0, 0.0))
    monkeypatch.setattr(recalibration, "calibration_overhead_per_pixel", lambda model, settings, given: 0.0)


def test_the_work_follows_planes_samples_steps_and_the_one_pass_mean(fixed_rate, headed):
    """tiny models run tiles of 64²: a 64² plane is one tile; the head adds one pass per symmetry it is
    averaged over (core.model.symmetries)."""
    one = restoration_cost(headed, (64, 64), n_samples=4, steps=5, symmetries=1)
    assert (one.pixels, one.n_samples, one.evaluations) == (64 * 64, 4, 5)
    assert one.seconds == pytest.approx(64 * 64 * (4 * 5 + 1) * PER_PIXEL)
    for symmetries, passes in ((None, DEFAULT_SYMMETRIES), (8, 8)):
        averaged = restoration_cost(headed, (64, 64), n_samples=4, steps=5, symmetries=symmetries)
        assert averaged.seconds == pytest.approx(64 * 64 * (4 * 5 + passes) * PER_PIXEL)
    three = restoration_cost(headed, (3, 64, 64), n_samples=4, steps=5, symmetries=1)
    assert three.seconds == pytest.approx(3 * one.seconds) and three.pixels == 3 * 64 * 64
    averaged = restoration_cost(headed, (64, 64), n_samples=4, steps=5, mean="samples")
    assert averaged.seconds == pytest.approx(64 * 64 * 4 * 5 * PER_PIXEL)
    preview = restoration_cost(headed, (64, 64), n_samples=0, symmetries=1)
    assert preview.seconds == pytest.approx(64 * 64 * PER_PIXEL) and preview.describe().startswith("4,096 px, one pass")
    # overlapping tiles are paid for twice: a 100² plane in 64² tiles costs more than its pixels
    wide = restoration_cost(headed, (100, 100), n_samples=4, steps=5)
    assert wide.seconds > 100 * 100 * 21 * PER_PIXEL
    with pytest.raises(ValueError, match="steps"):
        restoration_cost(headed, (64, 64), steps=10_000)


def test_the_recalibration_restores_at_most_the_self_calibration_budget(fixed_rate, headed):
    from napari_diffdenoise.core.calibration.residuals import MAX_PIXELS

    cost = recalibration_cost(headed, (2, 1024, 1024))
    assert cost.pixels == 2 * 2 * 256 * 256 <= MAX_PIXELS  # a 256² crop of each plane, recorrupted twice
    assert recalibration_cost(headed, (2, 1024, 1024), n_samples=2, steps=3).seconds < cost.seconds


def test_the_widgets_calibration_costs_its_planes_and_with_a_t_axis_the_frame_pairs(fixed_rate, headed):
    """The Denoise widget's and the CLI's calibration (self_calibration.iter_calibrate_on_data) recorrupts
    up to CALIBRATION_PLANES planes, and with a T axis also restores those frames for their frame pairs."""
    stack = recalibration_cost(headed, (40, 64, 64), axes="ZYX")
    assert stack.pixels == recalibration_cost(headed, (4, 64, 64), axes="ZYX").pixels  # 4 of the 40 planes
    assert stack.pixels < recalibration_cost(headed, (40, 64, 64)).pixels  # adapt's recalibration: every plane
    series = recalibration_cost(headed, (40, 64, 64), axes="TYX")
    assert series.pixels == stack.pixels + 4 * 64 * 64


def test_a_plane_with_bright_structure_costs_a_run_over_its_box(fixed_rate, headed, monkeypatch):
    """A spot far above the plane's 99.8th percentile is restored again in a box around it
    (core.run.bright_pass): each plane costs a run over that box more — its tiles' network calls and
    a run's fixed cost, which a small run pays as a large one does; a plane without one costs the same."""
    from napari_diffdenoise.core.run.bright_pass import BRIGHT_MARGIN
    from napari_diffdenoise.core.run.restore import make_settings

    monkeypatch.setattr(run_cost, "outside_network", lambda model, settings, given: (0.0, 0.25))

    plane = np.random.default_rng(1).poisson(20, (256, 256)).astype(np.float32)
    plain = restoration_cost(headed, (3, 256, 256), n_samples=2, steps=2)
    assert run_cost.bright_shapes(headed, plane, make_settings(headed)) == []
    assert restoration_cost(headed, (3, 256, 256), plane, n_samples=2, steps=2).seconds == pytest.approx(plain.seconds)
    plane[100:106, 150:156] = 5000.0
    (box,) = run_cost.bright_shapes(headed, plane, make_settings(headed))
    # one box: the spot, as wide again as the 1 px blur spreads it above the ceiling, and the margin
    assert all(6 + 2 * BRIGHT_MARGIN < side <= 6 + 6 + 2 * BRIGHT_MARGIN for side in box)
    per_plane = restoration_cost(headed, box, n_samples=2, steps=2).seconds  # its network calls and one run's 0.25 s
    assert restoration_cost(headed, (3, 256, 256), plane, n_samples=2, steps=2).seconds == \
        pytest.approx(plain.seconds + 3 * per_plane)
    assert per_plane > box[0] * box[1] / plane.size * plain.seconds / 3  # more than the box's share of the plane


def test_the_calibrations_crops_cost_their_bright_boxes_too(fixed_rate, headed, monkeypatch):
    """Each restoration of a crop the calibration takes (recorrupted draws; with a T axis the frames too)
    runs the bright pass over its boxes: counted from a plane of the image when one is given."""
    from napari_diffdenoise.core.calibration.residuals import MAX_PIXELS, recorrupted_crops
    from napari_diffdenoise.core.run.restore import calibration_settings, make_settings

    monkeypatch.setattr(recalibration, "outside_network", lambda model, settings, given: (0.0, 0.25))
    plane = np.random.default_rng(1).poisson(20, (256, 256)).astype(np.float32)
    plain = recalibration_cost(headed, (256, 256), axes="YX")
    assert recalibration_cost(headed, (256, 256), axes="YX", sample_plane=plane).seconds == pytest.approx(plain.seconds)
    plane[100:106, 150:156] = 5000.0
    crops, draws = recorrupted_crops([plane], MAX_PIXELS)
    s = make_settings(headed, **calibration_settings(headed, {}))
    (box,) = run_cost.bright_shapes(headed, crops[0], s)
    per_box = run_cost.planes_cost(headed, s, box, 1).seconds + 0.25
    assert draws > 1 and recalibration_cost(headed, (256, 256), axes="YX", sample_plane=plane).seconds == \
        pytest.approx(plain.seconds + draws * per_box)
    # a series: its frame pairs restore the frames once more
    series = recalibration_cost(headed, (2, 256, 256), axes="TYX", sample_plane=plane)
    assert series.seconds == pytest.approx(recalibration_cost(headed, (2, 256, 256), axes="TYX").seconds
                                           + (draws + 1) * per_box)


def _pixels_of_the_tiles(model, shape, s) -> int:
    """The tiled pixels counted off the tiles restore builds (weights and all): the oracle."""
    from napari_diffdenoise.core.imaging.tiling import make_tiles
    from napari_diffdenoise.core.model.tiled_network import TiledEpsilon

    m = model.network.config.size_multiple
    return sum(-(-t.height // m) * m * -(-t.width // m) * m
               for block in make_tiles(shape, s.block, s.block_overlap)
               for t in TiledEpsilon(model, None, (block.height, block.width), s.tile, s.overlap, 1).tiles)


@pytest.mark.parametrize("shape, settings", [
    ((30, 50), {}),  # smaller than a tile, sides not a multiple of the network's
    ((64, 64), {}),
    ((100, 137), {}),
    ((65, 200), {"tile": 32, "overlap": 0}),
    ((301, 91), {"tile": 32, "overlap": 31}),
    ((400, 333), {"tile": 64, "overlap": 8, "block": 150, "block_overlap": 20}),  # several blocks
    ((90, 1000), {"tile": 32, "overlap": 5, "block": 97, "block_overlap": 0}),
    ((20, 20), {"block": 64, "block_overlap": 0}),  # a plane smaller than its block and its tile
])
def test_the_tiled_pixels_are_those_of_the_tiles_restore_builds(tiny_model, shape, settings):
    from napari_diffdenoise.core.run.restore import make_settings

    s = make_settings(tiny_model, n_samples=2, steps=2, **settings)
    assert run_cost._tiled_pixels(tiny_model, shape, s) == _pixels_of_the_tiles(tiny_model, shape, s)


def test_seconds_per_pixel_is_timed_once_per_model_device_and_tile(headed, monkeypatch):
    from napari_diffdenoise.core.run.restore import make_settings

    monkeypatch.setattr(run_cost, "_SECONDS_PER_PIXEL", {})
    settings = make_settings(headed, n_samples=2, steps=2, device="cpu")
    rate = run_cost.seconds_per_pixel(headed, settings)
    assert 0 < rate < 1e-3
    calls = []
    monkeypatch.setattr(run_cost, "device_model", lambda *a: calls.append(a))
    assert run_cost.seconds_per_pixel(headed, settings) == rate and not calls  # cached, not timed again


def test_what_the_run_spends_outside_the_network_is_timed_once_and_counted(headed, monkeypatch):
    """A one-step or Preview run spends a third to a half of its time outside the network calls
    (docs/benchmarks/speed.md), and a small run (a box of the bright pass) pays a fixed part of it as a
    large one does: a tile-sized plane and one of half its side (at most FIXED_TIMING_SIDE) are restored
    twice each, what their network calls take at the measured rate is taken off, and a line through the
    two gives seconds per pixel and per run; timed once per model and what the run computes (not per
    sampler step count), counted per pixel and per plane's run, and not at all where the calls alone
    exceed the budget."""
    from napari_diffdenoise.core.run.restore import make_settings

    monkeypatch.setattr(run_cost, "_OUTSIDE_NETWORK", {})
    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": 1e-9)
    runs = []
    real_denoise = run_cost.denoise
    monkeypatch.setattr(run_cost, "denoise", lambda plane, *a, **k: runs.append((plane.shape, k)) or
                        real_denoise(plane, *a, **k))
    given = {"n_samples": 2, "steps": 2, "device": "cpu"}
    s = make_settings(headed, **given)
    assert run_cost.overhead_key(headed, s) not in run_cost._OUTSIDE_NETWORK
    per_pixel, per_run = run_cost.outside_network(headed, s, given)
    # tiny models run tiles of 64²: planes of 64² and 32², twice each, no intervals
    assert [shape for shape, _ in runs] == [(64, 64)] * 2 + [(32, 32)] * 2
    assert all(k["coverage"] is None for _, k in runs)
    assert per_pixel >= 0 and per_run > 0 and run_cost._OUTSIDE_NETWORK[run_cost.overhead_key(headed, s)] == (per_pixel, per_run)
    # the steps do not change it
    assert run_cost.overhead_key(headed, make_settings(headed, n_samples=2, steps=3, device="cpu")) \
        in run_cost._OUTSIDE_NETWORK
    cost = restoration_cost(headed, (3, 100, 100), n_samples=2, steps=5, device="cpu")
    assert len(runs) == 4  # cached: not timed again
    assert cost.seconds == pytest.approx(3 * (100 * 100 * per_pixel + per_run)
                                         + 3 * run_cost._tiled_pixels(headed, (100, 100), s) * (2 * 5 + s.symmetries)
                                         * 1e-9)
    # more samples: another overhead, timed again
    run_cost.outside_network(headed, make_settings(headed, n_samples=4, steps=2, device="cpu"), {"n_samples": 4})
    assert len(runs) == 8
    # network calls alone over the budget: not timed, nothing added
    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": 1.0)
    s8 = make_settings(headed, n_samples=8, steps=2, device="cpu")
    assert run_cost.outside_network(headed, s8, {"n_samples": 8, "steps": 2}) == (0.0, 0.0) and len(runs) == 8


def test_the_timing_plane_shrinks_until_its_network_calls_fit_the_budget():
    """The default's network calls on a 512² plane take 1.6 s here with the heads averaged over 4
    symmetries: over the 1 s budget, the overhead went untimed and 'Time here' said 0.76× the run."""
    def priced(side):  # seconds of network calls on a plane of that side
        return side * side * 1e-5

    assert run_cost.OVERHEAD_TIMING_BUDGET == 1.0
    assert run_cost.timing_side(priced, 256) == 256  # 0.66 s: the tile itself
    assert run_cost.timing_side(priced, 512) == 256  # 2.6 s at 512²
    assert run_cost.timing_side(priced, 1024) == 256
    assert run_cost.timing_side(lambda side: 5.0, 512) is None  # over the budget down to MIN_TIMING_SIDE
    assert run_cost.timing_side(lambda side: 5.0, 64) is None  # a tile below MIN_TIMING_SIDE is not shrunk


def test_a_self_calibration_costs_its_analysis_too_timed_once(headed, monkeypatch):
    """The std head's calibration restores with two network passes; the noise fit and the residuals'
    cross-moments took most of a 512² plane's 3.6–4.7 s (0.41 s priced before): a tile-sized plane's
    calibration is timed whole once, less its network calls, and charged per restored pixel."""
    monkeypatch.setattr(recalibration, "_CALIBRATION_OVERHEAD", {})
    monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": 1e-9)
    calls = []
    real = recalibration.iter_self_calibrate
    monkeypatch.setattr(recalibration, "iter_self_calibrate", lambda *a, **k: calls.append(k) or (yield from real(*a, **k)))
    assert not recalibration.calibration_is_timed(headed, n_samples=2, steps=2)
    cost = recalibration_cost(headed, (3, 100, 100), n_samples=2, steps=2)
    assert len(calls) == 1 and calls[0]["max_pixels"] == 2 * 64 * 64  # tiny models run tiles of 64²
    assert recalibration.calibration_is_timed(headed, n_samples=2, steps=2)
    per_pixel = next(iter(recalibration._CALIBRATION_OVERHEAD.values()))
    assert per_pixel > 0
    network = cost.seconds - cost.pixels * per_pixel
    assert 0 < network < 1e-9 * cost.pixels * 100  # the network calls at the fixed rate, a few passes per pixel
    assert recalibration_cost(headed, (3, 100, 100), n_samples=2, steps=2).seconds == pytest.approx(cost.seconds)
    assert len(calls) == 1  # cached


def test_the_denoise_widget_says_how_long_the_run_takes_here(make_napari_viewer, qtbot, fixed_rate, tiny_checkpoint):
    from napari_diffdenoise._widgets.denoise import DenoiseWidget
    from napari_diffdenoise.core.io.checkpoint import load_model

    viewer = make_napari_viewer()
    w = DenoiseWidget(viewer)
    assert w.estimate.value == "—"  # no image yet
    w.model_file.value = tiny_checkpoint
    viewer.add_image(np.random.default_rng(0).poisson(5, (2, 128, 128)).astype(np.uint16), name="cells")
    w.image.value = viewer.layers["cells"]
    model = load_model(tiny_checkpoint)
    # intervals by default, calibrated on the image first, which the estimate counts
    qtbot.waitUntil(lambda: "of it calibrating" in w.estimate.value, timeout=20_000)
    w.coverage.value = 0.0  # the run alone

    def expected(**settings):
        return f"about {duration(restoration_cost(model, (2, 128, 128), **settings).seconds)}"

    w.preset.value = next(p for p in w.preset.choices if p.startswith("thorough"))
    qtbot.waitUntil(lambda: w.estimate.value == expected(n_samples=16, steps=20), timeout=20_000)
    assert "counted from the first plane" in w.estimate.tooltip  # an in-memory image: its bright pass is counted
    assert "2 × 128" not in w.estimate.tooltip and "32,768 px × 16 samples × 20 steps" in w.estimate.tooltip
    w.preset.value = next(p for p in w.preset.choices if p.startswith("fast"))
    qtbot.waitUntil(lambda: w.estimate.value == expected(n_samples=4, steps=3), timeout=20_000)
    w.coverage.value = 0.9  # calibrating on the image comes first, and is counted
    qtbot.waitUntil(lambda: "of it calibrating" in w.estimate.value, timeout=20_000)
    w.self_calibrate.value = False  # the tiny model has no stored calibration: no run to estimate
    qtbot.waitUntil(lambda: w.estimate.value == "—", timeout=20_000)
    w.coverage.value = 0.0
    qtbot.waitUntil(lambda: w.estimate.value == expected(n_samples=4, steps=3), timeout=20_000)


def test_a_c_axis_is_calibrated_channel_by_channel_and_costs_so(fixed_rate, headed):
    one = recalibration_cost(headed, (40, 64, 64), axes="ZYX")
    three = recalibration_cost(headed, (40, 3, 64, 64), axes="ZCYX")
    assert three.pixels == 3 * one.pixels and three.seconds == pytest.approx(3 * one.seconds)
    assert recalibration_cost(headed, (40, 1, 64, 64), axes="ZCYX").pixels == one.pixels


@pytest.mark.parametrize("timing", ["network rate", "outside the network", "calibration"])
def test_a_timing_stops_where_its_caller_asks_and_keeps_nothing(headed, monkeypatch, timing):
    """A widget's timing thread must end when the widget closes or napari quits (napari waits for it):
    inside stoppable, each timing polls before every network call, restoration and tile it times, raises
    Cancelled at the first True, and caches nothing; outside, the same timing runs to its end."""
    from napari_diffdenoise.core.run.restore import Cancelled, make_settings

    for cache in ("_SECONDS_PER_PIXEL", "_OUTSIDE_NETWORK"):
        monkeypatch.setattr(run_cost, cache, {})
    monkeypatch.setattr(recalibration, "_CALIBRATION_OVERHEAD", {})
    if timing != "network rate":
        monkeypatch.setattr(run_cost, "seconds_per_pixel", lambda model, settings, network="network": 1e-9)
    given = {"n_samples": 2, "steps": 2, "device": "cpu"}
    s = make_settings(headed, **given)
    work = {"network rate": lambda: run_cost.seconds_per_pixel(headed, s),
            "outside the network": lambda: run_cost.outside_network(headed, s, given),
            "calibration": lambda: recalibration.calibration_overhead_per_pixel(headed, s, given)}[timing]
    caches = (run_cost._SECONDS_PER_PIXEL, run_cost._OUTSIDE_NETWORK, recalibration._CALIBRATION_OVERHEAD)
    answers = []

    def ask():  # the third poll asks it to stop
        answers.append(len(answers) >= 2)
        return answers[-1]

    with run_cost.stoppable(ask), pytest.raises(Cancelled):
        work()
    assert answers == [False, False, True] and not any(caches)
    assert run_cost.stop_asked() is False  # outside, nothing asks
    work()
    assert any(caches)
