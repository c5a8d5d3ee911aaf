#!/usr/bin/env bash
# The widget tests again under PySide6 (napari's other Qt binding), after scripts/test.sh has set up.
# They run a few at a time in fresh processes, so that one crash of the binding cannot hide the
# other chunks' results (tests/conftest.py explains the refcount trouble that aborted long Qt runs).
# Those marked `computation` (pyproject.toml) are left out: nine tests, half the widget tests' time,
# spent in the restoration, calibration or training they drive, whose Qt paths the others take too.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import PySide6" 2>/dev/null || python3 -m pip install --quiet "PySide6-Essentials>=6.5"
export QT_API=pyside6 PYTEST_QT_API=pyside6
mapfile -t ids < <(python3 -m pytest --collect-only -q -p no:cacheprovider -m "not computation" "$@" \
    tests/test_widget.py tests/test_train_widget.py tests/test_compare_widget.py tests/test_calibrate_widget.py \
    | grep "::")
if [ ${#ids[@]} -eq 0 ]; then  # collected nothing: fail as pytest does (exit 5), not pass on no tests
    echo "PySide6: no widget tests collected" >&2
    exit 5
fi
status=0
for ((i = 0; i < ${#ids[@]}; i += 8)); do
    xvfb-run -a -s "-screen 0 1280x1024x24" python3 -m pytest -q -p no:cacheprovider "$@" "${ids[@]:i:8}" || status=$?
done
echo "PySide6: ${#ids[@]} widget tests in chunks of 8"
exit $status
