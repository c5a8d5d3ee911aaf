"""Running the package's step generators with plain callbacks (for scripts and the CLI; napari's
workers consume the generators directly)."""
from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

P = TypeVar("P")
R = TypeVar("R")


def drive(
    run: Generator[P, None, R],
    progress: Callable[[P], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[R | None, bool]:
    """(return value, cancelled): calls ``progress`` with every yielded item and polls ``cancel``
    after each; a cancelled generator is closed at once, so it stops within one step."""
    try:
        while True:
            item = next(run)
            if progress is not None:
                progress(item)
            if cancel is not None and cancel():
                run.close()
                return None, True
    except StopIteration as stop:
        return stop.value, False


def relay(run: Generator[P, None, R], report: Callable[[P], object]) -> Generator[object, None, R]:
    """``run``'s items passed on as ``report`` makes them, and its return value returned: one generator's
    progress shown in another's terms (closed with it, so a cancel stops both)."""
    try:
        while True:
            yield report(next(run))
    except StopIteration as stop:
        return stop.value
