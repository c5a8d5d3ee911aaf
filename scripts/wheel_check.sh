#!/usr/bin/env bash
# Build the wheel and the sdist, install the wheel alone (no extras, no source tree) into a fresh
# virtual environment, and check that the installed package works: the napari manifest validates,
# the bundled models load, and one small image is denoised through the installed command.
#   bash scripts/wheel_check.sh [WORK_FOLDER]   (default: a temporary folder, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
if [ $# -ge 1 ]; then
    work=$1
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/diffdenoise-wheel.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
python3 -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet "build>=1"
# the build's own log only when it fails: it lists every file it copies
if ! "$work/build-env/bin/python" -m build --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log"
    exit 1
fi
ls "$work"/dist/*.whl "$work"/dist/*.tar.gz
python3 -m venv "$work/wheel-env"
py="$work/wheel-env/bin/python"
# torch first, for the reason scripts/install.sh gives
"$py" -m pip install --quiet "torch==2.13.0" || "$py" -m pip install --quiet torch
"$py" -m pip install --quiet "$work"/dist/*.whl "npe2>=0.7"
# run from an empty folder, so nothing is imported from the source tree by accident
mkdir -p "$work/run"
cd "$work/run"
"$py" -c "import napari_diffdenoise, sys; f = napari_diffdenoise.__file__; print(f); sys.exit('$repo' in f)"
"$work/wheel-env/bin/npe2" validate napari-diffdenoise
"$work/wheel-env/bin/napari-diffdenoise" models
"$py" - <<'PY'
import numpy as np
import tifffile

from napari_diffdenoise._zarr_io import get_reader  # the npe2 reader imports without napari

tifffile.imwrite("in.tif", np.random.default_rng(0).poisson(5, (32, 32)).astype(np.uint16))
assert get_reader("in.tif") is None
PY
"$work/wheel-env/bin/napari-diffdenoise" denoise in.tif --out maps --samples 2 --steps 2
"$py" - <<'PY'
import numpy as np
import tifffile

mean, std = tifffile.imread("maps/in_mean.tif"), tifffile.imread("maps/in_std.tif")
assert mean.shape == std.shape == (32, 32), (mean.shape, std.shape)
assert np.isfinite(mean).all() and np.isfinite(std).all() and std.max() > 0
print(f"installed wheel denoised a 32×32 image: mean {mean.mean():.2f}, std {std.mean():.3f}")
PY
echo "wheel check passed"
