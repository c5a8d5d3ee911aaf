"""A run beside another busy process: the torch threads it takes (core.run.cpu_share: the physical cores the
other processes leave free, read before each plane) against torch's own count held fixed, one thread, and
the other remedy tried, OpenMP's threads sleeping at once instead of spinning (OMP_WAIT_POLICY=PASSIVE).

    python -m bench busy_cores [--model demo] [--data ../shared/data/real] [--repeat 3]

Each condition runs in a fresh process (OpenMP reads its wait policy once, when torch loads it), alone,
beside one other process that keeps a core busy for the whole condition (a Python loop: another program, a
second run, a viewer redrawing), and in a container given one CPU: a cgroup whose CPU quota is one CPU, seen
as the process's own through a bind mount in a mount namespace, as docker or Kubernetes show it (Linux, as
root, with unshare; the page says where that could not be made). Timed on the real 512² plane of bench/speed.py (the NEUBIAS neuron): the
Denoise widget's Preview (the heads' one pass) and its default preset with 90 % intervals from the model's
calibration; the best of ``--repeat`` runs after one warm-up run. Ratios within one load are what carries
over: these machines are noisy.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import markdown_table, write_report
from .speed import neuron_args, neuron_parser

# name: (torch threads, or 0 for torch's own count; the package's choice on; OMP_WAIT_POLICY)
CHOICES = {
    "the package's (the cores left free)": (0, True, None),
    "torch's own count, fixed (before)": (0, False, None),
    "one thread": (1, False, None),
    "torch's own count, fixed, OMP_WAIT_POLICY=PASSIVE": (0, False, "PASSIVE"),
}
LOADS = ("alone", "beside one busy process", "in a container given 1 CPU")
QUOTA_PERIOD_US = 100_000
RUNS = ("Preview (the heads' one pass)", "default preset, 90 % intervals")

# One condition, in a fresh interpreter: the seconds of each run, and the threads the run took, as one JSON line
CHILD = """
import json, sys, time
from pathlib import Path
model_name, data, repeat, threads, choose = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
labels = json.loads(sys.argv[6])
import tifffile
import torch
from napari_diffdenoise import denoise, load_model
from napari_diffdenoise.core.run import plane_loop
from napari_diffdenoise.core.run.run_presets import preset
from bench.speed import NEURON
if threads:
    torch.set_num_threads(threads)
taken = []
choice = plane_loop.free_threads if choose else (lambda limit: limit)
plane_loop.free_threads = lambda limit: taken.append(choice(limit)) or taken[-1]
model = load_model(model_name)
plane = tifffile.imread(data / NEURON)
runs = dict(zip(labels, [{"n_samples": 0, "symmetries": 1}, {**preset("default").settings(model), "coverage": 0.9}]))
denoise(plane, model, seed=0, calibrate_on_image=False, n_samples=0, symmetries=1)  # warm-up
seconds = {}
for label, kw in runs.items():
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        denoise(plane, model, seed=0, calibrate_on_image=False, **kw)
        best = min(best, time.perf_counter() - t0)
    seconds[label] = best
print(json.dumps({"seconds": seconds, "threads_taken": sorted(set(taken))}))
"""


@contextlib.contextmanager
def one_cpu_container():
    """A command prefix that runs a command in a cgroup with a CPU quota of one CPU, which the command sees at
    its cgroup root (what joblib.cpu_count reads, as in a container); None where it cannot be made here."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").is_file()
    root = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/cpu")
    group = root / "bench_busy_cores"
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None or not root.is_dir():
        yield None
        return
    try:
        group.mkdir(exist_ok=True)
        if v2:
            (root / "cgroup.subtree_control").write_text("+cpu")
            (group / "cpu.max").write_text(f"{QUOTA_PERIOD_US} {QUOTA_PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(QUOTA_PERIOD_US))
    except OSError:
        yield None
        return
    try:
        # the shell joins the group, then a mount namespace shows the group as the cgroup root
        script = 'echo $$ > "$1/cgroup.procs" && exec unshare -m sh -c \'mount --bind "$1" "$2" && shift 2 && exec "$@"\' sh "$@"'
        yield ["sh", "-c", script, "sh", str(group), str(root)]
    finally:
        with contextlib.suppress(OSError):
            group.rmdir()


def condition(args, threads: int, choose: bool, policy: str | None, load_name: str, prefix: list | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-c", CHILD, args.model, str(args.data), str(args.repeat), str(threads), str(int(choose)),
               json.dumps(RUNS)]
    if load_name == LOADS[2]:
        command = [*prefix, *command]
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load_name == LOADS[1] else None
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1])
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = neuron_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = neuron_args(parser, argv)
    import psutil

    cores = f"{psutil.cpu_count(logical=False)} physical cores, {psutil.cpu_count()} logical"
    with one_cpu_container() as prefix:
        loads = LOADS if prefix is not None else LOADS[:2]
        measured = {(load, name): condition(args, *CHOICES[name], load, prefix) for load in loads for name in CHOICES}
    rows, records = [], []
    reference = next(iter(CHOICES))
    for load in loads:
        for name in CHOICES:
            got = measured[load, name]
            ratios = [got["seconds"][run] / measured[load, reference]["seconds"][run] for run in RUNS]
            rows.append([load, name, ", ".join(map(str, got["threads_taken"])),
                         *(got["seconds"][run] for run in RUNS), *ratios])
            records.append({"load": load, "threads": name, **got, "over_the_packages": dict(zip(RUNS, ratios))})
    package, fixed = ({load: measured[load, name]["seconds"][RUNS[1]] for load in loads} for name in list(CHOICES)[:2])
    container = (f"in a container given 1 CPU {package[LOADS[2]]:.2f} s and {fixed[LOADS[2]]:.2f} s"
                 if prefix is not None else "a container given 1 CPU could not be made here (it needs Linux, root "
                 "and unshare)")
    header = ["load", "torch threads", "threads taken", *(f"s, {run}" for run in RUNS),
              *(f"÷ the package's, {run}" for run in RUNS)]
    body = (f"Model `{args.model}`, {cores}; the real 512² plane of bench/speed.py; best of {args.repeat} runs per "
            "condition, each condition in a fresh process; 'beside one busy process': another process spinning on "
            "one core for the whole condition; 'in a container given 1 CPU': a cgroup CPU quota of one CPU. See the "
            "module docstring of bench/busy_cores.py.\n\n"
            f"The default preset, with the package's choice and with torch's own count fixed: alone "
            f"{package[LOADS[0]]:.2f} s and {fixed[LOADS[0]]:.2f} s, beside the busy process {package[LOADS[1]]:.2f} s "
            f"and {fixed[LOADS[1]]:.2f} s, {container}.\n\n"
            + markdown_table(header, rows) + "\n")
    write_report("busy_cores", "A run beside another busy process or in a container: the torch threads it takes", body,
                 {"cores": cores, "records": records})


if __name__ == "__main__":
    main()
