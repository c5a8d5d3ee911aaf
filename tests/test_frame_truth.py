"""The benchmarks' motion-compensated truth for a frame of a time series (bench/frame_truth.py): it must
hold frame t's own scene where the sample moved, carry the noise it says, and not borrow frame t's."""
import numpy as np
import pytest
from drifting_blobs import moving_series
from scipy import ndimage

from bench.frame_truth import registered_truth


def test_registered_truth_is_frame_t_scene_with_the_noise_it_states():
    clean, noisy = moving_series()
    t = 3
    reg = registered_truth(noisy, t)
    assert reg.frames == (-2, -1, 1, 2)
    assert reg.consistent.mean() > 0.8
    inner = reg.consistent.copy()
    inner[:8], inner[-8:], inner[:, :8], inner[:, -8:] = False, False, False, False
    # the truth's error against frame t's clean scene is its noise: the stated τ² within 30 %
    err2 = (reg.truth - clean[t])[inner] ** 2
    assert 0.7 < err2.mean() / reg.tau2[inner].mean() < 1.3
    # and far below what the mean of t ± 1 carries on the moving blobs
    neighbours = (noisy[t - 1] + noisy[t + 1]) / 2
    assert err2.mean() < 0.5 * ((neighbours - clean[t])[inner] ** 2).mean()
    # frame t against it: frame t's own (Poisson) variance plus τ², no motion left over
    assert 0.85 < ((noisy[t] - reg.truth)[inner] ** 2).mean() / (clean[t] + reg.tau2)[inner].mean() < 1.15


def test_registered_truth_does_not_borrow_frame_t_noise():
    clean, noisy = moving_series(seed=1)
    t = 3
    reg = registered_truth(noisy, t)
    own_noise = noisy[t] - clean[t]
    truth_noise = reg.truth - clean[t]
    sel = reg.consistent
    # the flow is read off frame t smoothed by 1.5 px, which leaves a trace of its noise (0.06 here);
    # a truth that held frame t itself (a fifth of the mean) would correlate at ~0.45
    assert abs(np.corrcoef(own_noise[sel], truth_noise[sel])[0, 1]) < 0.1


def test_registered_truth_needs_a_neighbour():
    with pytest.raises(ValueError, match="no neighbour"):
        registered_truth(np.zeros((1, 32, 32)), 0)


def test_bilinear_would_blur_the_truth():
    """Why the warp is cubic: with linear interpolation the same truth carries a blur the stated τ² does not."""
    from napari_diffdenoise.core.imaging import registration

    clean, noisy = moving_series(photons=2000.0, seed=2)
    cubic = registered_truth(noisy, 3)
    previous = registration.INTERPOLATION_ORDER
    registration.INTERPOLATION_ORDER = 1
    try:
        linear = registered_truth(noisy, 3)
    finally:
        registration.INTERPOLATION_ORDER = previous
    detail = np.abs(ndimage.laplace(clean[3])) > np.quantile(np.abs(ndimage.laplace(clean[3])), 0.8)
    assert ((cubic.truth - clean[3])[detail] ** 2).mean() < ((linear.truth - clean[3])[detail] ** 2).mean()
