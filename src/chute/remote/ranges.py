"""Rows of an uncached shard read with ranged requests: only the bytes a batch needs cross the network.

A shard is an Arrow IPC file, so its layout is known once its ends are read: one request fetches
the file's first and last 16 KiB (the schema and record-batch metadata at the start, the footer at
the end) into a sparse local file of the shard's size, which is then mapped like a whole shard.
Every column's buffers sit at known offsets in that file, so a row's bytes are one range per
fixed-size field, and for bytes, text and ragged fields two (its two offsets, then its values).
Ranges close together are merged into one request.  Fetched rows are tracked; rows already
fetched cost nothing.  The sparse file is unlinked as soon as it is mapped, so nothing
half-written is ever visible, and it disappears with the process.

Ranged bytes cannot be checked on arrival (the manifest has one sha256 per shard), so they are
checked as soon as possible: when every row of a shard has been fetched (an exact shuffle gets
there within an epoch) the file is checked against the manifest's sha256 and moved into the shard
cache, so the next epoch reads it like any cached shard; when the whole shard arrives in the cache
first, the rows fetched by ranges are compared with it.  A difference raises
:class:`chute.RemoteError`: rows already used may have been wrong.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Optional

import numpy as np

from chute.errors import FormatError
from chute.format.manifest import ShardInfo
from chute.format.shard import ShardView, sha256_file
from chute.remote.store import Store
from chute.spec import Field

__all__ = ["ENDS", "MERGE_GAP", "PartialShard", "fetch_rows", "merge", "open_partials"]

ENDS = 16 << 10  # bytes fetched at each end of the file to learn its layout
MERGE_GAP = 64 << 10  # ranges closer than this are fetched as one request


class PartialShard:
    """A shard of which only some rows are local, in a sparse file mapped as a :class:`ShardView`.

    Made empty; :func:`open_partials` fetches the ends of several at once and maps them.
    """

    def __init__(self, store: Store, info: ShardInfo, fields: Sequence[Field], directory: str) -> None:
        self.store, self.info, self._fields = store, info, fields
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{info.sha256}.{os.getpid()}.{threading.get_ident()}.partial")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        weakref.finalize(self, os.close, self.fd)
        os.ftruncate(self.fd, info.bytes)
        self.fetched_bytes = 0
        self._have = np.zeros(info.rows, dtype=bool)
        self._lock = threading.Lock()

    def ends(self) -> np.ndarray:
        """The first and last ENDS bytes: schema and batch metadata, and the footer."""
        size = self.info.bytes
        return merge(np.array([(0, min(ENDS, size)), (max(0, size - ENDS), size)]))

    def footer_rest(self) -> np.ndarray:
        """What the ends missed of a footer longer than ENDS (its length is in the trailer)."""
        size = self.info.bytes
        footer = int.from_bytes(os.pread(self.fd, 4, size - 10), "little", signed=True)
        if 0 < footer <= size - 10 and size - 10 - footer < size - ENDS:
            return np.array([(size - 10 - footer, size - ENDS)])
        return np.empty((0, 2), np.int64)

    def map(self) -> None:
        """Map the file as a shard (FormatError if the ends did not hold its layout)."""
        self.view = ShardView(self.path, self._fields, self.info, partial=True)
        self._columns = self.view.columns

    @property
    def complete(self) -> bool:
        return bool(self._have.all())

    def missing(self, rows: np.ndarray) -> np.ndarray:
        """The rows (local indices, sorted, unique) among ``rows`` that are not here yet."""
        with self._lock:
            return np.unique(rows[~self._have[rows]])

    def first_spans(self, rows: np.ndarray, gap: int = MERGE_GAP) -> np.ndarray:
        """Byte ranges of the rows' fixed-size values and of the two offsets of each other value."""
        spans = []
        for column in self._columns:
            if isinstance(column, np.ndarray):
                start, size = self._offset(column) + rows * column.strides[0], column.strides[0]
            else:
                start, size = self._offset(column.offsets) + rows * 8, 16
            spans.append(np.stack([start, start + size], axis=1))
        return merge(np.concatenate(spans), gap) if spans else np.empty((0, 2), np.int64)

    def value_spans(self, rows: np.ndarray, gap: int = MERGE_GAP) -> np.ndarray:
        """Byte ranges of the rows' bytes, text and ragged values (their offsets already here)."""
        spans = [np.empty((0, 2), np.int64)]
        for column in self._columns:
            if not isinstance(column, np.ndarray):
                values = column.data if hasattr(column, "data") else column.values
                base, itemsize = self._offset(values), values.itemsize
                spans.append(
                    base + np.stack([column.offsets[rows], column.offsets[rows + 1]], axis=1) * itemsize
                )
        return merge(np.concatenate(spans), gap)

    def _offset(self, array: np.ndarray) -> int:
        return int(array.ctypes.data - self.view.base) if array.size else 0

    def write(self, spans: np.ndarray | Sequence[tuple[int, int]], data: Sequence[bytes]) -> int:
        """Write each fetched range where it belongs in the sparse file; the bytes written."""
        for (start, _), chunk in zip(spans, data, strict=True):
            os.pwrite(self.fd, chunk, int(start))
        return sum(len(chunk) for chunk in data)

    def mark(self, rows: np.ndarray, fetched: int) -> None:
        """The rows are here now, ``fetched`` bytes were written for them."""
        with self._lock:
            self._have[rows] = True
            self.fetched_bytes += fetched

    def check(self, path: str) -> None:
        """Compare the rows fetched here with the same bytes of the (checked) whole shard at ``path``."""
        with self._lock:
            rows = np.flatnonzero(self._have)
        with open(path, "rb") as whole:
            for spans in (self.first_spans(rows, 0), self.value_spans(rows, 0)):  # only bytes fetched
                for start, end in spans.tolist():
                    if os.pread(self.fd, end - start, start) != os.pread(whole.fileno(), end - start, start):
                        raise OSError(
                            f"bytes {start}-{end} fetched by ranged requests differ from the shard's"
                        )

    def checked_copy(self, temporary: str) -> None:
        """Write the (complete) shard to ``temporary`` and check it against the manifest."""
        with open(temporary, "wb") as out:
            done = 0
            while done < self.info.bytes:
                done += os.sendfile(out.fileno(), self.fd, done, self.info.bytes - done)
        if sha256_file(temporary) != self.info.sha256:
            raise OSError(f"the ranged reads of {self.info.file} do not match the manifest's sha256")


def merge(spans: np.ndarray, gap: int = MERGE_GAP) -> np.ndarray:
    """Byte ranges ``[[start, end], ...]`` sorted, with those closer than ``gap`` joined."""
    spans = spans[spans[:, 1] > spans[:, 0]]
    if not len(spans):
        return spans
    spans = spans[np.argsort(spans[:, 0], kind="stable")]
    reach = np.maximum.accumulate(spans[:, 1])
    new = np.concatenate([[True], spans[1:, 0] > reach[:-1] + gap])
    starts = spans[new, 0]
    ends = reach[np.concatenate([np.flatnonzero(new)[1:] - 1, [len(spans) - 1]])]
    return np.stack([starts, ends], axis=1)


def _round(store: Store, jobs: Sequence[tuple[PartialShard, np.ndarray]]) -> tuple[int, list[int]]:
    """Fetch each part's spans, all in one set of concurrent requests, and write them in place;
    the requests made and the bytes written for each part."""
    data = iter(store.read_ranges([(part.info.file, int(a), int(b)) for part, s in jobs for a, b in s]))
    return sum(len(s) for _, s in jobs), [
        part.write(s, [next(data) for _ in range(len(s))]) for part, s in jobs
    ]


def open_partials(store: Store, parts: Sequence[PartialShard]) -> tuple[list[Optional[PartialShard]], int]:
    """Fetch the ends of new partial shards together and map them; None for one whose layout the
    ends did not hold (it is read whole instead); and the requests made.  Their files are unlinked
    whatever happens."""
    requests = 0
    try:
        for spans_of in (PartialShard.ends, PartialShard.footer_rest):
            made, fetched = _round(store, [(part, spans_of(part)) for part in parts])
            requests += made
            for part, nbytes in zip(parts, fetched, strict=True):
                part.fetched_bytes += nbytes
        opened: list[Optional[PartialShard]] = []
        for part in parts:
            try:
                part.map()
                opened.append(part)
            except FormatError:
                opened.append(None)
        return opened, requests
    finally:
        for part in parts:
            os.unlink(part.path)  # the map and the descriptor keep it; nothing is left behind


def fetch_rows(store: Store, wanted: Sequence[tuple[PartialShard, np.ndarray]]) -> tuple[int, int]:
    """Fetch the given rows of several partial shards: all their ranges in two rounds of concurrent
    requests (fixed-size values and offsets, then the values the offsets point to).  Returns the
    number of requests and of bytes fetched."""
    wanted = [(part, rows) for part, rows in ((p, p.missing(r)) for p, r in wanted) if len(rows)]
    requests, fetched = 0, [0] * len(wanted)
    for spans_of in (PartialShard.first_spans, PartialShard.value_spans):
        made, written = _round(store, [(part, spans_of(part, rows)) for part, rows in wanted])
        requests += made
        fetched = [a + b for a, b in zip(fetched, written, strict=True)]
    for (part, rows), nbytes in zip(wanted, fetched, strict=True):
        part.mark(rows, nbytes)
    return requests, sum(fetched)
