"""The figures of scripts/mutation.sh's runs, per module and in all, from mutmut's own records
(<module>.py.meta anywhere under MUTMUT_RUNS), and the survivors by function.
    python scripts/mutation_summary.py
    MUTMUT_BEFORE=<copies of the metas of a first pass> python scripts/mutation_summary.py
A change of the test selection makes mutmut forget every verdict, so a rerun of a first pass's survivors
against new tests (MUTANTS=... scripts/mutation.sh) is read over a copy of that pass's metas: a mutant
not run again keeps its first verdict (new tests cannot revive a killed mutant)."""
import collections
import json
import os
import re
from pathlib import Path

from mutmut.stats import status_by_exit_code

runs = Path(os.environ.get("MUTMUT_RUNS", "/tmp/mutmut-runs"))
ORDER = ["solvers", "samplers", "schedules", "consistency", "guidance", "uncertainty", "normalization", "tiling",
         "conformal", "noise", "error_scale", "calibration"]
metas = {p.name.removesuffix(".py.meta"): p for p in runs.glob("**/*.py.meta")}
metas = dict(sorted(metas.items(), key=lambda item: ORDER.index(item[0]) if item[0] in ORDER else len(ORDER)))
before = {p.name.removesuffix(".py.meta"): p for p in sorted(Path(os.environ["MUTMUT_BEFORE"]).glob("**/*.py.meta"))
          } if os.environ.get("MUTMUT_BEFORE") else {}
print("| module | mutants | checked | killed | survived | other | score of those checked |")
print("|---|---|---|---|---|---|---|")
totals = collections.Counter()
survivors = {}
for module, meta in metas.items():
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    if module in before:
        first = json.loads(before[module].read_text())["exit_code_by_key"]
        codes = {k: first.get(k) if c is None else c for k, c in codes.items()}
    status = collections.Counter(status_by_exit_code[c] for c in codes.values())
    checked = len(codes) - status["not checked"]
    # a segfault or a timeout is the mutant failing the tests: counted as killed, as mutmut's own score does
    killed = status["killed"] + status["segfault"] + status["timeout"]
    other = checked - killed - status["survived"]
    score = f"{100 * killed / (killed + status['survived']):.1f} %" if killed + status["survived"] else "–"
    print(f"| {module} | {len(codes)} | {checked} | {killed} | {status['survived']} | {other} | {score} |")
    totals.update(mutants=len(codes), checked=checked, killed=killed, survived=status["survived"], other=other)
    survivors[module] = collections.Counter(
        re.sub(r"^x_?|__mutmut_\d+$", "", name.rsplit(".", 1)[1]).replace("ǁ", ".").strip(".")
        for name, c in codes.items() if status_by_exit_code[c] == "survived")
t = totals
score = f"{100 * t['killed'] / (t['killed'] + t['survived']):.1f} %" if t["killed"] + t["survived"] else "–"
print(f"| **all** | {t['mutants']} | {t['checked']} | {t['killed']} | {t['survived']} | {t['other']} | {score} |")
for module, by_function in survivors.items():
    if by_function:
        print(f"{module}: " + ", ".join(f"`{f}` {n}" for f, n in by_function.most_common()))
