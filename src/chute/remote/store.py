"""Where a dataset's files live: a fsspec URL, reached with retries and errors that name the object.

Every remote call goes through :func:`retrying`: transient failures (connection resets, timeouts,
throttling, server errors, a download whose checksum is wrong) are retried with exponential
backoff; a permanent one (no such object, access denied) or the last failed attempt raises
:class:`chute.RemoteError` naming the object and the cause.  Credentials come from fsspec's usual
places (environment, config files, ``storage_options``) and never appear in a message.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from chute._internal.require import missing, require
from chute.errors import ChuteError, OptionError, RemoteError, explain
from chute.options import check_int, parse_size

__all__ = ["Remote", "Store", "is_url", "retrying"]

T = TypeVar("T")

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure"}


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL (``s3://``, ``gs://``, ``https://``, ...) rather than a local path."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


@dataclass(frozen=True)
class Remote:
    """How chute reaches datasets at URLs.

    ``cache_dir`` holds fetched shards (default ``$CHUTE_CACHE`` or ``~/.cache/chute``), at most
    ``cache_size`` bytes, least recently used shards evicted first; several processes may share
    it.  ``prefetch`` shards are fetched ahead in the background.  ``ranged``: whether a batch
    that needs only a few rows of an uncached shard fetches just their bytes with ranged requests
    (checked against the shard's sha256 once all its rows have come, when it joins the cache) or
    waits for the whole shard.  ``"auto"`` (default): ranges when the dataset is bigger than the
    cache (whole shards would be evicted before most of their rows were used), whole shards
    otherwise (fetched once, then read at local speed); ``True``: ranges as well as whole shards
    in the background (the first batches sooner); ``False``: whole shards only, each checked before
    any row is used.  ``retries`` attempts per call
    before a transient failure is reported.  ``storage_options`` go to fsspec as they are
    (endpoint, credentials, ...); they are never printed.
    """

    cache_dir: Optional[str] = None
    cache_size: int | str = "20GB"
    prefetch: int = 2
    ranged: bool | str = "auto"
    retries: int = 5
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        parse_size(self.cache_size)
        check_int("prefetch", self.prefetch, minimum=0)
        check_int("retries", self.retries, minimum=1)
        if not (isinstance(self.ranged, bool) or self.ranged == "auto"):
            raise OptionError(explain("ranged='auto', True or False", repr(self.ranged), "Pass one of them."))

    @property
    def cache_bytes(self) -> int:
        return parse_size(self.cache_size)

    @property
    def cache_path(self) -> str:
        default = os.environ.get("CHUTE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "chute")
        return os.path.abspath(self.cache_dir or default)


def retrying(what: str, call: Callable[[], T], attempts: int, base_delay: float = 0.1) -> T:
    """``call()``, retried with backoff on transient errors; RemoteError naming ``what`` otherwise."""
    for attempt in range(attempts):
        try:
            return call()
        except ChuteError:
            raise
        except _PERMANENT as error:
            raise RemoteError(
                _failed(what, error, "Check the URL and that your credentials may read it.")
            ) from None
        except Exception as error:  # network stacks raise many kinds; all others count as transient
            if attempt == attempts - 1:
                fix = f"It failed {attempts} times: check the connection or the service, then run again."
                raise RemoteError(_failed(what, error, fix)) from error
            time.sleep(base_delay * 2**attempt * (0.5 + random.random()))  # jitter only spreads retries
    raise AssertionError("unreachable")


def _failed(what: str, error: BaseException, fix: str) -> str:
    return explain(f"to reach {what}", f"{type(error).__name__}: {error}", fix)


class Store:
    """The files under one dataset URL, through fsspec, every call retried."""

    def __init__(self, url: str, options: Remote) -> None:
        fsspec = require("fsspec", "to read and write datasets at URLs", "pip install 'chute[remote]'")
        protocol = url.split("://", 1)[0].lower()
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url.rstrip("/"), **options.storage_options)
        except ImportError as error:
            install = f"pip install 'chute[{_EXTRAS.get(protocol, 'remote')}]'"
            raise missing(f"the fsspec package for {protocol}:// URLs", error, install) from None
        self.url = url.rstrip("/")
        self.attempts = options.retries

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a Store is opened in each process from the URL and options")

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def where(self, name: str) -> str:
        return f"{self.url}/{name}"

    def call(self, name: str, fn: Callable[[], T]) -> T:
        return retrying(self.where(name), fn, self.attempts)

    def sizes(self) -> dict[str, int]:
        """The names and sizes of the files directly under the URL (one listing)."""

        def listing() -> dict[str, int]:
            try:
                entries = self.fs.ls(self.root, detail=True, refresh=True)
            except FileNotFoundError:
                return {}
            return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries}

        return self.call("", listing)

    def read_bytes(self, name: str, limit: int) -> Optional[bytes]:
        """The whole file ``name`` (None when absent); refuses files over ``limit`` bytes."""

        def read() -> Optional[bytes]:
            try:
                size = self.fs.size(self.path(name))
            except FileNotFoundError:
                return None
            if size > limit:
                raise RemoteError(
                    explain(f"at most {limit} bytes in {self.where(name)}", size, "It is not chute's.")
                )
            return bytes(self.fs.cat_file(self.path(name)))

        return self.call(name, read)

    def read_ranges(self, spans: list[tuple[str, int, int]]) -> list[bytes]:
        """The bytes ``[start, end)`` of each ``(file, start, end)``, requested concurrently; a retry
        asks again only for the ranges that failed."""
        got: dict[int, bytes] = {}

        def read() -> list[bytes]:
            todo = [i for i in range(len(spans)) if i not in got]
            out = self.fs.cat_ranges(
                [self.path(spans[i][0]) for i in todo],
                [spans[i][1] for i in todo],
                [spans[i][2] for i in todo],
                on_error="return",
            )
            failed: Optional[BaseException] = None
            for i, data in zip(todo, out, strict=True):
                _, start, end = spans[i]
                if isinstance(data, BaseException):
                    failed = failed or data
                elif len(data) != end - start:
                    failed = failed or OSError(f"{len(data)} bytes for the range {start}-{end}")
                else:
                    got[i] = bytes(data)
            if failed is not None:
                raise failed
            return [got[i] for i in range(len(spans))]

        return self.call(spans[0][0], read) if spans else []

    def download(self, name: str, local: str) -> None:
        self.call(name, lambda: self.fs.get_file(self.path(name), local))

    def upload(self, local: str, name: str) -> None:
        self.call(name, lambda: self.fs.put_file(local, self.path(name)))

    def write_text(self, name: str, text: str) -> None:
        self.call(name, lambda: self.fs.pipe_file(self.path(name), text.encode("utf-8")))

    def remove(self, name: str) -> None:
        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(name))

        self.call(name, remove)
