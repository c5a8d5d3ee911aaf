#!/usr/bin/env bash
# The widget tests again under PySide6 (napari's other Qt binding), after scripts/test.sh has set up.
# They run a few at a time in fresh processes: with PySide6 6.12 on Python 3.11 every napari viewer
# created and destroyed leaves CPython's reference count of None a few thousand lower (a refcount
# bug in the binding, not in this package: None is immortal from Python 3.12), and about twenty
# viewers in one process bring it to zero, which aborts the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import PySide6" 2>/dev/null || python3 -m pip install --quiet "PySide6-Essentials>=6.5"
export QT_API=pyside6 PYTEST_QT_API=pyside6
mapfile -t ids < <(python3 -m pytest --collect-only -q -p no:cacheprovider "$@" \
    tests/test_widget.py tests/test_train_widget.py tests/test_compare_widget.py tests/test_calibrate_widget.py \
    | grep "::")
status=0
for ((i = 0; i < ${#ids[@]}; i += 8)); do
    xvfb-run -a -s "-screen 0 1280x1024x24" python3 -m pytest -q -p no:cacheprovider "$@" "${ids[@]:i:8}" || status=$?
done
echo "PySide6: ${#ids[@]} widget tests in chunks of 8"
exit $status
