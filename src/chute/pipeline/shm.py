"""Shared-memory segments that carry batches from worker processes to the loader, unpickled.

A segment is a file in ``/dev/shm`` (RAM, shared between processes), reserved in full with
``posix_fallocate`` when it is made: if ``/dev/shm`` is too small (a container's 64 MB default) the
reservation fails cleanly and the segment is made in the temporary directory instead (file-backed
shared memory, through the page cache), rather than the process dying of SIGBUS when a page
cannot be found.  The loader owns every segment (it makes, adopts and deletes them); workers write
into the segment each task names.  Arrays travel as (dtype, shape, offset) records; anything that
is not a plain array (bytes, strings, ragged rows) travels pickled beside them.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import warnings
from typing import Any

import numpy as np

__all__ = ["Segments", "create_segment", "pack", "segment_dirs", "unpack"]

ALIGN = 64
Layout = list[tuple[str, Any, Any, int]]  # ("a", dtype str, shape, offset) or ("o", value, None, 0)


def segment_dirs() -> list[str]:
    """Where segments go, in order of preference: ``$CHUTE_SHM_DIR`` or /dev/shm, then the temp dir."""
    first = os.environ.get("CHUTE_SHM_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "")
    dirs = [d for d in (first, tempfile.gettempdir()) if d]
    return list(dict.fromkeys(dirs))


def create_segment(name: str, size: int, dirs: list[str]) -> str:
    """A file of ``size`` bytes, all reserved, in the first of ``dirs`` with room; its path."""
    failures = []
    for directory in dirs:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            failures.append(f"{directory}: {error.strerror}")
            continue
        try:
            os.posix_fallocate(fd, 0, max(size, 1))
        except OSError as error:  # ENOSPC on a small /dev/shm, or no fallocate on that file system
            failures.append(f"{directory}: {error.strerror}")
            os.unlink(path)
            continue
        finally:
            os.close(fd)
        if failures:
            warnings.warn(
                f"chute: no room for a {size / 2**20:.1f} MB batch segment in {dirs[0]} ({failures[0]}); "
                f"using file-backed shared memory in {directory} instead (give /dev/shm more room, e.g. "
                "docker run --shm-size=1g, for the fastest path)",
                ResourceWarning,
                stacklevel=2,
            )
        return path
    raise OSError(f"chute: could not make a shared-memory segment of {size} bytes ({'; '.join(failures)})")


def layout_size(leaves: list[Any]) -> int:
    """Bytes a batch's arrays take in a segment, with each array aligned."""
    total = 0
    for leaf in leaves:
        if _shared(leaf):
            total = _aligned(total) + leaf.nbytes
    return total


class Segments:
    """Open maps of segment files, by path, for one process."""

    def __init__(self) -> None:
        self._maps: dict[str, mmap.mmap] = {}

    def map(self, path: str) -> mmap.mmap:
        mapped = self._maps.get(path)
        if mapped is None:
            with open(path, "r+b") as f:
                mapped = mmap.mmap(f.fileno(), 0)
            self._maps[path] = mapped
        return mapped

    def forget(self, path: str) -> None:
        mapped = self._maps.pop(path, None)
        if mapped is not None:
            mapped.close()

    def close(self) -> None:
        for path in list(self._maps):
            self.forget(path)


def pack(leaves: list[Any], path: str, segments: Segments) -> Layout:
    """Write the arrays of ``leaves`` into segment ``path``; the records to find them again."""
    buffer = segments.map(path)
    layout: Layout = []
    offset = 0
    for leaf in leaves:
        if _shared(leaf):
            offset = _aligned(offset)
            target: np.ndarray = np.ndarray(leaf.shape, leaf.dtype, buffer=buffer, offset=offset)
            np.copyto(target, leaf)
            layout.append(("a", leaf.dtype.str, leaf.shape, offset))
            offset += leaf.nbytes
        else:
            layout.append(("o", leaf, None, 0))
    return layout


def unpack(layout: Layout, path: str, segments: Segments) -> list[Any]:
    """The leaves ``layout`` describes, copied out of segment ``path`` (which can then be reused)."""
    buffer = segments.map(path) if any(kind == "a" for kind, *_ in layout) else None
    leaves = []
    for kind, what, shape, offset in layout:
        if kind == "a":
            view: np.ndarray = np.ndarray(shape, np.dtype(what), buffer=buffer, offset=offset)
            leaves.append(view.copy())
        else:
            leaves.append(what)
    return leaves


def _shared(leaf: Any) -> bool:
    return isinstance(leaf, np.ndarray) and not leaf.dtype.hasobject and leaf.nbytes > 0


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN
