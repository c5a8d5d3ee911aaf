"""A run on the CPU takes no more torch threads than the CPUs it may use and the cores other processes leave
free (core.run.cpu_share; bench/busy_cores.py measures why), only while its steps run."""
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


class _Process:
    """psutil.Process() whose (user, system) CPU seconds go up by ``own`` × SAMPLE_SECONDS between two reads."""

    def __init__(self, own):
        self.reads, self.own = 0, own

    def cpu_times(self):
        self.reads += 1
        return (self.own * cpu_share.SAMPLE_SECONDS * (self.reads - 1), 0.0)


def load(monkeypatch, percent, n_logical, n_physical, own=0.0):
    monkeypatch.setattr(cpu_share.psutil, "cpu_count", lambda logical=True: n_logical if logical else n_physical)
    monkeypatch.setattr(cpu_share.psutil, "cpu_percent", lambda interval, percpu: list(percent))
    monkeypatch.setattr(cpu_share.joblib, "cpu_count", lambda: n_logical)  # no quota, no affinity mask
    process = _Process(own)
    monkeypatch.setattr(cpu_share.psutil, "Process", lambda: process)


@pytest.fixture(autouse=True)
def _no_reading_yet(monkeypatch):
    monkeypatch.setattr(cpu_share, "_reading", None)


@pytest.mark.parametrize("percent, logical, physical, own, limit, threads", [
    ([100, 4], 2, 2, 0, 2, 1),  # one core busy elsewhere: one thread
    ([3, 6], 2, 2, 0, 2, 2),  # idle but for a redraw: both
    ([100, 100], 2, 2, 0, 2, 1),  # never none
    ([100, 100], 2, 2, 1.0, 2, 1),  # this process's own core is not another's load; the other's is
    ([100, 60], 2, 2, 1.5, 2, 2),  # its threads still spinning after a step, and nothing else
    ([100] + [0] * 15, 16, 8, 0, 8, 7),  # a busy logical core takes half a physical one: one thread less
    ([0] * 16, 16, 8, 0, 4, 4),  # never more than the run was given
    ([100] * 3 + [0] * 5, 8, 8, 0, 4, 4),  # three busy cores, four left: a run of four keeps them
    ([100] * 6 + [0] * 2, 8, 8, 0, 4, 2),
    ([0] * 16, 16, 8, 0, 16, 16),  # a count above the physical cores, as the user set it, on an idle machine
    ([60, 50] + [0] * 6, 8, 8, 0, 8, 7),  # the busy share summed over the cores
])
def test_the_threads_are_those_not_sharing_a_core_with_other_work(monkeypatch, percent, logical, physical, own,
                                                                   limit, threads):
    load(monkeypatch, percent, logical, physical, own)
    assert cpu_share.free_threads(limit) == threads


def test_one_reading_serves_for_a_while(monkeypatch):
    reads, clock = [], [100.0]
    monkeypatch.setattr(cpu_share, "_clock", lambda: clock[0])
    load(monkeypatch, [0, 0], 2, 2)
    monkeypatch.setattr(cpu_share, "_busy_cores", lambda: reads.append(clock[0]) or 1.0)
    assert [cpu_share.free_threads(2) for _ in range(3)] == [1, 1, 1] and reads == [100.0, 100.0]  # busy: twice
    clock[0] = 100.0 + cpu_share.READ_EVERY - 0.5
    assert cpu_share.free_threads(2) == 1 and reads == [100.0, 100.0]
    clock[0] = 100.0 + cpu_share.READ_EVERY
    monkeypatch.setattr(cpu_share, "_busy_cores", lambda: reads.append(clock[0]) or 0.0)
    assert cpu_share.free_threads(2) == 2 and reads == [100.0, 100.0, 100.0 + cpu_share.READ_EVERY]


@pytest.mark.parametrize("readings, threads", [([0.0], 2), ([1.0, 0.0], 2), ([1.0, 1.0], 1), ([1.0, None], 1)])
def test_a_busy_reading_is_taken_again_before_it_serves(monkeypatch, readings, threads):
    """A burst of other work inside the 50 ms window (what slowed one of busy_cores' idle runs 1.4×) is not
    taken for a load; one that lasts is."""
    load(monkeypatch, [0, 0], 2, 2)
    left = list(readings)
    monkeypatch.setattr(cpu_share, "_busy_cores", lambda: left.pop(0))
    assert cpu_share.free_threads(2) == threads and left == []


def test_a_load_that_cannot_be_read_leaves_torchs_count(monkeypatch):
    load(monkeypatch, [100, 100], 2, 2)

    def restricted(interval, percpu):
        raise PermissionError("/proc/stat")

    monkeypatch.setattr(cpu_share.psutil, "cpu_percent", restricted)
    assert cpu_share.free_threads(2) == 2


def test_inside_same_bits_the_count_stays_in_that_thread_only(monkeypatch):
    import threading

    load(monkeypatch, [100, 4], 2, 2)
    with cpu_share.same_bits():
        with cpu_share.same_bits():
            assert cpu_share.free_threads(2) == 2
        assert cpu_share.free_threads(2) == 2
        elsewhere = []
        thread = threading.Thread(target=lambda: elsewhere.append(cpu_share.free_threads(2)))
        thread.start()
        thread.join()
        assert elsewhere == [1]
    assert cpu_share.free_threads(2) == 1


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


def test_a_run_stopped_inside_a_step_gives_torchs_count_back(tiny_model, monkeypatch):
    from napari_diffdenoise import denoise
    from napari_diffdenoise.core.run.restore import Cancelled

    monkeypatch.setattr(plane_loop, "free_threads", lambda limit: 1)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(Cancelled):  # polled after a tile, inside the step
            denoise(np.random.default_rng(0).poisson(5, (2, 32, 32)).astype(np.float32), tiny_model, steps=2,
                    n_samples=2, device="cpu", cancel=lambda: True)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert after == 2


def test_adapting_on_the_cpu_takes_the_free_threads_inside_its_steps_only(headed, monkeypatch):
    from napari_diffdenoise.core.training import adapt as adapt_module

    monkeypatch.setattr(adapt_module, "free_threads", lambda limit: 1)
    training, scoring = [], []  # the head's forward calls while it trains, and its scoring (eval mode: the
    # bundled head's before the steps, the picking patches' between them, the last step's and the kept one's after)
    headed.mean_network.register_forward_hook(
        lambda module, *_: (training if module.training else scoring).append(torch.get_num_threads()))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        between = []
        adapt_module.adapt(headed, blobs(), minutes=0.02, batch_size=2, patch_size=32, recalibrate=False,
                           device="cpu", progress=lambda _: between.append(torch.get_num_threads()))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert training and set(training) == {1}
    assert scoring and set(scoring) == {1}
    assert between and set(between) == {2} and after == 2


def test_what_promises_the_same_bits_keeps_torchs_count(with_std, tmp_path, monkeypatch):
    """Runs to files with the calibration they make on the image (a plane's bits the same wherever it runs, a
    resume checks the calibration: docs/big-data.md), and adapting for a step count with its recalibration."""
    import tifffile

    from napari_diffdenoise import adapt, denoise_to_tiff

    def unexpected():
        raise AssertionError("the load was read where the same bits are promised")

    monkeypatch.setattr(cpu_share, "_busy_cores", unexpected)
    tifffile.imwrite(tmp_path / "noisy.tif", np.stack([blobs(1), blobs(2)]).astype(np.uint16))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        meta, _ = denoise_to_tiff(tmp_path / "noisy.tif", tmp_path / "out", with_std, stem="noisy", device="cpu",
                                  coverage=0.9, calibrate_on_image=True)
        adapted = adapt(with_std, blobs(3), minutes=None, steps=2, batch_size=2, patch_size=32, device="cpu")
    finally:
        torch.set_num_threads(previous)
    assert meta["calibration_source"].startswith("self-calibrated") and list((tmp_path / "out").glob("noisy*upper*"))
    assert adapted.calibrations  # recalibrated on the image, on torch's count
    with pytest.raises(AssertionError, match="the load was read"):  # the same run in memory reads it
        torch.set_num_threads(2)
        try:
            adapt(with_std, blobs(3), minutes=0.01, batch_size=2, patch_size=32, device="cpu", recalibrate=False)
        finally:
            torch.set_num_threads(previous)


def test_training_to_a_time_budget_takes_the_free_threads_and_to_a_step_count_keeps_torchs(tiny_model, monkeypatch):
    from napari_diffdenoise.core.training import training as training_module
    from napari_diffdenoise.core.training.pairs import SimulatedPairs
    from napari_diffdenoise.core.training.train_config import TrainConfig

    asked = []
    monkeypatch.setattr(training_module, "free_threads", lambda limit: asked.append(limit) or 1)
    seen = []
    tiny_model.network.register_forward_hook(lambda module, *_: seen.append(torch.get_num_threads()))
    pairs = SimulatedPairs(kinds=("nuclei",), image_size=64, pool_size=2, seed=0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        training_module.run_training(tiny_model, pairs, TrainConfig(steps=3, batch_size=2, patch_size=32, ema_decay=0))
        by_steps, asked_by_steps = list(seen), list(asked)
        seen.clear()
        training_module.run_training(tiny_model, pairs, TrainConfig(batch_size=2, patch_size=32, warmup_steps=10,
                                                                    time_budget_s=0.5, ema_decay=0))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert asked_by_steps == [] and by_steps and set(by_steps) == {2}
    assert asked and seen and set(seen) == {1} and after == 2


@pytest.mark.parametrize("usable, limit, threads", [(1, 2, 1), (3, 8, 3), (8, 4, 4), (0, 4, 1)])
def test_no_more_threads_than_the_cpus_the_process_may_use(monkeypatch, usable, limit, threads):
    """A container's CPU quota or an affinity mask (joblib.cpu_count reads both) caps the count, inside
    same_bits too: the quota is where the process runs, fixed while it runs."""
    load(monkeypatch, [0] * 8, 8, 8)
    monkeypatch.setattr(cpu_share.joblib, "cpu_count", lambda: usable)
    assert cpu_share.usable_threads(limit) == threads
    assert cpu_share.free_threads(limit) == threads
    with cpu_share.same_bits():
        assert cpu_share.free_threads(limit) == threads


def test_a_count_given_for_every_process_alike_stands_above_the_usable_cpus(monkeypatch):
    """A cluster's workers take the coordinator's count (core.run.batch.plane_task), so that every plane gives
    the bits of one process run with that count, whatever quota a worker has."""
    load(monkeypatch, [100, 100, 0, 0], 4, 4)
    monkeypatch.setattr(cpu_share.joblib, "cpu_count", lambda: 1)
    with cpu_share.same_bits(count_given=True):
        assert cpu_share.free_threads(4) == 4
        with cpu_share.same_bits():  # a scope inside (a run's own) does not undo it
            assert cpu_share.free_threads(4) == 4
    with cpu_share.same_bits():
        assert cpu_share.free_threads(4) == 1
    assert cpu_share.free_threads(4) == 1


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or (__import__("os").cpu_count() or 1) < 2,
                    reason="an affinity mask needs Linux and two CPUs")
def test_an_affinity_mask_is_read_where_the_process_runs():
    import subprocess
    import sys

    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from napari_diffdenoise.core.run import cpu_share; print(cpu_share.usable_threads(2))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "1"


def test_runs_that_keep_torchs_count_keep_it_within_the_usable_cpus(tiny_model, tmp_path, monkeypatch):
    """A step-count training and a run to files (which promise the same bits) take the quota's count, not
    torch's, and give torch's back after."""
    import tifffile

    from napari_diffdenoise import denoise_to_tiff
    from napari_diffdenoise.core.training import training as training_module
    from napari_diffdenoise.core.training.pairs import SimulatedPairs
    from napari_diffdenoise.core.training.train_config import TrainConfig

    monkeypatch.setattr(cpu_share.joblib, "cpu_count", lambda: 1)
    monkeypatch.setattr(cpu_share, "_busy_cores", lambda: pytest.fail("the load was read"))
    seen = []
    tiny_model.network.register_forward_hook(lambda module, *_: seen.append(torch.get_num_threads()))
    tifffile.imwrite(tmp_path / "noisy.tif", blobs(1, 32).astype(np.uint16))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        training_module.run_training(tiny_model, SimulatedPairs(kinds=("nuclei",), image_size=64, pool_size=2, seed=0),
                                     TrainConfig(steps=2, batch_size=2, patch_size=32, ema_decay=0))
        trained = list(seen)
        seen.clear()
        meta, _ = denoise_to_tiff(tmp_path / "noisy.tif", tmp_path / "out", tiny_model, stem="noisy", device="cpu",
                                  steps=2, n_samples=2)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert trained and set(trained) == {1}
    assert seen and set(seen) == {1} and meta["threads"] == 1 and after == 2
