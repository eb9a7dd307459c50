"""Which samples each batch holds: epoch orders (pure functions of the dataset size, seed and
epoch), block shuffles, length buckets, the split between ranks (``world``) and the batch plan a
loader reads by.  ``chute.order.epoch_order`` and its siblings are the public functions of
:mod:`chute.order.epochs`.
"""

from chute.order.epochs import (
    SEED_LIMIT,
    batch_count,
    block_order,
    block_plan,
    bucket_order,
    epoch_order,
    rank_batches,
    rank_positions,
    shuffle_quality,
)

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
