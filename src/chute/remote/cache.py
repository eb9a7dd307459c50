"""A local directory of shards fetched from object storage: bounded, shared, never half-written.

Entries are named by the shard's sha256 (from the manifest), so a re-converted dataset never
reads a stale shard and identical shards are stored once.  A shard is downloaded to a temporary
file, its checksum checked, then renamed into place: a reader sees the whole file or none.  One
process fetches a given shard while the others wait on its lock (``flock``) and then use it.
Every use marks the entry's time; after each fetch the least recently used entries are removed
until the directory is within its size (the entry just fetched always stays).  Removing a file
another process has mapped is safe on POSIX: its map keeps the data until it lets go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["ShardCache"]


@contextmanager
def _locked(path: str) -> Iterator[None]:
    """``path``'s exclusive ``flock``, released by an explicit unlock: closing the descriptor
    alone does not release it while a copy of it lives on, and a process forked meanwhile (a
    worker started while a fetch thread held the lock) has one, so its own threads waited on the
    lock for ever."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ShardCache:
    """Shards by checksum in ``root``, at most ``limit`` bytes (plus the shard being used)."""

    def __init__(self, root: str, limit: int) -> None:
        self.dir = os.path.join(root, "shards")
        self.locks = os.path.join(root, "locks")
        os.makedirs(self.dir, exist_ok=True)
        os.makedirs(self.locks, exist_ok=True)
        self.limit = limit
        self._counts = {"cache_hits": 0, "cache_misses": 0, "fetched_bytes": 0}
        self._lock = threading.Lock()

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, f"{digest}.arrow")

    def cached(self, digest: str, size: int) -> bool:
        """Whether the shard is here whole; marks it as just used."""
        path = self.path(digest)
        try:
            if os.stat(path).st_size != size:
                return False
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def get(self, digest: str, size: int, fetch: Callable[[str], None], fetched: bool = True) -> str:
        """The local path of the shard, fetched with ``fetch(temporary_path)`` if it is not here.

        ``fetch`` must leave exactly the shard's bytes in the file (it checks the checksum itself);
        the file is renamed into place only then.  ``fetched=False``: ``fetch`` copies bytes that
        are local already (not counted as a miss or as bytes fetched).
        """
        if self.cached(digest, size):
            self._count("cache_hits", 1)
            return self.path(digest)
        with _locked(os.path.join(self.locks, f"{digest[:2]}.lock")):
            if self.cached(digest, size):  # another process fetched it while this one waited
                self._count("cache_hits", 1)
                return self.path(digest)
            temporary = f"{self.path(digest)}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                fetch(temporary)
                os.replace(temporary, self.path(digest))
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        if fetched:
            self._count("cache_misses", 1)
            self._count("fetched_bytes", size)
        self.evict(keep=digest)
        return self.path(digest)

    def evict(self, keep: str = "") -> list[str]:
        """Remove least recently used shards until the cache is within its limit; their digests."""
        removed = []
        with _locked(os.path.join(self.locks, "evict.lock")):
            entries = []
            for entry in os.scandir(self.dir):
                if entry.name.endswith(".arrow"):
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:
                        continue
                    entries.append((stat.st_mtime_ns, stat.st_size, entry.name[: -len(".arrow")]))
            total = sum(size for _, size, _ in entries)
            for _, size, digest in sorted(entries):
                if total <= self.limit:
                    break
                if digest == keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path(digest))
                total -= size
                removed.append(digest)
        return removed

    def size(self) -> int:
        """Bytes of shards in the cache now."""
        return sum(e.stat().st_size for e in os.scandir(self.dir) if e.name.endswith(".arrow"))

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def drain(self) -> dict[str, int]:
        """The counts since the last call (hits, misses, bytes fetched), reset to zero."""
        with self._lock:
            counts, self._counts = self._counts, dict.fromkeys(self._counts, 0)
        return counts
