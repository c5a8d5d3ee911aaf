"""A run on the CPU takes no more torch threads than the cores other processes leave free
(core.run.cpu_share; bench/busy_cores.py measures why), only while its steps run."""
import numpy as np
import pytest
import torch

from napari_diffdenoise.core.run import cpu_share, plane_loop


def blobs(seed=0, size=96):
    """Noisy counts of sparse smooth blobs: an image adapt can learn from."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    density = ndimage.gaussian_filter((rng.random((size, size)) > 0.98).astype(float), 2.5)
    return rng.poisson(40 * density / density.max() + 2).astype(np.float32)


def load(monkeypatch, percent, n_logical, n_physical):
    monkeypatch.setattr(cpu_share.psutil, "cpu_count", lambda logical=True: n_logical if logical else n_physical)
    monkeypatch.setattr(cpu_share.psutil, "cpu_percent", lambda interval, percpu: list(percent))


@pytest.fixture(autouse=True)
def _no_reading_yet(monkeypatch):
    monkeypatch.setattr(cpu_share, "_reading", None)


@pytest.mark.parametrize("percent, logical, physical, limit, threads", [
    ([100, 4], 2, 2, 2, 1),  # one core busy elsewhere: one thread
    ([3, 6], 2, 2, 2, 2),  # idle but for a redraw: both
    ([100, 100], 2, 2, 2, 1),  # never none
    ([100] + [0] * 15, 16, 8, 8, 7),  # a busy logical core takes half a physical one: one thread less
    ([0] * 16, 16, 8, 4, 4),  # never more than the run was given
    ([60, 50] + [0] * 6, 8, 8, 8, 7),  # the busy share summed over the cores
])
def test_the_threads_are_the_physical_cores_left_free(monkeypatch, percent, logical, physical, limit, threads):
    load(monkeypatch, percent, logical, physical)
    assert cpu_share.free_threads(limit) == threads


def test_one_reading_serves_for_a_while(monkeypatch):
    reads, clock = [], [100.0]
    monkeypatch.setattr(cpu_share.time, "monotonic", lambda: clock[0])
    load(monkeypatch, [100, 4], 2, 2)
    monkeypatch.setattr(cpu_share, "_free_cores", lambda: reads.append(clock[0]) or 1)
    assert [cpu_share.free_threads(2) for _ in range(3)] == [1, 1, 1] and reads == [100.0]
    clock[0] += cpu_share.READ_EVERY - 0.1
    assert cpu_share.free_threads(2) == 1 and reads == [100.0]
    clock[0] += 0.1
    monkeypatch.setattr(cpu_share, "_free_cores", lambda: reads.append(clock[0]) or 2)
    assert cpu_share.free_threads(2) == 2 and reads == [100.0, 100.0 + cpu_share.READ_EVERY]
    assert cpu_share.free_threads(8) == 2  # what the cores leave, whatever the limit asked


def test_one_thread_is_taken_without_reading_the_load(monkeypatch):
    def unexpected(**_):
        raise AssertionError("the load was read with no choice to make")

    monkeypatch.setattr(cpu_share.psutil, "cpu_percent", unexpected)
    assert cpu_share.free_threads(1) == 1


def test_a_run_on_the_cpu_takes_the_free_threads_inside_its_steps_only(tiny_model, monkeypatch):
    from napari_diffdenoise.core.run.restore import iter_denoise

    seen = []
    monkeypatch.setattr(plane_loop, "free_threads", lambda limit: seen.append(limit) or 1)
    inside = []
    tiny_model.network.register_forward_hook(lambda *_: inside.append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run = iter_denoise(np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.float32), tiny_model, steps=2,
                           n_samples=2, device="cpu")
        between = [torch.get_num_threads() for _ in run]  # the caller's code, while the run waits between steps
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert seen == [2, 2]  # read before each plane, with the run's own count as the limit
    assert inside and set(inside) == {1}
    assert between and set(between) == {2} and after == 2


def test_adapting_on_the_cpu_takes_the_free_threads_inside_its_steps_only(headed, monkeypatch):
    from napari_diffdenoise.core.training import adapt as adapt_module

    monkeypatch.setattr(adapt_module, "free_threads", lambda limit: 1)
    inside = []
    headed.mean_network.register_forward_hook(lambda *_: inside.append(torch.get_num_threads()))
    noisy = blobs()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        between = []
        adapt_module.adapt(headed, noisy, minutes=0.02, batch_size=2, patch_size=32, recalibrate=False,
                           device="cpu", progress=lambda _: between.append(torch.get_num_threads()))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert inside and 1 in inside
    assert between and set(between) == {2} and after == 2


def test_what_promises_the_same_bits_keeps_torchs_count(headed, tmp_path, monkeypatch):
    """Runs to files (a plane's bits the same wherever it runs: docs/big-data.md) and adapting for a step count."""
    import tifffile

    from napari_diffdenoise import denoise_to_tiff
    from napari_diffdenoise.core.training import adapt as adapt_module

    def unexpected(limit):
        raise AssertionError("the load was read where the same bits are promised")

    monkeypatch.setattr(plane_loop, "free_threads", unexpected)
    monkeypatch.setattr(adapt_module, "free_threads", unexpected)
    tifffile.imwrite(tmp_path / "noisy.tif", np.random.default_rng(1).poisson(5, (2, 32, 32)).astype(np.uint16))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        denoise_to_tiff(tmp_path / "noisy.tif", tmp_path / "out", headed, stem="noisy", device="cpu",
                        calibrate_on_image=False)
        adapt_module.adapt(headed, blobs(), minutes=None, steps=2, batch_size=2, patch_size=32, recalibrate=False,
                           device="cpu")
    finally:
        torch.set_num_threads(previous)
    assert list((tmp_path / "out").glob("noisy*mean*.tif"))
