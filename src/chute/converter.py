"""Offline conversion: bake any source into the chute format, in parallel and resumable.

Sources: a chute Dataset (read in vectorised blocks), anything with ``__len__`` and
``__getitem__`` returning samples (a torch Dataset, a hand-written Sequence), any iterable or
generator of samples, and Parquet or CSV files (columns become fields).  A per-sample
``transform`` runs in worker processes; its output spec is taken from the first sample and every
other sample is checked against it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .dataset import Dataset
from .errors import ConversionError, OptionError, explain
from .format.reader import open_dataset
from .format.writer import DatasetWriter
from .options import check_int, parse_size
from .progress import Progress
from .remote.store import Remote
from .spec import Spec, flatten, infer_spec, is_sample_leaf

__all__ = ["convert", "parse_size"]

_BLOCK_BYTES = 8 << 20  # rows read per block from a Dataset: about 8 MB


@dataclass(frozen=True)
class _Failure:
    """A sample that could not be read or transformed, carried back from a worker."""

    index: int
    error: BaseException


def _leaves(sample: Any, spec: Spec, index: int) -> list[Any]:
    """The leaves of ``sample``, checked against ``spec``; ConversionError names what differs."""
    treedef, leaves = flatten(sample, is_leaf=is_sample_leaf)
    if treedef != spec.treedef:
        names = [n for n, _ in leaves]
        raise ConversionError(
            explain(f"sample {index} with the fields {list(spec.names)}", f"fields {names}", _FIX_SPEC)
        )
    out = []
    for f, (_, value) in zip(spec.fields, leaves, strict=True):
        if f.kind == "bytes":
            ok = isinstance(value, (bytes, bytearray, memoryview))
            value = bytes(value) if ok else value
        elif f.kind == "str":
            ok = isinstance(value, str)
        else:
            value = np.asarray(value)
            shape_ok = value.shape == f.shape or (f.kind == "ragged" and value.shape[1:] == f.shape[1:])
            ok = shape_ok and value.ndim == len(f.shape) and np.can_cast(value.dtype, f.dtype, "safe")
        if not ok:
            received = f"{type(value).__name__}" + (
                f" {value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray) else ""
            )
            raise ConversionError(
                explain(
                    f"field {f.name!r} of sample {index} as {f.dtype}{list(f.shape)} ({f.kind})",
                    received,
                    _FIX_SPEC,
                )
            )
        out.append(value)
    return out


_FIX_SPEC = (
    "Every sample must match the first one's structure, dtypes and shapes: fix the sample, declare "
    "variable-length fields with ragged=[...], or pass on_error='skip' to skip and count such samples."
)


def _indexable(source: Any) -> bool:
    return (
        hasattr(source, "__len__") and hasattr(source, "__getitem__") and not isinstance(source, (str, bytes))
    )


@dataclass(frozen=True)
class _Work:
    """Read (for indexable sources) and transform samples, where the work runs: here or in a worker."""

    source: Any  # the indexable source, or None when samples arrive already read
    transform: Optional[Callable[[Any], Any]]

    def run(self, items: list[Any]) -> list[tuple[int, Any]]:
        out = []
        for item in items:
            index, sample = (item, None) if self.source is not None else item
            try:
                if self.source is not None:
                    sample = self.source[index]
                out.append((index, sample if self.transform is None else self.transform(sample)))
            except Exception as error:  # reported, with the sample index, by the consumer
                out.append((index, _Failure(index, error)))
        return out


_WORKER: Optional[_Work] = None


def _start_worker(work: _Work) -> None:
    global _WORKER
    _WORKER = work


def _run_in_worker(items: list[Any]) -> list[tuple[int, Any]]:
    assert _WORKER is not None  # set by the pool's initializer
    return _WORKER.run(items)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _transformed(
    source: Any, start: int, transform: Optional[Callable[[Any], Any]], workers: int
) -> Iterator[tuple[int, Any]]:
    """``(index, sample or _Failure)`` from ``start`` on, read and transformed by ``workers`` processes.

    Indexable sources are sent to each worker once and read there (file decoding runs in
    parallel too); other iterables are read here and their samples sent to the workers.
    """
    items: Iterator[Any]
    if _indexable(source):
        work, items = _Work(source, transform), iter(range(start, len(source)))
    else:
        work, items = _Work(None, transform), ((i, s) for i, s in enumerate(source) if i >= start)
    if workers == 0:
        for chunk in _chunks(items, 1):
            yield from work.run(chunk)
        return
    from multiprocessing import get_context

    from .pipeline.processes import default_start_method

    context = get_context(default_start_method())  # not fork once JAX or TensorFlow is loaded
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(work,))
    with pool:
        pending: deque[Any] = deque()
        for chunk in _chunks(items, 8):
            pending.append(pool.submit(_run_in_worker, chunk))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _sample_blocks(
    source: Any,
    writer: DatasetWriter,
    transform: Optional[Callable[[Any], Any]],
    workers: int,
    ragged: Iterable[str],
    on_error: str,
    progress: Progress,
) -> None:
    columns: list[list[Any]] = []
    sources: list[int] = []

    def flush() -> None:
        if sources and writer.spec is not None:
            stacked = [f.stack(c) for f, c in zip(writer.spec.fields, columns, strict=True)]
            writer.add(stacked, np.array(sources, dtype=np.int64))
        columns.clear()
        sources.clear()

    for index, result in _transformed(source, writer.consumed, transform, workers):
        try:
            if isinstance(result, _Failure):
                raise ConversionError(
                    f"Sample {index} failed: {type(result.error).__name__}: {result.error}. "
                    "Fix the sample or the transform, or pass on_error='skip' to skip and count it."
                ) from result.error
            if writer.spec is None:
                writer.start(infer_spec(result, ragged))
            assert writer.spec is not None
            leaves = _leaves(result, writer.spec, index)
        except ConversionError:
            if on_error != "skip":
                raise
            writer.skip(index)
            progress.update(1)
            continue
        if not columns:
            columns.extend([] for _ in leaves)
        for column, value in zip(columns, leaves, strict=True):
            column.append(value)
        sources.append(index)
        progress.update(1)
        if len(sources) >= 256:
            flush()
    flush()


def _dataset_blocks(ds: Dataset, writer: DatasetWriter, progress: Progress) -> None:
    writer.start(ds.spec)
    row_bytes = sum(f.fixed_bytes for f in ds.spec.fields)
    block = max(1, min(65536, _BLOCK_BYTES // max(1, row_bytes)))
    for start in range(writer.consumed, len(ds), block):
        stop = min(start + block, len(ds))
        columns = ds.spec.flatten(ds.read(slice(start, stop)))  # through the dataset's maps and views
        writer.add(columns, np.arange(start, stop, dtype=np.int64))
        progress.update(stop - start)


def convert(
    source: Any,
    dst: str | os.PathLike[str],
    *,
    transform: Optional[Callable[[Any], Any]] = None,
    workers: int = 0,
    shard_size: int | str = "256MB",
    resume: bool = False,
    overwrite: bool = False,
    on_error: str = "raise",
    ragged: Iterable[str] = (),
    progress: Optional[bool] = None,
    remote: Optional[Remote] = None,
) -> Dataset:
    """Convert ``source`` into a chute dataset at ``dst`` and return it opened.

    ``transform`` runs per sample (in ``workers`` processes; it must be picklable, i.e. defined at
    module level).  ``shard_size`` is the target size of a shard.  ``resume=True`` keeps the
    shards a killed conversion to ``dst`` had finished and writes the rest, giving the same
    result as an uninterrupted run.  ``on_error='skip'`` skips samples that fail or do not match
    the spec, counting and listing them in the manifest; the default stops with an error naming
    the sample.  ``ragged`` names fields whose first dimension varies between samples.

    ``dst`` may be an fsspec URL (``s3://bucket/out.chute``): shards are uploaded as they are
    finished and the manifest last, so a half-finished upload is never taken as a dataset, and
    ``resume=True`` continues it; ``remote`` (:class:`chute.Remote`) carries ``storage_options``.
    A ``ray.data.Dataset`` source is converted by parallel Ray tasks (see ``chute.engines.ray``).
    """
    if _is_ray_dataset(source):
        from .engines.ray import convert_ray

        return convert_ray(source, os.fspath(dst), shard_size=shard_size, overwrite=overwrite, remote=remote)
    workers = check_int("workers", workers, minimum=0)
    if on_error not in ("raise", "skip"):
        raise OptionError(explain("on_error='raise' or 'skip'", repr(on_error), "Choose one of the two."))
    described = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    writer = DatasetWriter(
        os.fspath(dst), parse_size(shard_size), resume=resume, overwrite=overwrite, remote=remote
    )
    if isinstance(source, (str, os.PathLike)) and transform is None and workers == 0:
        _convert_table(os.fspath(source), writer, progress, made_by=_made_by(described, None))
        return open_dataset(writer.dst, remote=remote)
    if isinstance(source, (str, os.PathLike)):
        from .sources.table import from_table

        source = from_table(os.fspath(source))
    total = len(source) if hasattr(source, "__len__") else getattr(source, "length", None)
    with Progress("converting", total, unit="samples", enabled=progress) as bar:
        bar.update(writer.consumed)
        blocks = isinstance(source, Dataset) and getattr(source.source, "vectorised", False)
        if blocks and transform is None and workers == 0:
            _dataset_blocks(source, writer, bar)
        else:
            _sample_blocks(source, writer, transform, workers, ragged, on_error, bar)
    writer.close(_made_by(described, transform))
    return open_dataset(writer.dst, remote=remote)


def _is_ray_dataset(source: Any) -> bool:
    return type(source).__module__.startswith("ray.data") and hasattr(source, "write_datasink")


def _made_by(source: str, transform: Optional[Callable[[Any], Any]]) -> dict[str, Any]:
    name = getattr(transform, "__qualname__", None) if transform else None
    return {"source": source, "transform": name, "chute": _version()}


def _convert_table(
    path: str, writer: DatasetWriter, progress: Optional[bool], made_by: dict[str, Any]
) -> None:
    """A Parquet or CSV file streamed block by block into the writer: never held whole in memory."""
    from .sources.table import stream_table

    spec, total, blocks = stream_table(path)
    writer.start(spec)
    done = 0
    with Progress("converting", total, unit="samples", enabled=progress) as bar:
        for columns in blocks:
            n = len(columns[0])
            skip = min(n, max(0, writer.consumed - done))  # rows a resumed run already stored
            if skip < n:
                writer.add([c[skip:] for c in columns], np.arange(done + skip, done + n, dtype=np.int64))
            done += n
            bar.update(n)
    writer.close(made_by)


def _version() -> str:
    from . import __version__

    return __version__
