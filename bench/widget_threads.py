"""The widgets' torch work and libgomp's teams: how fast adapting goes in the threads the widgets use
(_widgets/torch_teams.py says why), against the library on the main thread.

    python -m bench widget_threads [--model demo] [--data ../shared/data/real] [--seconds 12]

torch's OpenMP (libgomp, on Linux) keeps a team of threads for every thread that has run a parallel region, for
the thread's life; once the teams' threads outnumber the cores, every team sleeps at its barriers. Each condition
runs in a fresh process (a team, once made, stays) and adapts the demo model to a 256² crop of the real neuron
plane of bench/speed.py for ``--seconds`` (`adapt`, no recalibration), counting its steps: the work rate of many
small operations. The conditions mimic napari without a viewer: the GUI thread is the main thread, napari's
worker threads are Python threads (its pool keeps them alive after a job, as here), and the package's widgets
run their jobs through _widgets/torch_teams.py (`load_here`, `in_own_thread`). Ratios within one run are what
carries over: these machines are noisy.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .common import markdown_table, write_report
from .speed import neuron_args, neuron_parser

# name: what the child does (see CHILD)
CONDITIONS = {
    "the library on the main thread": "main",
    "a worker thread, the model loaded on the GUI thread (the widgets before)": "worker",
    "the widgets now: loaded on one torch thread, the job in a thread of its own": "own",
    "a worker thread after two jobs had overlapped on two pool threads (napari's pool before)": "pool",
    "the widgets now, after two jobs had overlapped": "own-after-overlap",
}

CHILD = """
import json, sys, threading
from pathlib import Path
import numpy as np, tifffile, torch
from napari_diffdenoise import load_model
from napari_diffdenoise.core.training.adapt import adapt
from napari_diffdenoise._widgets.torch_teams import in_own_thread, load_here
from bench.speed import NEURON
model_name, data, seconds, how = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
plane = tifffile.imread(data / NEURON).astype(np.float32)[:256, :256]
count = torch.get_num_threads()

def steps(model, minutes=seconds / 60):
    return adapt(model, plane, minutes=minutes, recalibrate=False, seed=0).provenance["adapted"]["steps"]

def in_thread(fn):  # a worker thread that lives on after its job, as napari's pool keeps its threads
    out, done = [], threading.Event()
    def run():
        out.append(fn())
        done.set()
        threading.Event().wait(3600)
    threading.Thread(target=run, daemon=True).start()
    done.wait()
    return out[0]

if how == "main":
    got = steps(load_model(model_name))
elif how == "worker":
    model = load_model(model_name)
    got = in_thread(lambda: steps(model))
elif how == "pool":
    model = load_model(model_name)
    jobs = [threading.Thread(target=in_thread, args=(lambda: steps(model, 0.05),)) for _ in range(2)]
    for job in jobs: job.start()
    for job in jobs: job.join()
    got = in_thread(lambda: steps(model))
else:
    model = load_here(model_name)
    if how == "own-after-overlap":
        jobs = [threading.Thread(target=in_thread, args=(in_own_thread(lambda: steps(model, 0.05), count),))
                for _ in range(2)]
        for job in jobs: job.start()
        for job in jobs: job.join()
    got = in_thread(in_own_thread(lambda: steps(model), count))
print(json.dumps({"steps": got, "threads": count}))
"""


def main(argv=None):
    parser = neuron_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = neuron_args(parser, argv)
    measured = {}
    for name, how in CONDITIONS.items():
        done = subprocess.run([sys.executable, "-c", CHILD, args.model, str(args.data), str(args.seconds), how],
                              capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        measured[name] = json.loads(done.stdout.strip().splitlines()[-1])
    library = measured[next(iter(CONDITIONS))]["steps"]
    rows = [[name, got["steps"], got["steps"] / library] for name, got in measured.items()]
    threads = measured[next(iter(CONDITIONS))]["threads"]
    body = (f"Model `{args.model}`, {threads} torch threads; adapting to a 256² crop of the real neuron plane of "
            f"bench/speed.py for {args.seconds:g} s, each condition in a fresh process. See the module docstring of "
            "bench/widget_threads.py.\n\n"
            + markdown_table(["where the job ran", f"steps in {args.seconds:g} s", "÷ the library's"], rows) + "\n")
    write_report("widget_threads", "The widgets' torch work and libgomp's teams: adapting's pace", body,
                 {"seconds": args.seconds, "records": measured})


if __name__ == "__main__":
    main()
