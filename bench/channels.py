"""Each channel self-calibrated on its own against one calibration pooled over the channels, on the real
multi-channel images (NEUBIAS training resources): λ at 0.8 / 0.9 / 0.95 per channel.

    python -m bench channels

The pooled calibration is what the widget and the CLI made before 2026-12-05 (crops of every channel,
one λ for all, core.calibration.self_calibration.iter_self_calibrate on the channels' planes); per
channel is what they make now (iter_calibrate_on_data with a C axis). No truth exists for these images:
the table shows how far one pooled λ sits from each channel's own, not which is right.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile

from napari_diffdenoise import load_model
from napari_diffdenoise.core.calibration.self_calibration import iter_calibrate_on_data, iter_self_calibrate
from napari_diffdenoise.core.run.driving import drive
from napari_diffdenoise.core.run.restore import calibration_settings
from napari_diffdenoise.core.run.run_keywords import RunSpec

from .common import markdown_table, write_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
IMAGES = {"membranes / nuclei (hot pixel)": "xyc_16bit__membranes_nuclei_hot_pixel.tif",
          "nuclei / Golgi": "xyc_16bit__nuclei_golgi.tif",
          "DNA / microtubules / actin": "xyc_16bit__cell_dna_mts_actin.tif",
          "nuclear pores / nuclei": "xyc_16bit__nup_nuclei.tif"}
LEVELS = (0.8, 0.9, 0.95)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = load_model("demo")
    spec = calibration_settings(model, spec=RunSpec())
    rows, data = [], {}
    for label, name in IMAGES.items():
        image = tifffile.imread(args.data / "neubias_training_resources" / name).astype(np.float32)
        pooled = drive(iter_self_calibrate(model, image, spec=spec))[0].calibration
        own = drive(iter_calibrate_on_data(model, image, "CYX", spec=spec))[0].calibration
        data[label] = {"pooled": pooled.factors, "channels": own.channel_factors, "coverages": own.coverages}
        for c, factors in enumerate(own.channel_factors):
            alone = [float(np.interp(v, own.coverages, factors)) for v in LEVELS]
            shared = [pooled.factor(v) for v in LEVELS]
            rows.append([label, c, " / ".join(f"{x:.2f}" for x in alone), " / ".join(f"{x:.2f}" for x in shared),
                         f"{shared[1] / alone[1]:.2f}"])
    body = (__doc__.split("\n\n", 2)[2] + f"\nModel `demo`, the default run's calibration settings (the std "
            f"head). Wall time {time.perf_counter() - start:.0f} s.\n\n"
            + markdown_table(["image", "channel", "λ alone @0.8 / 0.9 / 0.95", "λ pooled @0.8 / 0.9 / 0.95",
                              "pooled / alone @0.9"], rows))
    print(write_report("channels", "Self-calibration per channel against pooled", body, data))


if __name__ == "__main__":
    main()
