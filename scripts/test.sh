#!/usr/bin/env bash
# Set up, then run the whole test suite. Qt tests need a display with OpenGL: Xvfb provides it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v xvfb-run >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 \
            libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
            libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libfontconfig1 libdbus-1-3 >/dev/null
    else
        echo "xvfb-run is missing: install Xvfb (e.g. apt-get install xvfb) and run again" >&2
        exit 1
    fi
fi
EXTRAS=testing bash scripts/install.sh
# the import contracts in pyproject.toml ([tool.importlinter]): no circles, a GUI-free core
lint-imports --no-cache --no-logo
xvfb-run -a -s "-screen 0 1280x1024x24" python3 -m pytest "$@"
