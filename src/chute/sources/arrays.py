"""In-memory numpy arrays (and memory maps) as a source: zero-copy, gathered in one call per field."""

from __future__ import annotations

import mmap
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from chute.errors import SpecError, explain
from chute.sources._advise import advise_rows
from chute.sources.base import Rows, row_indices
from chute.spec import Field, Spec, flatten, is_namedtuple

if TYPE_CHECKING:
    from chute.dataset import Dataset

__all__ = ["ArraySource", "from_arrays", "in_ram"]


class ArraySource:
    """Samples are the rows of numpy arrays that share their first dimension.

    The arrays are held, not copied: ``np.memmap`` inputs stay memory maps, so data larger than RAM
    is paged in as batches touch it.
    """

    vectorised = True  # read_rows is one gather per field, so conversion reads whole blocks

    def __init__(self, structure: Any) -> None:
        treedef, leaves = flatten(structure, is_leaf=lambda node: isinstance(node, np.ndarray))
        if not leaves:
            raise SpecError(
                explain(
                    "at least one numpy array",
                    "no arrays",
                    "Call chute.from_arrays(x, y) or chute.from_arrays({'name': x}).",
                )
            )
        arrays = [_as_rows(name, array) for name, array in leaves]
        _check_lengths(leaves, arrays)
        self._arrays = arrays
        self._spec = Spec(
            fields=tuple(
                Field(name, a.dtype, tuple(a.shape[1:])) for (name, _), a in zip(leaves, arrays, strict=True)
            ),
            treedef=treedef,
        )

    @property
    def spec(self) -> Spec:
        return self._spec

    @property
    def arrays(self) -> list[np.ndarray]:
        return list(self._arrays)

    def arrays_in_ram(self) -> Optional[list[np.ndarray]]:
        """The arrays, when all of them live in RAM (not memory-mapped), else None."""
        return self.arrays if all(in_ram(a) for a in self._arrays) else None

    def __len__(self) -> int:
        return len(self._arrays[0])

    def fingerprint(self) -> str:
        from chute.resume import sampled_rows

        return sampled_rows(self._arrays)

    def read_sample(self, index: int) -> list[np.ndarray]:
        return [a[index] for a in self._arrays]

    def will_need(self, starts: np.ndarray, length: int) -> None:
        for array in self._arrays:
            advise_rows(array, starts, length)

    def read_rows(self, rows: Rows) -> list[np.ndarray]:
        if isinstance(rows, slice):
            return [a[rows] for a in self._arrays]
        indices = row_indices(rows)
        return [a.take(indices, axis=0) for a in self._arrays]

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for worker processes started with spawn: memory-mapped arrays travel as
        # (file, offset, dtype, shape) and are mapped again there, never copied.
        state = dict(self.__dict__)
        state["_arrays"] = [_MappedFile.of(a) or a for a in self._arrays]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["_arrays"] = [a.open() if isinstance(a, _MappedFile) else a for a in state["_arrays"]]
        self.__dict__.update(state)


class _MappedFile:
    """Where a C-contiguous view of a memory-mapped file lies, to map it again elsewhere."""

    def __init__(self, filename: str, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.filename, self.offset, self.dtype, self.shape = filename, offset, dtype, shape

    @classmethod
    def of(cls, array: np.ndarray) -> Optional[_MappedFile]:
        root: Any = array
        while root is not None and not (isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)):
            root = root.base if isinstance(root, np.ndarray) else None
        if root is None or root.filename is None or not array.flags.c_contiguous or not array.size:
            return None
        offset = int(root.offset) + array.ctypes.data - root.ctypes.data
        return cls(str(root.filename), offset, array.dtype, tuple(array.shape))

    def open(self) -> np.ndarray:
        return np.asarray(np.memmap(self.filename, self.dtype, "r", self.offset, self.shape))


def in_ram(array: np.ndarray) -> bool:
    """Whether ``array`` lives in RAM rather than in a memory-mapped file."""
    return _MappedFile.of(array) is None and not array.dtype.hasobject


def _as_rows(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim == 0:
        raise SpecError(
            explain(
                f"an array with a first (sample) dimension for field {name!r}",
                f"a 0-d array {array!r}",
                "Give one value per sample, e.g. np.full(n, value).",
            )
        )
    # np.asarray drops ndarray subclasses (np.memmap, np.matrix) without copying the data.
    return np.asarray(array)


def _check_lengths(leaves: list[tuple[str, Any]], arrays: list[np.ndarray]) -> None:
    first_name, first = leaves[0][0], arrays[0]
    for (name, _), array in zip(leaves[1:], arrays[1:], strict=True):
        if len(array) != len(first):
            raise SpecError(
                explain(
                    "arrays with the same number of samples (first dimension)",
                    f"{len(first)} rows in {first_name!r} but {len(array)} rows in {name!r}",
                    "Trim or align the arrays so every field has one row per sample.",
                )
            )


def from_arrays(*arrays: Any) -> Dataset:
    """A :class:`chute.Dataset` over numpy arrays, zero-copy.

    ``from_arrays(x, y)`` gives samples ``(x[i], y[i])``; ``from_arrays({"a": a, "b": b})`` gives
    dicts and ``from_arrays(Sample(image=x, label=y))`` namedtuples ``Sample``; tuples, dicts and
    namedtuples may nest, e.g. ``from_arrays({"input_1": a, "input_2": b}, {"output": y})`` for a
    two-input Keras model.  Memory maps (``np.load(..., mmap_mode="r")``) are read lazily, batch
    by batch.
    """
    from chute.dataset import Dataset  # dataset.py depends on the Source protocol, not on sources

    if len(arrays) == 1 and (isinstance(arrays[0], dict) or is_namedtuple(arrays[0])):
        structure: Any = arrays[0]
    else:
        structure = tuple(arrays)
    return Dataset(ArraySource(structure))
