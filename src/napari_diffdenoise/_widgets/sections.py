"""Foldable groups of controls, shared by the dock widgets.

Four widgets docked one under another asked for more height than a laptop screen has; the settings
a biologist rarely changes (and results read once) fold under a header button, advanced settings
folded by default. A control inside a folded section keeps its value and its own visibility (a
mode may still show or hide it); unfolding shows it again as it was.
"""
from __future__ import annotations

from magicgui.widgets import Container, PushButton

CLOSED, OPEN = "▸", "▾"


class Section(Container):
    """``widgets`` under a header button that folds and unfolds them; ``collapsed`` at first."""

    def __init__(self, title: str, widgets, *, collapsed: bool = True, tooltip: str = "", labels: bool = True):
        self.title = title
        self.body = Container(widgets=list(widgets), labels=labels)
        self.body.margins = (0, 0, 0, 0)
        self.header = PushButton(text=title, tooltip=tooltip or f"Show or hide: {title}")
        # a flat, left-aligned header reads as a heading, not as an action like Train or Run
        self.header.native.setFlat(True)
        self.header.native.setStyleSheet("text-align: left; font-weight: bold;")
        super().__init__(widgets=[self.header, self.body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.header.clicked.connect(self.toggle)
        self.collapsed = collapsed

    @property
    def collapsed(self) -> bool:
        return self.body.native.isHidden()

    @collapsed.setter
    def collapsed(self, value: bool) -> None:
        self.body.visible = not value
        self.header.text = f"{CLOSED if value else OPEN} {self.title}"

    def toggle(self, _value=None) -> None:
        self.collapsed = not self.collapsed


def extend_form(form: Container, widgets) -> None:
    """``form.extend(widgets)``, each Section spanning the form's whole width: a labelled form puts an
    empty label column before every widget but a button, which would squeeze a section's tables."""
    form.extend(widgets)
    for widget in widgets:
        labelled = widget._labeled_widget() if isinstance(widget, Section) else None
        if labelled is not None:
            labelled._label_widget.hide()
