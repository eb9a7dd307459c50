"""The order of an epoch: a pure function of (dataset size, seed, epoch).

No state is kept anywhere: the same arguments give the same order in any process, on any
machine, at any time, which is what makes resuming and splitting across workers exact.
"""

from __future__ import annotations

import numpy as np

from .errors import OptionError, explain

__all__ = ["SEED_LIMIT", "batch_count", "batch_rows", "epoch_order"]

SEED_LIMIT = 2**64


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample indices ``0..n-1`` in the order epoch ``epoch`` visits them (int64).

    With ``shuffle`` the order is a uniform random permutation drawn from a Philox counter-based
    generator whose 128-bit key *is* ``(seed, epoch)``: every epoch gets an independent permutation
    without any generator state being carried from one epoch to the next.
    """
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    if not 0 <= epoch < SEED_LIMIT:
        raise OptionError(explain("an epoch in [0, 2**64)", epoch, "Use a non-negative epoch number."))
    generator = np.random.Generator(np.random.Philox(key=seed | (epoch << 64)))
    return generator.permutation(n).astype(np.int64, copy=False)


def batch_count(n: int, batch_size: int, drop_remainder: bool) -> int:
    """How many batches an epoch of ``n`` samples makes."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def batch_rows(batch: int, n: int, batch_size: int) -> slice:
    """Positions in the epoch order that batch number ``batch`` covers."""
    start = batch * batch_size
    return slice(start, min(start + batch_size, n))
