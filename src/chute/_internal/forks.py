"""State a forked worker process must not inherit: locks, thread pools, connections.

Process workers start with ``fork`` by default, and a fork copies the parent's memory as it is at
that instant, but only the thread that forked.  A lock another thread held then stays held for
ever in the child; a thread pool's threads are gone, so work queued on it never runs (a remote
dataset read in the parent, then in forked workers, waited for its shard fetches for ever).

Objects with such state make it in ``_per_process()`` and call :func:`per_process` (from
``__init__`` and ``__setstate__``): it is made then, and again in every forked child, before
anything else runs there.  :class:`LockPerProcess` does this for the usual case, one ``_lock``.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol, TypeVar

__all__ = ["LockPerProcess", "per_process"]


class _PerProcess(Protocol):
    def _per_process(self) -> None: ...


T = TypeVar("T", bound=_PerProcess)
_registered: weakref.WeakSet[_PerProcess] = weakref.WeakSet()


def per_process(owner: T) -> T:
    """Call ``owner._per_process()`` now, and in every child this process forks from now on
    (while ``owner`` lives); ``owner`` is returned."""
    owner._per_process()
    _registered.add(owner)
    return owner


class LockPerProcess:
    """A mixin for objects with a ``_lock`` of each process's own: made by ``per_process(self)``
    (call it in ``__init__``), again in each forked child and after unpickling; never pickled."""

    _lock: threading.Lock

    def _per_process(self) -> None:
        self._lock = threading.Lock()  # (in a forked child: a thread of the parent may have held it)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        per_process(self)


def _renew() -> None:
    for owner in list(_registered):
        owner._per_process()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew)
