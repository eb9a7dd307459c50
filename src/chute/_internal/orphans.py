"""Worker processes end when the process they work for is gone, even while busy.

A worker notices its parent's death when it next reads from their pipe; one stuck in a map that
never returns, or a conversion pool's worker waiting on a queue whose write end it holds itself,
never does, and would live on, orphaned, after a SIGKILL of the trainer.  :func:`exit_with` gives
the worker a watcher thread that ends it the moment the owner exits.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Optional

__all__ = ["exit_with"]


def exit_with(owner: int, before: Optional[Callable[[], None]] = None) -> None:
    """End this process (after ``before()``, its clean-up) as soon as process ``owner`` exits."""
    try:
        handle: Optional[int] = os.pidfd_open(owner)  # readable once the process has exited
    except (AttributeError, OSError):  # (not Linux 5.3+: poll instead)
        handle = None

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(owner):
                time.sleep(0.5)
        if before is not None:
            with contextlib.suppress(BaseException):
                before()
        os._exit(1)

    threading.Thread(target=watch, name="chute-orphan-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
