#!/usr/bin/env bash
# Set up, then denoise the bundled simulated low-light stack with the bundled model.
# Leaves demo_output/: sample_{mean,std,entropy}.tif, the noisy input and truth, report.json,
# and sample_overview.png (noisy | mean | std | entropy | truth, one row per plane).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
napari-diffdenoise demo --out demo_output "$@"
