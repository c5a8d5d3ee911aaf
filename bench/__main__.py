"""Benchmarks: ``python -m bench NAME`` for a NAME of COMMANDS below, or ``all``; each writes
docs/benchmarks/<name>.md (and its figures) from scratch on this machine.

``all`` regenerates every page with the command its stamp records, options included (bench/pages.py);
a page whose command cannot run here is said at the end, and the exit status is then 1."""
import sys

from . import (
    adapt,
    adapt_draws,
    adapt_sampler,
    busy_cores,
    calibration_diagnosis,
    camera8,
    channels,
    coverage,
    entropy,
    error_shape,
    estimator_terms,
    finetune,
    gpu_speed,
    hot_pixels,
    low_frequency,
    mean,
    memory,
    noise_correlation,
    physics,
    pilot_wiener,
    quality,
    real,
    real_calibration,
    real_frames,
    real_prior,
    rho_ceiling,
    rho_frames,
    sample_head,
    samplers,
    seed,
    series_adapt,
    speed,
    std_head,
    symmetries,
    tiles,
    training_report,
    unpaired,
    widget_threads,
)
from .pages import run_all

COMMANDS = {"training": training_report.main, "speed": speed.main, "quality": quality.main, "finetune": finetune.main,
            "unpaired": unpaired.main, "physics": physics.main, "seed": seed.main,
            "real": real.main, "real_prior": real_prior.main, "real_calibration": real_calibration.main, "real_frames": real_frames.main, "std_head": std_head.main, "sample_head": sample_head.main, "samplers": samplers.main, "mean": mean.main, "coverage": coverage.main, "adapt": adapt.main, "adapt_draws": adapt_draws.main, "adapt_sampler": adapt_sampler.main,
            "memory": memory.main, "entropy": entropy.main, "error_shape": error_shape.main, "tiles": tiles.main,
            "calibration_diagnosis": calibration_diagnosis.main, "symmetries": symmetries.main, "rho_ceiling": rho_ceiling.main,
            "rho_frames": rho_frames.main,
            "series_adapt": series_adapt.main, "noise_correlation": noise_correlation.main,
            "low_frequency": low_frequency.main, "hot_pixels": hot_pixels.main,
            "channels": channels.main, "camera8": camera8.main,
            "pilot_wiener": pilot_wiener.main, "estimator_terms": estimator_terms.main,
            "busy_cores": busy_cores.main, "gpu_speed": gpu_speed.main, "widget_threads": widget_threads.main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in (*COMMANDS, "all"):
        sys.exit(f"usage: python -m bench {{{','.join(COMMANDS)},all}} [options]")
    if sys.argv[1] != "all":
        COMMANDS[sys.argv[1]](sys.argv[2:])
    elif missed := run_all(COMMANDS):
        sys.exit("not regenerated:\n" + "\n".join(missed))
