"""Generators and other one-way iterables as epoch-aware loaders: ``chute.from_generator``.

A stream is read in order, by **one producer thread** (so every sample is produced exactly once,
whatever the workers: no worker replays the generator); the producer cuts it into batches and the
workers run the maps and the collation of those batches in parallel, handed over in order.
Epochs: with ``length`` (samples) or ``steps`` (batches) the stream is cut into epochs of that
size, calling the generator function again only when it runs out (so an infinite ``while True``
generator is simply cut); without either, an epoch is one call of the function, to its end.
Per-sample randomness comes from (seed, epoch, position in the epoch), as for other datasets.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain, islice
from typing import Any, Optional, cast

from chute.datasets.mapped import stack, unbatched_spec, wants_rng
from chute.errors import EmptyDatasetError, OptionError, explain
from chute.loader import Frameworks
from chute.options import BatchOptions, PipelineOptions, check_int
from chute.order.epochs import batch_count
from chute.rng import SampleStreams, batch_rng
from chute.spec import Spec, infer_spec
from chute.telemetry.doctor import Facts, shuffle_mode, verdict
from chute.telemetry.stats import Stats

__all__ = ["Stream", "StreamLoader", "from_generator"]

_END = "end"  # marker after each epoch's batches


class Stream:
    """Samples from a generator function (called again when it ends) or a re-iterable object."""

    def __init__(
        self, source: Any, length: Optional[int], steps: Optional[int], spec: Optional[Spec]
    ) -> None:
        if not callable(source) and not isinstance(source, Iterable):
            raise OptionError(
                explain("a generator function or an iterable", type(source).__name__, "Pass fn, not fn().")
            )
        self._source = source
        self.length = None if length is None else check_int("length", length, minimum=1)
        self.steps = None if steps is None else check_int("steps", steps, minimum=1)
        self._spec = spec
        self._maps: list[tuple[Callable[..., Any], bool, bool]] = []  # (fn, batched, wants rng)
        self._peeked: list[Any] = []  # a one-shot iterator's first sample, read to find the spec
        self._finished: Optional[Spec] = None

    def map(self, fn: Callable[..., Any]) -> Stream:
        """This stream with ``fn(sample)`` or ``fn(sample, rng)`` applied per sample, in the workers."""
        return self._with(fn, batched=False)

    def map_batch(self, fn: Callable[..., Any]) -> Stream:
        """This stream with ``fn(batch)`` or ``fn(batch, rng)`` applied per batch, in the workers."""
        return self._with(fn, batched=True)

    def _with(self, fn: Callable[..., Any], batched: bool) -> Stream:
        out = Stream(self._source, self.length, self.steps, None)
        out._maps = [*self._maps, (fn, batched, wants_rng(fn))]
        out._peeked = self._peeked
        return out

    @property
    def raw_spec(self) -> Spec:
        if self._spec is None:
            self._spec = infer_spec(self._first())
        return self._spec

    @property
    def spec(self) -> Spec:
        """The spec of finished samples: the raw spec, through the maps (from the first sample)."""
        if not self._maps:
            return self.raw_spec
        if self._finished is None:
            self._finished = unbatched_spec(self.finish([self._first()], (0, 0), 0))
        return self._finished

    def passes(self) -> Iterator[Any]:
        """The samples of pass after pass, for as long as the source gives any."""
        while True:
            empty = True
            for sample in self._pass():
                empty = False
                yield sample
            if empty or self._one_shot():
                return

    def _one_shot(self) -> bool:
        return not callable(self._source) and iter(self._source) is self._source

    def _pass(self) -> Iterator[Any]:
        if callable(self._source):
            return iter(self._source())
        if not self._one_shot():
            return iter(self._source)
        return chain(self._take_peeked(), self._source)

    def _take_peeked(self) -> Iterator[Any]:
        while self._peeked:
            yield self._peeked.pop()

    def _first(self) -> Any:
        """The first sample, without losing it from a one-shot iterator."""
        try:
            if not self._one_shot():
                return next(iter(self._pass()))
            if not self._peeked:
                self._peeked.append(next(self._source))
            return self._peeked[0]
        except StopIteration:
            raise EmptyDatasetError(explain("samples from the generator", "none", "Check it.")) from None

    def finish(self, samples: list[Any], key: tuple[int, int], start: int) -> Any:
        """Samples (positions ``start...`` of an epoch) through the maps, stacked into a batch."""
        for fn, batched, rng in self._maps:
            if not batched:
                streams = SampleStreams(key)
                samples = [fn(s, streams(start + j)) if rng else fn(s) for j, s in enumerate(samples)]
        if self._maps:
            spec = infer_spec(samples[0])
        else:
            spec = self._spec = self._spec or infer_spec(samples[0])  # never peek mid-stream
        batch = spec.unflatten(stack(spec, [spec.flatten(sample) for sample in samples]))
        for fn, batched, rng in self._maps:
            if batched:
                batch = fn(batch, batch_rng(key, start)) if rng else fn(batch)
        return batch

    def __iter__(self) -> Iterator[Any]:
        """The samples of the first epoch (maps applied, seed 0): what ``chute.convert`` stores."""
        samples = self.passes() if self.length or self.steps else self._pass()
        count = self.length if self.length else None
        spec = self.spec
        for position, sample in enumerate(islice(samples, count)):
            yield spec.unflatten([leaf[0] for leaf in spec.flatten(self.finish([sample], (0, 0), position))])

    def loader(
        self,
        batch_size: int,
        seed: Optional[int] = None,
        drop_remainder: bool = False,
        workers: int = 0,
        prefetch: int = 2,
        shuffle: bool = False,
    ) -> StreamLoader:
        """Batches of this stream, epoch after epoch (see the module docstring)."""
        if shuffle is not False:
            raise OptionError(
                explain(
                    "shuffle=False for a generator (it is read in order)",
                    repr(shuffle),
                    "Shuffle inside the generator, or convert it once (chute.convert) and load the "
                    "result with shuffle=True.",
                )
            )
        if self.steps is not None and self.length is not None:
            raise OptionError(explain("length= or steps=, not both", "both", "Give one of them."))
        return StreamLoader(
            self, BatchOptions(batch_size, False, seed, drop_remainder), PipelineOptions(workers, prefetch)
        )


def from_generator(
    fn: Any, length: Optional[int] = None, steps: Optional[int] = None, spec: Optional[Spec] = None
) -> Stream:
    """A stream of samples from a generator function (or any iterable), for ``.loader(...)``.

    ``length`` (samples) or ``steps`` (batches) make epochs of that size; without them an epoch is
    one call of ``fn``.  ``spec`` saves reading a first sample to learn the structure.
    """
    return Stream(fn, length, steps, spec)


class StreamLoader(Frameworks):
    """A :class:`Stream` cut into batches and epochs; iteration, Keras, torch, tf and jax like a Loader."""

    def __init__(self, stream: Stream, options: BatchOptions, pipeline: PipelineOptions) -> None:
        self._stream, self._options, self._pipeline = stream, options.resolved(), pipeline
        if pipeline.worker_type != "thread":
            raise OptionError(explain("thread workers for a generator", pipeline.worker_type, "Use threads."))
        size = self._options.batch_size
        if stream.steps is not None:
            self._len: Optional[int] = stream.steps
        elif stream.length is not None:
            self._len = batch_count(stream.length, size, self._options.drop_remainder)
            if not self._len:
                raise EmptyDatasetError(
                    explain(f"length >= batch_size={size}", stream.length, "Lower batch_size.")
                )
        else:
            self._len = None
        self._epoch, self._step = 0, 0
        self._items: Optional[Iterator[Any]] = None
        self._cache: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._stats = Stats()
        self._stop = threading.Event()
        self._pool: Optional[ThreadPoolExecutor] = None

    @property
    def spec(self) -> Spec:
        return self._stream.spec

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def step(self) -> int:
        return self._step

    @property
    def seed(self) -> int:
        return cast(int, self._options.seed)

    def __len__(self) -> int:
        if self._len is None:
            raise TypeError(
                "chute: this generator's epochs have no known length: pass length= (samples) or "
                "steps= (batches) to chute.from_generator for len(), Keras and tf.data"
            )
        return self._len

    @property
    def batches_in_epoch(self) -> int:
        """Batches per epoch, as ``len()`` (a generator's loader is not restored part-way)."""
        return len(self)

    def __iter__(self) -> Iterator[Any]:
        epoch = self._epoch
        while self._epoch == epoch:
            item = self._take()
            if item is None:
                return
            yield item

    def on_epoch_end(self) -> None:
        """Finish the current epoch: batches of it not taken yet are dropped."""
        if self._step:
            while self._take() is not None:
                pass

    def fetch(self, batch: int, epoch: int) -> tuple[Any, int]:
        """The next batch of the stream, for Keras; asking the same number again (a peek) repeats it."""
        cached = self._cache.get((epoch, batch))
        if cached is not None:
            return cached, 0
        out = self._take()
        if out is None:
            out = self._take()  # the epoch had ended: this is the first batch of the next
        self._cache[(epoch, batch)] = out
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return out, 0

    def stats(self, reset: bool = False) -> dict[str, object]:
        """Where the time went, as :meth:`chute.Loader.stats`; ``reset=True`` starts afresh."""
        report = self._stats.report([])
        report["verdict"] = verdict(report, self.facts())
        if reset:
            self._stats = Stats()
        return report

    def facts(self) -> Facts:
        """The settings the bottleneck doctor's advice depends on (a generator is read by one thread)."""
        prefetch = self._pipeline.prefetch
        depth = prefetch if isinstance(prefetch, int) else 0
        return Facts(self._pipeline_workers(), "thread", depth, "generator", shuffle_mode(False))

    def record_delivery(self, batch: int, waited: float, consumed: float = 0.0, ready: int = 0) -> None:
        self._stats.add_delivery(self._options.batch_size, waited, consumed, ready)

    def position(self) -> tuple[int, int, int]:
        """(epoch, 0, batches handed out): a stream is never restored part-way."""
        return self._epoch, 0, self._step

    def rewind(self, position: tuple[int, int, int]) -> None:
        raise OptionError(
            explain(
                "a loader that can go back (torch(whole=True) rewinds a loop left part-way)",
                "a generator's loader, read once, in order",
                "Use torch() without whole=True, or convert the generator (chute.convert) first.",
            )
        )

    def state_at(self, position: tuple[int, int, int]) -> dict[str, Any]:
        raise OptionError(
            explain("a loader with a resumable position", "a generator's loader", "Convert it first.")
        )

    def arrays_in_ram(self) -> None:
        return None

    def close(self) -> None:
        """Stop the producer thread and the workers (the stream cannot continue afterwards)."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    # -- the pipeline --------------------------------------------------------------------------
    def _pipeline_workers(self) -> int:
        return int(self._pipeline.workers)

    def _take(self) -> Any:
        """The next batch of the current epoch, or None (and the epoch moves on) at its end."""
        if self._items is None:
            self._items = self._inline() if self._pipeline_workers() == 0 else self._threaded()
        while True:
            item = next(self._items)
            if isinstance(item, BaseException):
                raise item
            epoch, number, batch = item
            if epoch < self._epoch:
                continue  # an epoch already finished (on_epoch_end, or its last batch was counted)
            if number == _END:
                self._epoch, self._step = epoch + 1, 0
                return None
            self._step = number + 1
            if self._len is not None and self._step == self._len:
                self._epoch, self._step = epoch + 1, 0
            return batch

    def _raw(self) -> Iterator[tuple[int, Any, int, list[Any]]]:
        """(epoch, batch number, first position, samples), with (epoch, _END, 0, []) after each epoch."""
        size, stream = self._options.batch_size, self._stream
        continuous = stream.passes() if self._len is not None else None
        for epoch in range(1 << 62):
            samples = continuous if continuous is not None else stream._pass()
            number = 0
            while self._len is None or number < self._len:
                want = size
                if stream.length is not None:
                    want = min(size, stream.length - number * size)
                chunk = list(islice(samples, want))
                if len(chunk) < want or (self._options.drop_remainder and len(chunk) < size):
                    if self._len is not None and (chunk or number < self._len - 1):
                        raise EmptyDatasetError(
                            explain(
                                f"{self._len} batches in epoch {epoch} from the generator",
                                f"it ran out after {number} batches and {len(chunk)} samples",
                                "Check length=/steps=, or make the generator function restartable.",
                            )
                        )
                    if self._len is None and number == 0 and not chunk:
                        raise EmptyDatasetError(explain("samples from the generator", "none", "Check it."))
                    if chunk and not self._options.drop_remainder:
                        yield epoch, number, number * size, chunk
                    break
                yield epoch, number, number * size, chunk
                number += 1
            yield epoch, _END, 0, []

    def _finish(self, epoch: int, start: int, samples: list[Any]) -> Any:
        return self._stream.finish(samples, (self.seed, epoch), start)

    def _inline(self) -> Iterator[Any]:
        for epoch, number, start, samples in self._raw():
            yield (epoch, number, None if number == _END else self._finish(epoch, start, samples))

    def _threaded(self) -> Iterator[Any]:
        self._pool = ThreadPoolExecutor(self._pipeline_workers(), thread_name_prefix="chute-stream")
        ready: queue.Queue[Any] = queue.Queue(maxsize=int(self._pipeline.prefetch))
        threading.Thread(target=self._produce, args=(ready,), name="chute-producer", daemon=True).start()
        while True:
            item = ready.get()
            if isinstance(item, BaseException):
                yield item
                return
            epoch, number, future = item
            try:
                yield (epoch, number, future.result() if future is not None else None)
            except Exception as error:
                yield error
                return

    def _produce(self, ready: queue.Queue[Any]) -> None:
        """The one thread that reads the generator: cuts batches, hands them to the workers."""
        pool = cast(ThreadPoolExecutor, self._pool)
        try:
            for epoch, number, start, samples in self._raw():
                future: Optional[Future[Any]] = None
                if number != _END:
                    future = pool.submit(self._finish, epoch, start, samples)
                while not self._stop.is_set():
                    try:
                        ready.put((epoch, number, future), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as error:
            ready.put(error)
