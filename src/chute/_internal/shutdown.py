"""A clean stop on SIGTERM: the signal a scheduler (Kubernetes, Slurm, a cloud's preemption) sends.

Python's default for SIGTERM ends the process at once: no ``finally`` block, no finalizer, so
worker processes would be orphaned (they notice and stop, see :mod:`chute.pipeline.processes`) and
shared-memory files left in ``/dev/shm``.  While chute holds such resources it turns a SIGTERM into
``SystemExit(143)`` (143 = 128 + SIGTERM, the exit status a killed process reports), so every
``finally`` and finalizer runs and the process ends as it would have, with nothing left behind.
This is done only when no one else handles SIGTERM (the handler is still the default) and from the
main thread; a second SIGTERM while the first is being handled ends the process at once.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Optional

__all__ = ["exit_on_sigterm"]

_terminating = False


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread, if nothing else handles it."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    global _terminating
    if _terminating:  # asked twice: stop now, as the default would have
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _terminating = True
    raise SystemExit(128 + signum)
