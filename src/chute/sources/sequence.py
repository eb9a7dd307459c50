"""A Keras ``Sequence`` / ``PyDataset`` (anything with ``len`` and ``[i]`` giving a batch) under chute.

``chute.from_sequence(seq)`` gives a loader whose batch ``i`` is ``seq[j]`` for the ``j`` chute's
order puts at ``i``: the user's class keeps doing the reading, and chute adds its workers, prefetch,
stats, a seeded batch order and resume.  The sequence's own ``on_epoch_end`` is not called: chute's
seed orders the batches (a sequence that reshuffles its samples there would break determinism).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from chute.dataset import Dataset
from chute.datasets.base import Node
from chute.errors import EmptyDatasetError, explain
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows, row_indices
from chute.spec import Field, Spec, infer_spec

if TYPE_CHECKING:
    from chute.loader import Loader

__all__ = ["BatchesDataset", "from_sequence"]


class BatchesDataset(Node):
    """A dataset whose items are whole batches of a sequence; read one at a time, as they are."""

    def __init__(self, sequence: Any) -> None:
        if len(sequence) == 0:
            raise EmptyDatasetError(explain("a sequence with at least one batch", "len 0", "Check it."))
        self._sequence = sequence
        self._spec: Optional[Spec] = None

    @property
    def spec(self) -> Spec:
        if self._spec is None:  # per-batch leaves: the first dimension is the batch's own size
            spec = infer_spec(self._sequence[0])
            fields = tuple(
                Field(f.name, f.dtype, f.shape[1:], f.kind) if f.kind == "array" else f for f in spec.fields
            )
            self._spec = Spec(fields, spec.treedef)
        return self._spec

    @property
    def source(self) -> Any:
        return self._sequence

    def __len__(self) -> int:
        return len(self._sequence)

    def direct_source(self) -> None:
        return None  # its reads are whole batches, not a source's rows

    def stream_source(self) -> None:
        return None

    def sample(self, index: int, key: ReadKey = DEFAULT_KEY) -> Any:
        return self._sequence[index]

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        (index,) = row_indices(rows).tolist()
        return self._sequence[int(np.int64(index))]


def from_sequence(
    sequence: Any,
    shuffle: bool = False,
    seed: Optional[int] = None,
    workers: int = 0,
    prefetch: int = 2,
    worker_type: str = "thread",
) -> Loader:
    """A :class:`chute.Loader` over the batches of a Keras ``Sequence`` / ``PyDataset``.

    ``shuffle=True`` orders the batches by a permutation from ``seed`` each epoch; ``workers``
    read upcoming batches in parallel (threads, or processes for a picklable sequence).
    """
    return Dataset(BatchesDataset(sequence)).loader(
        1, shuffle=shuffle, seed=seed, workers=workers, prefetch=prefetch, worker_type=worker_type
    )
