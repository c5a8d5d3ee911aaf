"""Benchmarks: ``python -m bench {speed,quality}``; each writes docs/benchmarks/<name>.md."""
import sys

from . import finetune, quality, speed, training_report

COMMANDS = {"speed": speed.main, "quality": quality.main, "finetune": finetune.main, "training": training_report.main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m bench {{{','.join(COMMANDS)}}} [options]")
    COMMANDS[sys.argv[1]](sys.argv[2:])
