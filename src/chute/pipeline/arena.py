"""Where batch columns are allocated: ordinary memory, or straight into a shared-memory segment.

A worker process reads a batch inside ``with arena(buffer):``; every fixed-shape batch column built
meanwhile (:meth:`chute.spec.Field.empty`, :meth:`chute.spec.Field.stack`) is carved out of
``buffer``, the segment the loader will read the batch from, so the batch is written once and never
copied to get there.  Outside an arena (inline reads, thread workers) columns are plain ``np.empty``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import numpy as np

__all__ = ["ALIGN", "Arena", "aligned", "arena", "batch_array", "view_at"]

ALIGN = 64
_local = threading.local()


def aligned(offset: int) -> int:
    """``offset`` rounded up to a multiple of ALIGN bytes."""
    return -(-offset // ALIGN) * ALIGN


def view_at(whole: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array of ``shape`` and ``dtype`` that starts ``offset`` bytes into the uint8 ``whole``
    (a view: writing it writes ``whole``, which must hold it)."""
    size = math.prod(shape) * dtype.itemsize
    return whole[offset : offset + size].view(dtype).reshape(shape)


class Arena:
    """A bump allocator over a writable buffer: arrays laid out one after another, aligned.

    It also keeps what it could not place: ``wanted`` (bytes asked of it in all, placed or not)
    and the addresses of the arrays made elsewhere for lack of room, so a worker can size the
    next buffer to build a whole batch in place, intermediate arrays (a map's) included.
    """

    def __init__(self, buffer: Any) -> None:
        self.whole = np.frombuffer(buffer, dtype=np.uint8)
        self.address = self.whole.__array_interface__["data"][0]
        self.used = 0
        self.wanted = 0
        self.refused: set[int] = set()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> Optional[np.ndarray]:
        """An uninitialised array in the buffer, or None if it has no room left."""
        size = math.prod(shape) * dtype.itemsize
        self.wanted = aligned(self.wanted) + size
        start = aligned(self.used)
        if start + size > len(self.whole):
            return None
        self.used = start + size
        return view_at(self.whole, start, shape, dtype)

    def refuse(self, array: np.ndarray) -> np.ndarray:
        """Note that ``array`` was made outside the buffer for lack of room (it counts in ``wanted``)."""
        self.refused.add(array.__array_interface__["data"][0])
        return array

    def offset_of(self, array: np.ndarray) -> Optional[int]:
        """Where ``array`` sits in the buffer, if it is a C-contiguous run of it; else None."""
        start = array.__array_interface__["data"][0] - self.address
        inside = start >= 0 and start + array.nbytes <= self.used
        return start if inside and array.flags.c_contiguous else None


@contextmanager
def arena(buffer: Any) -> Iterator[Arena]:
    """Allocate the batch columns built in this thread, meanwhile, in ``buffer``."""
    previous = getattr(_local, "arena", None)
    _local.arena = made = Arena(buffer)
    try:
        yield made
    finally:
        _local.arena = previous


def batch_array(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised batch column: in the current arena if there is one with room."""
    current: Optional[Arena] = getattr(_local, "arena", None)
    if current is not None and shape and shape[0]:
        out = current.take(shape, dtype)
        return out if out is not None else current.refuse(np.empty(shape, dtype=dtype))
    return np.empty(shape, dtype=dtype)
