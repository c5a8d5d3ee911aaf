"""The documentation's screenshots are taken of the real widgets (scripts/screenshots.py), so they
cannot show a widget that no longer exists.

    DIFFDENOISE_SCREENSHOTS=docs/images xvfb-run -a python -m pytest tests/test_screenshots.py

retakes the documentation's own pictures at their size (the docs build, scripts/docs.sh, does too);
without it they go to a temporary folder, smaller."""
import importlib.util
import os
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screenshots.py"


def test_screenshots_of_every_widget_show_a_window_with_the_widget_docked(tmp_path, qapp):
    from PIL import Image

    spec = importlib.util.spec_from_file_location("screenshots", SCRIPT)
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    out = os.environ.get("DIFFDENOISE_SCREENSHOTS")
    paths = screenshots.take(out) if out else screenshots.take(tmp_path, size=(1000, 640))
    assert [p.stem for p in paths] == list(screenshots.SHOTS)
    assert set(screenshots.WIDGETS) <= set(screenshots.SHOTS)
    for path in paths:
        image = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        assert image.shape[0] >= 600 and image.shape[1] >= 900
        # a drawn window: dark theme, text and an image, not one flat colour
        assert image.std() > 10 and image.mean() < 128
    # the samples and the entropy map differ from the main picture: another layer is on view
    main, samples, entropy = (np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths[:3])
    assert np.abs(samples - main).mean() > 1 and np.abs(entropy - main).mean() > 1
