"""The [mean] refined by a Wiener filter with itself as the pilot (core.imaging.pilot_wiener): what the filter
does, that a model carries the choice, that a run applies it as the model says, and that adapting on a series
refines only where the series' own frames show it better (core.training.adapt_criteria.refinement_judge)."""
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from napari_diffdenoise import denoise
from napari_diffdenoise.core.imaging.camera_noise import CameraNoise, estimate_noise
from napari_diffdenoise.core.imaging.pilot_wiener import (
    ALWAYS,
    BRIGHT_PHOTONS,
    IF_BRIGHT,
    dct_wiener,
    peak_photons,
    refine_mean,
    said,
)
from napari_diffdenoise.core.io.checkpoint import load_model, save_checkpoint
from napari_diffdenoise.core.training import adapt_criteria


def bright_scene(size=96, peak=400.0, seed=0):
    """(expected counts, a Poisson frame of them): small bright puncta on a dim background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = np.full((size, size), 10.0)
    for cy, cx in rng.integers(6, size - 6, (25, 2)):
        clean += peak * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    return clean, rng.poisson(clean).astype(np.float32)


def test_the_filter_keeps_what_the_pilot_calls_signal_and_drops_what_it_calls_noise():
    d = np.random.default_rng(0).normal(size=(40, 56))
    assert np.allclose(dct_wiener(d, 1e4 * d), d, atol=1e-3)  # every coefficient far above the noise: kept
    assert np.allclose(dct_wiener(d, np.zeros_like(d)), 0.0)  # none above it: all gone


def test_refining_gives_back_bright_structure_an_oversmoothed_mean_lost_and_costs_a_good_mean_at_low_light():
    """Why a model refines only where its user's frames show it better: it helps a mean that smoothed structure
    the camera resolved (the lysosome frames), and spoils one that held more than the noisy pixels do."""
    clean, noisy = bright_scene()
    smoothed = ndimage.gaussian_filter(clean, 1.5)
    refined = refine_mean(noisy, smoothed, estimate_noise([noisy]))
    assert np.mean((refined - clean) ** 2) < 0.5 * np.mean((smoothed - clean) ** 2)
    dim, dim_noisy = bright_scene(peak=4.0)
    good = ndimage.gaussian_filter(dim, 0.5)
    worse = refine_mean(dim_noisy, good, CameraNoise(1.0, 0.0))
    assert np.mean((worse - dim) ** 2) > 2 * np.mean((good - dim) ** 2)


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_a_model_carries_its_refinement_through_a_checkpoint(demo, tmp_path):
    refined = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    save_checkpoint(refined, tmp_path / "refined.safetensors")
    assert load_model(tmp_path / "refined.safetensors").mean_refinement == "pilot-wiener"
    # unset, the metadata (and a file's hash) stay as before
    assert "mean_refinement" not in dataclasses.replace(demo, mean_refinement="none").metadata()
    assert load_model(tmp_path / "refined.safetensors").metadata()["mean_refinement"] == "pilot-wiener"


def test_a_run_refines_the_head_s_mean_as_the_model_says_and_records_it(demo):
    _, noisy = bright_scene(size=80)
    unrefined = dataclasses.replace(demo, mean_refinement="none")
    plain = denoise(noisy, unrefined, seed=0, n_samples=0)
    refined_model = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    run = denoise(noisy, refined_model, seed=0, n_samples=0)
    expected = np.maximum(refine_mean(noisy, plain.mean, estimate_noise([noisy])), 0)
    assert np.allclose(run.mean, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(run.mean - plain.mean).max() > 1.0  # it moved the mean
    assert run.metadata["mean_refinement"] == "pilot-wiener" and plain.metadata["mean_refinement"] == "none"
    assert np.array_equal(run.mean, denoise(noisy, refined_model, seed=0, n_samples=0).mean)
    # the mean it was judged on is the head's: the samples' average is left as it is
    samples = denoise(noisy, refined_model, seed=0, n_samples=2, mean="samples", sampler_params={"steps": 2})
    assert samples.metadata["mean_refinement"] == "none"
    assert np.array_equal(samples.mean, denoise(noisy, unrefined, seed=0, n_samples=2, mean="samples",
                                                sampler_params={"steps": 2}).mean)


class _Restored:
    def __init__(self, mean):
        self.mean = mean


@pytest.mark.parametrize("head, refined", [("oversmoothing", True), ("exact", False)])
def test_adapting_on_a_series_refines_only_where_its_frames_show_it_better(monkeypatch, demo, head, refined):
    """The judge restores held-out frames as a run does and scores them against their registered neighbours:
    a head that smoothed the puncta is refined, one that restores them exactly is left as it is."""
    from napari_diffdenoise.core.run import restore

    clean, _ = bright_scene(size=128)
    frames = [np.random.default_rng([1, k]).poisson(clean).astype(np.float64) for k in range(7)]
    restored = ndimage.gaussian_filter(clean, 1.5) if head == "oversmoothing" else clean
    monkeypatch.setattr(restore, "denoise", lambda frame, model, **kw: _Restored(restored[:frame.shape[0],
                                                                                        :frame.shape[1]].copy()))
    held = [(2, (1, 3)), (5, (4, 6))]
    judged = adapt_criteria.refinement_judge(demo, frames, held, CameraNoise(1.0, 0.0))
    assert judged["quadrants"] == 8 and judged["refined"] is refined
    assert (judged["difference"] < 0) is refined


@pytest.mark.parametrize("parent_is, better", [("exact", False), ("oversmoothing", True)])
def test_a_series_judges_an_adapted_mean_against_the_bundled_model_as_it_runs(monkeypatch, demo, parent_is, better):
    """With the model adapted from (its bright planes refined as it runs), the judge scores the same windows restored
    by it: the adapted [mean] is better only where it is closer to the registered neighbours than that."""
    from napari_diffdenoise.core.run import restore

    clean, _ = bright_scene(size=128)
    frames = [np.random.default_rng([1, k]).poisson(clean).astype(np.float64) for k in range(7)]
    parent = dataclasses.replace(demo, mean_refinement=IF_BRIGHT)
    adapted = dataclasses.replace(demo, name="adapted")
    restorations = {"adapted": ndimage.gaussian_filter(clean, 0.7),
                    "parent": clean if parent_is == "exact" else ndimage.gaussian_filter(clean, 1.5)}
    monkeypatch.setattr(restore, "denoise", lambda frame, model, **kw: _Restored(
        restorations["parent" if model.mean_refinement == IF_BRIGHT else "adapted"][:frame.shape[0],
                                                                                   :frame.shape[1]].copy()))
    judged = adapt_criteria.refinement_judge(adapted, frames, [(2, (1, 3)), (5, (4, 6))], CameraNoise(1.0, 0.0),
                                             parent=parent)
    versus = judged["versus_parent"]
    assert versus["better"] is better and (versus["difference"] < 0) is better
    assert "versus_parent" not in adapt_criteria.refinement_judge(adapted, frames, [(2, (1, 3))], CameraNoise(1.0, 0.0))


def test_an_adapted_mean_must_also_win_where_its_target_needed_no_registration(monkeypatch, demo):
    """A head trained towards registered frames could learn the registration's misses, which the registered target
    shares: better than the parent over the registered pixels, worse on those that held still, it is not kept."""
    from napari_diffdenoise.core.run import restore

    clean, _ = bright_scene(size=128)
    frames = [np.random.default_rng([2, k]).poisson(clean).astype(np.float64) for k in range(14)]
    parent = dataclasses.replace(demo, mean_refinement=IF_BRIGHT)
    adapted = dataclasses.replace(demo, name="adapted")
    left = np.zeros(clean.shape, dtype=bool)
    left[:, :64] = True  # the pixels that held still: the judge's left quadrants
    restorations = {"parent": clean + 1.0, "adapted": clean + np.where(left, 1.05, 0.1)}
    monkeypatch.setattr(restore, "denoise", lambda frame, model, **kw: _Restored(
        restorations["parent" if model.mean_refinement == IF_BRIGHT else "adapted"].copy()))

    def window(planes, t, others, corner, size, noise, held_still=True):
        return clean.copy(), np.ones(clean.shape, dtype=bool), left & held_still

    monkeypatch.setattr(adapt_criteria, "_registered_window", window)
    held = [(k, (k - 1, k + 1)) for k in range(1, 13, 2)]
    versus = adapt_criteria.refinement_judge(adapted, frames, held, CameraNoise(1.0, 0.0), parent=parent)["versus_parent"]
    assert versus["difference"] + 3 * versus["standard_error"] < 0  # the registered target alone would keep it
    assert versus["still"]["difference"] > 0 and versus["better"] is False
    monkeypatch.setattr(adapt_criteria, "_registered_window", lambda *a: window(*a, held_still=False))
    alone = adapt_criteria.refinement_judge(adapted, frames, held, CameraNoise(1.0, 0.0), parent=parent)
    assert "still" not in alone["versus_parent"] and alone["versus_parent"]["better"] is True


def test_the_cli_says_when_the_model_refined_the_mean(demo, tmp_path, capsys):
    import tifffile

    from napari_diffdenoise.cli import main

    _, noisy = bright_scene(size=64)
    tifffile.imwrite(tmp_path / "puncta.tif", noisy)
    save_checkpoint(dataclasses.replace(demo, mean_refinement="pilot-wiener"), tmp_path / "refined.safetensors")
    for model, says in ((str(tmp_path / "refined.safetensors"), True), ("demo", False)):
        assert main(["denoise", str(tmp_path / "puncta.tif"), "--out", str(tmp_path / model[-8:]), "--model", model,
                     "--samples", "0"]) == 0
        assert ("the [mean] refined by a Wiener filter with itself as the pilot" in capsys.readouterr().err) is says


def test_the_denoise_widget_says_when_the_model_refined_the_mean(make_napari_viewer, qtbot, monkeypatch, demo, tmp_path):
    from napari_diffdenoise._widgets import denoise as denoise_module
    from napari_diffdenoise._widgets.denoise import DenoiseWidget

    errors = []
    monkeypatch.setattr(denoise_module, "notify_error", errors.append)

    save_checkpoint(dataclasses.replace(demo, mean_refinement="pilot-wiener"), tmp_path / "refined.safetensors")
    viewer = make_napari_viewer()
    d = DenoiseWidget(viewer)
    d.image.value = viewer.add_image(bright_scene(size=64)[1], name="puncta")
    d.model_file.value = tmp_path / "refined.safetensors"
    d.n_samples.value, d.coverage.value = 0, 0.0
    d.run()
    qtbot.waitUntil(lambda: "puncta [mean]" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: d.status.value.startswith("Done"), timeout=10_000)
    assert "the [mean] refined by a Wiener filter with itself as the pilot" in d.status.value
    assert viewer.layers["puncta [mean]"].metadata["napari_diffdenoise"]["mean_refinement"] == "pilot-wiener"
    assert not errors, errors


def test_an_exported_package_says_its_forward_leaves_the_refinement_out(demo):
    from napari_diffdenoise.core.io.bioimageio_export import _documentation

    assert "Wiener" not in _documentation(dataclasses.replace(demo, mean_refinement="none"), from_demo=True)
    assert "`forward` gives the network's output alone" in _documentation(
        dataclasses.replace(demo, mean_refinement="pilot-wiener"), from_demo=True)
    assert "on planes at least 600 photons bright" in _documentation(
        dataclasses.replace(demo, mean_refinement=IF_BRIGHT), from_demo=True)


def test_a_calibration_holds_for_the_refinement_it_was_made_with(demo):
    """The intervals are centred on the refined mean: a model's calibration made with its refinement serves its
    runs, and not a run of the same weights left unrefined (refused, as any user calibration is for settings it
    was not made for, unless calibrated on the image)."""
    from napari_diffdenoise import calibrate

    _, noisy = bright_scene(size=64)
    refined = calibrate(dataclasses.replace(demo, mean_refinement="pilot-wiener", calibrations=[]), noisy,
                        n_samples=0, std="head")
    run = denoise(noisy, refined, seed=0, n_samples=0, coverage=0.9)
    assert run.metadata["calibrated_on_this_image"] is False
    assert run.metadata["calibration_source"] == refined.calibrations[0]["source"]
    unrefined = dataclasses.replace(refined, mean_refinement="none")
    # the message tells the two apart: they differ by the refinement alone
    with pytest.raises(ValueError, match=r"has no calibration for the std head \(mean: head\); it is calibrated for: "
                                         r"the std head \(mean: head, refined: pilot-wiener\)"):
        denoise(noisy, unrefined, seed=0, n_samples=0, coverage=0.9)
    assert denoise(noisy, unrefined, seed=0, n_samples=0, coverage=0.9,
                   calibrate_on_image=True).metadata["calibrated_on_this_image"] is True


def test_a_camera_fit_without_photon_noise_is_refined_by_scaling_and_one_without_noise_not_at_all():
    """A fit's gain can be 0 (no level dependence found): the Anscombe transform would divide by it."""
    clean, _ = bright_scene(size=48)
    noisy = clean + 5.0 * np.random.default_rng(3).standard_normal(clean.shape)
    smoothed = ndimage.gaussian_filter(clean, 1.5)
    refined = refine_mean(noisy, smoothed, CameraNoise(0.0, 25.0))
    assert np.mean((refined - clean) ** 2) < np.mean((smoothed - clean) ** 2)
    assert np.array_equal(refine_mean(noisy, smoothed, CameraNoise(0.0, 0.0)), smoothed)


def test_the_filter_in_strips_of_windows_is_the_filter_on_all_windows_at_once(monkeypatch):
    """A 4096² plane's windows at once would take GBs per array: they go in strips, with the same result."""
    from napari_diffdenoise.core.imaging import pilot_wiener

    rng = np.random.default_rng(5)
    d = rng.normal(size=(75, 61))
    pilot = d * rng.uniform(0, 3, d.shape)
    monkeypatch.setattr(pilot_wiener, "WINDOW_ROWS", 10**6)
    whole = dct_wiener(d, pilot)
    monkeypatch.setattr(pilot_wiener, "WINDOW_ROWS", 3)
    np.testing.assert_allclose(dct_wiener(d, pilot), whole, rtol=0, atol=1e-12)


def test_a_refined_run_s_time_here_is_timed_apart_from_an_unrefined_one(demo):
    """What a run spends outside its network calls is timed per what it computes: the refinement is part of it."""
    from napari_diffdenoise.core.run import run_cost
    from napari_diffdenoise.core.run.restore import make_settings

    refined = dataclasses.replace(demo, mean_refinement="pilot-wiener")
    keys = [run_cost.overhead_key(m, make_settings(m, n_samples=0, device="cpu")) for m in (demo, refined)]
    assert keys[0] != keys[1] and keys[0][:5] == keys[1][:5]  # same network timings, another overhead


@pytest.mark.parametrize("shape", [(33, 17), (5, 9), (4, 4)])
def test_a_plane_of_any_size_is_filtered_without_a_division_by_zero(shape):
    d = np.random.default_rng(0).normal(size=shape)
    with np.errstate(all="raise"):
        assert np.isfinite(dct_wiener(d, 2 * d)).all()


def test_peak_photons_reads_the_photons_of_the_brightest_structure_above_the_background_in_any_camera_units():
    """A broad blob of n photons at its peak over a background of b: (S / σ)² = n² / (n + b), read through a
    camera of gain 3 and offset 100 as through photon counts."""
    yy, xx = np.mgrid[:128, :128]
    expected = 20.0 + 1000.0 * np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / (2 * 15.0**2))
    photons = np.random.default_rng(0).poisson(expected).astype(np.float64)
    counted = peak_photons(photons, estimate_noise([photons]))
    assert counted == pytest.approx(1000.0**2 / 1020.0, rel=0.1)
    camera = 3.0 * photons + 100.0
    assert peak_photons(camera, estimate_noise([camera])) == pytest.approx(counted, rel=0.05)
    assert peak_photons(np.full((32, 32), 7.0), CameraNoise(1.0, 0.0)) == 0.0  # no structure: not bright


def test_the_bright_planes_rule_refines_a_bright_plane_of_a_stack_and_leaves_a_dim_one(demo):
    """IF_BRIGHT (the bundled demo's rule) refines each plane where it is BRIGHT_PHOTONS bright or more, as ALWAYS
    would, leaves the others as the head made them, and the record says which planes it refined."""
    _, bright = bright_scene(size=80, peak=20000.0)
    _, dim = bright_scene(size=80, peak=400.0, seed=1)
    assert peak_photons(bright, estimate_noise([bright])) >= BRIGHT_PHOTONS > peak_photons(dim, estimate_noise([dim]))
    stack = np.stack([bright, dim])
    runs = {rule: denoise(stack, dataclasses.replace(demo, mean_refinement=rule), seed=0, n_samples=0)
            for rule in ("none", ALWAYS, IF_BRIGHT)}
    ruled = runs[IF_BRIGHT]
    assert np.array_equal(ruled.mean[0], runs[ALWAYS].mean[0]) and np.array_equal(ruled.mean[1], runs["none"].mean[1])
    assert np.abs(ruled.mean[0] - runs["none"].mean[0]).max() > 1.0
    assert ruled.metadata["mean_refinement"] == IF_BRIGHT and ruled.metadata["mean_refined_planes"] == [0]
    assert "on 1 plane(s)" in said(ruled.metadata)
    assert "mean_refined_planes" not in runs["none"].metadata and said(runs["none"].metadata) == ""
    only_dim = denoise(dim, dataclasses.replace(demo, mean_refinement=IF_BRIGHT), seed=0, n_samples=0)
    assert "mean_refined_planes" not in only_dim.metadata and said(only_dim.metadata) == ""


@pytest.mark.parametrize("peak, refined", [(20000.0, True), (400.0, False)])
def test_a_recorrupted_calibration_restores_its_crops_refined_as_the_run_refines_the_image(monkeypatch, demo, peak,
                                                                                          refined):
    """Recorrupted crops hold twice the image's noise and would read half its photons: under IF_BRIGHT they are
    restored refined exactly where the run refines the image, and the calibration is keyed by the rule, so the
    run takes it."""
    from napari_diffdenoise import calibrate
    from napari_diffdenoise.core.calibration import residuals

    told = []
    restore = residuals._restore

    def spy(model, stack, settings, part):
        told.append(settings.mean_refinement)
        return (yield from restore(model, stack, settings, part))

    monkeypatch.setattr(residuals, "_restore", spy)
    _, noisy = bright_scene(size=80, peak=peak)
    model = calibrate(dataclasses.replace(demo, mean_refinement=IF_BRIGHT, calibrations=[]), noisy, n_samples=0,
                      std="head")
    assert told == [ALWAYS if refined else "none"]
    assert f"their [mean] {'refined' if refined else 'left unrefined'} as the run's" in model.calibrations[0]["source"]
    run = denoise(noisy, model, seed=0, n_samples=0, coverage=0.9)
    assert run.metadata["calibrated_on_this_image"] is False  # the calibration made under the rule is the run's
    assert ("mean_refined_planes" in run.metadata) is refined


def test_a_run_of_the_bright_planes_rule_is_priced_as_its_planes_will_be_refined(monkeypatch, demo):
    """'Time here' of a model that refines bright planes counts the filter where the image's plane is bright, and
    where no plane is given, and leaves it out of a dim plane's estimate."""
    from napari_diffdenoise.core.run import run_cost

    priced = []

    def outside_network(model, settings, given):
        priced.append(settings.mean_refinement)
        return 0.0, 0.0

    monkeypatch.setattr(run_cost, "outside_network", outside_network)
    monkeypatch.setattr(run_cost, "planes_cost", lambda model, s, shape, n: run_cost.RunCost(0, 0, 0, 0.0))
    ruled = dataclasses.replace(demo, mean_refinement=IF_BRIGHT)
    _, bright = bright_scene(size=80, peak=20000.0)
    _, dim = bright_scene(size=80, peak=400.0, seed=1)
    for plane in (bright, dim, None):
        run_cost.restoration_cost(ruled, (80, 80), plane, n_samples=0)
    assert priced == [ALWAYS, "none", ALWAYS]
    # with intervals from the model's stored calibration (made under the rule), priced alike and not refused
    from napari_diffdenoise import calibrate

    stored = calibrate(dataclasses.replace(ruled, calibrations=[]), dim, n_samples=0, std="head")
    priced.clear()
    for plane in (bright, dim, None):
        run_cost.restoration_cost(stored, (80, 80), plane, n_samples=0, coverage=0.9)
    assert priced == [ALWAYS, "none", ALWAYS]
