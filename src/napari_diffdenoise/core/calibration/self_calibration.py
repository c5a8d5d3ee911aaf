"""Intervals calibrated on the user's own noisy image, against the restoration's real error.

Without a truth, the only witness of the restoration's error is a second, independent noisy view of
the same field: the next frame of a time series (``frames``), or a recorrupted pair made from the
image itself (after Pang et al., "Recorrupted-to-Recorrupted", CVPR 2021; Moran et al.,
"Noisier2Noise", CVPR 2020): with s drawn like the camera noise, ŷ = y + α·s and ȳ = y − s/α
carry uncorrelated noises (independent up to the third moment: core.imaging.recorruption), and the residual r = ȳ − f(ŷ) is the restoration's error e = x − f(ŷ)
plus a noise n that does not depend on f.

The restoration's error scale is read off those residuals by statistics in which the noise cancels
(core/calibration/error_scale.py).

Pitfalls handled: camera noise correlated between neighbouring pixels (processed or resampled data)
would pass as error at lag 1, so the noise's own lag-1 correlation is measured first (from the image's
spectrum where it holds noise alone, core.calibration.view_noise.noise_correlation) and the offsets its
correlation reaches (lags 1 and 2 of a 3-tap kernel, lags up to 4 used) are left out where they could
matter. With frames, the view's noise covariance is read off a noise probe (half the
difference of the neighbouring frames) and taken off at every lag; the probe also holds whatever
moved between the frames, which the view does not, so it is read on its quiet blocks only, as a
correlation per offset times a std per image level (core.calibration.view_noise.correlated_noise), after its
smooth part — the scene's slow change between the frames, which the view does not hold as noise — is taken off. At low light the
products are noisy: each bin's V carries a standard error (from disjoint groups of blocks) and is
shrunk towards the pooled value by it; a recorrupted image smaller than the budget is drawn several
times (:func:`.residuals.recorrupted_draws`). The known part of the view's noise (−s/α) is not taken off the
products, though its mean is 0: given a bin of u, itself a function of the input y + α·s, it is not, and
taking it off moved each bin's V by up to ±4 on Golgi at 3 photons (truth 0.2–0.6). The error's correlation length, which the extrapolation to lag 0 needs,
is read off the difference of two draws' restorations (:func:`.residuals.response_length`), not off the
noisy products.

Known bias: a recorrupted input is noisier than the user's (1 + α² in variance), so V is measured
on a restoration at that noise level, not at the image's own; not corrected. Where the camera's noise
is correlated between pixels (seen in the image's spectrum, core.calibration.view_noise.noise_correlation),
the draws s are given that correlation and the variance the camera fit misses of it
(core.imaging.recorruption): white draws would leave ŷ and ȳ sharing the correlated part, and a
restoration that lets it through would read as error-free. Tested on real images with simulated
correlated noise only: none of the project's real data has it (docs/benchmarks/noise_correlation.md). The shape per bin (a
generalised Gaussian, core.calibration.error_scale.ERROR_SHAPE) is an assumption, measured on other images; bench/real_calibration.py measures what it alone costs (the route whose V
per bin is taken from the truth). Frame pairs have no noise-level bias, but count what motion is
left as error.

Where it misses (docs/benchmarks/calibration_diagnosis.md, on real images re-acquired at low light):
on a small image whose error is far below its noise (Golgi, 220×204 px at 3–10 photons) the one
realisation of camera noise that every recorrupted draw shares moves each lag's product by 1–5× the
error it should measure, so V scatters over 0.09–0.99 at 3 photons and 0.46–1.63 at 10 between acquisitions of
one scene (truth 0.32 and 0.61, the shipped demo);
a better noise fit changes nothing there. At a few photons per pixel the photon noise is skewed, and
Recorrupted-to-Recorrupted's pair, uncorrelated by construction, is then not independent: the
restoration's curvature carries E[a²·b] = κ₃(n) − α·κ₃(s) into the products, so the draws s carry the
camera's third moment over α (core.imaging.recorruption, the skew fitted with the noise,
core.imaging.camera_noise); on Golgi at 3 photons V read 0.80 on average with Gaussian draws and 0.38 with
these (four acquisitions, truth about 0.35). Where the error holds pixel-scale texture of the scene that
the restoration smoothed away (DSB nuclei at 30 photons: excusing that texture brings the coverage
to 0.95, docs/benchmarks/real_calibration.md), V comes out half the truth's, a bias rather than noise
(the products' own noise is ±0.05 V there): the extrapolation to lag 0 loses 36 % of it (applied to
the true error of the same restorations, noise-free, it reads 0.64 of that error's V: the response's
correlation length is 3.5 px, the error's 1.9 px) and the noisier recorrupted input another 21 %
(docs/benchmarks/calibration_diagnosis.md, the shipped demo). The response's length exceeds the error's on every
re-acquired image there (by 14–86 %), but the loss stays within ±23 % elsewhere.
Split exactly into its terms (the estimator is bilinear in r = e + noise), the error's own products
read within ±15 % of the truth's V in 45 of 60 quartiles of u there; the over-cover at 3–10 photons
is the view noise's own products in the darkest quartile (up to +2.7 V: camera noise and draws each
up to +3, their cross terms cancelling only in part, as u responds to both), noise that neither a
simulated expectation nor draws from the camera's own Poisson law removed (docs/performance.md).
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from ..imaging.axes import as_planes, check_axes
from ..imaging.camera_noise import estimate_noise
from ..imaging.registration import consistent
from ..io.checkpoint import load_model
from ..run.conformal import COVERAGE_GRID, MODELLED_COVERAGE, Calibration, block_split
from ..run.driving import drive
from ..run.plane_input import check_plane_size
from ..run.restore import Cancelled
from ..run.run_keywords import RunSpec
from .calibration_run import CalibrationRun, calibration_request, run_settings
from .error_scale import (
    CONFIDENCE_K,
    MAX_LAG,
    N_BINS,
    V_FLOOR,
    error_scale,
    lag_offsets,
)
from .residuals import MAX_PIXELS, iter_residuals, pixels_restored, response_length

LAG_BIAS_LIMIT = 0.1  # an offset is left out when correlated noise could add this fraction of V there
ALPHA = 1.0  # recorrupting: ŷ = y + α·s, ȳ = y − s/α (equal noises at α = 1: the least noisy products)
CALIBRATION_PLANES = 4  # planes (or frame pairs) of the user's image the widget and CLI calibrate on
SECOND_ACQUISITION = "a second acquisition"  # what a view the user gives is, in a calibration's source


def iter_self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                        alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                        second_is: str = SECOND_ACQUISITION, second_noise=None, spec: RunSpec | None = None,
                        floor: float = V_FLOOR, **settings):
    """:func:`self_calibrate` as a generator (yields Progress; returns a CalibrationRun whose truth is None).
    ``floor``: the least V an interval is built on."""
    if isinstance(model, str):
        model = load_model(model)
    coverages, run = calibration_request(model, coverage, settings, spec, "self_calibrate")
    planes = as_planes(noisy, "noisy")
    for plane in planes:  # before the noise fit, whose blocks need them (it failed on an empty array)
        check_plane_size(plane.shape, "noisy")
    if second is not None:
        partner = as_planes(second, "second")
        if [p.shape for p in partner] != [p.shape for p in planes]:
            raise ValueError("second must have the noisy image's shape (an independent acquisition of the same field)")
        view_name = second_is
        probe = (as_planes(second_noise, "second_noise") if second_noise is not None
                 else [(b - a) / math.sqrt(2) for a, b in zip(planes, partner)])
    elif frames:
        if len(planes) < 2:
            raise ValueError("frames=True needs at least two frames (a T axis)")
        planes, partner, probe, view_name = frame_views(planes)
    else:
        partner, probe, view_name = None, None, ""
    if partner is None and not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number; got {alpha!r}")

    offsets = lag_offsets()
    last, inputs = yield from iter_residuals(model, planes, run, alpha=None if partner is not None else alpha,
                                             seed=seed, partner=partner, probe=probe, view_name=view_name,
                                             max_pixels=max_pixels)
    mask = np.ones(last.v.shape, dtype=bool)
    camera = last.camera
    # the recorruption's own products (known: −s/α) are not taken off, though their mean is 0: given a
    # bin of u, a function of the input y + α·s, they are not (on Golgi at 3 photons per-bin V read
    # −4…+4 with them taken off, truth 0.2–0.6)
    taken_off = last.noise
    ell = response_length(last, offsets)
    scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws,
                        ell=ell, floor=floor)
    # correlated camera noise enters the products at the offsets it reaches as if it were error: by how
    # much, in V's units, per offset (its modelled correlation × the view's correlated noise energy; the
    # view's noise is the camera's, and the draws' too where they were given its correlation). At low
    # light the noise is tens of times the error, so even lag 2 of a 3-tap kernel (0.02) passes for a
    # tenth of V: on real images with noise of lag-1 correlation 0.22 along x added, leaving out lag 1
    # alone came within ±0.05 on 4 of 15, this on 8 (two runs of bench/noise_correlation.py, 2026-12-03)
    camera_share = 1.0 if partner is not None or last.coloured else alpha ** 2 / (1 + alpha ** 2)
    noise_energy = camera_share * float(np.mean(last.v ** 2))
    # offsets left out only when the correlation is seen (3 standard errors) and could move V by a
    # tenth (with a noise probe the noise's own cross-moments are taken off at every lag instead)
    limit = LAG_BIAS_LIMIT * max(scale.pooled, floor)
    dropped = last.noise is None and camera.seen() and any(abs(camera.at(*o)) * noise_energy > limit for o in offsets)
    if dropped:
        # (lags 3 and beyond along an axis are outside the model's reach: never all left out)
        offsets = [o for o in lag_offsets(MAX_LAG + 1) if abs(camera.at(*o)) * noise_energy <= limit]
        scale = error_scale(last.v, last.unit, mask, offsets, seed=split_seed, noise=taken_off, draws=last.draws,
                            ell=ell, floor=floor)

    # V < 0 cannot be: products that come out negative mean the view's noise is not independent of
    # the restoration's. With recorrupted pairs that is the known sign of a camera-noise fit a few per
    # cent low, which makes the noise the network lets through anti-correlate with the view's (its
    # Jacobian times the misfit): such residuals say nothing of the error, and the model's own spread
    # (V = 1) is used instead, the source saying so. An independent view has no noise fit to be off: a
    # V read slightly below 0 there is an error near 0 read with a slight bias (the 8-bit time-lapse's
    # frame pairs: −0.003 ± 0.001, the truth 0.01–0.06 in the darker half), which the floor covers;
    # below −floor, a bias that large could hide an error as wide as the narrowest interval allowed
    allowed_below_zero = floor if partner is not None else 0.0
    implausible = scale.pooled < -allowed_below_zero
    if implausible:
        scale = dataclasses.replace(scale, variances=[1.0] * len(scale.variances))

    # a split-half check: λ from one half of the blocks, its modelled coverage under the other half's V
    split = np.tile(block_split(inputs.shape, split_seed), (last.draws, 1, 1))  # a block's copies on one side
    half_a = error_scale(last.v, last.unit, split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell,
                          floor=floor)
    half_b = error_scale(last.v, last.unit, ~split, offsets, scale.edges, noise=taken_off, draws=last.draws, ell=ell,
                         floor=floor)
    factors = [scale.factor(c) for c in coverages]
    checked = [math.nan if implausible else half_b.coverage_of(half_a.factor(c)) for c in coverages]
    widths = [float(np.mean(2 * f * last.unit)) for f in factors]
    source = ("self-calibrated: residuals against " + last.how + ". Error scale from cross-moments at lags "
              f"{min(scale.lags_used):g}–{max(scale.lags_used):g} px (noise-cancelling)"
              + (f", extrapolated to lag 0 over the {ell:.2g} px correlation length of the restoration's response to "
                 "the draws' difference" if ell is not None else "")
              + ": V = E[(error/spread)²] = "
              f"{scale.pooled:.3g} ± {scale.pooled_se:.2g} overall; used per {N_BINS} bins of the spread "
              f"{', '.join(f'{v:.3g}' for v in scale.variances)} (measured {', '.join(f'{v:.3g}' for v in scale.raw_variances)}, "
              f"shrunk by their standard errors, then {CONFIDENCE_K:g} standard error above, floor {floor:g})"
              + (f"; the offsets within reach of the camera noise's correlation between pixels ({camera.describe()}) "
                 "left out" if dropped else f"; camera noise lag-1 correlation {camera.describe()}")
              + ("; the noise's own cross-moments, read off the frame difference, taken off" if last.noise is not None
                 else "")
              + (f"; V came out below {f'−{allowed_below_zero:g}' if allowed_below_zero else '0'} (noise in the "
                 "products, or a noise fit that is off): the model's own "
                 "spread is used (V = 1) and these intervals are not calibrated on this image" if implausible else "")
              + f". {MODELLED_COVERAGE} (a generalised Gaussian of shape β = {scale.shape:g} per bin), not conformal; "
              "held-out coverage = the split-half check")
    settings_record = run_settings(last.restoration.metadata)
    calibration = Calibration(settings_record, coverages, factors, checked, widths, source, int(last.v.size), None)
    kept_calibrations = [c for c in model.calibrations if not Calibration.from_dict(c).matches(settings_record)]
    return CalibrationRun(dataclasses.replace(model, calibrations=[calibration.to_dict(), *kept_calibrations]),
                          calibration, last.restoration, None)


NEIGHBOUR_MEAN = "the mean of frames t − 1 and t + 1"
NEXT_FRAME = "the next frame"


def frame_views(frames: list) -> tuple[list, list, list, str]:
    """(frames, their independent views, noise probes, what the views are) for a time series: the
    mean of the two neighbouring frames where there are three frames or more (a sample moving at
    constant speed is, to first order, where it is in frame t, and the view's noise is halved), else
    the next frame. A probe is noise alone with the view's noise covariance: half the difference of
    the two neighbours, or the difference of the pair / √2 (what moved between them counts too)."""
    if len(frames) >= 3:
        return (list(frames[1:-1]), [(a + b) / 2 for a, b in zip(frames[:-2], frames[2:])],
                [(b - a) / 2 for a, b in zip(frames[:-2], frames[2:])], NEIGHBOUR_MEAN)
    return list(frames[:-1]), list(frames[1:]), [(b - a) / math.sqrt(2) for a, b in itertools.pairwise(frames)], NEXT_FRAME


def calibration_positions(shape: tuple, axes: str, count: int = CALIBRATION_PLANES) -> tuple[list, bool]:
    """(the lead-axis positions of the planes :func:`calibration_planes` reads, whether they have frame
    neighbours): up to ``count`` evenly spaced ones; with a T axis of two frames or more, only frames
    with both neighbours (t and t + 1 of a pair of frames)."""
    lead = tuple(shape[:-2])
    positions = list(np.ndindex(*lead)) if lead else [()]
    t = axes.find("T")
    n_frames = lead[t] if t >= 0 else 1
    if n_frames >= 2:
        edge = 1 if n_frames >= 3 else 0  # frame t needs t − 1 and t + 1, or only t + 1 in a pair of frames
        positions = [p for p in positions if edge <= p[t] < n_frames - 1]
    chosen = np.unique(np.linspace(0, len(positions) - 1, min(count, len(positions))).astype(int))
    return [positions[i] for i in chosen], n_frames >= 2


def calibration_planes(data, axes: str, count: int = CALIBRATION_PLANES, second=None):
    """(planes, their independent views or None, noise probes or None, what the views are): the planes
    at :func:`calibration_positions`, read one at a time (lazy arrays stay lazy). Given ``second``
    (a second acquisition of the same field, ``data``'s shape), the views are its planes at the same
    positions (the probes, their differences, :func:`iter_self_calibrate` makes); else, with a T axis of
    two frames or more, views and probes come from the neighbouring frames at the same C and Z
    (:func:`frame_views`)."""
    chosen, paired = calibration_positions(data.shape, axes, count)
    if second is not None:
        return (np.stack([np.asarray(data[p], dtype=np.float32) for p in chosen]),
                np.stack([np.asarray(second[p], dtype=np.float32) for p in chosen]), None, SECOND_ACQUISITION)
    if not paired:
        return np.stack([np.asarray(data[p], dtype=np.float32) for p in chosen]), None, None, ""
    t = axes.find("T")
    edge = 1 if data.shape[t] >= 3 else 0

    def at(p, dt):
        return np.asarray(data[p[:t] + (p[t] + dt,) + p[t + 1:]], dtype=np.float32)

    triplets = [frame_views([at(p, dt) for dt in ((-1, 0, 1) if edge else (0, 1))]) for p in chosen]
    first, views, probes = (np.stack([triplet[k][0] for triplet in triplets]) for k in range(3))
    return first, views, probes, triplets[0][3]


def iter_calibrate_on_data(model, data, axes: str, second=None, **options):
    """What the Denoise widget's *Calibrate on this image* and the CLI's ``--self-calibrate`` run
    (a generator yielding Progress; returns a CalibrationRun): each channel of a C axis on its own
    (:func:`per_channel`), and for each, up to CALIBRATION_PLANES planes of ``data``
    (:func:`calibration_planes`), recorrupted; with a T axis of two frames or more, also
    against their neighbouring frames, or given ``second`` (another acquisition of the same field,
    ``data``'s shape: its noise independent of ``data``'s) against it instead, and at each coverage
    level the wider of the two intervals (:func:`wider`). Why both: on the real frames of docs/benchmarks/real_calibration.md the frame
    pairs under-covered the lysosome series when this was built (0.70–0.74 at 0.8: its lysosomes
    move, and the noise probe made of frame differences holds that motion beside the noise), where the recorrupted pairs of the same frames came within ±0.05; on
    today's page both are within there (0.76–0.79 at 0.8 with the std head), but each route can
    fail low where the other does not, and a too-narrow interval is the worse failure.
    ``options``: as for :func:`iter_self_calibrate` (settings, spec, seed)."""
    if second is not None and np.shape(second) != np.shape(data):
        raise ValueError(f"second must have the noisy image's shape {np.shape(data)} (another acquisition of the "
                         f"same field); got {np.shape(second)}")
    c = axes.find("C")
    if c >= 0 and data.shape[c] > 1:
        return (yield from iter_each_channel(
            lambda channel, *view: iter_calibrate_on_data(model, channel, axes.replace("C", ""),
                                                          view[0] if view else None, **options),
            c, data, *([] if second is None else [second])))
    first, views, probes, views_are = calibration_planes(data, axes, second=second)
    if views is None:
        return (yield from iter_self_calibrate(model, first, **options))
    # one progress over both routes, each its share of the pixels restored (the bar ran back at the second's crop 1)
    max_pixels = options.get("max_pixels", MAX_PIXELS)
    own = pixels_restored(list(first), False, max_pixels)
    share = own / (own + pixels_restored(list(first), True, max_pixels))
    recorrupted = yield from within(iter_self_calibrate(model, first, **options), 0.0, share)
    paired = yield from within(iter_self_calibrate(model, first, second=views, second_is=views_are,
                                                   second_noise=probes, **options), share, 1.0 - share)
    return wider(recorrupted, paired)


def within(steps, start: float, span: float, part: str = ""):
    """``steps`` (a generator of Progress) as a part of a larger job (restore.Progress.within); returns its value."""
    try:
        while True:
            yield next(steps).within(start, span, part)
    except StopIteration as stop:
        return stop.value


def acquisitions_differ(data, second, axes: str) -> float:
    """The share of the calibrated planes' pixels (:func:`calibration_planes`) where ``second``, another
    acquisition of ``data``'s field, differs from it beyond their noise (core.imaging.registration.consistent,
    with the camera fitted to ``data``; each channel of a C axis fitted on its own): where the sample moved or
    changed between the two, which the residuals against ``second`` count as error: on the real frame series
    taken as two acquisitions (frame t and t + 1) that route over-covered (docs/performance.md)."""
    c = axes.find("C")
    if c >= 0 and np.shape(data)[c] > 1:
        index = (slice(None),) * c
        return float(np.mean([acquisitions_differ(data[(*index, k)], second[(*index, k)], axes.replace("C", ""))
                              for k in range(np.shape(data)[c])]))
    first, views, _, _ = calibration_planes(data, axes, second=second)
    noise = estimate_noise(list(first))
    return float(1 - np.mean([consistent(np.stack([a, b]), noise.variance) for a, b in zip(first, views)]))


def said_of_second(share: float) -> str:
    """What the widget and the CLI say of a second acquisition (:func:`acquisitions_differ`'s share)."""
    return (f"the second acquisition differs from the image beyond noise on {100 * share:.0f} % of the calibrated planes' "
            "pixels: where the sample moved or changed, the intervals count it as error and come out wider")


def iter_each_channel(calibrate_channel, channel_axis: int, *images):
    """Each channel of ``images`` (the same shape; C at ``channel_axis``, lazy arrays stay lazy) calibrated
    on its own by ``calibrate_channel(*its planes)``, a generator returning a CalibrationRun, in one progress
    bar (channel k fills its n-th), combined by :func:`per_channel`."""
    n = np.shape(images[0])[channel_axis]
    runs = []
    for k in range(n):
        steps = calibrate_channel(*(image[(slice(None),) * channel_axis + (k,)] for image in images))
        runs.append((yield from within(steps, k / n, 1 / n, f"channel {k + 1}/{n}")))
    return per_channel(runs, channel_axis)


def iter_calibrate_by_axes(model, noisy, axes: str, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                           **options):
    """:func:`iter_calibrate_on_data` for the library's ``calibrate`` / ``self_calibrate`` given ``axes``:
    the axes checked against ``noisy`` and named in the message where wrong; ``second`` as the Denoise
    widget takes it (recorrupted pairs and the second acquisition, the wider interval); ``frames``,
    which a T axis says, refused beside them."""
    if frames:
        raise ValueError("axes: give either axes (a T axis then gives the frame pairs) or frames=True, not both")
    axes = check_axes(axes, np.shape(noisy))
    return (yield from iter_calibrate_on_data(model, noisy, axes, second, coverage=coverage, **options))


def per_channel(runs: list[CalibrationRun], channel_axis: int) -> CalibrationRun:
    """One calibration from one per channel (``runs``, in channel order; ``channel_axis``: where C
    lies among the image's leading axes): each plane's interval takes its channel's λ
    (Calibration.factor), and where no channel is known, each level's widest. On NEUBIAS's
    three-channel DNA / microtubules / actin image the channels' own λ at 0.9 were 0.46, 1.16 and
    1.00 where one pooled calibration gave 0.90 to all three, and on its nuclei / Golgi image 1.07 and
    0.59 where it gave 0.47 (docs/benchmarks/channels.md)."""
    cals = [r.calibration for r in runs]
    first = cals[0]

    def checked(values):  # over the channels whose split-half check was made (a fallback's is NaN)
        made = [v for v in values if not math.isnan(v)]
        return float(np.mean(made)) if made else math.nan

    combined = dataclasses.replace(
        first, factors=[max(fs) for fs in zip(*(c.factors for c in cals))],
        held_out_coverage=[checked(v) for v in zip(*(c.held_out_coverage for c in cals))],
        held_out_width=[checked(v) for v in zip(*(c.held_out_width for c in cals))],
        n_pixels=sum(c.n_pixels for c in cals), channel_factors=[[float(f) for f in c.factors] for c in cals],
        spearman=(float(np.mean([c.spearman for c in cals])) if all(c.spearman is not None for c in cals) else None),
        channel_axis=channel_axis,
        source=f"each of {len(cals)} channels on its own. " + " ".join(
            f"Channel {k}: {c.source}." for k, c in enumerate(cals)))
    model = dataclasses.replace(runs[0].model, calibrations=[combined.to_dict(), *runs[0].model.calibrations[1:]])
    # the first channel's restoration and truth (None without one) stand for the run; the Calibrate widget
    # draws each channel's reliability from its own
    return CalibrationRun(model, combined, runs[0].restoration, runs[0].truth, tuple(runs))


def calibrated_on_image(calibration: Calibration) -> bool:
    """False for a self-calibration whose residuals said nothing of the error (V came out below 0,
    or below minus its floor with an independent view: it fell back on the model's own spread and
    marked its split-half check NaN)."""
    return not all(math.isnan(c) for c in calibration.held_out_coverage)


def wider(first: CalibrationRun, second: CalibrationRun) -> CalibrationRun:
    """``first`` with, at each coverage level, the larger λ of the two calibrations (made for the same
    settings and levels), and a source that names both and which one each level took. A calibration
    that fell back on the model's own spread (:func:`calibrated_on_image`) yields to one that did
    not: its width is no measurement, and taking it for the wider would replace one that is."""
    a, b = first.calibration, second.calibration
    if calibrated_on_image(a) != calibrated_on_image(b):
        take_b = [calibrated_on_image(b)] * len(a.factors)
    else:
        take_b = [fb > fa for fa, fb in zip(a.factors, b.factors)]

    def pick(xs, ys):
        return [y if t else x for x, y, t in zip(xs, ys, take_b)]

    levels = ", ".join(f"{c:g}" for c, t in zip(a.coverages, take_b) if t) or "none"
    combined = dataclasses.replace(
        a, factors=pick(a.factors, b.factors), held_out_coverage=pick(a.held_out_coverage, b.held_out_coverage),
        held_out_width=pick(a.held_out_width, b.held_out_width), n_pixels=a.n_pixels + b.n_pixels,
        source=(f"the wider of two self-calibrations at each level (the second's at {levels}). First: {a.source}. "
                f"Second: {b.source}"))
    model = dataclasses.replace(first.model, calibrations=[combined.to_dict(), *first.model.calibrations[1:]])
    return CalibrationRun(model, combined, first.restoration, None)


def self_calibrate(model, noisy, coverage=COVERAGE_GRID, *, second=None, frames: bool = False,
                   alpha: float = ALPHA, seed: int = 0, split_seed: int = 0, max_pixels: int = MAX_PIXELS,
                   second_is: str = SECOND_ACQUISITION, second_noise=None, axes: str | None = None,
                   progress=None, cancel=None, spec: RunSpec | None = None, **settings):
    """Calibrate ``model``'s intervals on the user's noisy image alone; return a calibrated copy.

    noisy: a plane or a stack (any of T, C, Z, Y, X; every plane is used).
    second: an independent acquisition of the same field (same shape), if the user has one; or
    frames=True: ``noisy`` is a time series (its planes in time order): frame t's view is the mean
        of frames t − 1 and t + 1 (:func:`frame_views`; what motion is left counts as error: the
        intervals come out wider, not narrower).
    second_is: what ``second`` is, for the calibration's source.
    second_noise: noise alone with the covariance of ``second``'s noise (default: the difference of
        ``second`` and ``noisy`` / √2), whose cross-moments are taken off the residuals' so that
        camera noise correlated between pixels does not pass for error.
    Otherwise the pairs are recorrupted from ``noisy`` with its fitted camera noise (``alpha``).
    axes: the axes of ``noisy`` (e.g. "CYX", "TZYX"), to calibrate as the Denoise widget and the CLI do
        (:func:`iter_calibrate_on_data`: each channel of a C axis on its own, a T axis's frames as views
        too, up to CALIBRATION_PLANES planes); restore with ``denoise(..., axes=...)`` of the same axes.
        Without it every plane is pooled. With ``second``, as the Denoise widget takes a second acquisition:
        recorrupted pairs and the second acquisition, the wider interval at each level. Not with ``frames``.
    settings: the sampler settings the intervals will be used with (as for :func:`denoise`).
    spec: the same as one RunSpec (core.run.run_keywords), ``settings`` beside it overriding it, as for
        :func:`denoise`; its seed is the restoration's (``seed`` here draws the recorruption) and its
        coverage is left out (the levels are ``coverage``).
    Cost: one restoration of at most ``max_pixels`` pixels (crops of evenly spaced planes).
    """
    options = dict(alpha=alpha, seed=seed, split_seed=split_seed, max_pixels=max_pixels, spec=spec, **settings)
    steps = (iter_calibrate_by_axes(model, noisy, axes, coverage, second=second, frames=frames, **options)
             if axes is not None else
             iter_self_calibrate(model, noisy, coverage, second=second, frames=frames, second_is=second_is,
                                 second_noise=second_noise, **options))
    run, cancelled = drive(steps, progress, cancel)
    if cancelled:
        raise Cancelled("calibration was cancelled")
    return run.model
