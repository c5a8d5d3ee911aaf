"""A link at the top of each dock widget to its documentation page (docs/widgets/<page>.md, published
at the project's Documentation address), opened in the system's browser."""
from __future__ import annotations

from magicgui.widgets import Label

DOCS_FALLBACK = "https://github.com/napari-diffdenoise/napari-diffdenoise/blob/main/docs"
LINK_COLOUR = "#4a90e2"  # contrast 4.4:1 on napari's dark grey (#262930), 3.3:1 on its light theme


def docs_address() -> str:
    """The Documentation address the installed package declares (pyproject's [project.urls])."""
    try:
        from importlib.metadata import metadata

        for entry in metadata("napari-diffdenoise").get_all("Project-URL") or []:
            label, _, address = entry.partition(",")
            if label.strip().lower() == "documentation":
                return address.strip().rstrip("/")
    except Exception:  # noqa: BLE001 — a source tree that is not installed has no metadata
        pass
    return DOCS_FALLBACK


def page_address(page: str) -> str:
    base = docs_address()
    # the published site serves widgets/denoise/; the repository's tree serves widgets/denoise.md
    return f"{base}/widgets/{page}.md" if "github.com" in base else f"{base}/widgets/{page}/"


def help_link(page: str, title: str) -> Label:
    """A label whose link opens the page (Qt opens external links in the browser)."""
    # a light link colour: Qt's default dark blue is nearly invisible on napari's dark grey theme
    label = Label(value=f'<a href="{page_address(page)}" style="color: {LINK_COLOUR};">'
                        f'How to use {title} (opens the documentation)</a>')
    label.native.setOpenExternalLinks(True)
    label.tooltip = page_address(page)
    return label
