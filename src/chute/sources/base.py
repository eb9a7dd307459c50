"""The structural protocol every source satisfies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np

from chute.spec import Spec

__all__ = ["Drawn", "Rows", "Source", "row_indices", "will_need"]


@dataclass(frozen=True)
class Drawn:
    """Rows of a stream (a generator), drawn from it in order: their positions in the epoch, and
    the samples themselves, one stacked column per field.  A stream cannot be read at a position,
    so the loader draws each batch's samples where it plans the batch and hands them over as the
    rows to read: a worker thread or process reads them like any other rows."""

    positions: np.ndarray  # int64, ascending
    leaves: list[Any]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, which: slice | np.ndarray) -> Drawn:
        """Some of these rows (a slice or index array over them), with their samples."""
        return Drawn(self.positions[which], [leaf[which] for leaf in self.leaves])


# Rows to read: a contiguous slice (read as zero-copy views where the source can), an index array,
# or a stream's drawn samples.
Rows = Union[slice, np.ndarray, Drawn]


@runtime_checkable
class Source(Protocol):
    """Random access to samples, one field at a time.

    ``read_rows`` is the hot path: it returns one stacked array per field, in ``spec.fields``
    order, for all requested rows at once (one vectorised gather per field, never a loop over
    samples).  Indices given to a source are already checked to lie in ``[0, len)``.

    Optional hooks, looked up by name; a source without them works, just without what they give:

    - ``will_need(starts, length)``: rows ``[s, s + length)`` will be read soon (see
      :func:`will_need`: memory-mapped sources start reading them; the block shuffle calls it).
    - ``fingerprint() -> str``: what identifies the data (paths, checksums), for a loader state's
      check that it is restored onto the same data.
    - ``lengths(name) -> array``: field ``name``'s length in every sample, stored (the chute
      format's offsets), so bucketing need not read the data.
    - ``arrays_in_ram() -> list | None``: the field arrays, when they are numpy arrays in RAM (the
      tf.data adapter then gathers inside TensorFlow).
    - ``vectorised: bool``: ``read_rows`` costs about the same for a block as for one sample
      (conversion reads such sources in big blocks instead of sample by sample).
    - ``paths``, ``manifest`` and ``root``, ``arrays``: where the data lives on disk, for
      ``chute bench``'s raw-read ceiling.
    - ``draw(epoch, start, stop, per_epoch) -> Drawn`` with ``per_epoch(batch_size)``: the source
      is a stream, read only in order (a generator's): the loader draws each batch's samples and
      hands them over as its rows (:class:`Drawn`), and ``read_rows`` gives them back.
    - ``read_unstacked(rows) -> list of per-sample leaf lists``: the rows not stacked, for samples
      that may differ in shape (decoded images, each of its own size); per-sample maps read so.
    - ``class_names``: the names of the label values (label ``i`` is ``class_names[i]``).
    - ``image_fields``: names of bytes fields holding encoded images (a conversion marks them so,
      and the converted dataset decodes them when read); ``encoded``: the source that keeps the
      images encoded, for a source that decodes them (what a conversion stores).
    """

    @property
    def spec(self) -> Spec: ...

    def __len__(self) -> int: ...

    def read_sample(self, index: int) -> list[np.ndarray]: ...

    def read_rows(self, rows: Rows) -> list[np.ndarray]: ...


def row_indices(rows: Rows) -> np.ndarray:
    """``rows`` as an int64 index array (a slice becomes its range; drawn rows, their positions)."""
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop, dtype=np.int64)
    if isinstance(rows, Drawn):
        return rows.positions
    return rows


def will_need(source: object, starts: np.ndarray, length: int) -> None:
    """Hint that rows ``[s, s + length)`` for each ``s`` in ``starts`` will be read soon.

    Sources over memory maps start reading those ranges in bulk (``MADV_WILLNEED``); others
    ignore it.  The loader calls it a window ahead under ``shuffle="block"``.
    """
    hint = getattr(source, "will_need", None)
    if hint is not None:
        hint(starts, length)
