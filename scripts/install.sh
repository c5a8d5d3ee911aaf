#!/usr/bin/env bash
# Install napari-diffdenoise and what it needs, on a fresh machine. Idempotent.
#   EXTRAS=testing bash scripts/install.sh   also installs napari, pytest and pytest-qt
set -euo pipefail
cd "$(dirname "$0")/.."
# the active virtual environment's python when there is one (CI makes a fresh one), else python3
PY=${PYTHON:-python3}
# torch first: asked for by another package, pip may pick a multi-GB CUDA build. 2.13.0 has a
# CPU wheel on this project's machines; anywhere else the platform's default torch is fine.
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0" || "$PY" -m pip install --quiet torch
fi
"$PY" -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
