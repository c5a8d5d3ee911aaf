"""Models a user loaded or trained in this napari session, shared by every dock widget.

Bundled models come from the package; user checkpoints are added here (from "Load from file…" or
the Train widget) and every widget listening to ``changed`` refreshes its model list at once.
"""
from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from ..core.io.checkpoint import list_models

USER_MODELS_DIR = Path.home() / "napari-diffdenoise" / "models"  # where the widgets save what they make


class ModelRegistry:
    changed = Signal()

    def __init__(self):
        self._user: dict[str, Path] = {}

    def add(self, path: str | Path) -> str:
        """Register a checkpoint file; returns the label it is listed under."""
        path = Path(path).resolve()
        label = f"{path.stem} ({path.parent.name}/)"
        self._user[label] = path
        self.changed.emit()
        return label

    def subscribe(self, combo) -> None:
        """Refresh ``combo``'s choices on every change, until its Qt widget is gone (a closed dock
        widget must not break the next model load in another one)."""

        def refresh():
            try:
                combo.reset_choices()
            except RuntimeError:  # "wrapped C/C++ object … has been deleted"
                self.changed.disconnect(refresh)

        self.changed.connect(refresh)

    def choices(self) -> list[tuple[str, str]]:
        """(label, name-or-path) pairs: bundled first, then user checkpoints."""
        bundled = [(f"{name} (bundled)", name) for name in list_models()]
        return bundled + [(label, str(path)) for label, path in self._user.items()]


REGISTRY = ModelRegistry()
