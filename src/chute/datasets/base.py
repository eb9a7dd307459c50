"""The nodes a dataset graph is made of, and how the engine reads them.

A :class:`Node` reads rows of a source; a :class:`DerivedDataset` reads rows of parent nodes
(views, maps, mixes, caches, padding: the other modules of this package).  The loader reads a
node, whatever its kind.  :class:`chute.Dataset`, which users hold, is a node too: it wraps one and
adds the methods that build derived nodes, so that no module here needs it.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterator
from typing import Any, Optional

import numpy as np

from chute.errors import OutOfRangeError, SpecError, explain
from chute.options import check_variable
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Drawn, Rows, Source
from chute.spec import Spec
from chute.telemetry.progress import Progress

__all__ = [
    "SCAN_ROWS",
    "DerivedDataset",
    "Node",
    "ViewSource",
    "as_rows",
    "qualified_name",
    "sample_lengths",
    "scan",
]

SCAN_ROWS = 4096  # rows read at a time when a filter or a length count scans a dataset


class Node:
    """One node of a dataset graph: samples read from a source, by rows, with a known spec.

    ``len(node)`` samples; ``node[i]`` is one sample; ``node[indices]`` / ``gather`` many, stacked.
    ``read(rows, key)`` is the engine's hot path: a loader reads every batch through it, and
    derived nodes (:class:`DerivedDataset`: views, maps, mixes, caches, padding) read their
    parents through it.  Users hold :class:`chute.Dataset`, the node that adds the chaining
    methods (``map``, ``filter``, ``loader``...); nothing below it needs to know it.
    """

    def __init__(self, source: Source) -> None:
        self._source = source

    @property
    def spec(self) -> Spec:
        """Field names, dtypes and per-sample shapes, known without reading any data."""
        return self._source.spec

    @property
    def source(self) -> Source:
        return self._source

    def __len__(self) -> int:
        return len(self._source)

    def direct_source(self) -> Optional[Source]:
        """The source this node's samples are, unchanged (no map, view or padding), or None."""
        return self._source

    def stream_source(self) -> Any:
        """The stream (a generator's source) this node's rows are drawn from, in order, or None.

        A stream's rows cannot be read at a position: the loader draws them (see
        :class:`chute.sources.base.Drawn`), and only nodes that read their parent's rows as they
        are (maps, padding) pass a stream through."""
        return self._source if hasattr(self._source, "draw") else None

    @property
    def class_names(self) -> Optional[list[str]]:
        """The names of the label values (an image folder's classes: label ``i`` is
        ``class_names[i]``), where the data has them; else None."""
        names = getattr(self.source, "class_names", None)
        return None if names is None else list(names)

    @property
    def image_fields(self) -> tuple[str, ...]:
        """The fields that hold encoded images (bytes): a conversion marks them so, and the
        converted dataset decodes them when read."""
        return tuple(getattr(self.source, "image_fields", ()))

    def encoded(self) -> Node:
        """This node with its images as the source keeps them, encoded, rather than decoded: what a
        conversion stores (itself when it has no decoded images)."""
        encoded = getattr(self.source, "encoded", None)
        return self if encoded is None else Node(encoded)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            return self.sample(_position(int(key), len(self)))
        return self.gather(key)

    def sample(self, index: int, key: ReadKey = DEFAULT_KEY) -> Any:
        """Sample ``index`` (already known to be in range), read as epoch ``key`` would."""
        return self.spec.unflatten(self._source.read_sample(index))

    def gather(self, indices: Any) -> Any:
        """Samples ``indices`` (ints, a slice or a boolean mask) stacked into one batch."""
        return self.read(as_rows(indices, len(self)))

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        """Read rows that are already known to be in range; the engine's hot path.

        ``key`` is the loader's (seed, epoch): maps derive their per-sample randomness from it.
        """
        return self.spec.unflatten(self._source.read_rows(rows))

    def read_unstacked(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> list[Any]:
        """The samples of ``rows``, one by one, as a per-sample map takes them: never stacked where
        the source can give them so (decoded images each of its own size)."""
        unstacked = getattr(self.source, "read_unstacked", None)
        if unstacked is None or isinstance(rows, Drawn):
            return list(self.spec.unstack(self.read(rows, key)))
        return [self.spec.unflatten(leaves) for leaves in unstacked(rows)]

    def lengths(self, name: str, epoch: int = 0) -> np.ndarray:
        """The length (first dimension; bytes or characters for binary and text) of field ``name``
        in every sample, as int64: from the stored offsets where the source keeps them (the chute
        format), else by reading the dataset once (kept for later calls)."""
        return sample_lengths(self, name, epoch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, spec={self.spec!r})"


class ViewSource:
    """The :class:`chute.sources.Source` face of a derived dataset (for code that reads sources)."""

    def __init__(self, dataset: Node) -> None:
        self._dataset = dataset

    @property
    def spec(self) -> Spec:
        return self._dataset.spec

    def __len__(self) -> int:
        return len(self._dataset)

    def read_sample(self, index: int) -> list[Any]:
        return self.spec.flatten(self._dataset.sample(index))

    def read_rows(self, rows: Rows) -> list[Any]:
        return self.spec.flatten(self._dataset.read(rows))


class DerivedDataset(Node):
    """A dataset computed from parent datasets; subclasses give ``spec``, ``__len__``, ``read`` and
    ``lineage`` (the parents and a text that identifies the derivation, for state fingerprints)."""

    def __init__(self) -> None:  # no source of its own: ``source`` is a view over ``read``
        pass

    @functools.cached_property
    def source(self) -> Source:
        return ViewSource(self)

    def sample(self, index: int, key: ReadKey = DEFAULT_KEY) -> Any:
        return self.read_unstacked(np.array([index], dtype=np.int64), key)[0]

    def direct_source(self) -> None:
        return None

    def stream_source(self) -> Any:
        return None  # (views, mixes and caches need random access: they refuse a stream)

    @property
    def parents(self) -> tuple[Node, ...]:
        """The datasets this one is computed from."""
        return tuple(self.lineage()[0])

    @property
    def class_names(self) -> Optional[list[str]]:
        """The parents' class names, when they all have the same."""
        names = [parent.class_names for parent in self.parents]
        return names[0] if names and all(n == names[0] for n in names) else None

    @property
    def image_fields(self) -> tuple[str, ...]:
        return ()  # (what a derivation makes of its parents' images is its own)

    def encoded(self) -> Node:
        return self

    def read_unstacked(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> list[Any]:
        return list(self.spec.unstack(self.read(rows, key)))  # (its own rows, not its source's)

    def lineage(self) -> tuple[list[Node], str]:
        raise NotImplementedError


def sample_lengths(dataset: Node, name: str, epoch: int = 0) -> np.ndarray:
    """Field ``name``'s length in every sample of ``dataset`` (see :meth:`chute.Dataset.lengths`)."""
    check_variable(dataset.spec.field(name))
    own = getattr(dataset, "field_lengths", None)
    if own is not None:  # views and mixes: from their parents' lengths
        return np.asarray(own(name, epoch), dtype=np.int64)
    stored = getattr(dataset.source, "lengths", None)
    if stored is not None and dataset.direct_source() is not None:
        return np.asarray(stored(name), dtype=np.int64)
    kept: dict[str, np.ndarray] = dataset.__dict__.setdefault("_scanned_lengths", {})
    if name not in kept:
        kept[name] = _scan_lengths(dataset, dataset.spec.names.index(name))
    return kept[name]


def _scan_lengths(dataset: Node, index: int) -> np.ndarray:
    out = np.empty(len(dataset), dtype=np.int64)
    for start, stop, batch in scan(dataset, "measuring lengths"):
        column = dataset.spec.flatten(batch)[index]
        out[start:stop] = np.fromiter((len(v) for v in column), np.int64, stop - start)
    return out


def _position(index: int, n: int) -> int:
    if -n <= index < n:
        return index + n if index < 0 else index
    raise OutOfRangeError(
        explain(
            f"a sample index in [-{n}, {n})",
            index,
            f"The dataset has {n} samples; index within its length.",
        )
    )


def as_rows(indices: Any, n: int) -> slice | np.ndarray:
    """Normalise user indices to a step-1 slice or an int64 array within ``[0, n)``."""
    if isinstance(indices, slice):
        start, stop, step = indices.indices(n)
        if step == 1:
            return slice(start, max(start, stop))
        return np.arange(start, stop, step, dtype=np.int64)
    array = np.asarray(indices)
    if array.dtype == bool:
        if array.shape != (n,):
            raise SpecError(
                explain(
                    f"a boolean mask of shape ({n},)", f"shape {array.shape}", "Give one flag per sample."
                )
            )
        return np.flatnonzero(array)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise SpecError(
            explain(
                "an int, a slice, a boolean mask or a 1-d sequence of ints",
                f"{type(indices).__name__} with dtype {array.dtype} and shape {array.shape}",
                "Pass sample indices such as [0, 5, 7] or np.arange(10).",
            )
        )
    array = array.astype(np.int64, copy=False)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < -n or high >= n:
            bad = high if high >= n else low
            _position(bad, n)
        if low < 0:
            array = np.where(array < 0, array + n, array)
    return array


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function (its repr if it has no name): how lineages name them."""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', None) or repr(fn)}"


def scan(dataset: Node, label: str) -> Iterator[tuple[int, int, Any]]:
    """``(start, stop, batch)`` over all of ``dataset`` in blocks of ``SCAN_ROWS``, read as outside
    a loader, with a progress bar on stderr when it takes long."""
    n = len(dataset)
    with Progress(label, n, unit="samples") as bar:
        for start in range(0, n, SCAN_ROWS):
            stop = min(n, start + SCAN_ROWS)
            yield start, stop, dataset.read(slice(start, stop))
            bar.update(stop - start)
