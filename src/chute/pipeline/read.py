"""One batch, read the same way wherever it runs: inline, on a worker thread or in a worker process.

:func:`read_batch` reads a batch's rows through the dataset (source, decode, maps), applies the
error policy and times the stages; it returns plain leaves (one array per field) so the result can
cross a process boundary, and the loader records the rest (stats, the skip warning) where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chute.datasets.base import Node
from chute.errors import add_note
from chute.rng import ReadKey
from chute.sources.base import Drawn, Rows, row_indices
from chute.telemetry.timing import StageTimes, collecting

__all__ = ["BatchResult", "read_batch"]


@dataclass
class BatchResult:
    """A batch's leaves (``spec.fields`` order), the samples left out, and seconds per stage."""

    leaves: list[Any]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    times: StageTimes = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(leaf, "nbytes", 0)) for leaf in self.leaves)


def read_batch(dataset: Node, rows: Rows, key: ReadKey, skip: bool) -> BatchResult:
    """Rows ``rows`` of ``dataset`` read for ``key`` (seed, epoch).

    With ``skip``, a batch that fails is read again sample by sample and the samples that fail are
    left out and listed; otherwise the error propagates, with a note naming the samples.
    """
    with collecting() as times:
        try:
            leaves = dataset.spec.flatten(dataset.read(rows, key))
            skipped: list[tuple[int, str]] = []
        except Exception as error:
            if not skip:
                where = (
                    f"{rows.start}..{rows.stop - 1}"
                    if isinstance(rows, slice)
                    else str(row_indices(rows).tolist())
                )
                add_note(error, f"chute: while reading samples {where}")
                raise
            leaves, skipped = _read_skipping(dataset, rows, key)
    return BatchResult(leaves, skipped, times)


def _read_skipping(dataset: Node, rows: Rows, key: ReadKey) -> tuple[list[Any], list[tuple[int, str]]]:
    spec = dataset.spec
    good, skipped = [], []
    indices = row_indices(rows)
    for j, index in enumerate(indices.tolist()):
        one = rows[j : j + 1] if isinstance(rows, Drawn) else indices[j : j + 1]
        try:
            good.append(spec.flatten(dataset.read(one, key)))
        except Exception as error:
            skipped.append((index, f"{type(error).__name__}: {error}"))
    leaves = [
        np.concatenate([sample[i] for sample in good]) if good else field.empty(0)
        for i, field in enumerate(spec.fields)
    ]
    return leaves, skipped
