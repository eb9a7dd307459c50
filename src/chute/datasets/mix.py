"""Mixing datasets in fixed proportions: ``chute.mix([a, b], weights=[0.7, 0.3], seed=0)``.

A mix is a random-access dataset of ``length`` positions.  Each dataset gets an exact share of
them (``weights`` apportioned to whole counts), spread evenly through the positions, so even an
unshuffled loader interleaves the datasets.  Which of its samples fill a dataset's share changes
every epoch: the first ones of a permutation drawn from (seed, epoch, dataset), so over epochs a
big dataset shows all of its samples while a small one is not repeated within an epoch (unless its
share exceeds its size: then it cycles through whole permutations).  Everything is a pure function
of (seed, epoch, position), which keeps loaders over a mix exact, deterministic and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from chute._internal.forks import LockPerProcess, per_process
from chute.datasets.base import DerivedDataset, Node
from chute.datasets.views import apportion, check_parts, read_parts
from chute.errors import OptionError, explain
from chute.options import check_int
from chute.order.epochs import SEED_LIMIT
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows, row_indices
from chute.spec import Spec

__all__ = ["MixedDataset"]

_STREAM = 4  # Philox counter word kept apart from the epoch orders' streams


class MixedDataset(LockPerProcess, DerivedDataset):
    """``length`` samples drawn from ``parts`` in the proportions of ``weights`` (see :func:`mix`)."""

    def __init__(
        self, parts: Sequence[Node], weights: Sequence[float], seed: int, length: Optional[int]
    ) -> None:
        super().__init__()
        self._parts = check_parts(parts, "mix")
        self._weights = _check_weights(weights, len(self._parts))
        self._seed = check_int("seed", seed, minimum=0, limit=SEED_LIMIT)
        sizes = np.array([len(p) for p in self._parts], dtype=np.int64)
        if length is None:  # as many as the datasets give without repeating any within an epoch
            used = self._weights > 0
            length = int(np.floor(np.min(sizes[used] / self._weights[used]) + 1e-9))
        self._length = check_int("length", length, minimum=1)
        self._counts = apportion(self._weights, self._length)
        self._sizes = sizes
        self._which, self._rank = _interleave(self._counts)
        per_process(self)  # its lock
        self._chosen: dict[tuple[int, int], np.ndarray] = {}

    @property
    def spec(self) -> Spec:
        return self._parts[0].spec

    @property
    def counts(self) -> list[int]:
        """Samples each dataset contributes to every epoch."""
        return self._counts.tolist()

    def __len__(self) -> int:
        return self._length

    def lineage(self) -> tuple[list[Node], str]:
        return list(self._parts), f"mix:{self._counts.tolist()}:{self._seed}"

    def origin(self, rows: Any, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """For positions ``rows`` of ``epoch``: which dataset each comes from, and its index there."""
        positions = np.asarray(row_indices(rows), dtype=np.int64)
        which = self._which[positions]
        local = np.empty(len(positions), dtype=np.int64)
        for part in np.unique(which).tolist():
            here = which == part
            local[here] = self._samples(part, epoch, self._rank[positions[here]])
        return which, local

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        which, local = self.origin(rows, key[1])
        return read_parts(self._parts, which, local, key)

    def field_lengths(self, name: str, epoch: int) -> np.ndarray:
        """Field ``name``'s length at every position of ``epoch`` (for bucketing a mix)."""
        which, local = self.origin(slice(0, self._length), epoch)
        out = np.empty(self._length, dtype=np.int64)
        for part in np.unique(which).tolist():
            here = which == part
            out[here] = self._parts[part].lengths(name, epoch)[local[here]]
        return out

    def _samples(self, part: int, epoch: int, ranks: np.ndarray) -> np.ndarray:
        """The samples of ``part`` at places ``ranks`` of its share of ``epoch``."""
        size = int(self._sizes[part])
        cycles = ranks // size
        out = np.empty(len(ranks), dtype=np.int64)
        for cycle in np.unique(cycles).tolist():
            here = cycles == cycle
            out[here] = self._permutation(part, epoch * _cycles(self._counts[part], size) + cycle)[
                ranks[here] % size
            ]
        return out

    def _permutation(self, part: int, draw: int) -> np.ndarray:
        with self._lock:
            order = self._chosen.get((part, draw))
            if order is None:
                bits = np.random.Philox(key=self._seed | (draw << 64), counter=[0, _STREAM, part, 0])
                order = np.random.Generator(bits).permutation(int(self._sizes[part]))
                if len(self._chosen) >= 4 * len(self._parts):
                    self._chosen.pop(next(iter(self._chosen)))
                self._chosen[(part, draw)] = order
            return order

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_chosen"] = {}
        return state

    def __repr__(self) -> str:
        return f"MixedDataset(counts={self.counts}, len={len(self)}, spec={self.spec!r})"


def _cycles(count: int, size: int) -> int:
    return max(1, -(-count // size))


def _interleave(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions spread evenly between datasets: dataset ``i``'s ``k``-th sample sits where
    ``(k + 1/2) / counts[i]`` falls among all such marks.  Returns (dataset, k) per position."""
    which = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    rank = np.concatenate([np.arange(c, dtype=np.int64) for c in counts.tolist()])
    marks = (rank + 0.5) / np.repeat(np.maximum(counts, 1), counts)
    order = np.lexsort((which, marks))
    return which[order], rank[order]


def _check_weights(weights: Sequence[float], count: int) -> np.ndarray:
    values = np.asarray(weights, dtype=np.float64) if isinstance(weights, (list, tuple, np.ndarray)) else None
    if (
        values is None
        or values.shape != (count,)
        or not np.all(np.isfinite(values) & (values >= 0))
        or not values.sum()
    ):
        raise OptionError(
            explain(
                f"{count} non-negative weights, not all zero, one per dataset",
                repr(weights),
                "Pass e.g. weights=[0.7, 0.3] (they are normalised to sum to 1).",
            )
        )
    return values / values.sum()
