"""One run at a time into an output: a lock beside it, held for the run, that a second run is refused on.

Two TIFF runs into one folder shared their temporary files, and both "finished" with maps no reader could open;
an ``--overwrite`` run into a store another run was still writing left it holding planes of both runs' settings
and the record of one. The lock is the operating system's (filelock: fcntl/msvcrt), so a killed run holds it no
longer; its file, hidden beside the output, goes when the run ends. A run that calibrates on its input first holds
the lock from then on (``handed_on``): a second run was refused only after its own calibration, minutes in.
"""
from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

# the locks this run holds for a file run inside it (one_run_into's handed_on), by this context alone: a lock
# taken elsewhere in the process, another run's, still refuses
_HANDED_ON: contextvars.ContextVar[frozenset] = contextvars.ContextVar("handed_on", default=frozenset())


def lock_path(output, stem: str | None = None) -> Path:
    """The lock file of a store at ``output``, or of the TIFF maps of ``stem`` in the folder ``output``: hidden
    beside it (the folder may not exist yet, and a store is replaced whole)."""
    output = Path(output).resolve()
    return output.parent / (f".{output.name}.lock" if stem is None else f".{output.name}-{stem}.lock")


@contextlib.contextmanager
def one_run_into(output, stem: str | None = None, *, handed_on: bool = False):
    """Hold ``output``'s lock while the block runs, or refuse at once when another run holds it. ``handed_on``: the
    block is the run's first steps (its calibration on the input) and the file run in it is the same run, which takes
    the lock over rather than being refused."""
    from filelock import FileLock, Timeout

    path = lock_path(output, stem)
    if path in _HANDED_ON.get():
        yield
        return
    # the folders the lock's file is made in that were not there: gone with it when empty (a failed run left them)
    made = [folder for folder in path.parents if not folder.exists()]
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        what = f"the maps of {stem} in {output}" if stem is not None else str(output)
        raise ValueError(f"another run is writing {what} now (it holds {path}); wait for it to end, or choose "
                         "another output") from None
    handing_on = _HANDED_ON.set(_HANDED_ON.get() | {path}) if handed_on else None
    try:
        yield
    finally:
        if handing_on is not None:
            _HANDED_ON.reset(handing_on)
        lock.release()
        path.unlink(missing_ok=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
