"""Writing a chute dataset: shards cut at deterministic rows, a journal, an atomic publish.

Everything is written into a hidden sibling directory ``.NAME.partial``; the manifest is written
last and the directory is renamed into place, so a reader never sees a half-written dataset.
After every shard a journal records what is finished, so a killed conversion can resume: a shard
ends at the first row where its bytes reach the target, a rule that depends only on the rows, so a
resumed run cuts exactly the shards an uninterrupted one would.

Where finished files go is a *target* (:mod:`chute.format.storage`): a local directory, or a URL's
``chute.remote.target.RemoteTarget``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import numpy as np

from chute.errors import ChuteError, ConversionError, FormatError, OptionError, SpecError, explain
from chute.format.manifest import Manifest, ShardInfo, shard_name
from chute.format.shard import write_shard
from chute.format.storage import LocalTarget, Target
from chute.spec import Field, Spec

__all__ = ["DatasetWriter"]

_AFRESH = "Start the conversion afresh (without resume)."


def _row_sizes(fields: Sequence[Field], columns: Sequence[Any], n: int) -> np.ndarray:
    sizes = np.zeros(n, dtype=np.int64)
    for f, column in zip(fields, columns, strict=True):
        if f.kind == "array":
            sizes += f.dtype.itemsize * f.items
        elif f.kind in ("bytes", "str"):
            sizes += np.fromiter((len(v) for v in column), dtype=np.int64, count=n)
        else:
            inner = f.dtype.itemsize * f.items
            sizes += np.fromiter((len(v) for v in column), dtype=np.int64, count=n) * inner
    return np.maximum(sizes, 1)


class DatasetWriter:
    """Accumulates blocks of rows and writes them as shards of about ``shard_bytes`` each.

    ``dst`` is a local path, or ``target`` says where the shards go (a URL's, say).
    """

    def __init__(
        self,
        dst: str,
        shard_bytes: int,
        *,
        resume: bool = False,
        overwrite: bool = False,
        target: Optional[Target] = None,
        first_shard: int = 0,
    ) -> None:
        if shard_bytes <= 0:
            raise OptionError(explain("shard_size > 0", shard_bytes, "Use e.g. shard_size='256MB'."))
        self.target: Target = target if target is not None else LocalTarget(dst, overwrite)
        self.first_shard = first_shard  # a Ray write task numbers its shards from its own range
        self.dst = self.target.dst
        self.shard_bytes = shard_bytes
        self.spec: Optional[Spec] = None
        self.shards: list[ShardInfo] = []
        self.consumed = 0  # source samples covered by finished shards (skipped ones included)
        self.skipped: list[int] = []
        journal = self.target.begin(resume)
        if journal is not None:
            self._load_journal(journal)
        self._pending: list[list[Any]] = []
        self._pending_sources: list[np.ndarray] = []
        self._pending_bytes = 0

    def abandon(self) -> None:
        """The conversion failed: if it finished no shard (nothing to resume), remove what it began."""
        if not self.shards:
            self.target.discard()

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def start(self, spec: Spec) -> None:
        spec = _storable(spec)
        if self.spec is not None and self.spec != spec:
            raise FormatError(
                explain(
                    f"the spec of the conversion being resumed, {self.spec}",
                    spec,
                    "Resume with the same source and transform, or start afresh without resume.",
                )
            )
        self.spec = spec

    def add(self, columns: Sequence[Any], sources: np.ndarray) -> None:
        """Append rows (one column per field, in spec order); ``sources`` are their source indices."""
        assert self.spec is not None, "start(spec) comes first"  # internal call order, not user input
        n = len(sources)
        sizes = _row_sizes(self.spec.fields, columns, n)
        start = 0
        while start < n:
            total = np.cumsum(sizes[start:])
            k = int(np.searchsorted(total, self.shard_bytes - self._pending_bytes, side="left"))
            stop = min(n, start + k + 1)
            self._pending.append([c[start:stop] for c in columns])
            self._pending_sources.append(sources[start:stop])
            self._pending_bytes += int(total[stop - start - 1])
            if k < len(total):
                self._flush()
            start = stop

    def skip(self, source_index: int) -> None:
        self.skipped.append(source_index)

    def _flush(self) -> None:
        if not self._pending or self.spec is None:
            return
        fields = self.spec.fields
        columns = [_concat(f, [block[i] for block in self._pending]) for i, f in enumerate(fields)]
        name = shard_name(self.first_shard + len(self.shards))
        path = os.path.join(self.target.staging, name)
        with self._room(path):
            size, digest = write_shard(path, fields, columns)
        self.target.shard_written(name)
        rows = sum(len(s) for s in self._pending_sources)
        self.shards.append(ShardInfo(name, rows, size, digest))
        self.consumed = int(self._pending_sources[-1][-1]) + 1
        self._pending, self._pending_sources, self._pending_bytes = [], [], 0
        self._write_journal()

    def _write_journal(self) -> None:
        assert self.spec is not None
        document = {
            "manifest": json.loads(Manifest(self.spec, tuple(self.shards)).to_json()),
            "consumed": self.consumed,
            "skipped": self.skipped,
        }
        with self._room():
            self.target.journal(json.dumps(document))

    def _load_journal(self, text: str) -> None:
        where = f"the journal of {self.dst}"
        try:
            document = json.loads(text)
            manifest = Manifest.from_json(json.dumps(document["manifest"]), where)
        except (ValueError, KeyError, TypeError) as error:
            raise FormatError(
                explain(f"a readable {where}", f"{type(error).__name__}: {error}", _AFRESH)
            ) from None
        for info in manifest.shards:  # the finished shards must all be intact
            if not self.target.intact(info):
                raise FormatError(
                    explain(f"intact finished shards for {self.dst}", f"shard {info.file} damaged", _AFRESH)
                )
        self.target.keep_only({info.file for info in manifest.shards})
        self.spec, self.shards = manifest.spec, list(manifest.shards)
        self.consumed = int(document["consumed"])
        self.skipped = [int(i) for i in document["skipped"] if int(i) < self.consumed]

    def finish(self) -> list[ShardInfo]:
        """Write the last shard; the shards written, in order."""
        self._flush()
        return self.shards

    def close(
        self,
        made_by: dict[str, Any],
        *,
        images: Sequence[str] = (),
        class_names: Optional[Sequence[str]] = None,
    ) -> Manifest:
        """Write the last shard and the manifest, then publish the directory atomically.

        ``images`` names the bytes fields that hold encoded images; ``class_names`` the labels."""
        self.finish()
        if self.spec is None:
            raise ChuteError(explain("at least one sample to convert", "none", "Check the source."))
        info = dict(made_by, skipped=len(self.skipped), skipped_samples=self.skipped[:1000])
        names = None if class_names is None else tuple(class_names)
        encoded = tuple(f.name for f in self.spec.fields if f.name in images and f.kind == "bytes")
        manifest = Manifest(self.spec, tuple(self.shards), info, encoded, names)
        with self._room():
            self.target.publish(manifest.to_json())
        return manifest

    @contextlib.contextmanager
    def _room(self, partial: Optional[str] = None) -> Iterator[None]:
        """A write that fails (a full disk, a quota) removes the ``partial`` file it left and says
        how to go on: the finished shards stay for ``resume=True``."""
        try:
            yield
        except ChuteError:  # (a RemoteError is an OSError too: it already says what failed)
            raise
        except OSError as error:
            if partial is not None:
                with contextlib.suppress(OSError):
                    os.remove(partial)
            raise ConversionError(
                explain(
                    f"room to write the conversion to {self.dst} (in {self.target.staging})",
                    f"{type(error).__name__}: {error}",
                    f"Free some space (or choose another destination), then run the same conversion with "
                    f"resume=True: the {len(self.shards)} finished shard(s) are kept.",
                )
            ) from error


def _storable(spec: Spec) -> Spec:
    """``spec`` as stored: a column of text or bytes held in a numpy array (``<U``, ``S``, object:
    ``from_arrays`` of strings) is a ``str`` or ``bytes`` field, as a generator's strings are."""
    fields = []
    for field in spec.fields:
        if field.kind == "array" and field.dtype.kind in "OUS":
            if field.shape:
                raise SpecError(
                    explain(
                        f"numbers, or one text or bytes value a sample, for field {field.name!r}",
                        f"an array of {field.dtype} values of shape {field.shape} a sample",
                        "Store text one value a sample (or join it), or encode it as numbers.",
                    )
                )
            field = Field(field.name, np.dtype(object), (), "bytes" if field.dtype.kind == "S" else "str")
        fields.append(field)
    return Spec(tuple(fields), spec.treedef)


def _concat(field: Field, parts: list[Any]) -> Any:
    if field.kind == "array":
        return np.concatenate(parts) if len(parts) > 1 else parts[0]
    return [v for part in parts for v in part]
