"""Shared-memory segments that carry batches from worker processes to the loader, unpickled.

A segment is a file in ``/dev/shm`` (RAM, shared between processes), reserved in full with
``posix_fallocate`` when it is made: if ``/dev/shm`` is too small (a container's 64 MB default) the
reservation fails cleanly and the segment is made in the temporary directory instead (file-backed
shared memory, through the page cache), rather than the process dying of SIGBUS when a page
cannot be found.  The loader owns every segment (it makes, adopts and deletes them); workers write
into the segment each task names, building batch columns in it directly (:mod:`chute.pipeline.arena`).
Arrays travel as (dtype, shape, offset) records; anything that is not a plain array (bytes,
strings, ragged rows) travels pickled beside them.  The loader hands out the arrays where they lie
(:class:`Lease`, no copy); a segment is reused once every array of its batch has been dropped.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from chute.pipeline.arena import Arena, aligned, view_at

__all__ = ["Segments", "arena_size", "create_segment", "layout_size", "pack", "segment_dirs", "unpack"]

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


def layout_size(leaves: list[Any], arena: Optional[Arena] = None) -> int:
    """Bytes a batch's arrays take in a segment, with each array aligned: after what ``arena``
    used, for the arrays that are not in it already."""
    total = arena.used if arena is not None else 0
    for leaf in leaves:
        if _shared(leaf) and (arena is None or arena.offset_of(leaf) is None):
            total = aligned(total) + leaf.nbytes
    return total


def arena_size(leaves: list[Any], arena: Arena) -> int:
    """Bytes a segment needs for the batch to be built in it whole, next time: everything asked of
    ``arena`` (intermediate arrays too), and the arrays of ``leaves`` made without asking it."""
    total = arena.wanted
    for leaf in leaves:
        made_apart = _shared(leaf) and arena.offset_of(leaf) is None
        if made_apart and leaf.__array_interface__["data"][0] not in arena.refused:
            total = aligned(total) + leaf.nbytes
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
            with contextlib.suppress(BufferError):  # arrays handed out still use it: unmapped when dropped
                mapped.close()

    def close(self) -> None:
        for path in list(self._maps):
            self.forget(path)


def pack(leaves: list[Any], path: str, segments: Segments, arena: Optional[Arena] = None) -> Layout:
    """Write the arrays of ``leaves`` into segment ``path``; the records to find them again.

    Arrays already in ``arena`` (the segment's own, built there) are recorded where they lie; the
    rest are copied after what the arena used.
    """
    buffer = segments.map(path)
    layout: Layout = []
    offset = arena.used if arena is not None else 0
    for leaf in leaves:
        if not _shared(leaf):
            layout.append(("o", leaf, None, 0))
            continue
        place = arena.offset_of(leaf) if arena is not None else None
        if place is None:
            place = offset = aligned(offset)
            target: np.ndarray = np.ndarray(leaf.shape, leaf.dtype, buffer=buffer, offset=place)
            np.copyto(target, leaf)
            offset += leaf.nbytes
        layout.append(("a", leaf.dtype.str, leaf.shape, place))
    return layout


class Lease:
    """Holds a segment for the arrays handed out of it; ``release`` runs once they are all gone.

    numpy keeps this object as the ``base`` of every view of the arrays (it exposes the segment
    through ``__array_interface__``), so the segment is reused only when nothing can see it.
    """

    __slots__ = ("__array_interface__", "__weakref__", "_whole")

    def __init__(self, buffer: mmap.mmap, release: Callable[[], None]) -> None:
        self._whole = np.frombuffer(buffer, dtype=np.uint8)
        self.__array_interface__ = self._whole.__array_interface__
        weakref.finalize(self, release)


def unpack(layout: Layout, path: str, segments: Segments, release: Callable[[], None]) -> list[Any]:
    """The leaves ``layout`` describes, in segment ``path`` itself; ``release`` is called when none of
    them is in use any more (at once if the batch has no arrays in the segment)."""
    if not any(kind == "a" for kind, *_ in layout):
        release()
        return [what for _, what, _, _ in layout]
    whole = np.asarray(Lease(segments.map(path), release))
    leaves = []
    for kind, what, shape, offset in layout:
        if kind == "a":
            leaves.append(view_at(whole, offset, shape, np.dtype(what)))
        else:
            leaves.append(what)
    return leaves


def _shared(leaf: Any) -> bool:
    return isinstance(leaf, np.ndarray) and not leaf.dtype.hasobject and leaf.nbytes > 0
