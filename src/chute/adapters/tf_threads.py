"""Interpreter exit while a TensorFlow thread is asking chute for batches.

tf.data's ``from_generator`` (behind ``loader.tf()``, and behind Keras's PyDataset adapter on the
TensorFlow backend) calls Python from its own prefetch thread, ahead of training.  When the
interpreter exits mid-epoch (Ctrl-C, SIGTERM, an error), that thread may call into Python once
finalisation has begun; Python ends such a thread as it takes the GIL, and TensorFlow, destroying
the iterator, then waits for it for ever (or crashes).  So at exit, before finalisation, chute
stops serving batches to other threads (the generator ends with a ``WorkerError``) and waits, a
bounded time, until no thread is running Python on TensorFlow's behalf.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from types import FrameType
from typing import Optional

from chute.adapters.contract import LoaderLike
from chute.errors import WorkerError

__all__ = ["serving"]

_exiting = threading.Event()
_served: weakref.WeakSet[LoaderLike] = weakref.WeakSet()
_PY_FUNC = os.path.join("tensorflow", "python", "ops", "script_ops.py")  # TensorFlow's calls into Python


def serving(loader: LoaderLike) -> None:
    """Call before reading a batch for TensorFlow: refuses once the interpreter is exiting."""
    if _exiting.is_set():
        raise WorkerError("chute: the interpreter is exiting; no more batches are served")
    if threading.current_thread() is not threading.main_thread():
        _served.add(loader)


def _stop_serving(quiet: float = 0.1, limit: float = 5.0) -> None:
    _exiting.set()
    served = list(_served)
    if not served:
        return
    for loader in served:
        loader.close()  # a batch being waited for fails now instead of after its read
    main = threading.main_thread().ident
    deadline = time.monotonic() + limit
    calm = time.monotonic()
    while time.monotonic() < deadline:
        now = time.monotonic()
        if any(ident != main and _from_tensorflow(f) for ident, f in sys._current_frames().items()):
            calm = now
        elif now - calm >= quiet:
            return
        time.sleep(0.01)


def _from_tensorflow(frame: Optional[FrameType]) -> bool:
    """Whether this stack was entered from TensorFlow (a py_func, as from_generator's calls are)."""
    while frame is not None:
        if frame.f_code.co_filename.endswith(_PY_FUNC):
            return True
        frame = frame.f_back
    return False


atexit.register(_stop_serving)
