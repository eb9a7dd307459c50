"""``madvise(MADV_WILLNEED)`` on the rows of any memory-mapped numpy array (Linux; else nothing)."""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

import numpy as np

__all__ = ["advise_rows"]

_MADV_WILLNEED = getattr(mmap, "MADV_WILLNEED", 3)
_LIBC: Any = None


def advise_rows(array: np.ndarray, starts: np.ndarray, length: int) -> None:
    """Ask the kernel to read rows ``[s, s + length)`` of ``array`` for each ``s``, in bulk."""
    global _LIBC
    if (
        array.flags.owndata
        or not array.flags.c_contiguous
        or not sys.platform.startswith("linux")
        or not len(array)
    ):
        return  # only arrays that view someone else's (mapped) memory
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    page, row, base = mmap.PAGESIZE, array.strides[0], array.ctypes.data
    for start in starts.tolist():
        stop = min(start + length, len(array))
        if stop <= start:
            continue
        first = base + start * row
        aligned = first - first % page
        _LIBC.madvise(
            ctypes.c_void_p(aligned), ctypes.c_size_t(first - aligned + (stop - start) * row), _MADV_WILLNEED
        )
