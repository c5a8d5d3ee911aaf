import dataclasses

import numpy as np
import pytest
import torch

from napari_diffdenoise import load_model
from napari_diffdenoise.core.model.schedules import NoiseSchedule
from napari_diffdenoise.core.training.pairs import SimulatedPairs, align_to, augment
from napari_diffdenoise.core.training.train_config import TrainConfig
from napari_diffdenoise.core.training.train_steps import lr_at, step_batches
from napari_diffdenoise.core.training.training import iter_train, run_training


@pytest.fixture
def pairs():
    return SimulatedPairs(kinds=("nuclei", "puncta"), image_size=64, pool_size=4, patches_per_image=2, seed=0)


def test_batches_are_normalised_pairs_of_the_requested_shape(pairs):
    noisy, clean = pairs.batch(6, 32, np.random.default_rng(0))
    assert noisy.shape == clean.shape == (6, 1, 32, 32) and noisy.dtype == np.float32
    # the clean target is the expectation of the noisy image: close on average, much smoother
    assert abs(noisy.mean() - clean.mean()) < 0.1
    assert np.abs(np.diff(clean, axis=-1)).mean() < 0.5 * np.abs(np.diff(noisy, axis=-1)).mean()


def test_augmentation_applies_all_eight_symmetries_to_both_channels_alike():
    base = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    base[1] = base[0] * 10
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        out = augment(base, rng)
        np.testing.assert_array_equal(out[1], out[0] * 10)
        seen.add(out[0].tobytes())
    assert len(seen) == 8


def test_align_to_recovers_scale_and_offset():
    clean = np.random.default_rng(0).random((16, 16))
    np.testing.assert_allclose(align_to(clean, 3 * clean + 7), 3 * clean + 7, rtol=1e-5)


def test_worker_processes_deliver_the_same_batches_in_step_order(pairs):
    schedule = NoiseSchedule("cosine", 50)
    in_loop = list(step_batches(pairs, schedule, TrainConfig(steps=7, batch_size=3, patch_size=16), start=2))
    workers = list(step_batches(pairs, schedule, TrainConfig(steps=7, batch_size=3, patch_size=16, data_workers=2),
                                start=2))
    assert len(in_loop) == len(workers) == 5
    for a, b in zip(in_loop, workers):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    # consecutive steps differ (each draws from its own generator)
    assert not np.array_equal(in_loop[0][0], in_loop[1][0])


def test_a_time_budget_fixes_the_step_count_during_warm_up(tiny_model, pairs):
    cfg = TrainConfig(batch_size=4, patch_size=32, warmup_steps=20, time_budget_s=4.0, ema_decay=0)
    result = run_training(tiny_model, pairs, cfg)
    trained = result.model.provenance["training"]
    assert trained["steps"] == len(result.history) > 20  # fixed from the measured rate, then run to the end
    assert 1.0 < result.history[-1]["seconds"] < 8.0  # most of the 4 s budget (less when load varies)
    with pytest.raises(ValueError, match="cannot be resumed"):
        next(iter_train(tiny_model, pairs, cfg, resume=True))


def test_learning_rate_warms_up_then_decays_over_the_whole_budget():
    cfg = TrainConfig(steps=1000, warmup_steps=100, learning_rate=1e-3, min_lr_fraction=0.05)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5), rel=1e-6)
    assert lr_at(999, cfg) == pytest.approx(5e-5, rel=0.01)  # still learning at the end


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_a_tiny_model_learns(tiny_model, pairs, prediction):
    tiny_model.prediction = prediction
    val = SimulatedPairs(kinds=("nuclei",), image_size=64, pool_size=2, seed=5).batch(8, 32)
    cfg = TrainConfig(steps=60, batch_size=8, patch_size=32, learning_rate=3e-3, warmup_steps=5, validate_every=20,
                      ema_decay=0)
    result = run_training(tiny_model, pairs, cfg, val_batch=val)
    vals = [h["val_loss"] for h in result.history if "val_loss" in h]
    assert len(result.history) == 60 and len(vals) == 3
    assert vals[-1] < 0.9 * vals[0]
    assert result.best_val_loss == min(vals)


def test_cancel_stops_within_one_step(tiny_model, pairs):
    from napari_diffdenoise.core.run.restore import Cancelled

    seen = []
    with pytest.raises(Cancelled):
        run_training(tiny_model, pairs, TrainConfig(steps=50, batch_size=2, patch_size=32), progress=seen.append,
                     cancel=lambda: len(seen) >= 3)
    assert len(seen) == 3


def test_resume_continues_step_count_and_optimiser(tiny_model, pairs, tmp_path):
    path = tmp_path / "run.safetensors"
    cfg = TrainConfig(steps=10, batch_size=2, patch_size=32, checkpoint_every=4, warmup_steps=2)
    run = iter_train(tiny_model, pairs, cfg, checkpoint_path=path)
    for info in run:
        if info.step == 6:
            run.close()  # interrupted after step 6; the last checkpoint is at step 4
    assert load_model(path).provenance["step"] == 4
    from napari_diffdenoise.core.io.checkpoint import read_checkpoint

    _, saved = read_checkpoint(tmp_path / "run.state.safetensors")
    resumed = iter_train(tiny_model, pairs, cfg, checkpoint_path=path, resume=True)
    steps = [info.step for info in resumed]
    assert steps == [5, 6, 7, 8, 9, 10]
    final = load_model(path)
    assert final.provenance["step"] == 10 and len(final.provenance["history"]) == 10
    # the optimiser continued: its step counter went on from the saved one
    _, state = read_checkpoint(tmp_path / "run.state.safetensors")
    assert float(state["opt.0.step"]) == float(saved["opt.0.step"]) + 6
    assert not torch.equal(state["opt.0.exp_avg"], saved["opt.0.exp_avg"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.safetensors", "run.state.safetensors"]


def test_resume_without_a_state_file_is_refused_and_old_files_are_replaced_only_when_asked(tiny_model, pairs, tmp_path):
    path = tmp_path / "run.safetensors"
    with pytest.raises(ValueError, match="nothing to resume"):
        next(iter_train(tiny_model, pairs, TrainConfig(steps=2), checkpoint_path=path, resume=True))
    stale = tmp_path / "run-best.safetensors"
    stale.write_bytes(b"old")
    config = TrainConfig(steps=1, batch_size=2, patch_size=32)
    with pytest.raises(ValueError, match="run-best.safetensors already exist"):  # nothing is touched unasked
        next(iter_train(tiny_model, pairs, config, checkpoint_path=path))
    assert stale.read_bytes() == b"old" and not path.exists()
    list(iter_train(tiny_model, pairs, config, checkpoint_path=path, overwrite=True))
    assert not stale.exists() or stale.read_bytes() != b"old"


def test_an_overwriting_run_stopped_before_its_first_checkpoint_leaves_the_older_run_whole(tiny_model, pairs,
                                                                                          tmp_path):
    """train --overwrite deleted the older run's -best and state files before its own first checkpoint: killed at
    step 3, it left neither that run's best weights and state (nothing to resume) nor a new set."""
    path = tmp_path / "run.safetensors"
    older = TrainConfig(steps=4, batch_size=2, patch_size=32, checkpoint_every=2, validate_every=2)
    val = pairs.batch(2, 32, np.random.default_rng(5))
    list(iter_train(tiny_model, pairs, older, checkpoint_path=path, val_batch=val))
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(files) == {"run.safetensors", "run-best.safetensors", "run.state.safetensors"}
    run = iter_train(tiny_model, pairs, TrainConfig(steps=10, batch_size=2, patch_size=32, checkpoint_every=5,
                                                    seed=1), checkpoint_path=path, overwrite=True)
    for info in run:
        if info.step == 3:
            run.close()  # stopped before its first checkpoint (step 5)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    list(iter_train(tiny_model, pairs, TrainConfig(steps=2, batch_size=2, patch_size=32, seed=1),
                    checkpoint_path=path, overwrite=True))  # no validation: no best of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.safetensors", "run.state.safetensors"]
    assert load_model(path).provenance["step"] == 2


def test_the_mean_objective_trains_the_head_alone(headed):
    import copy
    import dataclasses

    from napari_diffdenoise.core.run.driving import drive

    class Pairs:
        def batch(self, batch_size, patch_size, rng):
            clean = rng.random((batch_size, 1, patch_size, patch_size)).astype(np.float32) * 2 - 1
            return (clean + 0.3 * rng.standard_normal(clean.shape)).astype(np.float32), clean

    before_net = copy.deepcopy(headed.network.state_dict())
    before_head = copy.deepcopy(headed.mean_network.state_dict())
    config = TrainConfig(steps=5, batch_size=2, patch_size=32, warmup_steps=1, objective="mean", ema_decay=0)
    val = Pairs().batch(2, 32, np.random.default_rng(1))
    result, _ = drive(iter_train(headed, Pairs(), config, val_batch=val, device="cpu"))
    assert all(torch.equal(before_net[k], v) for k, v in result.model.network.state_dict().items())
    assert not all(torch.equal(before_head[k], v) for k, v in result.model.mean_network.state_dict().items())
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0] and result.history[-1]["val_loss"] > 0
    with pytest.raises(ValueError, match="objective='mean' trains the mean head, and this model has none"):
        drive(iter_train(dataclasses.replace(headed, mean_network=None), Pairs(), config, device="cpu"))


def test_the_relative_mean_loss_weighs_each_patch_by_its_input_error():
    from napari_diffdenoise.core.training.train_steps import mean_loss

    clean = torch.zeros(2, 1, 4, 4)
    noisy = torch.stack([torch.full((1, 4, 4), 1.0), torch.full((1, 4, 4), 0.1)])  # input MSE 1 and 0.01
    estimate = torch.stack([torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), 0.05)])  # MSE 0.25 and 0.0025
    # plain MSE: the dim (noisy) patch is almost all of it; relative: both patches halve their error alike
    assert float(mean_loss(estimate, noisy, clean, "mse")) == pytest.approx((0.25 + 0.0025) / 2)
    assert float(mean_loss(estimate, noisy, clean, "relative")) == pytest.approx(0.25)
    # a power of ½ divides by the input's RMS error: the dim patch weighs √100 = 10× the bright one's share
    assert float(mean_loss(estimate, noisy, clean, "relative", 0.5)) == pytest.approx((0.25 + 0.025) / 2)
    with pytest.raises(ValueError, match="mean_loss must be one of"):
        mean_loss(estimate, noisy, clean, "l1")


def test_a_mean_head_trained_on_the_relative_loss_records_it(headed):
    from napari_diffdenoise.core.run.driving import drive

    class Pairs:  # two noise levels, 30× apart
        def batch(self, batch_size, patch_size, rng):
            clean = rng.random((batch_size, 1, patch_size, patch_size)).astype(np.float32) * 2 - 1
            sigma = np.where(np.arange(batch_size) % 2, 0.01, 0.3)[:, None, None, None]
            return (clean + sigma * rng.standard_normal(clean.shape)).astype(np.float32), clean

    config = TrainConfig(steps=3, batch_size=2, patch_size=32, warmup_steps=1, objective="mean", ema_decay=0,
                         mean_loss="relative")
    val = Pairs().batch(2, 32, np.random.default_rng(1))
    result, _ = drive(iter_train(headed, Pairs(), config, val_batch=val, device="cpu"))
    # an untrained head is far from the identity: relative losses of order 1 and above, where the MSE is ~0.3
    assert result.history[-1]["val_loss"] > 1
    assert result.model.provenance["training"]["mean_loss"] == "relative"
    with pytest.raises(ValueError, match="mean_loss must be one of"):
        drive(iter_train(headed, Pairs(), TrainConfig(steps=1, objective="mean", mean_loss="huber"), device="cpu"))
    with pytest.raises(ValueError, match="relative_power must be a number from 0 to 1; got 2"):
        drive(iter_train(headed, Pairs(), TrainConfig(steps=1, objective="mean", mean_loss="relative",
                                                      relative_power=2), device="cpu"))


def test_the_best_weights_are_written_only_with_a_checkpoint(tiny_model, pairs, tmp_path):
    """A run stopped after its first validation but before its first checkpoint leaves no file at all
    (it left a lone run-best.safetensors); a run to the end writes the best of its validations."""
    path = tmp_path / "run.safetensors"
    config = TrainConfig(steps=12, batch_size=2, patch_size=32, warmup_steps=2, validate_every=2, checkpoint_every=6)
    val = pairs.batch(2, 32, np.random.default_rng(5))
    run = iter_train(tiny_model, pairs, config, val_batch=val, checkpoint_path=path, device="cpu")
    for info in run:
        if info.step == 4:  # two validations done, the checkpoint at 6 not yet
            break
    run.close()  # what a cancel does: the generator is closed at its yield
    assert list(tmp_path.iterdir()) == []
    result = list(iter_train(tiny_model, pairs, config, val_batch=val, checkpoint_path=path, device="cpu"))
    assert result[-1].step == 12
    best = load_model(tmp_path / "run-best.safetensors").provenance
    losses = {r["step"]: r["val_loss"] for r in load_model(path).provenance["history"] if "val_loss" in r}
    # the weights of the lowest validation loss, as they were at that step (not at the checkpoint's)
    assert best["best_val_loss"] == min(losses.values()) == losses[best["step"]]


def test_worker_processes_started_by_spawning_as_on_macos_and_windows(pairs, monkeypatch):
    """macOS and Windows start data workers by spawning, which pickles what each worker runs (a lambda as
    its set-up failed there: "Can't pickle local object"); Linux forks, so the test above cannot see it."""
    loader = torch.utils.data.DataLoader
    monkeypatch.setattr(torch.utils.data, "DataLoader",
                        lambda *args, **kwargs: loader(*args, **kwargs, multiprocessing_context="spawn"))
    schedule = NoiseSchedule("cosine", 50)
    config = TrainConfig(steps=3, batch_size=2, patch_size=16)
    spawned = list(step_batches(pairs, schedule, dataclasses.replace(config, data_workers=1)))
    for a, b in zip(step_batches(pairs, schedule, config), spawned, strict=True):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
