"""A PNG contact sheet of results, for people who look at a file rather than a viewer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def to_uint8(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.8) -> np.ndarray:
    low, high = np.percentile(image, [low_pct, high_pct])
    scaled = (image - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def contact_sheet(rows: list[list[tuple[str, np.ndarray]]], path: str | Path, label_height: int = 16) -> Path:
    """One row per plane, one labelled panel per map; each panel is stretched on its own range."""
    h, w = rows[0][0][1].shape
    n_cols = max(len(r) for r in rows)
    sheet = Image.new("L", (n_cols * (w + 4), len(rows) * (h + label_height + 4)), color=0)
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (title, panel) in enumerate(row):
            x, y = c * (w + 4), r * (h + label_height + 4)
            draw.text((x + 2, y + 2), title, fill=255)
            sheet.paste(Image.fromarray(to_uint8(panel)), (x, y + label_height))
    path = Path(path)
    sheet.save(path)
    return path
