"""Datasets made from other datasets by choosing samples: subsets, splits, shards, filters, concatenation.

Each is a random-access :class:`chute.Dataset` whose sample ``i`` is some sample of its parent(s);
reading a batch maps the batch's rows to the parents' rows and reads those in one vectorised read
per parent, so a view keeps every promise of the engine (exactly once per epoch, the same batches
whatever the workers, exact resume).  Contiguous views (``take``, ``skip``, ``split`` without a
seed) pass slices through, so array and chute-format sources still read them as zero-copy views.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

import numpy as np

from chute.datasets.base import DerivedDataset, Node, as_rows, qualified_name, scan
from chute.errors import OptionError, SpecError, explain
from chute.options import check_int
from chute.order.epochs import SEED_LIMIT
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows, row_indices
from chute.spec import Spec

__all__ = [
    "ConcatDataset",
    "FilteredDataset",
    "SubsetDataset",
    "split",
]

Indices = Union[slice, np.ndarray]  # a step-1 slice of the parent, or its rows in order


class SubsetDataset(DerivedDataset):
    """Samples ``indices`` of ``parent``, in that order (a slice, or an int64 array of its rows)."""

    def __init__(self, parent: Node, indices: Optional[Indices], what: str) -> None:
        super().__init__()
        self._parent, self._what = parent, what
        self._indices: Optional[Indices] = indices

    @property
    def spec(self) -> Spec:
        return self._parent.spec

    @property
    def parent(self) -> Node:
        return self._parent

    @property
    def indices(self) -> np.ndarray:
        """The parent's rows this dataset holds, in order."""
        return row_indices(self._rows())

    def __len__(self) -> int:
        rows = self._rows()
        return rows.stop - rows.start if isinstance(rows, slice) else len(rows)

    @property
    def parents(self) -> tuple[Node, ...]:
        return (self._parent,)  # (not from the lineage, which a filter scans the data for)

    @property
    def image_fields(self) -> tuple[str, ...]:
        return self._parent.image_fields  # (the parent's samples as they are)

    def encoded(self) -> Node:
        parent = self._parent.encoded()
        return self if parent is self._parent else SubsetDataset(parent, self._rows(), self._what)

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        return self._parent.read(self._parent_rows(rows), key)

    def read_unstacked(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> list[Any]:
        return self._parent.read_unstacked(self._parent_rows(rows), key)

    def _parent_rows(self, rows: Rows) -> Rows:
        mine = self._rows()
        if isinstance(mine, slice):
            if isinstance(rows, slice):
                return slice(mine.start + rows.start, mine.start + rows.stop)
            return row_indices(rows) + mine.start
        return mine[rows if isinstance(rows, slice) else row_indices(rows)]

    def field_lengths(self, name: str, epoch: int) -> np.ndarray:
        return self._parent.lengths(name, epoch)[self._rows()]

    def lineage(self) -> tuple[list[Node], str]:
        rows = self._rows()
        if isinstance(rows, slice):
            return [self._parent], f"{self._what}:{rows.start}:{rows.stop}"
        return [self._parent], f"{self._what}:{hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()}"

    def _rows(self) -> Indices:
        assert self._indices is not None  # set by the constructor, or by FilteredDataset's scan
        return self._indices

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._what}, len={len(self)}, spec={self.spec!r})"


def subset(parent: Node, indices: Any) -> SubsetDataset:
    """Samples ``indices`` of ``parent`` (ints, a slice or a boolean mask), in that order."""
    rows = as_rows(indices, len(parent))
    if isinstance(rows, np.ndarray):
        rows = rows.copy()
        rows.flags.writeable = False
    return SubsetDataset(parent, rows, "subset")


def take(parent: Node, count: int) -> SubsetDataset:
    """The first ``count`` samples (all of them if there are fewer)."""
    count = check_int("count", count, minimum=0)
    return SubsetDataset(parent, slice(0, min(count, len(parent))), "take")


def skip(parent: Node, count: int) -> SubsetDataset:
    """All but the first ``count`` samples (none if there are fewer)."""
    count = check_int("count", count, minimum=0)
    n = len(parent)
    return SubsetDataset(parent, slice(min(count, n), n), "skip")


def shard(parent: Node, index: int, count: int) -> SubsetDataset:
    """Every ``count``-th sample starting at ``index`` (tf.data's ``shard``)."""
    count = check_int("count", count, minimum=1)
    index = check_int("index", index, minimum=0, limit=count)
    rows = np.arange(index, len(parent), count, dtype=np.int64)
    return SubsetDataset(parent, rows, f"shard{index}/{count}")


def split(
    parent: Node, parts: Sequence[float | int], seed: Optional[int] = None
) -> tuple[SubsetDataset, ...]:
    """Disjoint subsets that together hold every sample: sizes as fractions summing to 1 or counts
    summing to ``len(parent)``.  With ``seed``, samples are assigned to parts at random (the same
    assignment for the same seed, anywhere); without, parts are consecutive runs.  Each part keeps
    its samples in ascending order, so reads stay local (loaders shuffle them anyway)."""
    n = len(parent)
    sizes = _part_sizes(parts, n)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    if seed is None:
        return tuple(
            SubsetDataset(parent, slice(a, b), f"split{i}")
            for i, (a, b) in enumerate(itertools.pairwise(bounds))
        )
    seed = check_int("seed", seed, minimum=0, limit=SEED_LIMIT)
    order = np.random.Generator(np.random.Philox(key=seed, counter=[0, 2, 0, 0])).permutation(n)
    out = []
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        rows = np.sort(order[a:b]).astype(np.int64)
        rows.flags.writeable = False
        out.append(SubsetDataset(parent, rows, f"split{i}/seed{seed}"))
    return tuple(out)


def _part_sizes(parts: Sequence[float | int], n: int) -> list[int]:
    values = list(parts) if isinstance(parts, (list, tuple)) else []
    numbers = [
        v for v in values if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
    ]
    if not values or len(numbers) != len(values) or any(not np.isfinite(v) or v < 0 for v in numbers):
        raise OptionError(
            explain(
                "a list of non-negative fractions (summing to 1) or counts (summing to the dataset's size)",
                repr(parts),
                "Pass e.g. [0.8, 0.1, 0.1] or [8000, 1000, 1000].",
            )
        )
    if all(isinstance(v, (int, np.integer)) for v in values) and sum(values) == n:
        return [int(v) for v in values]
    total = float(sum(numbers))
    if abs(total - 1.0) > 1e-6:
        raise OptionError(
            explain(
                f"fractions summing to 1 or counts summing to {n}",
                f"{list(parts)} (sum {total:g})",
                "Make the parts add up: e.g. [0.8, 0.1, 0.1].",
            )
        )
    return apportion(np.asarray(numbers, dtype=np.float64), n).tolist()


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (summing to 1) into whole counts summing to
    ``total``: floors, then the largest remainders get one more (ties to the earlier part)."""
    exact = weights * total
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(exact - counts), kind="stable")[:short]] += 1
    return counts


class FilteredDataset(SubsetDataset):
    """The samples of ``parent`` for which ``predicate`` is true, in order.

    Which samples those are is worked out once, by reading the whole parent the first time the
    length or a sample is needed (a progress bar on stderr when that takes long); afterwards the
    filter is a plain subset: ``len`` is exact and every loader promise holds.  The predicate sees
    samples as read outside a loader (maps' randomness of epoch 0), so it should not depend on it.
    """

    def __init__(self, parent: Node, predicate: Callable[[Any], Any], batched: bool) -> None:
        if not callable(predicate):
            raise OptionError(
                explain(
                    "a function for filter", f"{predicate!r}", "Pass a function of a sample returning a bool."
                )
            )
        super().__init__(parent, None, f"filter:{qualified_name(predicate)}")
        self._predicate, self._batched = predicate, batched

    def _rows(self) -> Indices:
        if self._indices is None:
            self._indices = self._scan()
        return self._indices

    def _scan(self) -> np.ndarray:
        kept = np.zeros(len(self._parent), dtype=bool)
        for start, stop, batch in scan(self._parent, "filtering"):
            kept[start:stop] = self._keep(batch, start, stop)
        rows = np.flatnonzero(kept).astype(np.int64)
        rows.flags.writeable = False
        return rows

    def _keep(self, batch: Any, start: int, stop: int) -> np.ndarray:
        if self._batched:
            mask = np.asarray(self._predicate(batch))
            if mask.shape != (stop - start,):
                raise SpecError(
                    explain(
                        f"a boolean mask of shape ({stop - start},) from the batched filter",
                        f"shape {mask.shape}",
                        "Return one flag per sample of the batch.",
                    )
                )
            return mask.astype(bool)
        kept = [bool(self._predicate(sample)) for sample in self._parent.spec.unstack(batch)]
        return np.array(kept, dtype=bool)

    def __getstate__(self) -> dict[str, Any]:
        self._rows()  # worker processes get the scanned rows, not the work of scanning again
        return self.__dict__


class ConcatDataset(DerivedDataset):
    """The samples of ``parts`` one after the other; all parts must have the same spec."""

    def __init__(self, parts: Sequence[Node]) -> None:
        super().__init__()
        self._parts = check_parts(parts, "concat")
        self._bounds = np.cumsum([0, *(len(p) for p in self._parts)]).astype(np.int64)

    @property
    def spec(self) -> Spec:
        return self._parts[0].spec

    @property
    def parts(self) -> tuple[Node, ...]:
        return self._parts

    def __len__(self) -> int:
        return int(self._bounds[-1])

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        if isinstance(rows, slice):
            part = int(np.searchsorted(self._bounds, rows.start, side="right")) - 1
            if rows.stop <= self._bounds[part + 1]:  # within one part: pass the slice through
                offset = int(self._bounds[part])
                return self._parts[part].read(slice(rows.start - offset, rows.stop - offset), key)
        indices = row_indices(rows)
        part_of = np.searchsorted(self._bounds, indices, side="right") - 1
        return read_parts(self._parts, part_of, indices - self._bounds[part_of], key)

    def field_lengths(self, name: str, epoch: int) -> np.ndarray:
        return np.concatenate([part.lengths(name, epoch) for part in self._parts])

    def lineage(self) -> tuple[list[Node], str]:
        return list(self._parts), f"concat:{len(self._parts)}"

    def __repr__(self) -> str:
        return f"ConcatDataset(parts={len(self._parts)}, len={len(self)}, spec={self.spec!r})"


def read_parts(parts: Sequence[Node], part_of: np.ndarray, local: np.ndarray, key: ReadKey) -> Any:
    """Rows ``local[j]`` of ``parts[part_of[j]]`` for every ``j``, as one batch in that order: one
    read per part, whose columns are joined (and put back in order if the parts interleave)."""
    spec = parts[0].spec
    order = np.argsort(part_of, kind="stable")
    grouped = part_of[order]
    cuts = np.flatnonzero(np.diff(grouped)) + 1
    pieces = []
    for run in np.split(order, cuts) if len(order) else []:
        which = int(part_of[run[0]])
        pieces.append(spec.flatten(parts[which].read(local[run], key)))
    if len(pieces) == 1:
        leaves = pieces[0]
    elif not pieces:
        leaves = [field.empty(0) for field in spec.fields]
    else:
        leaves = [np.concatenate([piece[i] for piece in pieces]) for i in range(len(spec.fields))]
    if len(order) and np.any(np.diff(order) < 0):  # parts interleave: back into the rows' order
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        leaves = [leaf[inverse] for leaf in leaves]
    return spec.unflatten(leaves)


def check_parts(parts: Sequence[Node], what: str) -> tuple[Node, ...]:
    parts = tuple(parts) if isinstance(parts, (list, tuple)) else ()
    if not parts or not all(isinstance(p, Node) for p in parts):
        raise OptionError(
            explain(
                f"a non-empty list of chute datasets for {what}",
                repr(parts),
                f"Pass e.g. chute.{what}([ds_a, ds_b]).",
            )
        )
    first = parts[0].spec
    for number, part in enumerate(parts[1:], start=1):
        if part.spec != first:
            raise SpecError(
                explain(
                    f"datasets of one spec for {what} (dataset 0 has {first!r})",
                    f"dataset {number} with {part.spec!r}",
                    "Map the datasets to the same fields, dtypes and shapes first (ds.map).",
                )
            )
    return parts
