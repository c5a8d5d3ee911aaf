#!/usr/bin/env bash
# Build the documentation site into site/, strictly (a broken link or docstring fails it), with the
# widget screenshots retaken from the real widgets under Xvfb. Run after scripts/test.sh has set up.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "mkdocs-material>=9.5" "mkdocstrings[python]>=0.25"
xvfb-run -a -s "-screen 0 1600x1200x24" python3 scripts/screenshots.py docs/images
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict
echo "documentation built in site/"
