"""Dataset: random access to samples, one at a time or as a vectorised batch."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .errors import OutOfRangeError, SpecError, explain
from .rng import DEFAULT_KEY, ReadKey
from .sources.base import Rows, Source
from .spec import Spec

if TYPE_CHECKING:
    from .loader import Loader
    from .options import BlockShuffle

__all__ = ["Dataset"]


class Dataset:
    """A random-access collection of samples with a known element spec.

    ``len(ds)`` samples; ``ds[i]`` is one sample (the structure of ``ds.spec`` with one row per
    field); ``ds[indices]`` or ``ds.gather(indices)`` reads many samples at once as stacked arrays,
    one vectorised read per field.  ``ds.loader(...)`` cuts it into batches for training.
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

    def map(self, fn: Callable[..., Any], ragged: Sequence[str] = ()) -> Dataset:
        """This dataset with ``fn(sample)`` or ``fn(sample, rng)`` applied to every sample as it is read.

        The function runs where batches are read (in the loader's workers).  ``rng`` is a numpy
        Generator from (seed, epoch, sample index), so results are reproducible and the same
        whatever the number of workers.  The output's spec is taken from sample 0; ``ragged``
        names output fields whose first dimension varies between samples (padded or bucketed by
        the loader's ``pad=`` and ``bucket=``).
        """
        from .batching import check_names
        from .pipeline.map import MappedDataset

        return MappedDataset(self, fn, batched=False, ragged=check_names("ragged", ragged) if ragged else ())

    def map_batch(self, fn: Callable[..., Any]) -> Dataset:
        """This dataset with ``fn(batch)`` or ``fn(batch, rng)`` applied to every batch read."""
        from .pipeline.map import MappedDataset

        return MappedDataset(self, fn, batched=True)

    # -- choosing samples (see chute.views): each returns a random-access dataset -----------------
    def take(self, count: int) -> Dataset:
        """The first ``count`` samples (all of them if there are fewer)."""
        from .views import take

        return take(self, count)

    def skip(self, count: int) -> Dataset:
        """All but the first ``count`` samples."""
        from .views import skip

        return skip(self, count)

    def shard(self, index: int, count: int) -> Dataset:
        """Every ``count``-th sample from ``index`` on (tf.data's ``shard``; for splitting data by
        hand: loaders already split every epoch between distributed ranks themselves)."""
        from .views import shard

        return shard(self, index, count)

    def subset(self, indices: Any) -> Dataset:
        """Samples ``indices`` (ints, a slice or a boolean mask), in that order."""
        from .views import subset

        return subset(self, indices)

    def split(self, parts: Sequence[float | int], seed: Optional[int] = None) -> tuple[Dataset, ...]:
        """Disjoint parts holding every sample once, e.g. ``train, val, test = ds.split([0.8, 0.1, 0.1],
        seed=0)``: fractions summing to 1 or counts summing to ``len(ds)``.  With ``seed`` samples
        go to parts at random (the same for the same seed, on any machine); without, in runs."""
        from .views import split

        return split(self, parts, seed)

    def filter(self, predicate: Callable[[Any], Any], batched: bool = False) -> Dataset:
        """The samples for which ``predicate(sample)`` is true (or, ``batched=True``, where
        ``predicate(batch)`` gives a boolean mask), in order.

        The length is exact: the first time it (or a sample) is needed, the whole dataset is read
        once to find the samples kept, which a progress bar shows when it takes long; after that
        the filter is a subset and reads only what it keeps.  The predicate sees samples as read
        outside a loader (maps' randomness of epoch 0): filter on what does not change by epoch.
        """
        from .views import FilteredDataset

        return FilteredDataset(self, predicate, batched)

    def cache(self, path: Optional[str] = None, ram_budget: Optional[int | str] = None) -> Dataset:
        """This dataset with each sample kept the first time it is read (see :mod:`chute.cache`):
        the first epoch runs as before, later epochs read the kept samples at memory speed.

        Kept in RAM when the samples fit ``ram_budget`` (default: a quarter of the available RAM),
        otherwise in files under ``path`` (default: the temporary directory).  Maps before the
        cache run once per sample, with the randomness of epoch 0, as tf.data's ``cache()``.
        """
        from .cache import CachedDataset

        return CachedDataset(self, path, ram_budget)

    def lengths(self, name: str, epoch: int = 0) -> np.ndarray:
        """The length (first dimension; bytes or characters for binary and text) of field ``name``
        in every sample, as int64: from the stored offsets where the source keeps them (the chute
        format), else by reading the dataset once (kept for later calls)."""
        from .batching import sample_lengths

        return sample_lengths(self, name, epoch)

    def loader(
        self,
        batch_size: int,
        shuffle: bool | str | BlockShuffle = False,
        seed: Optional[int] = None,
        drop_remainder: bool = False,
        workers: int | str = 0,
        prefetch: int | str = 2,
        on_error: str = "raise",
        worker_type: str = "thread",
        start_method: Optional[str] = None,
        ram_budget: Optional[int | str] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        remainder: str = "pad",
        pad: Any = None,
        bucket: Any = None,
        collate: Optional[Callable[[list[Any]], Any]] = None,
        repeat: bool = False,
        epochs: Optional[int] = None,
    ) -> Loader:
        """Batches of this dataset in an epoch order fixed by ``seed`` (see :class:`chute.Loader`).

        ``shuffle``: ``False`` (in order), ``True`` (an exact uniform permutation per epoch), or
        ``"block"`` / :class:`chute.BlockShuffle` (blocks permuted, shuffled within windows:
        sequential reads for data bigger than RAM).

        ``workers`` threads (or processes, ``worker_type="process"``) read up to ``prefetch``
        upcoming batches while the current one is used; ``"auto"`` picks either from the first
        batch's cost within ``ram_budget`` (see :class:`chute.PipelineOptions`).  The batches are
        the same whatever the workers.
        ``on_error="skip"`` leaves out samples whose read or map fails (counted in ``stats()``).

        Distributed training: this process reads rank ``rank`` of ``world_size`` ranks' disjoint
        shares of every epoch (detected from torch.distributed, JAX, ``RANK``/``WORLD_SIZE`` or
        ``TF_CONFIG`` when not given); every rank gets the same number of batches, the epoch's
        tail split by ``remainder`` (``"pad"``: a few samples repeated; ``"drop"``: fewer than
        ``world_size`` left out).  See :func:`chute.order.rank_batches`.

        Variable-length samples (see :mod:`chute.batching`): ``pad=True`` or :class:`chute.Pad`
        pads ragged fields into arrays (to the batch's longest, a fixed length or a multiple, with
        lengths or masks); ``bucket=True``, a field name or :class:`chute.Bucket` makes batches of
        similar lengths; ``collate=fn`` builds each batch from its list of samples instead.
        ``repeat=True`` makes a loop over the loader run epoch after epoch without end (count steps,
        and stop when you wish); ``epochs=N`` runs loops until epoch N.
        """
        from .loader import Loader
        from .options import BatchOptions, PipelineOptions
        from .world import detect_world

        return Loader(
            self,
            BatchOptions(batch_size, shuffle, seed, drop_remainder, pad, bucket, collate, repeat, epochs),
            PipelineOptions(workers, prefetch, on_error, worker_type, start_method, ram_budget),
            detect_world(rank, world_size, remainder),
        )

    def __repr__(self) -> str:
        return f"Dataset(len={len(self)}, spec={self.spec!r})"


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


def as_rows(indices: Any, n: int) -> Rows:
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
