"""The order of an epoch: a pure function of (dataset size, seed, epoch).

No state is kept anywhere: the same arguments give the same order in any process, on any
machine, at any time, which is what makes resuming and splitting across workers exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from chute.errors import OptionError, explain

__all__ = [
    "SEED_LIMIT",
    "batch_count",
    "block_order",
    "block_plan",
    "bucket_order",
    "epoch_order",
    "rank_batches",
    "rank_positions",
    "shuffle_quality",
]

SEED_LIMIT = 2**64


def _generator(seed: int, epoch: int, stream: int) -> np.random.Generator:
    if not 0 <= epoch < SEED_LIMIT:
        raise OptionError(explain("an epoch in [0, 2**64)", epoch, "Use a non-negative epoch number."))
    return np.random.Generator(np.random.Philox(key=seed | (epoch << 64), counter=[0, stream, 0, 0]))


def epoch_order(
    n: int, *, seed: int, epoch: int, shuffle: bool | str, block_size: int = 1024, window: int = 16
) -> np.ndarray:
    """Sample indices ``0..n-1`` in the order epoch ``epoch`` visits them (int64).

    ``shuffle=True``: a uniform random permutation drawn from a Philox counter-based generator
    whose 128-bit key *is* ``(seed, epoch)``: every epoch gets an independent permutation without
    any generator state carried from one epoch to the next.  ``shuffle="block"``: see
    :func:`block_order`.  ``shuffle=False``: ``0..n-1``.
    """
    if shuffle == "block":
        return block_order(n, seed=seed, epoch=epoch, block_size=block_size, window=window)
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return _generator(seed, epoch, 0).permutation(n).astype(np.int64, copy=False)


def block_order(n: int, *, seed: int, epoch: int, block_size: int, window: int) -> np.ndarray:
    """See :func:`block_plan`; the order only."""
    return block_plan(n, seed=seed, epoch=epoch, block_size=block_size, window=window)[0]


def block_plan(
    n: int, *, seed: int, epoch: int, block_size: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """An order for data bigger than RAM on slow storage: blocks permuted, shuffled within windows.

    The samples are cut into contiguous blocks of ``block_size``; the blocks are permuted, and the
    samples of every ``window`` consecutive blocks (in that permuted order) are shuffled together.
    Reads stay sequential within a block while every epoch still visits every sample once;
    :func:`shuffle_quality` measures what is traded.  Returns the order and the first index of
    each block in visiting order (window ``w`` reads blocks ``starts[w * window:(w + 1) * window]``).
    """
    generator = _generator(seed, epoch, 1)
    blocks = -(-n // block_size)
    starts = generator.permutation(blocks).astype(np.int64) * block_size
    lengths = np.minimum(block_size, n - starts)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sequence = np.repeat(starts - offsets, lengths) + np.arange(n, dtype=np.int64)
    windows = np.repeat(np.arange(blocks, dtype=np.int64) // window, lengths)
    return sequence[np.lexsort((generator.random(n), windows))], starts


def bucket_order(
    lengths: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    boundaries: Optional[Sequence[int]] = None,
    window: int = 64,
) -> np.ndarray:
    """An epoch order whose consecutive runs of ``batch_size`` hold samples of similar ``lengths``.

    The samples (in the epoch's shuffled order, or ``0..n-1``) are grouped: by bucket
    (``boundaries``: bucket ``k`` holds lengths in ``[b[k-1], b[k])``) or into windows of
    ``window * batch_size`` samples sorted by length.  Each group is cut into whole batches; the
    samples left over in every group are sorted by length together and cut too.  Every whole
    batch then goes to a random place (with ``shuffle``), the one short batch, if any, last.  So
    the order is a permutation, batches are runs of it (resume, ranks and ``drop_remainder`` work
    as for any order), and it is a pure function of the lengths, seed and epoch.
    """
    n = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    base = epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    here = lengths[base]
    if boundaries is not None:
        group = np.searchsorted(np.asarray(boundaries, dtype=np.int64), here, side="right")
        grouped = base[np.argsort(group, kind="stable")]
        group = np.sort(group)
    else:
        group = np.arange(n, dtype=np.int64) // (window * batch_size)
        grouped = base[np.lexsort((here, group))]
    starts = np.searchsorted(group, group, side="left")  # each sample's group starts here
    sizes = np.bincount(group)[group]
    whole = (np.arange(n) - starts) < sizes - sizes % batch_size
    rest = grouped[~whole]
    sequence = np.concatenate([grouped[whole], rest[np.argsort(lengths[rest], kind="stable")]])
    full = n // batch_size
    if shuffle and full > 1:
        batches = _generator(seed, epoch, 3).permutation(full)
        head = sequence[: full * batch_size].reshape(full, batch_size)[batches].reshape(-1)
        sequence = np.concatenate([head, sequence[full * batch_size :]])
    return sequence


def shuffle_quality(order: np.ndarray, batch_size: int) -> dict[str, float]:
    """How close ``order`` comes to a uniform random permutation; 1.0 is uniform, 0.0 none at all.

    ``batch_spread``: the mean distance between the indices of two samples of one batch, over
    its expected value for a uniform permutation (``n / 3``); low values mean batches hold
    neighbouring samples.  ``displacement``: the mean distance between a sample's index and its
    position in the epoch, over the same expectation.
    """
    n = len(order)
    expected = max((n * n - 1) / (3 * n), 1e-12)  # E|a - b| for a, b drawn from 0..n-1
    full = (n // batch_size) * batch_size
    spread = 0.0
    if batch_size > 1 and full:
        batches = np.sort(order[:full].reshape(-1, batch_size), axis=1).astype(np.float64)
        weights = 2 * np.arange(batch_size) - batch_size + 1  # sum over pairs of |a - b| for sorted rows
        pairs = batch_size * (batch_size - 1) / 2
        spread = float((batches @ weights).mean() / pairs / expected)
    displacement = float(np.abs(order - np.arange(n)).mean() / expected)
    return {"batch_spread": round(spread, 4), "displacement": round(displacement, 4)}


def batch_count(n: int, batch_size: int, drop_remainder: bool) -> int:
    """How many batches an epoch of ``n`` samples makes."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def rank_batches(
    left: int, batch_size: int, world: int, drop_remainder: bool, remainder: str
) -> tuple[int, int]:
    """How ``left`` samples of an epoch order are dealt to ``world`` ranks: ``(rounds, last)``.

    Batches go round-robin: in round ``k`` rank ``r`` takes the ``batch_size`` positions starting
    at ``(k * world + r) * batch_size``, so after ``k`` rounds exactly the first
    ``k * world * batch_size`` positions are consumed, whatever the world size (which is what lets
    a run resume on another number of ranks).  The ``tail`` (fewer than ``world * batch_size``
    samples) gives every rank one last batch of ``last`` samples: ``ceil(tail / world)`` with
    ``remainder="pad"`` (the shortfall repeats samples from the start of the epoch order),
    ``tail // world`` with ``"drop"``; none with ``drop_remainder``.  Every rank gets
    ``rounds + (last > 0)`` batches: the same number, so no rank waits for another.
    """
    rounds = left // (world * batch_size)
    tail = left - rounds * world * batch_size
    if drop_remainder or tail == 0:
        return rounds, 0
    return rounds, (-(-tail // world) if remainder == "pad" else tail // world)


def rank_positions(
    batch: int, start: int, n: int, batch_size: int, rank: int, world: int, rounds: int, last: int
) -> slice | np.ndarray:
    """Positions in an epoch order of ``n`` that batch ``batch`` of ``rank`` covers, when the
    dealing (see :func:`rank_batches`) starts at position ``start``."""
    if batch < rounds:
        first = start + (batch * world + rank) * batch_size
        return slice(first, first + batch_size)
    first = start + rounds * world * batch_size + rank * last
    if first + last <= n:
        return slice(first, first + last)
    return np.arange(first, first + last, dtype=np.int64) % n  # padding wraps to the order's start
