"""One shard: an uncompressed Arrow IPC file holding one record batch.

Fixed-shape fields are fixed-size lists of primitives (scalars: plain primitives), so a reader
gets a zero-copy numpy view of shape ``(rows, *shape)`` over the memory-mapped file.  Bytes and
text are large binary/string columns; ragged fields are large lists.  Any Arrow reader (pyarrow,
polars, duckdb) can open a shard directly.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import weakref
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from chute.errors import FormatError, explain
from chute.format.manifest import ShardInfo
from chute.spec import Field

__all__ = ["ShardView", "sha256_file", "write_shard"]

_BOOL_AS = np.dtype(np.uint8)  # Arrow packs booleans into bits; store bytes so views stay zero-copy


def _storage_dtype(field: Field) -> np.dtype:
    return _BOOL_AS if field.dtype == np.dtype(bool) else field.dtype


def arrow_type(field: Field) -> pa.DataType:
    """The Arrow type a field is stored as; a shard whose column has another type is refused."""
    if field.kind == "bytes":
        return pa.large_binary()
    if field.kind == "str":
        return pa.large_string()
    value = pa.from_numpy_dtype(_storage_dtype(field))
    if field.kind == "ragged":
        return pa.large_list(value)
    return pa.list_(value, field.items) if field.shape else value


def _column(field: Field, values: Any) -> pa.Array:
    if field.kind in ("bytes", "str"):
        return pa.array(list(values), type=arrow_type(field))
    dtype = _storage_dtype(field)
    if field.kind == "ragged":
        lengths = np.array([len(v) for v in values], dtype=np.int64) * field.items
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate([np.asarray(v, dtype=field.dtype).reshape(-1) for v in values] or [np.empty(0)])
        return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(dtype, copy=False)))
    flat = np.ascontiguousarray(values, dtype=field.dtype).view(dtype).reshape(-1)
    if not field.shape:
        return pa.array(flat)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), field.items)


def write_shard(path: str, fields: Sequence[Field], columns: Sequence[Any]) -> tuple[int, str]:
    """Write one shard file (fsynced); return its size in bytes and its sha256."""
    arrays = [_column(f, c) for f, c in zip(fields, columns, strict=True)]
    schema = pa.schema(
        [
            pa.field(
                f.name, a.type, nullable=False, metadata={"chute": json.dumps([f.kind, f.dtype.str, f.shape])}
            )
            for f, a in zip(fields, arrays, strict=True)
        ]
    )
    batch = pa.record_batch(arrays, schema=schema)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_batch(batch)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    return os.path.getsize(path), sha256_file(path)


def sha256_file(path: str | int, block: int = 1 << 22) -> str:
    """The sha256 of a file, by path or of an open descriptor (read from where it stands, left open)."""
    digest = hashlib.sha256()
    with open(path, "rb", closefd=not isinstance(path, int)) as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class ShardView:
    """Numpy views over one memory-mapped shard; nothing is read until rows are gathered.

    Gathers are zero-copy views of a map advised ``MADV_RANDOM``, so random batches from cold
    storage read only the pages they touch instead of a read-ahead window around each.
    Contiguous slices (an unshuffled scan) are read with ``pread`` into a fresh buffer from a file
    advised ``POSIX_FADV_SEQUENTIAL``: one copy (memory speed when warm), but a cold scan streams
    at the disk's sequential rate, which page faults through a map did not reach here.
    """

    def __init__(
        self,
        path: str,
        fields: Sequence[Field],
        info: ShardInfo,
        *,
        directory: Optional[int] = None,
        partial: bool = False,
    ) -> None:
        # ``directory``: a descriptor of the dataset directory as it was opened; the file is opened
        # through it, so a dataset replaced meanwhile (renamed away) is never mixed with its successor.
        # ``partial``: a sparse file whose rows are not all here yet, so offsets cannot be checked.
        self.path, self._fields, self._info, self._partial = path, fields, info, partial
        self._rows, self._directory = info.rows, directory
        # (address of the map, the columns as views into it): a view's file offset is its address
        # minus the map's.  Set in one assignment, no lock: a lock held by another thread when a
        # loader forks its workers would stay locked in them.  (Two threads may both map; one wins.)
        self._mapped: Optional[tuple[int, list[Any]]] = None
        self._fd: Optional[int] = None

    @property
    def columns(self) -> list[Any]:
        """The columns as numpy views, through the map advised for random access."""
        return self._mapping()[1]

    @property
    def base(self) -> int:
        """The address of the map the columns lie in."""
        return self._mapping()[0]

    def _mapping(self) -> tuple[int, list[Any]]:
        if self._mapped is None:
            self._mapped = self._map_columns(getattr(mmap, "MADV_RANDOM", None))
        return self._mapped

    def scan(self, start: int, stop: int) -> list[np.ndarray]:
        """Rows ``[start, stop)`` of every (fixed-size) column, read with one ``pread`` each."""
        if self._fd is None:
            fd = self._open()
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            weakref.finalize(self, os.close, fd)
            self._fd = fd
        base, columns = self._mapping()
        return [self._pread(self._fd, column[start:stop], base) for column in columns]

    def _pread(self, fd: int, view: np.ndarray, base: int) -> np.ndarray:
        out = np.empty(view.shape, dtype=view.dtype)
        offset = view.ctypes.data - base
        if os.preadv(fd, [memoryview(out.reshape(-1).view(np.uint8))], offset) != view.nbytes:  # type: ignore[arg-type]
            raise self._bad(f"{view.nbytes} bytes at offset {offset}", "a short read")
        return out

    def _open(self) -> int:
        """A descriptor of the shard file, checked to be the size the manifest says."""
        name = os.path.basename(self.path) if self._directory is not None else self.path
        try:
            fd = os.open(name, os.O_RDONLY, dir_fd=self._directory)
        except FileNotFoundError:
            if self._directory is None:
                raise  # a cache's file, evicted: its owner fetches it again
            raise FormatError(
                explain(
                    f"shard {self.path}",
                    "no such file any more",
                    "The dataset was removed or replaced while open (a conversion with overwrite=True?): "
                    "open it again.",
                )
            ) from None
        except OSError as error:  # (a symlink loop, a permission...)
            raise self._bad("a readable file", f"{type(error).__name__}: {error.strerror or error}") from None
        size = os.fstat(fd).st_size
        if size != self._info.bytes and not self._partial:
            os.close(fd)
            raise self._bad(
                f"{self._info.bytes} bytes, as the manifest says", f"{size} bytes (changed since open)"
            )
        return fd

    def _map_columns(self, advice: Optional[int]) -> tuple[int, list[Any]]:
        fd = self._open()
        try:
            mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            raise self._bad("a readable Arrow IPC file", "an empty file") from None
        finally:
            os.close(fd)
        if advice is not None:
            mapped.madvise(advice)
        base = np.frombuffer(mapped, np.uint8).ctypes.data  # (an empty file was refused above)
        try:
            reader = pa.ipc.open_file(pa.py_buffer(mapped))
            extended = [f.name for f in reader.schema if f.metadata and _EXTENSION in f.metadata]
            if extended:  # (chute writes plain types; an extension type is someone else's code)
                raise self._bad("plain Arrow types", f"an extension type on field {extended[0]!r}")
            if reader.num_record_batches != 1:
                raise self._bad("one record batch", f"{reader.num_record_batches} record batches")
            batch = reader.get_batch(0)
            if not self._partial:
                batch.validate()
            if batch.num_rows != self._rows:
                raise self._bad(f"{self._rows} rows as the manifest says", f"{batch.num_rows} rows")
            self._check_in_place(batch, base, len(mapped))
            return base, [self._view(f, batch) for f in self._fields]  # the views keep the map alive
        except FormatError:
            raise
        except (pa.ArrowException, OSError, ValueError) as error:  # (a field name: UnicodeDecodeError)
            raise self._bad("a readable Arrow IPC file", f"{type(error).__name__}: {error}") from None

    def _check_in_place(self, batch: pa.RecordBatch, base: int, size: int) -> None:
        """Every buffer lies inside the mapped file: the shard is read where it lies, never
        decompressed or copied into memory whose size the file would choose."""
        for column in batch.columns:
            for buffer in column.buffers():
                if (
                    buffer is not None
                    and buffer.size
                    and not (base <= buffer.address and buffer.address + buffer.size <= base + size)
                ):
                    raise self._bad("uncompressed buffers inside the file", "a compressed or external buffer")

    def _check_offsets(self, offsets: np.ndarray, size: int, step: int = 1) -> None:
        """Variable-size offsets in order, within the data and whole rows of ``step`` values (not
        checkable in a partial file, whose offsets may not have arrived)."""
        if self._partial or not len(offsets):
            return
        if offsets[0] < 0 or offsets[-1] > size or np.any(np.diff(offsets) < 0):
            raise self._bad("monotonic offsets within the data", "offsets out of order or out of bounds")
        if step > 1 and np.any(offsets % step):
            raise self._bad(f"offsets in whole rows of {step} values", "offsets between rows")

    def _bad(self, expected: str, received: str) -> FormatError:
        return _damaged(self.path, expected, received)

    def _view(self, field: Field, batch: pa.RecordBatch) -> Any:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            raise self._bad(f"a column {field.name!r}", f"columns {batch.schema.names}")
        column = batch.column(index)
        if column.type != arrow_type(field):
            raise self._bad(f"field {field.name!r} stored as {arrow_type(field)}", str(column.type))
        if field.kind in ("bytes", "str"):
            binary = _Binary(column, field.kind == "str", self.path)
            self._check_offsets(binary.offsets, len(binary.data))
            return binary
        dtype = _storage_dtype(field)
        if field.kind == "ragged":
            offsets = _offsets(column.buffers()[1], column)
            values = column.values.to_numpy(zero_copy_only=True).view(dtype)
            self._check_offsets(offsets, len(values), field.items)
            return _Ragged(offsets, values, field)
        values = (column if not field.shape else column.values).to_numpy(zero_copy_only=True)
        expected = (len(column), *field.shape)
        if values.dtype != dtype or values.size != len(column) * field.items:
            raise self._bad(f"{field.name!r} as {dtype}{list(expected)}", f"{values.dtype}[{values.size}]")
        return values.reshape(expected).view(field.dtype)


def _offsets(buffer: pa.Buffer, column: pa.Array) -> np.ndarray:
    """A variable-size column's offsets (validated to be in the buffer; odd bytes after them ignored)."""
    return np.frombuffer(buffer, np.int64, count=column.offset + len(column) + 1)[column.offset :]


_EXTENSION = b"ARROW:extension:name"


def _damaged(path: str, expected: str, received: object) -> FormatError:
    """The error for a shard whose contents are not what the manifest says."""
    return FormatError(
        explain(
            f"{expected} in shard {path}",
            received,
            "The shard is damaged: run `chute verify` on the dataset and convert it again.",
        )
    )


class _Binary:
    """Bytes or text values; a batch is an object array (one Python object per sample)."""

    def __init__(self, column: pa.Array, text: bool, path: str) -> None:
        buffers = column.buffers()
        self.offsets = _offsets(buffers[1], column)
        self.data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
        self.text, self.path = text, path

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        starts, stops = self.offsets[rows], self.offsets[rows + 1]
        for i, (a, b) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
            raw = self.data[a:b].tobytes()
            out[i] = self._decode(raw, int(rows[i])) if self.text else raw
        return out

    def _decode(self, raw: bytes, row: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _damaged(self.path, f"UTF-8 text in row {row}", str(error)) from None


class _Ragged:
    """Arrays whose first dimension varies; a batch is an object array of zero-copy views."""

    def __init__(self, offsets: np.ndarray, values: np.ndarray, field: Field) -> None:
        self.offsets, self.values = offsets, values.view(field.dtype)
        self.inner = tuple(int(d) for d in field.shape[1:] if d is not None)

    def take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=object)
        values, inner = self.values, self.inner
        pairs = zip(self.offsets[rows].tolist(), self.offsets[rows + 1].tolist(), strict=True)
        for i, (a, b) in enumerate(pairs):
            out[i] = values[a:b].reshape(-1, *inner) if inner else values[a:b]
        return out
