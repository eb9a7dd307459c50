"""State a forked worker process must not inherit: locks, thread pools, connections.

Process workers start with ``fork`` by default, and a fork copies the parent's memory as it is at
that instant, but only the thread that forked.  A lock another thread held then stays held for
ever in the child; a thread pool's threads are gone, so work queued on it never runs (a remote
dataset read in the parent, then in forked workers, waited for its shard fetches for ever).

Objects with such state register themselves with :func:`renew_after_fork`; in a forked child,
before anything else runs there, each one's ``_after_fork()`` replaces the state with fresh state.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol, TypeVar

__all__ = ["renew_after_fork"]


class _Renewable(Protocol):
    def _after_fork(self) -> None: ...


T = TypeVar("T", bound=_Renewable)
_registered: weakref.WeakSet[_Renewable] = weakref.WeakSet()


def renew_after_fork(owner: T) -> T:
    """Call ``owner._after_fork()`` in every child this process forks from now on (while ``owner``
    lives); ``owner`` is returned."""
    _registered.add(owner)
    return owner


def _renew() -> None:
    for owner in list(_registered):
        owner._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew)
