"""``ds.cache()``: each sample kept the first time it is read, so later epochs skip the work before it.

Datasets of fixed-shape fields are cached in files, one ``.npy`` array per field plus a byte per
sample saying whether it is filled: in ``/dev/shm`` (RAM) when the samples fit the RAM budget,
else on disk (``path``, default the temporary directory), where the page cache keeps what it can.
The files are shared by every worker, threads and processes alike (a sample filled by one worker
is a hit for the others), and removed when the dataset that made them is garbage-collected or the
interpreter exits.  Datasets with variable-size fields (bytes, text, ragged) are cached in each
process's memory.

A miss reads the parent with the randomness of epoch 0 whichever epoch asks, so the cached values
are the first epoch's, whatever the timing of the workers: the first epoch is unchanged, and every
later epoch sees the same samples (as with tf.data's ``cache()``: random maps before the cache are
frozen; put them after it to keep them random).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from typing import Any, Optional

import numpy as np

from chute._internal.forks import LockPerProcess, per_process
from chute._internal.shutdown import exit_on_sigterm
from chute._internal.stale import owner_tag, sweep
from chute.datasets.base import DerivedDataset, Node
from chute.options import parse_size
from chute.pipeline.auto import default_ram_budget
from chute.pipeline.shm import segment_dirs
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows, row_indices
from chute.spec import Spec

__all__ = ["CachedDataset"]


class CachedDataset(LockPerProcess, DerivedDataset):
    """``parent``, each sample read once and then served from the cache (see :mod:`chute.datasets.cache`)."""

    def __init__(self, parent: Node, path: Optional[str], ram_budget: Optional[int | str]) -> None:
        super().__init__()
        self._parent = parent
        spec = parent.spec
        n = len(parent)
        self._shared = all(f.kind == "array" and None not in f.shape for f in spec.fields)
        per_process(self)  # its lock
        self._dir: Optional[str] = None
        self._filled: np.ndarray
        self._columns: list[np.ndarray]
        if self._shared:
            nbytes = n * sum(f.fixed_bytes for f in spec.fields) + n
            budget = parse_size(ram_budget) if ram_budget is not None else default_ram_budget()
            in_ram = nbytes <= budget and _room(segment_dirs()[0], nbytes)
            where = segment_dirs()[0] if in_ram else (path or tempfile.gettempdir())
            sweep([where, *segment_dirs()])  # what killed runs left (see chute._internal.stale)
            self._dir = tempfile.mkdtemp(prefix=f"chute-cache-{owner_tag()}-", dir=where)
            weakref.finalize(self, _remove, self._dir, os.getpid())
            exit_on_sigterm()  # so a SIGTERM still removes the files
            self._filled = np.lib.format.open_memmap(_file(self._dir, "filled"), "w+", np.uint8, (n,))
            self._columns = [
                np.lib.format.open_memmap(_file(self._dir, str(i)), "w+", f.dtype, (n, *f.items_shape))
                for i, f in enumerate(spec.fields)
            ]
        else:
            self._filled = np.zeros(n, dtype=np.uint8)
            self._columns = [f.empty(n) for f in spec.fields]

    @property
    def spec(self) -> Spec:
        return self._parent.spec

    def __len__(self) -> int:
        return len(self._parent)

    @property
    def location(self) -> str:
        """Where the samples are kept: the cache's directory, or ``"process memory"``."""
        return self._dir or "process memory"

    def filled(self) -> float:
        """The fraction of samples cached so far (by any worker, for file-backed caches)."""
        return float(np.count_nonzero(self._filled)) / max(1, len(self._filled))

    def lineage(self) -> tuple[list[Node], str]:
        return [self._parent], "cache"

    def field_lengths(self, name: str, epoch: int) -> np.ndarray:
        return self._parent.lengths(name, 0)

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        indices = row_indices(rows)
        missing = indices[self._filled[indices] == 0]
        if len(missing):
            self._fill(np.unique(missing), key)
        spec = self.spec
        if isinstance(rows, slice):
            return spec.unflatten([column[rows].copy() for column in self._columns])
        return spec.unflatten([column.take(indices, axis=0) for column in self._columns])

    def _fill(self, missing: np.ndarray, key: ReadKey) -> None:
        """Read ``missing`` from the parent (as epoch 0 reads them) and keep them: data first,
        then the filled flags, so a reader that sees a flag sees the data."""
        leaves = self.spec.flatten(self._parent.read(missing, (key[0], 0)))
        with self._lock:
            for column, leaf in zip(self._columns, leaves, strict=True):
                column[missing] = leaf
            self._filled[missing] = 1

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if self._shared:  # worker processes map the same files again
            state.pop("_filled")
            state.pop("_columns")
        else:  # per-process caches start empty in each worker
            state["_filled"] = np.zeros(len(self._filled), dtype=np.uint8)
            state["_columns"] = [f.empty(len(self._filled)) for f in self.spec.fields]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if self._shared and self._dir is not None:
            self._filled = np.load(_file(self._dir, "filled"), mmap_mode="r+")
            self._columns = [
                np.load(_file(self._dir, str(i)), mmap_mode="r+") for i in range(len(self.spec.fields))
            ]

    def __repr__(self) -> str:
        return f"CachedDataset(len={len(self)}, filled={self.filled():.0%}, in {self.location})"


def _file(directory: str, name: str) -> str:
    return os.path.join(directory, f"{name}.npy")


def _room(directory: str, nbytes: int) -> bool:
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize > 2 * nbytes


def _remove(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker's copy never removes the files its parent uses
        shutil.rmtree(directory, ignore_errors=True)
