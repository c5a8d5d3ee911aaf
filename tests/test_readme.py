"""The README's Python examples run, in order and in one namespace, on small images bound to the
README's own names for them, with the one long knob turned down: adapting for a few steps instead
of five minutes."""
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"
SHORTER = {"minutes=5": "minutes=None, steps=3"}


def test_the_readme_examples_run(tmp_path, monkeypatch):
    from napari_diffdenoise._sample_data import sample_stack, widefield_stack

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    noisy, clean = sample_stack((128, 128))
    blurred, _, _ = widefield_stack((64, 64))
    namespace = {"stack": noisy[:1], "noisy_stack": noisy[:1], "truth_stack": clean[:1], "widefield": blurred[:1],
                 "movie": noisy[:2], "cells": noisy[:2] * np.array([1, 4], np.float32)[:, None, None]}
    monkeypatch.chdir(tmp_path)  # an example saves a file
    for number, code in enumerate(blocks, 1):
        for long, short in SHORTER.items():
            code = code.replace(long, short)
        exec(compile(code, f"README example {number}", "exec"), namespace)
    assert np.isfinite(namespace["result"].mean).all() and namespace["result"].mean.shape == (1, 64, 64)
    assert (tmp_path / "adapted.safetensors").stat().st_size > 0
    assert len(namespace["mine"].calibrations[0]["channel_factors"]) == 2  # the last: each of the cells' channels
