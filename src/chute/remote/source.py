"""A chute dataset at a URL: the same Dataset as a local one, its shards fetched into a local cache.

Opening reads the manifest and lists the directory (two requests).  A batch's shards are fetched
together, in parallel, the first time they are needed in a process; the next ``prefetch`` shards
after the highest one a batch touched, and the blocks a block shuffle announces, are fetched in
the background, so a loader going through the data in order or by blocks rarely waits.  Fetched
shards are read through their local map exactly like local ones.

When the dataset is bigger than the cache, a batch that needs only a few rows of an uncached shard
(a random access, an exact shuffle) gets just those rows' bytes with ranged requests (see
:mod:`chute.remote.ranges`): a whole shard would be evicted before most of its rows were used.
A shard whose rows have all come that way is checked and joins the cache.  ``Remote(ranged=True)``
uses ranges even when the dataset fits, while the whole shards come in the background (the first
batches sooner); ``ranged=False`` never.
``loader.stats()["remote"]`` counts shards opened from the cache (``cache_hits``), shards fetched
whole (``cache_misses``), ranged requests, shards completed by ranges (``promoted``) and bytes
fetched.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

import numpy as np

from chute._internal.forks import per_process
from chute.errors import FormatError, RemoteError, explain
from chute.format.manifest import MANIFEST, Manifest, ShardInfo
from chute.format.reader import MANIFEST_LIMIT, ChuteSource, parse_manifest
from chute.format.shard import ShardView, sha256_file
from chute.remote.cache import ShardCache
from chute.remote.ranges import ENDS, MERGE_GAP, PartialShard, fetch_rows, open_partials
from chute.remote.store import Remote, Store
from chute.sources.base import Rows, row_indices
from chute.telemetry.timing import count, stage

__all__ = ["RemoteSource", "read_remote_manifest"]

SPARSE = 4  # a batch needing under 1/SPARSE of an uncached shard's bytes reads them by ranges


class RemoteSource(ChuteSource):
    """Samples of a chute dataset at ``url``, read through a local :class:`ShardCache`."""

    def __init__(self, url: str, manifest: Manifest, remote: Remote) -> None:
        super().__init__(url, manifest)
        self.remote = remote
        per_process(self)

    def _per_process(self) -> None:
        """This process's connection, fetch pool and fetches (a forked worker starts them afresh:
        the parent's pool threads did not come with it)."""
        self._local: Optional[tuple[Store, ShardCache, ThreadPoolExecutor]] = None
        self._pending: dict[int, Future[str]] = {}
        self._fetching = threading.RLock()  # re-entered when a future is done before its callback is added
        self._partials: OrderedDict[int, Optional[PartialShard]] = OrderedDict()  # None: layout unreadable
        self._pinned = threading.local()  # the partial shards the current thread's batch reads

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker processes get the URL, manifest and options; each opens its own connection
        # and shares the cache directory (and its locks) with the others.
        return (RemoteSource, (self.root, self.manifest, self.remote))

    def _parts(self) -> tuple[Store, ShardCache, ThreadPoolExecutor]:
        with self._fetching:
            if self._local is None:
                pool = ThreadPoolExecutor(max(2, self.remote.prefetch), thread_name_prefix="chute-fetch")
                weakref.finalize(self, pool.shutdown, wait=False, cancel_futures=True)
                cache = ShardCache(self.remote.cache_path, self.remote.cache_bytes)
                self._local = (Store(self.root, self.remote), cache, pool)
            return self._local

    def fetch(self, numbers: Any) -> None:
        """Start fetching shards ``numbers`` in the background (those not cached or on their way)."""
        _, cache, pool = self._parts()
        with self._fetching:
            for number in numbers:
                info = self.manifest.shards[number]
                if number in self._pending or cache.cached(info.sha256, info.bytes):
                    continue
                future = pool.submit(self._fetch, number)
                self._pending[number] = future
                future.add_done_callback(functools.partial(self._forget, number))

    def _forget(self, number: int, _: object = None) -> None:
        with self._fetching:
            self._pending.pop(number, None)

    def _fetch(self, number: int) -> str:
        store, cache, _ = self._parts()
        info = self.manifest.shards[number]

        def download(temporary: str) -> None:
            def attempt() -> None:
                store.fs.get_file(store.path(info.file), temporary)
                if os.path.getsize(temporary) != info.bytes or sha256_file(temporary) != info.sha256:
                    raise OSError(
                        f"the download of {info.file} does not match the manifest's size and sha256"
                    )

            store.call(info.file, attempt)

        path = cache.get(info.sha256, info.bytes, download)
        self._drop_evicted(cache)
        return path

    def _drop_evicted(self, cache: ShardCache) -> None:
        """Let go of maps whose cache entry was evicted (by any process), so the disk space returns."""
        for number, view in enumerate(self._views):
            if view is not None and not os.path.exists(cache.path(self.manifest.shards[number].sha256)):
                self._views[number] = None

    def _shard_path(self, number: int) -> str:
        _, cache, _ = self._parts()
        info = self.manifest.shards[number]
        if cache.cached(info.sha256, info.bytes):
            count("cache_hits", 1)
            return cache.path(info.sha256)
        self.fetch([number])
        with self._fetching:
            future = self._pending.get(number)
        with stage("fetch"):
            return future.result() if future is not None else self._fetch(number)

    def _shard(self, number: int) -> ShardView:
        view = self._views[number]
        if view is not None:
            return view
        partial = getattr(self._pinned, "shards", {}).get(number)
        if partial is not None:
            return partial.view
        for _ in range(3):
            view = super()._shard(number)
            try:
                _ = view.columns  # map it now: a later eviction leaves the map readable
                return view
            except FileNotFoundError:  # evicted by another process between fetch and map
                self._views[number] = None
        raise FormatError(
            explain(
                f"shard {self.manifest.shards[number].file} of {self.root} to stay in the cache",
                "evicted three times before it could be opened",
                "Give the cache more room: chute.Remote(cache_size=...) at least a few shards big.",
            )
        )

    def read_rows(self, rows: Rows) -> list[Any]:
        pinned: dict[int, PartialShard] = {}
        if None in self._views:  # some shards are not open here yet (once all are, this costs nothing)
            numbers = self._touched(rows)
            missing = [n for n in numbers if self._views[n] is None]
            fits = self.manifest.bytes <= self.remote.cache_bytes
            ranged = self.remote.ranged is True or (self.remote.ranged == "auto" and not fits)
            if missing and ranged and not isinstance(rows, slice):
                pinned = self._read_ranges(rows, missing)
            if fits:  # whole shards, in parallel (in the background of ranged reads)
                self.fetch(missing)
            else:  # only the shards the batch needs many rows of: the others would be evicted unused
                self.fetch([n for n in missing if n not in pinned])
            if not pinned:
                last = max(numbers, default=-1)
                self.fetch(range(last + 1, min(last + 1 + self.remote.prefetch, len(self.manifest.shards))))
        self._pinned.shards = pinned
        try:
            out = super().read_rows(rows)
        finally:
            self._pinned.shards = {}
        for name, n in self._parts()[1].drain().items():
            count(name, n)
        return out

    def _read_ranges(self, rows: Rows, missing: list[int]) -> dict[int, PartialShard]:
        """Fetch the rows of the uncached shards the batch needs only a few rows of, by ranges."""
        store, cache, _ = self._parts()
        rows = row_indices(rows)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        sparse = []
        for number in missing:
            info, local = self.manifest.shards[number], rows[shard_of == number] - self._starts[number]
            cached = cache.cached(info.sha256, info.bytes)
            if cached or not _sparse(local, info):
                with self._fetching:
                    done = self._partials.pop(number, None)
                if done is not None and cached:
                    self._checked(info, functools.partial(done.check, cache.path(info.sha256)))
                continue
            sparse.append((number, local))
        partials = self._partials_for([number for number, _ in sparse])
        wanted: dict[int, tuple[PartialShard, np.ndarray]] = {}
        for number, local in sparse:
            partial = partials[number]
            if partial is not None:
                wanted[number] = (partial, local)
        if not wanted:
            return {}
        with stage("fetch"):
            requests, fetched = fetch_rows(store, list(wanted.values()))
        count("range_requests", requests)
        count("fetched_bytes", fetched)
        for number, (partial, _) in wanted.items():
            if partial.complete:
                self._promote(number, partial)
        return {number: partial for number, (partial, _) in wanted.items()}

    def _partials_for(self, numbers: list[int]) -> dict[int, Optional[PartialShard]]:
        """The partial shards ``numbers``, the new ones' ends fetched together; None for a shard
        whose layout needs a whole fetch."""
        with self._fetching:
            known = {n: self._partials[n] for n in numbers if n in self._partials}
            for n in known:
                self._partials.move_to_end(n)
        new = [n for n in numbers if n not in known]
        if not new:
            return known
        store, _, _ = self._parts()
        directory = os.path.join(self.remote.cache_path, "partial")
        with stage("fetch"):
            made, requests = open_partials(
                store,
                [PartialShard(store, self.manifest.shards[n], self.spec.fields, directory) for n in new],
            )
        count("range_requests", requests)
        count("fetched_bytes", sum(p.fetched_bytes for p in made if p is not None))
        with self._fetching:
            for number, partial in zip(new, made, strict=True):
                known[number] = self._partials.setdefault(number, partial)
            budget = self.remote.cache_bytes // 2  # partial shards hold at most half the cache's size
            while len(self._partials) > 1 and self._partial_bytes() > budget:
                self._partials.popitem(last=False)  # a thread still reading one keeps it alive
        return known

    def _partial_bytes(self) -> int:
        return sum(p.fetched_bytes for p in self._partials.values() if p is not None)

    def _promote(self, number: int, partial: PartialShard) -> None:
        """A shard whose rows have all been fetched by ranges: checked, then into the cache."""
        _, cache, _ = self._parts()
        info = partial.info
        self._checked(
            info, functools.partial(cache.get, info.sha256, info.bytes, partial.checked_copy, False)
        )
        count("promoted", 1)
        with self._fetching:
            self._partials.pop(number, None)
        self._drop_evicted(cache)

    def _checked(self, info: ShardInfo, check: Callable[[], object]) -> None:
        try:
            check()
        except OSError as error:
            raise RemoteError(
                explain(
                    f"the rows of {self.root}/{info.file} fetched by ranged requests to match its sha256",
                    error,
                    "A transfer was damaged and rows read from this shard may have been wrong. Use "
                    "chute.Remote(ranged=False) to check every shard before any of it is used.",
                )
            ) from None

    def will_need(self, starts: np.ndarray, length: int) -> None:
        """The rows ``[s, s + length)`` come soon (block shuffle's next window): fetch their shards."""
        first = np.searchsorted(self._starts, starts, side="right") - 1
        last = np.searchsorted(self._starts, np.minimum(starts + length, len(self)) - 1, side="right") - 1
        self.fetch(
            sorted({n for a, b in zip(first.tolist(), last.tolist(), strict=True) for n in range(a, b + 1)})
        )

    def _touched(self, rows: Rows) -> list[int]:
        if isinstance(rows, slice):
            if rows.stop <= rows.start:
                return []
            ends = np.array([rows.start, rows.stop - 1])
        else:
            ends = row_indices(rows)
        shards = np.searchsorted(self._starts, ends, side="right") - 1
        if isinstance(rows, slice):
            return list(range(int(shards[0]), int(shards[1]) + 1))
        return np.unique(shards).tolist()


def _sparse(rows: np.ndarray, info: ShardInfo) -> bool:
    """Whether reading ``rows`` of the shard by ranges (close ones merged) fetches under 1/SPARSE of it."""
    if info.bytes <= SPARSE * ENDS:  # learning the layout alone would cost most of the shard
        return False
    row = info.bytes / max(1, info.rows)
    gaps = np.diff(np.unique(rows)) * row
    return (len(gaps) + 1) * row + float(gaps[gaps <= MERGE_GAP].sum()) < info.bytes / SPARSE


def read_remote_manifest(store: Store) -> Manifest:
    data = store.read_bytes(MANIFEST, MANIFEST_LIMIT)
    if data is None:
        raise FormatError(
            explain(
                f"{MANIFEST} at {store.url}",
                "no manifest",
                "The dataset is incomplete (an upload that did not finish?) or the URL is wrong: run the "
                "conversion again, with resume=True to keep the shards already uploaded.",
            )
        )
    manifest = parse_manifest(data, store.where(MANIFEST))
    sizes = store.sizes()
    for info in manifest.shards:
        if sizes.get(info.file) != info.bytes:
            raise FormatError(
                explain(
                    f"shard {store.where(info.file)} of {info.bytes} bytes, as the manifest says",
                    "no such object" if info.file not in sizes else f"{sizes[info.file]} bytes",
                    "The dataset is incomplete or was replaced part-way: convert it again.",
                )
            )
    return manifest


def open_remote(url: str, remote: Optional[Remote], verify: bool) -> RemoteSource:
    """The source of the dataset at ``url``; ``verify`` fetches (and so checks) every shard now."""
    remote = remote or Remote()
    source = RemoteSource(url.rstrip("/"), read_remote_manifest(Store(url, remote)), remote)
    if verify:
        for number in range(len(source.manifest.shards)):
            source._shard_path(number)
    return source
