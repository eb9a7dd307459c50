"""Which rows make up each batch of each epoch: the epoch orders a loader reads by, kept and hinted.

A :class:`BatchPlan` turns (batch, epoch) into the rows to read: a contiguous slice without
shuffle (read as zero-copy views), else the batch's share of the epoch order sorted ascending,
which keeps reads local (cache lines, pages, shards, disk).  It computes each epoch's order once
and keeps the two newest (the current epoch and the one still draining, or the next one being
read ahead); under block shuffle it also asks the source to read the next window's blocks ahead.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import numpy as np

from .options import BatchOptions, BlockShuffle
from .order import batch_rows, block_plan, epoch_order
from .sources.base import Rows, will_need

__all__ = ["BatchPlan"]


class BatchPlan:
    """The rows of every batch of ``size`` samples cut by ``options``, epoch after epoch."""

    def __init__(self, source: Any, size: int, options: BatchOptions) -> None:
        self._source, self._size, self._options = source, size, options
        self._seed = cast(int, options.seed)
        self._lock = threading.Lock()  # one thread computes an epoch's order, others wait
        self._orders: dict[int, np.ndarray] = {}
        self._blocks: dict[int, np.ndarray] = {}  # block shuffle: each epoch's block starts, in order
        self._advised: tuple[int, int] = (-1, -1)  # (epoch, window) whose blocks were asked for

    def order(self, epoch: int) -> np.ndarray:
        """The order of every sample in ``epoch`` (the identity without shuffle)."""
        if not self._options.shuffle:
            return np.arange(self._size, dtype=np.int64)
        with self._lock:
            order = self._orders.get(epoch)
            if order is None:
                shuffle = self._options.shuffle
                if isinstance(shuffle, BlockShuffle):
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

    def rows(self, batch: int, epoch: int) -> Rows:
        """The rows of batch ``batch`` of ``epoch``; under block shuffle, hints the source ahead."""
        rows = batch_rows(batch, self._size, self._options.batch_size)
        if not self._options.shuffle:
            return rows
        picked = np.sort(self.order(epoch)[rows])
        self._read_ahead(batch, epoch)
        return picked

    def _read_ahead(self, batch: int, epoch: int) -> None:
        """Under block shuffle, ask the source for the blocks of this window and the next, once each."""
        shuffle = self._options.shuffle
        if not isinstance(shuffle, BlockShuffle):
            return
        window = batch * self._options.batch_size // (shuffle.block_size * shuffle.window)
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
