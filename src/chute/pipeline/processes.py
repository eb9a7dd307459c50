"""Worker processes for Python-heavy transforms: started once, fed indices, answering through shared memory.

A :class:`ProcessPool` belongs to one loader and lives as long as it does (never rebuilt per
epoch).  Each worker holds the dataset (inherited under fork; pickled once under spawn, where
memory maps and chute datasets travel as paths and are reopened), receives tasks of a few hundred
bytes (the batch's row indices, the read key and the shared-memory segment to fill), reads the
batch exactly as an inline read would (:func:`chute.pipeline.read.read_batch`), its batch columns
built in the segment itself.  A collector thread in the loader's process completes the task's
future with arrays that lie in the segment (no copy; the segment is reused once the batch is
dropped); it also watches every worker's sentinel, so a worker
that dies fails its batches with a :class:`chute.WorkerError` as soon as its death is seen, instead
of hanging.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import faulthandler
import functools
import glob
import os
import pickle
import secrets
import selectors
import signal
import sys
import threading
import time
import traceback
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import connection, get_context
from typing import Any, Optional

from chute._internal.mainscript import starting_processes
from chute._internal.orphans import exit_with
from chute._internal.shutdown import exit_on_sigterm
from chute._internal.stale import owner_tag, sweep
from chute.datasets.base import Node
from chute.datasets.mapped import adopt_specs, learn_specs, unknown_maps
from chute.errors import OptionError, WorkerError, add_note, explain
from chute.pipeline.arena import arena
from chute.pipeline.read import BatchResult, read_batch
from chute.pipeline.shm import Segments, arena_size, create_segment, layout_size, pack, segment_dirs, unpack
from chute.rng import ReadKey
from chute.sources.base import Rows, row_indices

__all__ = ["ProcessPool"]

POLL = 0.25  # seconds between checks for a shutdown while nothing arrives


FORK_UNSAFE = ("jax", "tensorflow")  # multithreaded runtimes that can deadlock a forked child


def default_start_method() -> str:
    """fork where it exists (fast, the dataset is inherited), unless a runtime that must not be
    forked is loaded (JAX, TensorFlow): then forkserver, which forks from a clean server process."""
    from multiprocessing import get_all_start_methods

    methods = get_all_start_methods()
    if "fork" in methods and not any(name in sys.modules for name in FORK_UNSAFE):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (shown as its cause)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class _Task:
    worker: int
    segment: tuple[str, int]  # (path, capacity)
    future: Future[BatchResult]
    rows: Rows


def learn_specs_in_a_process(dataset: Node, start_method: Optional[str]) -> None:
    """Learn the output spec of ``dataset``'s maps (by running them on sample 0) in a process of
    its own, not the caller's: a map that crashes the interpreter (a segfault in native code,
    ``os._exit``) then gives a :class:`WorkerError` naming the sample instead of killing the
    training process, as it does in the workers.  Nothing runs when the specs are known."""
    if not unknown_maps(dataset):
        return
    context: Any = get_context(start_method or default_start_method())
    mine, theirs = context.Pipe(duplex=False)
    process = context.Process(
        target=_learn, args=(dataset, theirs, os.getpid()), name="chute-spec", daemon=True
    )
    try:
        with starting_processes(dataset, context.get_start_method()):
            process.start()
    except (pickle.PicklingError, AttributeError, TypeError):
        mine.close()
        return  # the pool's own start says what does not pickle, and how to fix it
    theirs.close()
    try:
        reply = mine.recv()
    except (EOFError, OSError):
        reply = None
    finally:
        mine.close()
        process.join()
    if reply is None:
        code = process.exitcode
        how = (
            f"exit code {code}"
            if code is None or code >= 0
            else f"killed by signal {signal.Signals(-code).name}"
        )
        raise WorkerError(
            explain(
                "the map function to return sample 0 (run once in a worker process, to learn its output)",
                f"the process stopped ({how}) while mapping sample 0",
                "A SIGSEGV or abort is a crash in native code the map calls (a decoder or extension); "
                "call the map on ds[0] in a plain script to see where.",
            )
        )
    status, payload, text = reply
    if status == "error":
        error = pickle.loads(payload) if payload is not None else _RemoteTraceback(text)
        raise error from _RemoteTraceback(text)
    adopt_specs(dataset, payload)


def _learn(dataset: Node, conn: connection.Connection, owner: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loader's to handle
    exit_with(owner)  # (a map that hangs here must not outlive the caller)
    try:
        reply: tuple[Any, ...] = ("ok", learn_specs(dataset), "")
    except BaseException as error:
        reply = ("error", _portable(error), traceback.format_exc())
    conn.send(reply)
    conn.close()


class ProcessPool:
    """``workers`` processes reading batches of ``dataset``; ``submit`` returns a future per batch."""

    def __init__(
        self, dataset: Node, workers: int, skip: bool, start_method: Optional[str], batch_bytes: int
    ) -> None:
        dataset.spec  # noqa: B018  (a map's spec is found once here, not in every worker)
        exit_on_sigterm()  # a SIGTERM runs the clean-up below instead of orphaning the workers
        context: Any = get_context(start_method or default_start_method())
        self._state = state = _State(workers, batch_bytes)
        fork = context.get_start_method() == "fork"
        try:
            with starting_processes(dataset, context.get_start_method()):
                self._start(context, dataset, workers, skip, fork)
        except OptionError:
            state.shutdown()
            raise
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            state.shutdown()
            raise OptionError(
                explain(
                    "a dataset and map functions that can be pickled, for process workers started "
                    f"with {context.get_start_method()!r}",
                    f"{type(error).__name__}: {error}",
                    "Define map functions at module level (not lambdas or closures), or use "
                    "start_method='fork' (Linux), or worker_type='thread'.",
                )
            ) from None
        state.start_collector()
        self._finalizer = weakref.finalize(self, state.shutdown)
        _shut_down_at_exit(state)

    def _start(self, context: Any, dataset: Node, workers: int, skip: bool, fork: bool) -> None:
        state = self._state
        for index in range(workers):
            mine, theirs = context.Pipe()
            inherited = [c for c in state.conns] + [mine] if fork else []
            process = context.Process(
                target=_serve,
                args=(index, theirs, dataset, skip, state.prefix, state.dirs, inherited, os.getpid()),
                name=f"chute-worker-{index}",
                daemon=True,
            )
            state.conns.append(mine)
            state.processes.append(process)
            process.start()
            theirs.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._state.processes if p.pid is not None]

    def submit(self, rows: Rows, key: ReadKey) -> Future[BatchResult]:
        """Read ``rows`` for ``key`` in the least busy worker."""
        return self._state.submit(rows, key)

    def close(self) -> None:
        """Stop the workers and delete the shared memory; pending batches fail with WorkerError."""
        self._finalizer()

    def stall_report(self, future: Future[BatchResult]) -> Optional[tuple[str, Rows, str]]:
        """Who holds the batch of ``future``: the worker, its rows, and its Python stack (dumped
        by the worker's faulthandler on SIGUSR2, even from inside native code)."""
        state = self._state
        with state.lock:
            task = next((t for t in state.tasks.values() if t.future is future), None)
        if task is None:
            return None
        process = state.processes[task.worker]
        who = f"worker process {task.worker} (pid {process.pid})"
        path = _stack_file(state.prefix, state.every_dir, task.worker)
        try:
            if path is None:
                raise FileNotFoundError("no stack file")
            before = os.path.getsize(path)
            os.kill(process.pid, signal.SIGUSR2)
            for _ in range(40):  # (the dump is written at once: a bounded wait for it)
                time.sleep(0.05)
                if os.path.getsize(path) > before:
                    break
            time.sleep(0.05)  # (written in one go; let it finish)
            with open(path, encoding="utf-8", errors="replace") as f:
                f.seek(before)
                stack = f.read().strip()
        except (OSError, ProcessLookupError):
            stack = ""
        return who, task.rows, stack  # ("Stack (most recent call first): ...", faulthandler's)


_LIVE: weakref.WeakSet[_State] = weakref.WeakSet()  # pools not shut down yet


def _shut_down_at_exit(state: _State) -> None:
    """Shut ``state``'s pool down at interpreter exit, before ``multiprocessing`` does its own
    clean-up (which terminates the workers under the collector, and closes their process objects
    while it is still using them): exit hooks run last-registered first, and this one is
    registered after ``multiprocessing``'s, which started the workers."""
    global _EXIT_HOOK
    _LIVE.add(state)
    if not _EXIT_HOOK:
        atexit.register(_shut_down_all)
        _EXIT_HOOK = True


_EXIT_HOOK = False


def _shut_down_all() -> None:
    for state in list(_LIVE):
        state.shutdown()


class _State:
    """Everything the pool's collector thread and finalizer need, with no reference to the pool."""

    def __init__(self, workers: int, batch_bytes: int) -> None:
        self.processes: list[Any] = []
        self.conns: list[connection.Connection] = []
        self.busy = [0] * workers
        self.tasks: dict[int, _Task] = {}
        self.free: collections.deque[tuple[str, int]] = collections.deque()  # appended to by finalizers
        self.capacity = max(batch_bytes + 4096, 1 << 16)
        self.dirs = segment_dirs()
        sweep(self.dirs)  # what killed runs left (see chute._internal.stale)
        self.prefix = f"chute-{owner_tag()}-{secrets.token_hex(4)}"
        self.every_dir = list(self.dirs)  # workers may still make segments in a dir given up on
        self.segments = Segments()
        self.lock = threading.Lock()
        self.next_id = 0
        self.broken: Optional[BaseException] = None
        self.closed = False
        self.closer: Optional[threading.Thread] = None  # the thread shutting down
        self.stopped = threading.Event()  # set once a shutdown has cleaned up
        self.wake_r, self.wake_w = os.pipe()
        self.collector: Optional[threading.Thread] = None

    def start_collector(self) -> None:
        self.collector = threading.Thread(target=self.collect, name="chute-collector", daemon=True)
        self.collector.start()

    # -- the loader's side ---------------------------------------------------------------------
    def submit(self, rows: Rows, key: ReadKey) -> Future[BatchResult]:
        future: Future[BatchResult] = Future()
        future.set_running_or_notify_cancel()  # started: dropping it later does not free its segment
        with self.lock:
            stopping = self.broken is not None or self.closed
            if not stopping:
                self._send(future, rows, key)
        if stopping:  # let a shutdown under way (a worker died) clean up before saying so
            self.stopped.wait(timeout=10.0)
            raise WorkerError(f"chute: the worker processes are stopped ({self.broken or 'closed'})")
        return future

    def _send(self, future: Future[BatchResult], rows: Rows, key: ReadKey) -> None:
        """Give the task to the least busy worker (under the lock)."""
        worker = min(range(len(self.busy)), key=self.busy.__getitem__)
        try:
            segment = self.free.pop()
        except IndexError:
            segment = self._new_segment(self.capacity)
        task_id, self.next_id = self.next_id, self.next_id + 1
        self.tasks[task_id] = _Task(worker, segment, future, rows)
        self.busy[worker] += 1
        with contextlib.suppress(OSError):  # a worker just died: the collector fails its tasks
            self.conns[worker].send((task_id, rows, key, segment))

    def _new_segment(self, size: int) -> tuple[str, int]:
        path = create_segment(f"{self.prefix}-s{self.next_id}", size, self.dirs)
        self.dirs = self.dirs[self.dirs.index(os.path.dirname(path)) :]  # warn about a full one once
        return path, size

    # -- the collector thread ------------------------------------------------------------------
    def collect(self) -> None:
        sentinels = {p.sentinel: i for i, p in enumerate(self.processes)}
        conns = {c: i for i, c in enumerate(self.conns)}
        with selectors.DefaultSelector() as selector:  # registered once (connection.wait makes one a call)
            for item in [*conns, *sentinels, self.wake_r]:
                selector.register(item, selectors.EVENT_READ)
            while not self.closed:
                try:
                    ready = [key.fileobj for key, _ in selector.select(timeout=POLL)]
                    if not self._collect(ready, conns, sentinels):
                        return
                except Exception:
                    if self.closed:
                        return  # shut down under our feet: nothing is waiting any more
                    raise

    def _collect(self, ready: list[Any], conns: dict[Any, int], sentinels: dict[int, int]) -> bool:
        """Take the replies of the workers in ``ready``; False once one of them has died."""
        for item in ready:
            if isinstance(item, connection.Connection):
                try:
                    reply = item.recv()
                except (EOFError, OSError):
                    self._died(conns[item])
                    return False
                self._receive(conns[item], reply)
        for item in ready:
            if isinstance(item, int) and item in sentinels:
                self._died(sentinels[item])
                return False
        return True

    def _receive(self, worker: int, reply: tuple[Any, ...]) -> None:
        kind, task_id = reply[0], reply[1]
        with self.lock:
            task = self.tasks.pop(task_id, None)
            self.busy[worker] -= 1
        if task is None:  # the pool was shut down meanwhile
            return
        if kind == "ok":
            _, _, segment, layout, skipped, times = reply
            used = self._replaced(task.segment, tuple(segment))
            release = functools.partial(self.free.append, used)
            try:
                leaves = unpack(layout, used[0], self.segments, release)
            except BaseException:
                release()
                raise
            task.future.set_result(BatchResult(leaves, skipped, times))
            return
        self.free.append(task.segment)
        _, _, payload, text = reply
        try:
            error = pickle.loads(payload) if payload is not None else None
        except Exception:
            error = None
        if not isinstance(error, BaseException):
            error = WorkerError(text.strip().splitlines()[-1] if text.strip() else "a worker failed")
        error.__cause__ = _RemoteTraceback(text)
        add_note(error, f"chute: raised in worker process {worker} (pid {self.processes[worker].pid})")
        task.future.set_exception(error)

    def _replaced(self, given: tuple[str, int], used: tuple[str, int]) -> tuple[str, int]:
        """The segment a task's batch is in: the one given, or a bigger one the worker had to make
        (then the one given is deleted)."""
        if used[0] != given[0]:
            self.segments.forget(given[0])
            _unlink(given[0])
            self.capacity = max(self.capacity, used[1])
        return used

    def _died(self, worker: int) -> None:
        if self.closed:
            return  # workers stop when the pool shuts down: that is no death
        process = self.processes[worker]
        process.join(timeout=1.0)
        code = process.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            how = f"killed by signal {signal.Signals(-code).name}"
        with self.lock:
            mine = [t for t in self.tasks.values() if t.worker == worker]
        samples = "; ".join(str(row_indices(t.rows).tolist()[:16]) for t in mine) or "none"
        error = WorkerError(
            explain(
                f"worker process {worker} (pid {process.pid}) to keep running",
                f"it stopped ({how}) while reading samples {samples}",
                "A SIGKILL is often the out-of-memory killer: lower prefetch, batch_size or workers; "
                "a SIGSEGV is a crash in native code (a decoder or extension).  The loader starts new "
                "workers on the next iteration.",
            )
        )
        self.broken = error
        self.shutdown()

    # -- shutting down -------------------------------------------------------------------------
    def shutdown(self) -> None:
        with self.lock:
            closing = self.closed
            self.closed = True
            if not closing:
                tasks, self.tasks = list(self.tasks.values()), {}
                self.closer = threading.current_thread()
        if closing:  # under way in another thread (the collector, for a worker that died): wait,
            if self.closer is not threading.current_thread():  # or the exit kills it half-done
                self.stopped.wait(timeout=10.0)
            return
        os.write(self.wake_w, b"x")
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for process in self.processes:
            if process.pid is None:
                continue
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        if self.collector is not None and self.collector is not threading.current_thread():
            self.collector.join(timeout=2.0)
        for conn in self.conns:
            conn.close()
        for process in self.processes:
            if process.pid is not None and not process.is_alive():
                process.close()
        self.segments.close()
        _remove_segments(self.prefix, self.every_dir)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.stopped.set()
        reason = self.broken or WorkerError("chute: the loader's worker processes were shut down")
        for task in tasks:
            if not task.future.done():
                task.future.set_exception(reason)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- the worker process ------------------------------------------------------------------------
def _serve(
    index: int,
    conn: connection.Connection,
    dataset: Node,
    skip: bool,
    prefix: str,
    dirs: list[str],
    inherited: list[connection.Connection],
    owner: int,
) -> None:
    """A worker's life: read the batches it is sent until told to stop or the loader is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loader's to handle
    exit_with(owner, before=functools.partial(_remove_segments, prefix, dirs))  # even in a hung map
    stacks = _stack_file(prefix, dirs, index, create=True)  # (open while the worker lives)
    if stacks is not None:
        faulthandler.register(signal.SIGUSR2, file=stacks, all_threads=False)  # for a stall report
    for other in inherited:  # under fork: ends of other pipes, so EOF reaches whoever waits on them
        other.close()
    segments = Segments()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the loader's process is gone (killed): nobody else will clean up
            _remove_segments(prefix, dirs)
            return
        if task is None:
            return
        task_id, rows, key, (path, capacity) = task
        old = None
        try:
            with arena(segments.map(path)) as built:
                result = read_batch(dataset, rows, key, skip)
            if layout_size(result.leaves, built) <= capacity:
                layout = pack(result.leaves, path, segments, built)
            else:  # too big for the segment: copy it into a bigger one, where the next batch fits whole
                old, needed = path, arena_size(result.leaves, built)
                capacity = needed + needed // 4
                path = create_segment(f"{prefix}-w{index}-t{task_id}", capacity, dirs)
                layout = pack(result.leaves, path, segments)
            del result.leaves, built  # the worker's views of the segment: it can be unmapped now
            if old is not None:
                segments.forget(old)
            reply: tuple[Any, ...] = ("ok", task_id, (path, capacity), layout, result.skipped, result.times)
        except BaseException as error:
            reply = ("error", task_id, _portable(error), traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):  # as above: the loader's process is gone
            _remove_segments(prefix, dirs)
            return
        except Exception as error:  # the reply does not pickle (an odd value in a bytes field)
            conn.send(("error", task_id, _portable(error), traceback.format_exc()))


def _stack_file(prefix: str, dirs: list[str], worker: int, create: bool = False) -> Any:
    """The file worker ``worker`` writes its stack to when asked (removed with the segments),
    made in the first of ``dirs`` that takes it (``create``), else its path if it is there."""
    for directory in dirs:
        path = os.path.join(directory, f"{prefix}-w{worker}-stack")
        if not create:
            if os.path.exists(path):
                return path
            continue
        try:
            return open(path, "w")
        except OSError:
            continue
    return None


def _remove_segments(prefix: str, dirs: list[str]) -> None:
    for directory in dirs:
        for path in glob.glob(os.path.join(directory, f"{prefix}-*")):
            _unlink(path)


def _portable(error: BaseException) -> Optional[bytes]:
    """The exception pickled, if it survives a round trip; else None (its text goes instead)."""
    try:
        payload = pickle.dumps(error)
        pickle.loads(payload)
        return payload
    except Exception:
        return None
