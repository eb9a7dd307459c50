"""Prefetch: the batches a consumer will ask for next are already being read when it asks.

:class:`Lookahead` keeps one future per expected position, up to ``depth`` of them, started on
whatever runs reads (a thread pool or worker processes).  Iteration asks for positions in order;
Keras asks by batch number, usually in order too; a position that was not foreseen is read on
demand and the guesses that no longer fit are dropped, so memory stays bounded by ``depth``
batches whatever the access pattern.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, Optional, TypeVar

__all__ = ["Lookahead", "Stalled"]

P = TypeVar("P", bound=Hashable)
T = TypeVar("T")


class Stalled(Exception):
    """The result at a position did not come within the timeout (``future`` is still running)."""

    def __init__(self, future: Future[Any]) -> None:
        super().__init__("stalled")
        self.future = future


class Lookahead(Generic[P, T]):
    """Futures for upcoming positions, ``depth`` at most.

    The function that starts a position is passed to each :meth:`get` rather than kept, so the
    lookahead holds no reference back to its owner (no cycle that would keep workers alive).
    """

    def __init__(self, depth: int) -> None:
        self._depth = depth
        self._futures: dict[P, Future[T]] = {}
        self._lock = threading.Lock()

    def get(
        self,
        position: P,
        upcoming: Sequence[P],
        start: Callable[[P], Future[T]],
        timeout: Optional[float] = None,
    ) -> tuple[T, int]:
        """The result at ``position`` and how many upcoming ones were ready when it was asked.

        ``upcoming`` are the positions expected next, nearest first; the first ``depth`` of them
        are started (or kept) and every other pending guess is dropped.  An exception raised while
        producing ``position`` is raised here, with its original traceback; :class:`Stalled` if it
        takes more than ``timeout`` seconds.
        """
        with self._lock:
            future = self._futures.pop(position, None)
            ready = sum(f.done() for f in self._futures.values()) + (future is not None and future.done())
            if future is None:
                future = start(position)
            keep = list(upcoming[: self._depth])
            for stale in [p for p in self._futures if p not in keep]:
                self._futures.pop(stale).cancel()
            for next_position in keep:
                if next_position not in self._futures and next_position != position:
                    self._futures[next_position] = start(next_position)
        try:
            return future.result(timeout), ready
        except TimeoutError:
            if future.done():  # (it raised a TimeoutError of its own)
                raise
            raise Stalled(future) from None

    def clear(self) -> None:
        """Drop every guess (the position moved somewhere unforeseen)."""
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            future.cancel()
