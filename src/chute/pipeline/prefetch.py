"""Run the next batches' reads on worker threads while the consumer uses the current one.

numpy's gathers release the GIL, so threads read batches in parallel without copying or pickling
anything; results come back in order, and a batch counts as consumed only when it is handed over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

__all__ = ["prefetch"]

P = TypeVar("P")
T = TypeVar("T")


def prefetch(
    produce: Callable[[P], T], positions: Iterable[P], pool: Executor, depth: int
) -> Iterator[tuple[P, T]]:
    """``(position, produce(position))`` in order, with up to ``depth`` productions in flight.

    An exception raised by ``produce`` is raised here, with its original traceback, when its
    position's turn comes.  Closing the iterator early cancels what has not started.
    """
    upcoming = iter(positions)
    pending: deque[tuple[P, Future[T]]] = deque()

    def submit_next() -> None:
        for position in upcoming:
            pending.append((position, pool.submit(produce, position)))
            return

    try:
        for _ in range(depth):
            submit_next()
        while pending:
            position, future = pending.popleft()
            result = future.result()
            submit_next()
            yield position, result
    finally:
        for _, future in pending:
            future.cancel()
