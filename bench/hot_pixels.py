"""Hot pixels on the project's real data (core.imaging.hot_pixels): how many each file holds, and what
restoring one as data did on the one image whose name says it has one.

    python -m bench hot_pixels

Per file (every plane of every TIFF under the real-data folder; interleaved samples as channels): the
hot pixels a run finds, beside the single-pixel spikes at 10 σ anywhere (those within the range of
the plane's structure are left to the model), and the time per plane. The NEUBIAS membranes image: the default run with the hot pixels
restored as data (what every run did before they were found) and as the run now does it — the pixels
of the 7×7 window around the hot pixel (itself left out) more than 10 noise standard deviations above
the background (a blob), the mean at the pixel, and the self-calibration's V on the image
(core.calibration.self_calibration, as ``--self-calibrate`` makes it).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from unittest import mock

import numpy as np
import tifffile

from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data
from napari_diffdenoise.core.imaging import hot_pixels as hot_module
from napari_diffdenoise.core.imaging.hot_pixels import hot_pixels
from napari_diffdenoise.core.imaging.normalization import IntensityMap
from napari_diffdenoise.core.run.bright_pass import ceiling_level
from napari_diffdenoise.core.run.driving import drive
from napari_diffdenoise.core.run.restore import calibration_settings
from napari_diffdenoise.core.run.run_keywords import RunSpec

from .common import markdown_table, write_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
MEMBRANES = "neubias_training_resources/xyc_16bit__membranes_nuclei_hot_pixel.tif"


def planes_of(path: Path) -> np.ndarray:
    data = tifffile.imread(path)
    if data.ndim == 3 and data.shape[-1] in (3, 4):  # interleaved samples: channels
        data = np.moveaxis(data, -1, 0)
    return data.reshape(-1, *data.shape[-2:])


def census(data: Path) -> list[list]:
    """Per file: planes, hot pixels as a run finds them (above the top of the demo model's intensity map),
    single-pixel spikes at 10 σ anywhere (what the run leaves to the model: within the structure's range),
    ms per plane."""
    model = load_model("demo")
    rows = []
    for path in sorted(data.rglob("*.tif")):
        planes = planes_of(path)
        start = time.perf_counter()
        found = sum(int(hot_pixels(p, ceiling_level(IntensityMap.from_percentiles(p, model.percentiles), model)).sum())
                    for p in planes)
        seconds = (time.perf_counter() - start) / len(planes)
        spikes = sum(int(hot_pixels(p).sum()) for p in planes)
        rows.append([str(path.relative_to(data)), len(planes), found, spikes, f"{1000 * seconds:.0f}"])
    return rows


def membranes(data: Path) -> dict:
    image = tifffile.imread(data / MEMBRANES)
    model = load_model("demo")
    (y, x), = zip(*np.nonzero(hot_pixels(image[0], 1000.0)))
    out = {}
    for label, found in (("restored as data (before)", lambda p, above: np.zeros(np.shape(p), bool)), ("now", hot_pixels)):
        with mock.patch.object(hot_module, "hot_pixels", found):
            mean = denoise(image, model).mean
            run, _ = drive(iter_calibrate_on_data(model, image, "CYX", spec=calibration_settings(model, spec=RunSpec())))
        window = mean[0, y - 3:y + 4, x - 3:x + 4].astype(np.float64)
        background = float(np.median(image[0, y - 3:y + 4, x - 3:x + 4]))
        blob = np.abs(window - background) > 10 * np.sqrt(background)
        blob[3, 3] = False
        out[label] = {"blob": int(blob.sum()), "at": float(mean[0, y, x]), "raw": float(image[0, y, x]),
                      "background": background, "source": run.model.calibrations[0]["source"]}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = census(args.data)
    found = membranes(args.data)
    v = {k: r["source"].split("V = E[(error/spread)²] = ")[1].split(" overall")[0] for k, r in found.items()}
    body = (f"{__doc__.split(chr(10) + chr(10), 1)[1].split(chr(10) + chr(10), 1)[1]}\n"
            f"Wall time {time.perf_counter() - start:.0f} s.\n\n## Hot pixels per file\n\n"
            + markdown_table(["file", "planes", "hot pixels", "spikes at 10 σ anywhere (left to the model)",
                              "ms per plane"], rows)
            + "\n\n## The membranes image (channel 0)\n\n"
            + markdown_table(["hot pixels", "recorded", "mean there", "background", "blob px (of 48)", "self-calibrated V"],
                             [[k, f"{r['raw']:.0f}", f"{r['at']:.0f}", f"{r['background']:.0f}", r["blob"], v[k]]
                              for k, r in found.items()]))
    print(write_report("hot_pixels", "Hot pixels on real data", body, {"census": rows, "membranes": found}))


if __name__ == "__main__":
    main()
