"""Loader: a dataset cut into batches, epoch after epoch, behind the Keras Sequence contract."""

from __future__ import annotations

import functools
import logging
import numbers
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np

from chute._internal.require import framework
from chute._internal.shutdown import exit_on_sigterm
from chute.datasets.base import Node
from chute.datasets.padding import reader as batch_reader
from chute.errors import EmptyDatasetError, OptionError, OutOfRangeError, WorkerError, add_note, explain
from chute.options import BatchOptions, PipelineOptions, check_int
from chute.order.epochs import SEED_LIMIT, shuffle_quality
from chute.order.plan import BatchPlan, StreamPlan
from chute.order.world import World
from chute.pipeline.auto import Plan, check_workers, choose
from chute.pipeline.read import BatchResult
from chute.pipeline.workers import Position, Workers
from chute.resume import check_state, guard, make_state
from chute.rng import ReadKey
from chute.sources.base import Rows, row_indices
from chute.spec import Spec
from chute.telemetry.doctor import Facts, shuffle_mode, verdict
from chute.telemetry.stats import Stats

if TYPE_CHECKING:
    from chute.adapters.jax import JaxBatches
    from chute.adapters.keras import KerasDataset
    from chute.adapters.torch import TorchBatches

__all__ = ["Loader"]

_UNKNOWN = 1 << 62  # batches in a generator's epoch whose end is not found yet

log = logging.getLogger("chute")


class Loader:
    """Batches of a dataset, one epoch at a time.

    The Sequence contract: ``len(loader)`` batches per epoch; ``loader[i]`` is batch ``i`` of the
    current epoch, a pure function of (dataset size, seed, ``loader.epoch``, ``i``): with
    ``shuffle=True`` it holds the samples at positions ``i * batch_size ...`` of the epoch order,
    in ascending index order within the batch (for read locality);
    ``loader.on_epoch_end()`` moves to the next epoch.  ``for batch in loader`` yields the rest of
    the current epoch (all of it, unless an earlier loop stopped part-way) and, once it is
    exhausted, moves ``loader.epoch`` on by one, so consecutive loops see fresh orders.

    The position (``epoch``, ``step``) is the only state; setting ``epoch`` starts that epoch from
    its first batch.  ``state_dict()`` / ``load_state_dict()`` save and restore it exactly, also
    onto another number of ranks (``world``: this process's rank among the training processes,
    each reading a disjoint share of every epoch, all with the same number of batches).
    """

    def __init__(
        self,
        dataset: Node,
        options: BatchOptions,
        pipeline: Optional[PipelineOptions] = None,
        world: Optional[World] = None,
    ) -> None:
        self._stream = dataset.stream_source()  # a generator's, read in order; else None
        if self._stream is not None:
            n = self._stream.per_epoch(options.batch_size)
            _check_stream(options, world or World(), n)
        else:
            n = len(dataset)
        if n == 0:
            raise EmptyDatasetError(
                explain("a dataset with at least one sample", "0 samples", "Check the data before batching.")
            )
        self._dataset = dataset
        self._options = options.resolved()
        self._reader = batch_reader(dataset, self._options)  # the dataset, padded or collated
        self._seed = cast(int, self._options.seed)
        self._size = n
        self._world = world or World()
        self._batches = self._plan_batches()
        self._len: Optional[int] = self._batches.count(0)  # None: a generator's epochs, until they end
        if self._len == 0:
            raise EmptyDatasetError(
                explain(
                    f"at least batch_size={options.batch_size} samples per rank "
                    f"({self._world.size} ranks, drop_remainder={options.drop_remainder}, "
                    f"remainder={self._world.remainder!r})",
                    f"{n} samples",
                    "Use a smaller batch_size, drop_remainder=False or remainder='pad'.",
                )
            )
        self._pipeline = pipeline or PipelineOptions()
        p = self._pipeline
        check_workers(p)
        if p.worker_type == "process":
            exit_on_sigterm()  # here, in the caller's thread: workers may start in a framework's thread
        self._plan: Optional[Plan] = None if p.automatic else Plan(int(p.workers), int(p.prefetch))
        self._workers = Workers(self._reader, p, self._options.batch_size)
        self._last_fetched: Optional[Position] = None
        self._lock = threading.Lock()  # guards the position
        self._epoch = 0
        self._start = 0  # positions of the epoch order consumed before this epoch's batch 0 (restored)
        self._step = 0
        self._stats = Stats()

    # -- what the loader is ------------------------------------------------------------------
    @property
    def dataset(self) -> Node:
        return self._dataset

    @property
    def class_names(self) -> Optional[list[str]]:
        """The dataset's class names (label ``i`` is ``class_names[i]``), or None."""
        return self._dataset.class_names

    @property
    def spec(self) -> Spec:
        """What a batch holds: the dataset's spec, or what padding or collate make of it."""
        return self._reader.spec

    @property
    def options(self) -> BatchOptions:
        return self._options

    @property
    def pipeline(self) -> PipelineOptions:
        return self._pipeline

    @property
    def seed(self) -> int:
        """The seed of the epoch orders (picked at random once when none was given)."""
        return self._seed

    @property
    def batch_size(self) -> int:
        return self._options.batch_size

    @property
    def in_order(self) -> bool:
        """Whether batches can only be drawn in order (a generator's): consumers that ask by
        number (Keras) are then served the next batch whatever number they ask for."""
        return self._stream is not None

    @property
    def length_known(self) -> bool:
        """Whether ``len()`` is known: False for a generator's epochs of no given length, which run
        until it ends (Keras then sees an endless dataset, cut by ``steps_per_epoch``)."""
        return self._len is not None

    @property
    def static_batch_size(self) -> Optional[int]:
        """``batch_size`` when every batch holds exactly that many samples (``drop_remainder=True``:
        the tf.data adapter then gives a static batch dimension), else None."""
        return self._options.batch_size if self._options.drop_remainder else None

    def __len__(self) -> int:
        """Batches per epoch (for this rank)."""
        if self._len is None:  # a generator's epochs of unknown length: it says how to give them one
            return len(self._stream)
        return self._len

    @property
    def world(self) -> World:
        """This loader's rank, the world size and the remainder rule (given or detected)."""
        return self._world

    @property
    def batches_in_epoch(self) -> int:
        """Batches of the current epoch: ``len(loader)``, or fewer in an epoch restored part-way."""
        return self._count(self._epoch)

    # -- where the loader is -----------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        epoch = check_int("epoch", value, minimum=0, limit=SEED_LIMIT)
        if self._start:
            self.close()  # batches read ahead for the restored part of an epoch are not these
        with self._lock:
            self._epoch, self._start, self._step = epoch, 0, 0

    @property
    def step(self) -> int:
        """Batches of the current epoch already handed out by iteration."""
        return self._step

    def on_epoch_end(self) -> None:
        """Finish the current epoch (even part-way) and move to the first batch of the next."""
        with self._lock:
            self._epoch, self._start, self._step = self._epoch + 1, 0, 0

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands, as a small JSON-serialisable dict (see :mod:`chute.resume`).

        ``load_state_dict`` on a loader over the same dataset continues with exactly the batches
        this one would have given next; batches read ahead but not handed out are not counted.
        """
        with self._lock:
            epoch, start, step = self._epoch, self._start, self._step
        return self._state(epoch, start, step)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from ``state_dict()``, maybe on another number of ranks): the
        seed, epoch and position are taken from it; the rest of the epoch is dealt to this world."""
        seed, epoch, consumed = check_state(state, self._guard)
        self.close()
        with self._lock:
            if seed != self._seed:
                self._seed = seed
                self._options = replace(self._options, seed=seed)
                self._batches = self._plan_batches()
            if self._batches.count(consumed) == 0:  # nothing of that epoch is left for this world
                epoch, consumed = epoch + 1, 0
            self._epoch, self._start, self._step = epoch, consumed, 0

    # -- reading -----------------------------------------------------------------------------
    def indices(self, batch: int, epoch: Optional[int] = None) -> np.ndarray:
        """The sample indices that make up batch ``batch`` of ``epoch`` (default: current)."""
        epoch = self._epoch if epoch is None else epoch
        return row_indices(self._rows(self._check_batch(batch, epoch), epoch))

    def __getitem__(self, batch: int) -> Any:
        return self._read(self._check_batch(batch, self._epoch), self._epoch)

    def __iter__(self) -> Iterator[Any]:
        """The rest of the current epoch; with ``repeat=True`` (or ``epochs=N``) the epochs after
        it too, for ever (or until the loader reaches epoch N)."""
        options = self._options
        while options.epochs is None or self._epoch < options.epochs:
            epoch = self._epoch
            yield from self._rest_of_epoch()
            if not options.looping or self._epoch == epoch:  # one epoch asked, or stopped from outside
                return

    def _rest_of_epoch(self) -> Iterator[Any]:
        epoch, start = self._epoch, self._step
        asked = time.perf_counter()
        consumed = 0.0
        finished = False
        try:
            number = start
            while number < self._count(epoch):
                batch, ready = self._get(number, epoch, ahead=True)
                got = time.perf_counter()
                if number >= self._count(epoch):  # a generator's epoch, found to end before it
                    self._end_epoch(epoch, number)
                    finished = True
                    return
                if not self._advance(epoch, number):
                    finished = True
                    return  # the position was moved from outside (epoch set, another loop)
                self.record_delivery(number, got - asked, consumed, ready)
                yield batch
                asked = time.perf_counter()
                consumed = asked - got
                number += 1
            finished = True
        finally:
            if not finished:  # break, an error, Ctrl-C, an abandoned iterator: stop the workers
                self.close()

    def batch(self, batch: int, epoch: int) -> Any:
        """Batch ``batch`` of any epoch, read inline, without touching the loader's position."""
        return self._read(self._check_batch(batch, epoch), epoch)

    def fetch(self, batch: int, epoch: int) -> tuple[Any, int]:
        """Batch ``batch`` of ``epoch`` through the workers, and how many batches were ready.

        For consumers that ask by number (the Keras adapter): asked in order, the next
        ``prefetch`` batches are read ahead; asked out of order, only the batch asked is read.
        The loader's position is not touched.
        """
        batch = self._check_batch(batch, epoch)
        with self._lock:
            before = (None, (epoch, batch), (epoch, batch - 1), (epoch - 1, self._count(epoch - 1) - 1))
            in_order = self._last_fetched in before  # (asking the same batch again: a Keras peek)
            self._last_fetched = (epoch, batch)
        return self._get(batch, epoch, ahead=in_order)

    def close(self) -> None:
        """Stop the workers (threads or processes) and free their shared memory.

        The loader stays usable: the next read starts workers again.  Loaders also stop their
        workers when garbage-collected, at interpreter exit, and when a loop over them ends early
        (``break``, an exception, Ctrl-C).
        """
        self._workers.close()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self, reset: bool = False) -> dict[str, object]:
        """Where the time went while iterating: batches, samples/s, seconds reading (and mapping)
        batches, seconds the consumer waited for data and spent on each batch, and a verdict on
        whether the input limits training, with what to change.  ``reset=True`` starts afresh."""
        plan = self._plan or Plan(0, 0, "not chosen yet: chosen when the first batch is read")
        report = self._stats.report(self._pids())
        report["verdict"] = verdict(report, self.facts())
        report["pipeline"] = {
            "workers": plan.workers,
            "worker_type": self._pipeline.worker_type,
            "prefetch": plan.prefetch,
            "chosen": plan.why,
        }
        if reset:
            self._stats = Stats()
        return report

    def facts(self) -> Facts:
        """The settings the bottleneck doctor's advice depends on."""
        plan = self._plan or Plan(0, 0, "")
        source = type(self._dataset.source).__name__
        shuffle = shuffle_mode(self._options.shuffle)
        return Facts(plan.workers, self._pipeline.worker_type, plan.prefetch, source, shuffle)

    def shuffle_quality(self, epoch: Optional[int] = None) -> dict[str, float]:
        """How close this loader's order for ``epoch`` comes to a uniform permutation (1.0 = uniform).

        See :func:`chute.order.epochs.shuffle_quality`: ``batch_spread`` (are batches made of
        neighbouring samples?) and ``displacement`` (do samples move far from their place?).
        """
        epoch = self._epoch if epoch is None else epoch
        order = self._batches.order(epoch)
        return shuffle_quality(order, self._options.batch_size)

    def __repr__(self) -> str:
        o = self._options
        return (
            f"Loader(batches={self._len}, batch_size={o.batch_size}, shuffle={o.shuffle}, "
            f"seed={o.seed}, drop_remainder={o.drop_remainder}, workers={self._pipeline.workers}, "
            f"worker_type={self._pipeline.worker_type!r}, prefetch={self._pipeline.prefetch}, "
            f"epoch={self._epoch}, step={self._step}"
            + (f", rank={self._world.rank}, world_size={self._world.size})" if self._world.size > 1 else ")")
        )

    # -- the adapters' contract (chute.adapters.contract) --------------------------------------
    def position(self) -> tuple[int, int, int]:
        """Where iteration stands: (epoch, samples of its order consumed before its batch 0 (a
        restored state's), batches handed out), for :meth:`rewind` and :meth:`state_at`."""
        with self._lock:
            return self._epoch, self._start, self._step

    def rewind(self, position: tuple[int, int, int]) -> None:
        """Back to ``position`` (from :meth:`position`): the batches since then are handed out again."""
        self.close()
        with self._lock:
            self._epoch, self._start, self._step = position

    def state_at(self, position: tuple[int, int, int]) -> dict[str, Any]:
        """``state_dict()`` as it is at ``position`` (every rank at the same step)."""
        epoch, start, step = position
        return self._state(epoch, start, step)

    def record_delivery(self, batch: int, waited: float, consumed: float = 0.0, ready: int = 0) -> None:
        """Count batch ``batch`` as handed to the consumer (for ``stats()``): the seconds it waited
        for it, the seconds it spent on the batch before, how many batches were ready."""
        samples = self._batches.samples(batch, self._start)
        self._stats.add_delivery(samples, waited, consumed, ready)

    def arrays_in_ram(self) -> Optional[list[np.ndarray]]:
        """The arrays whose rows the batches are, when batches are plain gathers of numpy arrays
        in RAM (no map, view or padding; every field fixed-shape): a consumer may gather them
        itself (the tf.data adapter does, inside TensorFlow).  Else None."""
        source = self._dataset.direct_source()
        hook = getattr(source, "arrays_in_ram", None)
        if hook is None or self.spec != self._dataset.spec or not self.spec.fields:
            return None
        arrays: Optional[list[np.ndarray]] = hook()
        return arrays

    # -- the frameworks: each adapter (and so its framework) is imported when first asked for, or
    # its extra named; the adapters use only the contract above (chute.adapters.contract) --------
    def keras(self, x: Any = None, y: Any = None, sample_weight: Any = None) -> KerasDataset:
        """This loader as a ``keras.utils.PyDataset`` for ``fit``, ``evaluate`` and ``predict``.

        Batches go to Keras as they are: ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``,
        with dicts feeding layers by name.  For datasets of named fields, ``x``, ``y`` and
        ``sample_weight`` pick the fields: a name, a list of names (a dict keyed by them), or a
        dict ``{layer_name: field_name}``.
        """
        with framework("keras"):
            from chute.adapters.keras import KerasDataset
        return KerasDataset(self, x=x, y=y, sample_weight=sample_weight)

    def torch(
        self, pin_memory: bool = False, device: Any = None, nested: bool = False, whole: bool = False
    ) -> TorchBatches:
        """This loader's batches as torch tensors (an ``IterableDataset``; one epoch per loop).

        Zero-copy from numpy where possible; ``pin_memory=True`` pins them, ``device=`` moves them;
        ``nested=True`` makes ragged fields ``torch.nested`` tensors (else pad them with ``pad=``);
        ``whole=True`` makes a loop left part-way a peek (for validation: see ``TorchBatches``).
        Where a ``DataLoader`` is required, use ``DataLoader(loader.torch(), batch_size=None)``.
        """
        with framework("torch"):
            from chute.adapters.torch import TorchBatches
        return TorchBatches(self, pin_memory=pin_memory, device=device, nested=nested, whole=whole)

    def tf(self, prefetch: int = 2) -> Any:
        """This loader as a ``tf.data.Dataset`` of batches whose element spec comes from chute's spec.

        Each iteration of the dataset is the loader's next epoch; it feeds ``model.fit`` and works
        under ``tf.distribute`` (auto-sharding off: chute splits data between ranks itself).
        """
        len(self)
        with framework("tf"):
            from chute.adapters.tf import dataset
        return dataset(self, prefetch=check_int("prefetch", prefetch, minimum=0))

    def jax(self, device_prefetch: int = 2, sharding: Any = None, device: Any = None) -> JaxBatches:
        """This loader's batches as ``jax.Array``, put on the device ``device_prefetch`` batches ahead.

        With ``sharding`` (a ``jax.sharding.Sharding``) each batch is a global array across its devices.
        """
        with framework("jax"):
            from chute.adapters.jax import JaxBatches
        return JaxBatches(self, device_prefetch, sharding=sharding, device=device)

    # -- internals ---------------------------------------------------------------------------
    def _check_batch(self, batch: Any, epoch: int) -> int:
        count = self._count(epoch)
        if isinstance(batch, numbers.Integral) and not isinstance(batch, bool):
            index = int(batch)
            if -count <= index < count:
                return index + count if index < 0 else index
        raise OutOfRangeError(
            explain(
                f"a batch number in [0, {count})",
                repr(batch),
                f"This loader makes {count} batches in epoch {epoch} (len(loader) = {self._len}).",
            )
        )

    def _count(self, epoch: int) -> int:
        """Batches in ``epoch``: fewer than ``len(self)`` only in an epoch restored part-way."""
        start = self._start
        if self._len is None:  # a generator's epoch: as long as it turns out to be
            end = self._batches.end(epoch)
            return _UNKNOWN if end is None else end
        return cast(int, self._batches.count(start)) if start and epoch == self._epoch else self._len

    def _rows(self, batch: int, epoch: int) -> Rows:
        start = self._start if epoch == self._epoch else 0
        return self._batches.rows(batch, epoch, start)

    def _state(self, epoch: int, start: int, step: int) -> dict[str, Any]:
        """The state after ``step`` batches of ``epoch`` dealt from ``start`` (every rank at ``step``)."""
        consumed = start + step * self._world.size * self._options.batch_size
        size = self._size if self._size is not None else consumed
        return make_state(self._guard, self._seed, self._world, epoch, min(consumed, size))

    def _plan_batches(self) -> BatchPlan | StreamPlan:
        if self._stream is not None:
            bucket = self._options.bucket
            by = None if bucket is None else self._stream.spec.names.index(bucket.field(self._stream.spec))
            return StreamPlan(self._stream, self._options, self._world, by)
        bucket = self._options.bucket
        lengths = None
        if bucket is not None:
            field = bucket.field(self._dataset.spec)
            lengths = functools.partial(self._dataset.lengths, field)
        return BatchPlan(self._dataset.source, cast(int, self._size), self._options, self._world, lengths)

    @functools.cached_property
    def _guard(self) -> dict[str, Any]:
        """What a state must match (the data's fingerprint, the batching), worked out once."""
        return guard(self._dataset, self._options, self._size)

    def _advance(self, epoch: int, batch: int) -> bool:
        """Count batch ``batch`` of ``epoch`` as consumed, if the position is still there."""
        with self._lock:
            if (self._epoch, self._step) != (epoch, batch):
                return False
            if batch + 1 == self._count(epoch):
                self._epoch, self._start, self._step = epoch + 1, 0, 0
            else:
                self._step = batch + 1
        return True

    def _end_epoch(self, epoch: int, batch: int) -> None:
        """A generator's ``epoch`` ended before batch ``batch``: on to the next, if still there."""
        with self._lock:
            if (self._epoch, self._step) == (epoch, batch):
                self._epoch, self._start, self._step = epoch + 1, 0, 0

    def _read(self, batch: int, epoch: int) -> Any:
        """Batch ``batch`` of ``epoch``, read in the calling thread."""
        return self._finish(self._fetch(batch, epoch), batch, epoch)

    def _fetch(self, batch: int, epoch: int) -> BatchResult:
        """Read a batch in the calling thread, as leaves, as the workers read theirs."""
        return self._workers.read(*self._task((epoch, batch)))

    def _finish(self, result: BatchResult, batch: int, epoch: int) -> Any:
        """Record a read batch in the stats (warning at the first skip) and give it its structure."""
        self._stats.add_read(result.times, result.nbytes)
        for index, why in result.skipped:
            if self._stats.skip(index, why):
                warnings.warn(
                    f"chute: skipping sample {index} of batch {batch} (epoch {epoch}), which failed ({why}); "
                    "further skips are counted in loader.stats() without a warning",
                    stacklevel=4,
                )
        return self._reader.spec.unflatten(result.leaves)

    def _get(self, batch: int, epoch: int, ahead: bool) -> tuple[Any, int]:
        """Batch ``batch`` of ``epoch`` through the workers (reading ahead if ``ahead``)."""
        try:
            if self._plan is None:  # workers or prefetch "auto": time this batch inline, then choose
                started = time.perf_counter()
                result = self._fetch(batch, epoch)
                self._plan = choose(self._pipeline, time.perf_counter() - started, result.nbytes)
                log.info("chute: loader pipeline chose %s", self._plan.why)
                return self._finish(result, batch, epoch), 0
            if self._plan.workers == 0:
                return self._read(batch, epoch), 0
            upcoming = self._upcoming(batch, epoch) if ahead else []
            result, ready = self._workers.get((epoch, batch), upcoming, self._plan, self._task)
            return self._finish(result, batch, epoch), ready
        except Exception as error:
            if isinstance(error, WorkerError):
                self.close()  # the workers are gone: start afresh at the next read
            add_note(error, f"chute: while reading batch {batch} of epoch {epoch}")
            raise

    def _upcoming(self, batch: int, epoch: int) -> list[Position]:
        """The positions after (epoch, batch) that are read ahead, into the next epoch too."""
        depth = self._plan.prefetch if self._plan is not None else 0
        positions = []
        for _ in range(depth):
            batch += 1
            if batch >= self._count(epoch):
                if self._len is None:
                    break  # (a generator read ahead past its end: nothing of the next epoch yet)
                epoch, batch = epoch + 1, 0
            positions.append((epoch, batch))
        return positions

    def _task(self, position: Position) -> tuple[Rows, ReadKey]:
        """The rows and read key of the batch at ``position`` (for the workers)."""
        epoch, batch = position
        return self._rows(batch, epoch), (self._seed, epoch)

    def _pids(self) -> list[int]:
        return self._workers.pids()


def _check_stream(options: BatchOptions, world: World, per_epoch: Optional[int]) -> None:
    """What a generator's loader cannot do, refused with what to do instead."""
    if options.shuffle is not False:
        raise OptionError(
            explain(
                "shuffle=False for a generator (it is read in order)",
                repr(options.shuffle),
                "Shuffle inside the generator, or convert it once (chute.convert) and load the result "
                "with shuffle=True.",
            )
        )
    if per_epoch is None and world.size > 1:
        raise OptionError(
            explain(
                f"epochs of a known length for {world.size} ranks (each must get as many batches)",
                "a generator read to its end each epoch",
                "Pass length= (samples) or steps= (batches) to chute.from_generator.",
            )
        )
