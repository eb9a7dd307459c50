"""Page-cache helpers shared by the cold-read benchmarks."""

from __future__ import annotations

import os


def evict(*paths: str) -> None:
    """Drop the files' pages from the page cache (pages a live memory map holds stay)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
