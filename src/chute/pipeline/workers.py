"""A loader's workers and read-ahead: threads or processes, started at first use, kept across epochs.

:class:`Workers` owns the thread pool or the :class:`chute.pipeline.processes.ProcessPool` and the
:class:`chute.pipeline.prefetch.Lookahead` of futures over it.  The loader says, per request, which
batch it wants, which come next and how to find a batch's rows and read key; a read inline, on a
worker thread and in a worker process are the same :func:`chute.pipeline.read.read_batch`.
"""

from __future__ import annotations

import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Optional, cast

from chute.datasets.base import Node
from chute.errors import StallError, explain
from chute.options import PipelineOptions
from chute.pipeline.auto import Plan
from chute.pipeline.prefetch import Lookahead, Stalled
from chute.pipeline.read import BatchResult, read_batch
from chute.rng import ReadKey
from chute.sources.base import Rows, row_indices

if TYPE_CHECKING:
    from chute.pipeline.processes import ProcessPool

__all__ = ["Position", "Task", "Workers"]

Position = tuple[int, int]  # (epoch, batch)
Task = Callable[[Position], tuple[Rows, ReadKey]]  # a position's rows and read key


class Workers:
    """The workers reading ``reader``'s batches of ``batch_size`` rows, as ``pipeline`` says."""

    def __init__(self, reader: Node, pipeline: PipelineOptions, batch_size: int) -> None:
        self._reader = reader
        self._pipeline = pipeline
        self._skip = pipeline.on_error == "skip"
        self._batch_size = batch_size
        self._threads: Optional[ThreadPoolExecutor] = None
        self._processes: Optional[ProcessPool] = None
        self._lookahead: Optional[Lookahead[Position, BatchResult]] = None
        self._lock = threading.Lock()
        # The thread reading each batch on a worker thread (for a stall report).
        self._running: weakref.WeakKeyDictionary[Future[BatchResult], _Running] = weakref.WeakKeyDictionary()

    def get(
        self, position: Position, upcoming: Sequence[Position], plan: Plan, task: Task
    ) -> tuple[BatchResult, int]:
        """The batch at ``position`` and how many of the batches read ahead were ready; the first
        ``plan.prefetch`` of ``upcoming`` are started.  ``task`` is asked only while this runs."""
        lookahead, start = self._started(plan, task)
        try:
            return lookahead.get(position, upcoming, start, self._pipeline.timeout)
        except Stalled as stalled:
            raise self._stalled(position, stalled.future) from None

    def read(self, rows: Rows, key: ReadKey) -> BatchResult:
        """Rows ``rows`` read for ``key`` in the calling thread (inline, or on a worker thread)."""
        return read_batch(self._reader, rows, key, self._skip)

    def pids(self) -> list[int]:
        """The worker processes' pids (none with thread workers, or before they start)."""
        processes = self._processes
        return processes.pids if processes is not None else []

    def close(self) -> None:
        """Stop the workers and drop what was read ahead; the next :meth:`get` starts them again."""
        with self._lock:
            lookahead, threads, processes = self._lookahead, self._threads, self._processes
            self._lookahead = self._threads = self._processes = None
        if lookahead is not None:
            lookahead.clear()
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        if processes is not None:
            processes.close()

    def _started(
        self, plan: Plan, task: Task
    ) -> tuple[Lookahead[Position, BatchResult], Callable[[Position], Future[BatchResult]]]:
        """The lookahead (its workers started at first use) and how to start a read on them."""
        with self._lock:
            if self._lookahead is None:
                if self._pipeline.worker_type == "process":
                    self._processes = self._start_processes(plan.workers)
                else:
                    self._threads = ThreadPoolExecutor(plan.workers, thread_name_prefix="chute-read")
                self._lookahead = Lookahead(plan.prefetch)
            lookahead, threads, processes = self._lookahead, self._threads, self._processes
        if processes is not None:
            submit: Callable[[Rows, ReadKey], Future[BatchResult]] = processes.submit
        else:
            pool = cast(ThreadPoolExecutor, threads)  # (started with the lookahead)

            def submit(rows: Rows, key: ReadKey) -> Future[BatchResult]:
                running = _Running(rows)
                future = pool.submit(self._read_on_a_thread, running, rows, key)
                self._running[future] = running
                return future

        def start(position: Position) -> Future[BatchResult]:
            try:
                rows, key = task(position)
            except Exception as error:  # (planning a batch read ahead failed: say so when it is asked)
                failed: Future[BatchResult] = Future()
                failed.set_exception(error)
                return failed
            return submit(rows, key)

        return lookahead, start

    def _read_on_a_thread(self, running: _Running, rows: Rows, key: ReadKey) -> BatchResult:
        running.thread = threading.get_ident()
        try:
            return self.read(rows, key)
        finally:
            running.thread = None

    def _stalled(self, position: Position, future: Future[BatchResult]) -> StallError:
        """The error for a batch that did not come within the timeout: who holds it, where."""
        epoch, batch = position
        timeout = self._pipeline.timeout
        processes = self._processes
        if processes is not None:
            held = processes.stall_report(future)
            self.close()  # (the stuck worker with the others: the next iteration starts new ones)
            after = "The worker processes were stopped; the next iteration starts new ones."
        else:
            held = self._thread_report(future)
            with self._lock:  # let the stuck thread go (it cannot be stopped); new ones next time
                lookahead, threads = self._lookahead, self._threads
                self._lookahead = self._threads = None
            if lookahead is not None:
                lookahead.clear()
            if threads is not None:
                threads.shutdown(wait=False, cancel_futures=True)
            after = (
                "A thread cannot be stopped: it finishes its batch on its own (the interpreter waits "
                "for it at exit); worker_type='process' stops a stuck worker."
            )
        who, rows, stack = held or ("no worker", None, "")
        samples = "?" if rows is None else str(row_indices(rows).tolist()[:16])
        return StallError(
            explain(
                f"batch {batch} of epoch {epoch} within timeout={timeout} s",
                f"none after {timeout} s: {who} holds it (samples {samples})",
                "If the stack below stays in your map or decoder, it is stuck (a lock, a network "
                "call with no timeout of its own); if it moves, it is slow: give a larger timeout=, "
                f"more workers, or a faster map.  {after}",
            )
            + (f"\n{stack}" if stack else "")
        )

    def _thread_report(self, future: Future[BatchResult]) -> Optional[tuple[str, Rows, str]]:
        running = self._running.get(future)
        if running is None:
            return None
        thread = running.thread
        frame = sys._current_frames().get(thread) if thread is not None else None
        if frame is None:
            return "none of the worker threads (it waits for a free one)", running.rows, ""
        name = next((t.name for t in threading.enumerate() if t.ident == thread), str(thread))
        stack = "".join(traceback.format_stack(frame))
        return f"worker thread {name}", running.rows, f"Its stack (most recent call last):\n{stack}"

    def _start_processes(self, workers: int) -> ProcessPool:
        from chute.pipeline.processes import ProcessPool, learn_specs_in_a_process

        learn_specs_in_a_process(self._reader, self._pipeline.start_method)
        per_sample = sum(f.fixed_bytes for f in self._reader.spec.fields)
        return ProcessPool(
            self._reader,
            workers,
            skip=self._skip,
            start_method=self._pipeline.start_method,
            batch_bytes=per_sample * self._batch_size,
        )


class _Running:
    """A batch read on a worker thread: its rows, and the thread reading it (None until then)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.thread: Optional[int] = None
