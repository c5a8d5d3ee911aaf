#!/usr/bin/env bash
# Mutation score of the numerical core (docs/testing.md, "Mutation testing"). Not run in CI.
#   scripts/mutation.sh                 every group below
#   scripts/mutation.sh solvers noise   those groups only
#   SAMPLE=0 scripts/mutation.sh ...    a systematic sample: the mutants whose number ends in 0 (10 %)
#   MUTANTS="name ..." scripts/mutation.sh noise   those mutants of one group (a rerun of its survivors)
# mutmut reads [tool.mutmut] from the working directory's pyproject.toml and keeps its mutants/ there, and
# every mutmut run first runs its test selection four times (coverage, stats, clean run, forced failure).
# So the modules run in a few groups, each in a directory of its own (MUTMUT_RUNS, default
# /tmp/mutmut-runs/<group>): src/ and tests/ linked to this checkout, pyproject.toml's [tool.mutmut]
# narrowed to the group's modules and the tests that pin them (mutmut then runs, for each mutant, those
# of them that reach the mutated function). One worker at nice 19 (torch; a shared machine).
# The figures: python scripts/mutation_summary.py.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
declare -A MODULES=(
  [solvers]="sampling/solvers sampling/samplers model/schedules sampling/consistency"
  [guidance]="sampling/guidance"
  [maps]="imaging/uncertainty imaging/normalization imaging/tiling run/conformal"
  [noise]="sampling/noise"
  [calibration]="calibration/error_scale calibration/calibration"
)
declare -A TESTS=(
  [solvers]="tests/test_samplers.py tests/test_sampler_contract.py tests/test_schedules.py tests/test_dc_sampling.py
             tests/test_physics.py tests/test_guidance.py tests/test_solvers.py"
  [guidance]="tests/test_guidance.py tests/test_guided.py"
  [maps]="tests/test_uncertainty.py tests/test_tiling.py tests/test_trust.py tests/test_normalization.py
          tests/test_conformal.py"
  [noise]="tests/test_bigdata.py"
  [calibration]="tests/test_self_calibration.py tests/test_trust.py tests/test_error_scale.py tests/test_calibration_pairs.py"
)
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(solvers guidance maps noise calibration)
for group in "${groups[@]}"; do
  [ -n "${MODULES[$group]:-}" ] || { echo "no group $group" >&2; exit 2; }
  run=${MUTMUT_RUNS:-/tmp/mutmut-runs}/$group
  mkdir -p "$run"
  ln -sfn "$repo/src" "$run/src"
  ln -sfn "$repo/tests" "$run/tests"
  only="" selection=""
  for m in ${MODULES[$group]}; do only+="\"src/napari_diffdenoise/core/$m.py\", "; done
  for t in ${TESTS[$group]}; do [ -e "$repo/$t" ] && selection+="\"$t\", "; done
  cat > "$run/pyproject.toml" <<TOML
[tool.pytest.ini_options]
testpaths = ["tests"]
filterwarnings = ["ignore::DeprecationWarning:pkg_resources"]

[tool.mutmut]
source_paths = ["src/napari_diffdenoise"]
only_mutate = [${only%, }]
pytest_add_cli_args_test_selection = [${selection%, }]
process_isolation = "forkserver"  # torch is not fork-safe
mutate_only_covered_lines = true
TOML
  echo "== $group: ${MODULES[$group]}; ${TESTS[$group]}"
  names=()
  if [ -n "${MUTANTS:-}" ]; then names=($MUTANTS); elif [ -n "${SAMPLE:-}" ]; then names=("*__mutmut_*[$SAMPLE]"); fi
  (cd "$run" && nice -n 19 mutmut run --max-children 1 "${names[@]}")
done
python "$repo/scripts/mutation_summary.py"
