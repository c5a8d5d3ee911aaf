"""The Python examples of the docs pages run as a reader would paste them, in order and in one namespace
per page, on small images bound to the pages' own names for them, with training shortened to a step.
Examples that need what a test machine lacks (a cluster, a file on disk, a sampler's body left as ``...``)
are named in SKIPPED with why."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
# (page, example number from 1): why it cannot run here
SKIPPED = {
    ("big-data.md", 2): "reads big.zarr, a file the reader has",
    ("big-data.md", 3): "starts a SLURM cluster",
    ("big-data.md", 4): "starts a CUDA cluster",
    ("method.md", 1): "the sampler's body is left as ... for the reader",
}
ONE_STEP = "TrainConfig(steps=1, batch_size=2, patch_size=32)"


def examples(page: str) -> list[tuple[int, str]]:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)
    return [(number, code) for number, code in enumerate(blocks, 1) if (page, number) not in SKIPPED]


def shortened(code: str) -> str:
    """Every train( call trained for one step: its config replaced, or given where the page leaves it out."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "train":
            node.keywords = [k for k in node.keywords if k.arg != "config"]
            node.keywords.append(ast.keyword("config", ast.parse(ONE_STEP, mode="eval").body))
    return ast.unparse(tree)


def test_every_page_example_runs_or_is_skipped_for_a_reason():
    pages = sorted(p.name for p in DOCS.glob("*.md") if "```python" in p.read_text())
    assert pages == ["big-data.md", "index.md", "method.md", "training.md"]
    assert all(examples(page) or page == "method.md" for page in pages)


@pytest.mark.parametrize("page", ["index.md", "big-data.md", "training.md"])
def test_a_pages_examples_run_in_order(page, tmp_path, monkeypatch):
    from napari_diffdenoise._sample_data import sample_stack

    noisy, clean = sample_stack((64, 64))
    namespace = {"stack": noisy[:1], "noisy_stack": noisy[:2], "clean_stack": clean[:2],
                 "movie": noisy[:2].reshape(1, 1, 2, 64, 64)}
    monkeypatch.chdir(tmp_path)  # the training examples write their models here
    for number, code in examples(page):
        code = compile(shortened(code), f"{page} example {number}", "exec")
        exec(code, namespace)  # noqa: S102 — the page's own code
    if page == "training.md":  # each example writes a model of its own, none refused for an earlier one's name
        written = sorted(p.name for p in tmp_path.glob("*.safetensors") if "-best" not in p.name
                         and ".state" not in p.name)
        assert written == ["my-deconvolver.safetensors", "my-model-from-clean.safetensors",
                           "my-model.safetensors", "my-prior.safetensors"]
    else:
        assert np.isfinite(namespace["result"].mean).all()
