"""One run at a time into an output: a lock beside it, held for the run, that a second run is refused on.

Two TIFF runs into one folder shared their temporary files, and both "finished" with maps no reader could open;
an ``--overwrite`` run into a store another run was still writing left it holding planes of both runs' settings
and the record of one. The lock is the operating system's (filelock: fcntl/msvcrt), so a killed run holds it no
longer; its file, hidden beside the output, goes when the run ends.
"""
from __future__ import annotations

import contextlib
from pathlib import Path


def lock_path(output, stem: str | None = None) -> Path:
    """The lock file of a store at ``output``, or of the TIFF maps of ``stem`` in the folder ``output``: hidden
    beside it (the folder may not exist yet, and a store is replaced whole)."""
    output = Path(output).resolve()
    return output.parent / (f".{output.name}.lock" if stem is None else f".{output.name}-{stem}.lock")


@contextlib.contextmanager
def one_run_into(output, stem: str | None = None):
    """Hold ``output``'s lock while the block runs, or refuse at once when another run holds it."""
    from filelock import FileLock, Timeout

    path = lock_path(output, stem)
    # the folders the lock's file is made in that were not there: gone with it when empty (a failed run left them)
    made = [folder for folder in path.parents if not folder.exists()]
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        what = f"the maps of {stem} in {output}" if stem is not None else str(output)
        raise ValueError(f"another run is writing {what} now (it holds {path}); wait for it to end, or choose "
                         "another output") from None
    try:
        yield
    finally:
        lock.release()
        path.unlink(missing_ok=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
