import sys

import numpy as np
import pytest
import torch

from napari_diffdenoise.core.io.checkpoint import save_checkpoint
from napari_diffdenoise.core.model.model import DiffusionModel
from napari_diffdenoise.core.model.network import UNet, UNetConfig
from napari_diffdenoise.core.model.schedules import NoiseSchedule

TINY = UNetConfig(cond_channels=1, base_channels=8, channel_mults=(1, 2), emb_dim=16, fourier_features=8)


def _awake(network: UNet) -> UNet:
    """The network with its zero-initialised output layers perturbed: untrained, its output would be
    0 whatever its inputs (ε ≡ 0, a flat std, samples equal to the mean)."""
    with torch.no_grad():
        for p in network.parameters():
            if p.abs().sum() == 0 and p.ndim > 1:
                p.normal_(0, 0.05)
    return network


@pytest.fixture
def tiny_model() -> DiffusionModel:
    """An untrained tiny paired model: fast, and its outputs depend on every input."""
    torch.manual_seed(0)
    model = DiffusionModel.create(TINY, NoiseSchedule("cosine", 50), name="tiny", tile=64)
    _awake(model.network)
    return model


@pytest.fixture
def first_pass_only(monkeypatch):
    """An untrained network's estimates reach the clip ceiling, which takes the bright pass
    (core.run.bright_pass); tests that count the first pass's work leave that pass out."""
    from napari_diffdenoise.core.run import plane_sampling

    monkeypatch.setattr(plane_sampling, "_reaches_ceiling", lambda *a: False)


@pytest.fixture
def headed(tiny_model):
    """The tiny paired model with a tiny mean head."""
    torch.manual_seed(1)
    tiny_model.mean_network = UNet(UNetConfig(cond_channels=0, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                              fourier_features=8))
    tiny_model.mean_estimator = "head"
    return tiny_model


@pytest.fixture
def with_std(headed):
    """The tiny paired model with a tiny mean head and a tiny std head."""
    torch.manual_seed(2)
    # awake: a std that varies shows the map is the head's
    headed.std_network = _awake(UNet(UNetConfig(cond_channels=1, base_channels=8, channel_mults=(1, 2), emb_dim=16,
                                                fourier_features=8)))
    headed.std_provenance = {"recipe": "test"}
    return headed


@pytest.fixture
def with_sample_head(with_std):
    """The tiny paired model with tiny mean, std and sample heads; the sample head awake, so that it draws."""
    torch.manual_seed(3)
    with_std.sample_network = _awake(UNet(UNetConfig(cond_channels=2, base_channels=8, channel_mults=(1, 2),
                                                     emb_dim=16, fourier_features=8))).eval()
    with_std.sample_provenance = {"recipe": "test"}
    return with_std


@pytest.fixture
def tiny_checkpoint(tiny_model, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, path)
    return path


@pytest.fixture
def paired_train_widget(make_napari_viewer, tiny_checkpoint, tmp_path):
    """make(stem) → (viewer, Train widget) set to fine-tune the tiny model on a simulated (low, high)
    pair in small batches, writing tmp_path/<stem>.safetensors. The stem is the caller's: the model
    list outlives a test, so a test that counts its own run there needs a name no other test writes."""
    from napari_diffdenoise._widgets.model_registry import REGISTRY
    from napari_diffdenoise._widgets.train import TrainWidget
    from napari_diffdenoise.core.imaging.simulate import Acquisition, simulate_pair

    def make(stem: str):
        viewer = make_napari_viewer()
        noisy, clean = simulate_pair("nuclei", (80, 80), Acquisition(peak_photons=10), seed=3)
        viewer.add_image(noisy, name="low")
        viewer.add_image(clean, name="high")
        label = REGISTRY.add(tiny_checkpoint)
        w = TrainWidget(viewer)
        w.noisy.value, w.clean.value = viewer.layers["low"], viewer.layers["high"]
        w.start_model.value = dict(REGISTRY.choices())[label]
        w.batch_size.value, w.patch_size.value = 2, 32
        w.output.value = tmp_path / f"{stem}.safetensors"
        return viewer, w

    return make


@pytest.fixture
def noisy_stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(5, size=(2, 40, 48)).astype(np.uint16)


def pytest_configure(config):
    # tiny models gain nothing from threads, and a second busy thread pool fights any training
    # run on a 2-core machine
    torch.set_num_threads(1)
    # on a GPU, CUDA's TF32 convolutions differ from float32 by up to ~2 % on a pixel of an untrained tiny
    # model, past the tolerances that compare two routes of one run (docs/performance.md, fourteenth
    # session); the tests ask float32 there, as the CPU computes
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


# Under Python 3.11 something in the Qt/napari stack (with PyQt6 and PySide6 alike) releases references
# to None it never took: every napari viewer a test creates and closes leaves CPython's count of None
# 5 000 to 15 000 lower, and after about twenty such tests it reaches zero and the interpreter aborts
# ("none_dealloc: deallocating None"). None is immortal from Python 3.12. Until the culprit is found
# upstream, the suite gives None a billion references it never returns (a list of them would be freed,
# and the count run out, when the interpreter shuts down).
if sys.version_info < (3, 12):
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += 10**9  # ob_refcnt is a PyObject's first field


def _await_workers() -> None:
    if "qtpy" in sys.modules:  # only tests that brought Qt in can have started a worker
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(60_000)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Also before pytest-qt's last event processing and the viewer's teardown (its wrapper is outside
    this one): a PySide6 run once crashed in napari's window event filter there, on a widget already
    deleted, while two timings of a widget's estimate were still running."""
    yield
    _await_workers()


@pytest.fixture(autouse=True)
def _workers_end_with_their_test():
    """A widget's worker thread (a timing for its 'Time here' estimate, say) still running when the
    test ends emits into Qt objects torn down at exit, and the interpreter aborts ("wrapped C/C++
    object … has been deleted"). napari itself waits for its workers when the app quits
    (napari._qt.qt_event_loop); a test never quits the app, so each test waits for them here."""
    yield
    _await_workers()
