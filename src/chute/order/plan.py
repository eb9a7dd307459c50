"""Which rows make up each batch of each epoch: the epoch orders a loader reads by, kept and hinted.

A :class:`BatchPlan` turns (batch, epoch) into the rows to read, for one rank of a world (see
:func:`chute.order.epochs.rank_batches`), from a start position in the epoch order (0, or where a
restored state left off): a contiguous slice without shuffle (read as zero-copy views), else the
batch's share of the epoch order sorted ascending,
which keeps reads local (cache lines, pages, shards, disk).  It computes each epoch's order once
and keeps the two newest (the current epoch and the one still draining, or the next one being
read ahead); under block shuffle it also asks the source to read the next window's blocks ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Optional, cast

import numpy as np

from chute.errors import EmptyDatasetError, explain
from chute.options import BatchOptions, BlockShuffle
from chute.order.epochs import block_plan, bucket_order, epoch_order, rank_batches, rank_positions
from chute.order.world import World
from chute.sources.base import Drawn, Rows, will_need

__all__ = ["BatchPlan", "StreamPlan"]


class BatchPlan:
    """The rows of every batch of ``size`` samples cut by ``options``, epoch after epoch."""

    def __init__(
        self,
        source: Any,
        size: int,
        options: BatchOptions,
        world: World,
        lengths: Optional[Callable[[int], np.ndarray]] = None,
    ) -> None:
        self._source, self._size, self._options, self._world = source, size, options, world
        self._lengths = lengths  # bucketing: each sample's length in an epoch
        self._identity = not options.shuffle and options.bucket is None  # the order is 0..n-1
        self._seed = cast(int, options.seed)
        self._lock = threading.Lock()  # one thread computes an epoch's order, others wait
        self._orders: dict[int, np.ndarray] = {}
        self._blocks: dict[int, np.ndarray] = {}  # block shuffle: each epoch's block starts, in order
        self._advised: tuple[int, int] = (-1, -1)  # (epoch, window) whose blocks were asked for

    def order(self, epoch: int) -> np.ndarray:
        """The order of every sample in ``epoch`` (the identity without shuffle)."""
        if self._identity:
            return np.arange(self._size, dtype=np.int64)
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                shuffle = self._options.shuffle
                bucket = self._options.bucket
                if bucket is not None and self._lengths is not None:
                    order = bucket_order(
                        self._lengths(epoch),
                        self._options.batch_size,
                        seed=self._seed,
                        epoch=epoch,
                        shuffle=bool(shuffle),
                        boundaries=bucket.boundaries,
                        window=bucket.window,
                    )
                elif isinstance(shuffle, BlockShuffle):
                    order, self._blocks[epoch] = block_plan(
                        self._size,
                        seed=self._seed,
                        epoch=epoch,
                        block_size=shuffle.block_size,
                        window=shuffle.window,
                    )
                else:
                    order = epoch_order(self._size, seed=self._seed, epoch=epoch, shuffle=True)
                if len(self._orders) >= 2:
                    dropped = min(self._orders)
                    self._orders.pop(dropped)
                    self._blocks.pop(dropped, None)
                self._orders[epoch] = order
            return order

    def count(self, start: int = 0) -> int:
        """Batches of this rank in an epoch dealt from position ``start``."""
        rounds, last = self._dealing(start)
        return rounds + (last > 0)

    def end(self, epoch: int) -> None:
        """(Known ahead: :meth:`count`.)"""
        return None

    def samples(self, batch: int, start: int = 0) -> int:
        """Samples in batch ``batch`` (of an epoch dealt from ``start``)."""
        rounds, last = self._dealing(start)
        return self._options.batch_size if batch < rounds else last

    def rows(self, batch: int, epoch: int, start: int = 0) -> Rows:
        """The rows of batch ``batch`` of ``epoch``; under block shuffle, hints the source ahead."""
        rounds, last = self._dealing(start)
        w = self._world
        positions = rank_positions(
            batch, start, self._size, self._options.batch_size, w.rank, w.size, rounds, last
        )
        if self._identity:
            return positions
        picked = np.sort(self.order(epoch)[positions])
        self._read_ahead(positions.start if isinstance(positions, slice) else int(positions[0]), epoch)
        return picked

    def _dealing(self, start: int) -> tuple[int, int]:
        o, w = self._options, self._world
        return rank_batches(self._size - start, o.batch_size, w.size, o.drop_remainder, w.remainder)

    def _read_ahead(self, position: int, epoch: int) -> None:
        """Under block shuffle, ask the source for the blocks of this window and the next, once each."""
        shuffle = self._options.shuffle
        if not isinstance(shuffle, BlockShuffle):
            return
        window = position // (shuffle.block_size * shuffle.window)
        with self._lock:
            if self._advised[0] == epoch and self._advised[1] >= window:
                return
            first = window if self._advised[0] != epoch else self._advised[1] + 1
            self._advised = (epoch, window + 1)
            plan = self._blocks.get(epoch)
        if plan is None:  # the epoch's plan was dropped (two newer epochs): a hint, so skip it
            return
        blocks = plan[first * shuffle.window : (window + 2) * shuffle.window]
        will_need(self._source, blocks, shuffle.block_size)


class StreamPlan:
    """The batches of a stream (a generator), drawn in order: the same questions as
    :class:`BatchPlan` answers, for a source that can only be read from its start.

    Batch ``b`` of an epoch holds positions ``b * batch_size ...`` of the epoch's stream (dealt to
    ranks round-robin, as :func:`chute.order.epochs.rank_batches` says, but for the tail: a
    generator's tail that does not fill a batch on every rank is left out, since repeating samples
    from the epoch's start would mean reading it again).  Its rows are the samples themselves,
    drawn from ``stream`` (see :meth:`chute.sources.generator.GeneratorSource.draw`).  An epoch of
    unknown length ends where the stream does: :meth:`end` is learnt when a draw comes back short.
    With ``bucket``, the stream is cut into windows of ``bucket.window`` batches' worth, and each
    window's samples are ordered into batches of similar lengths (``bucket_by``: the measured
    field), the batches in an order drawn from (seed, epoch, window).
    """

    def __init__(
        self, stream: Any, options: BatchOptions, world: World, bucket_by: Optional[int] = None
    ) -> None:
        self._stream, self._options, self._world = stream, options, world
        self.size: Optional[int] = stream.per_epoch(options.batch_size)  # samples an epoch
        self._ends: dict[int, int] = {}  # epoch -> its batches, for epochs of unknown length
        self._bucket_by = bucket_by  # bucketing: the position of the field measured, in the stream's spec
        self._windows: dict[tuple[int, int], np.ndarray] = {}  # (epoch, window) -> its bucketed order
        self._lock = threading.Lock()

    def order(self, epoch: int) -> np.ndarray:
        """A stream is read in order: the identity."""
        return np.arange(self.size or 0, dtype=np.int64)

    def count(self, start: int = 0) -> Optional[int]:
        """Batches of this rank in an epoch dealt from position ``start`` (None: not known ahead)."""
        if self.size is None:
            return None
        rounds, last = self._dealing(start)
        return rounds + (last > 0)

    def end(self, epoch: int) -> Optional[int]:
        """Batches in ``epoch`` of a stream of unknown length, once a draw has found its end."""
        return self._ends.get(epoch)

    def samples(self, batch: int, start: int = 0) -> int:
        if self.size is None:
            return self._options.batch_size
        rounds, last = self._dealing(start)
        return self._options.batch_size if batch < rounds else last

    def rows(self, batch: int, epoch: int, start: int = 0) -> Drawn:
        size, o, w = self.size, self._options, self._world
        if size is None:  # one rank (the loader checks): batches until the stream ends
            first = start + batch * o.batch_size
            drawn = self._draw(epoch, first, first + o.batch_size)
            if len(drawn) < o.batch_size:
                self._ends.setdefault(epoch, batch + (len(drawn) > 0 and not o.drop_remainder))
                if not len(drawn) and batch == 0 and start == 0:
                    raise EmptyDatasetError(
                        explain(f"samples from the generator in epoch {epoch}", "none", "Check it.")
                    )
                if o.drop_remainder:
                    drawn = drawn[slice(0, 0)]
            return drawn
        rounds, last = self._dealing(start)
        # (a slice: with the tail rule "drop", positions never wrap to the epoch's start)
        dealt = rank_positions(batch, start, size, o.batch_size, w.rank, w.size, rounds, last)
        positions = cast(slice, dealt)
        drawn = self._draw(epoch, positions.start, positions.stop)
        if len(drawn) < positions.stop - positions.start:
            raise EmptyDatasetError(
                explain(
                    f"{self.count(start)} batches in epoch {epoch} from the generator",
                    f"it ran out after {batch} batches and {len(drawn)} samples",
                    "Check length=/steps=, or make the generator function restartable.",
                )
            )
        return drawn

    def _dealing(self, start: int) -> tuple[int, int]:
        o, w = self._options, self._world
        return rank_batches(cast(int, self.size) - start, o.batch_size, w.size, o.drop_remainder, "drop")

    def _draw(self, epoch: int, first: int, stop: int) -> Drawn:
        """Positions ``[first, stop)`` of the epoch as batched: drawn as they come, or, bucketing,
        the batch at that place in its window's bucketed order."""
        if self._bucket_by is None:
            return cast(Drawn, self._stream.draw(epoch, first, stop, self.size))
        bucket = cast(Any, self._options.bucket)
        size = self._options.batch_size
        span = bucket.window * size  # samples a window
        window = first // span
        drawn = cast(Drawn, self._stream.draw(epoch, window * span, (window + 1) * span, self.size))
        order = self._window_order(epoch, window, drawn)
        at = first - window * span
        return drawn[np.sort(order[at : at + stop - first])]

    def _window_order(self, epoch: int, window: int, drawn: Drawn) -> np.ndarray:
        """The window's samples ordered into batches of similar lengths, batches in random order:
        :func:`chute.order.epochs.bucket_order` of the window, keyed by (seed, epoch, window)."""
        with self._lock:
            order = self._windows.get((epoch, window))
            if order is None:
                bucket = cast(Any, self._options.bucket)
                column = drawn.leaves[cast(int, self._bucket_by)]
                lengths = np.fromiter((len(v) for v in column), np.int64, len(column))
                order = bucket_order(
                    lengths,
                    self._options.batch_size,
                    seed=cast(int, self._options.seed),
                    epoch=(epoch << 32) + window,
                    shuffle=True,
                    boundaries=bucket.boundaries,
                    window=bucket.window,
                )
                if len(self._windows) >= 4:
                    self._windows.pop(next(iter(self._windows)))
                self._windows[(epoch, window)] = order
            return order
