"""Export to the BioImage Model Zoo format, checked by bioimageio.core's own test, and import back."""
import numpy as np
import pytest
import torch

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.cli import main

bioimageio_core = pytest.importorskip("bioimageio.core")


@pytest.mark.parametrize("gamma", [0.5, "noise"])
def test_an_exported_model_passes_bioimageio_core_and_computes_our_one_pass_mean(headed, tmp_path, gamma,
                                                                                first_pass_only):
    """For a blind head and for one told each input's noise level (the package computes that level
    from the scaled image, as the library does from its tile)."""
    from bioimageio.core import test_model

    from napari_diffdenoise.core.io.bioimageio_export import export_bioimageio

    headed.mean_head_gamma = gamma
    torch.manual_seed(2)
    with torch.no_grad():  # an untrained head answers 0 whatever its γ (its last layer starts at zero)
        for parameter in headed.mean_network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    sample = np.random.default_rng(0).poisson(6, (64, 64)).astype(np.float32)
    path = export_bioimageio(headed, tmp_path / "tiny.zip", sample=sample)
    summary = test_model(path)
    assert summary.status == "passed", summary.format()
    # the package's output, mapped back to counts, is the library's one-pass mean of the same plane
    from bioimageio.core import create_prediction_pipeline, load_description
    from bioimageio.core.digest_spec import get_test_inputs

    descr = load_description(path)
    with create_prediction_pipeline(descr) as pipeline:
        output = pipeline.predict_sample_without_blocking(get_test_inputs(descr))
    predicted = next(iter(output.members.values())).data.values[0, 0]
    low, high = np.percentile(sample, headed.percentiles)
    counts = predicted * (high - low + 1e-6) + low
    # the package holds the network's one pass; the average over symmetries (core.model.symmetries), the smooth
    # part held to the data (core.run.low_frequency), the bright pass and the floor at 0 counts are the library's
    ours = denoise(sample, headed, n_samples=0, mean="head", low_frequencies="model", symmetries=1).mean
    np.testing.assert_allclose(np.maximum(counts, 0), ours, rtol=1e-3, atol=1e-2 * (high - low))
    # and the full model comes back from the package, sampler and all
    again = load_model(path)
    assert again.mean_estimator == "head" and again.kind == headed.kind and again.mean_head_gamma == gamma
    for mine, theirs in ((again.network, headed.network), (again.mean_network, headed.mean_network)):
        for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()):
            torch.testing.assert_close(a, b)


def test_export_refuses_a_model_without_a_mean_head_and_never_overwrites(tiny_checkpoint, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "m.zip")]) == 2
    assert "has no mean head" in capsys.readouterr().err and not (tmp_path / "m.zip").exists()
    (tmp_path / "taken.zip").write_bytes(b"mine")
    assert main(["export", "--model", "demo", "--out", str(tmp_path / "taken.zip")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "taken.zip").read_bytes() == b"mine"


def test_export_refuses_a_sample_it_cannot_make_a_test_from(headed, tmp_path):
    """A 1×1 sample raised an IndexError, a NaN or constant one a validation error from deep in the spec."""
    from napari_diffdenoise.core.io.bioimageio_export import export_bioimageio

    multiple = headed.mean_network.config.size_multiple
    for sample, message in ((np.ones((1, 1)), f"at least {multiple}×{multiple} px"),
                            (np.full((64, 64), np.nan), "finite values that are not all equal"),
                            (np.zeros((64, 64)), "finite values that are not all equal")):
        with pytest.raises(ValueError, match=message):
            export_bioimageio(headed, tmp_path / "m.zip", sample=sample)
        assert not (tmp_path / "m.zip").exists()


def test_a_package_of_demo_names_its_own_hash_and_credits_the_real_images_its_weights_derive_from(headed, tmp_path):
    """The README said every model was 'trained on simulated low-light images', named the hash of the copy inside
    the zip, not the bundled file's, and a package of demo's weights had no attribution of the CC-BY images they
    derive from."""
    import zipfile

    from napari_diffdenoise.core.io.bioimageio_export import NEUBIAS, export_bioimageio

    sample = np.random.default_rng(0).poisson(6, (64, 64)).astype(np.float32)
    demo = load_model("demo")
    with zipfile.ZipFile(export_bioimageio(demo, tmp_path / "demo.zip", sample=sample)) as package:
        readme, rdf = package.read("README.md").decode(), package.read("rdf.yaml").decode()
    assert f"(sha256 {demo.sha256[:12]})" in readme
    assert "Trained on simulated: nuclei, filaments" in readme and "semi-synthetic pairs from clean real" in readme
    assert "## Data attribution" in readme and '"NEUBIAS training-resources"' in readme and "CC-BY 4.0" in readme
    assert NEUBIAS in rdf
    headed.provenance = {"data": {"mode": "paired", "train_shapes": [[64, 64]] * 3}, "parent": "my-start"}
    with zipfile.ZipFile(export_bioimageio(headed, tmp_path / "mine.zip", sample=sample)) as package:
        readme, rdf = package.read("README.md").decode(), package.read("rdf.yaml").decode()
    assert "Fine-tuned from `my-start` on paired images (3 training plane(s))" in readme
    assert "Data attribution" not in readme and NEUBIAS not in rdf and "simulated low-light" not in readme
