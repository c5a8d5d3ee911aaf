#!/usr/bin/env bash
# Set up, then run the whole test suite. Qt tests need a display with OpenGL: Xvfb provides it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Qt's xcb platform loads these at run time: without one, creating the QApplication aborts the whole run
QT_LIBS="libxcb-icccm.so.4 libxcb-image.so.0 libxcb-keysyms.so.1 libxcb-randr.so.0 libxcb-render-util.so.0
    libxcb-xinerama.so.0 libxcb-xfixes.so.0 libxcb-shape.so.0 libxcb-cursor.so.0 libxkbcommon-x11.so.0 libEGL.so.1
    libGL.so.1 libfontconfig.so.1 libdbus-1.so.3"
display_missing() {
    command -v xvfb-run >/dev/null || return 0
    local libs
    libs=$(ldconfig -p)
    for lib in $QT_LIBS; do
        grep -q "$lib" <<<"$libs" || return 0
    done
    return 1
}
if display_missing; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 \
            libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
            libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libfontconfig1 libdbus-1-3 >/dev/null
    else
        echo "Xvfb or a library Qt needs is missing: install xvfb and the packages this script names, then run again" >&2
        exit 1
    fi
fi
EXTRAS=testing bash scripts/install.sh
# the import contracts in pyproject.toml ([tool.importlinter]): no circles, a GUI-free core
lint-imports --no-cache --no-logo
# one pytest worker per CPU this process may use (joblib reads its affinity and a container's quota), at most
# MOST_WORKERS: tests/conftest.py runs torch on one thread, so a single process leaves every other core idle (on
# 2 cores: 12.5 min alone, 6.6 min with two workers, 2026-12-07). Each worker holds its own napari and torch (about
# 1 GB). PYTEST_WORKERS overrides the count; 0 runs the tests in this process.
MOST_WORKERS=4
workers=${PYTEST_WORKERS:-$(python3 -c "import joblib; print(min(joblib.cpu_count(), $MOST_WORKERS))")}
xvfb-run -a -s "-screen 0 1280x1024x24" python3 -m pytest -n "$workers" "$@"
