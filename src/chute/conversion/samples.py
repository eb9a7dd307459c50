"""Conversion of samples one at a time: read (and transformed, in worker processes) in order,
each checked against the spec of the first, cut into the writer's blocks.  Used by
:func:`chute.convert` for indexable sources and iterables, and by each Ray write task."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from chute._internal.mainscript import starting_processes
from chute._internal.orphans import exit_with
from chute.errors import ChuteError, ConversionError, explain
from chute.format.writer import DatasetWriter
from chute.spec import Spec, flatten, infer_spec, is_sample_leaf
from chute.telemetry.progress import Progress

__all__ = ["sample_blocks"]


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


def _failed(index: int, error: BaseException) -> ConversionError:
    text = f"Sample {index} failed: {type(error).__name__}: {str(error).rstrip().rstrip('.')}."
    if isinstance(error, ChuteError):  # its message already says how to fix it
        return ConversionError(text)
    return ConversionError(
        f"{text} Fix the sample or the transform, or pass on_error='skip' to skip and count it."
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


def _start_worker(work: _Work, owner: int) -> None:
    global _WORKER
    _WORKER = work
    exit_with(owner)  # (a pool's worker waits on a queue it holds the write end of: it never sees EOF)


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

    from chute.pipeline.processes import default_start_method

    context = get_context(default_start_method())  # not fork once JAX or TensorFlow is loaded
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(work, os.getpid())
    )
    with pool:
        with starting_processes(work, context.get_start_method()):  # all of them, now
            for started in [pool.submit(_run_in_worker, []) for _ in range(workers)]:
                started.result()
        pending: deque[Any] = deque()
        for chunk in _chunks(items, 8):
            pending.append(pool.submit(_run_in_worker, chunk))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def sample_blocks(
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
                raise _failed(index, result.error) from result.error
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
