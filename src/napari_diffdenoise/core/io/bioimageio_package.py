"""This package's own checkpoint inside a bioimage.io package it exported: written there by
core.io.bioimageio_export, read back by core.io.checkpoint.load_model."""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHECKPOINT_NAME = "napari_diffdenoise_checkpoint.safetensors"


@contextmanager
def extracted_checkpoint(path: Path) -> Iterator[Path]:
    """The checkpoint attached to the package at ``path``, in a scratch folder that lasts as long as
    the ``with`` block."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(CHECKPOINT_NAME)]
        if not names:
            raise ValueError(f"{path.name} is not a napari-diffdenoise export (no {CHECKPOINT_NAME} inside); other "
                             "bioimage.io models run with bioimageio.core, not as diffusion models")
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / CHECKPOINT_NAME
            with archive.open(names[0]) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            yield target
