"""Dataset: what users hold. A random-access collection of samples, and the methods that make
new datasets from it (``map``, ``filter``, ``take``, ``split``, ``cache``...) and batches
(``loader``).

A Dataset wraps one node of the dataset graph (:mod:`chute.datasets`): a source's samples, or a
derivation of other datasets.  Each method builds a derived node over this dataset and wraps it
again, so the kinds of node know nothing of this class and the graph of modules has no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any, Optional

from chute.datasets import views
from chute.datasets.base import Node
from chute.datasets.cache import CachedDataset
from chute.datasets.mapped import MappedDataset
from chute.datasets.mix import MixedDataset
from chute.errors import OptionError, explain
from chute.loader import Loader
from chute.options import BatchOptions, BlockShuffle, PipelineOptions, check_names
from chute.order.world import World, detect_world
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows, Source
from chute.spec import Spec

__all__ = ["Dataset", "concat", "mix"]


class Dataset(Node):
    """A random-access collection of samples with a known element spec.

    ``len(ds)`` samples; ``ds[i]`` is one sample (the structure of ``ds.spec`` with one row per
    field); ``ds[indices]`` or ``ds.gather(indices)`` reads many samples at once as stacked arrays,
    one vectorised read per field.  ``ds.loader(...)`` cuts it into batches for training.

    ``Dataset(source)`` wraps any object with the :class:`chute.sources.Source` methods.  What a
    derived dataset has of its own (a mix's ``counts``, a cache's ``filled()``, a subset's
    ``indices``) is reached on the dataset too.
    """

    def __init__(self, data: Source | Node) -> None:
        self._node = data if isinstance(data, Node) else Node(data)

    @property
    def node(self) -> Node:
        """The node of the dataset graph this dataset is (a source's samples, or a derivation)."""
        return self._node

    @property
    def spec(self) -> Spec:
        """Field names, dtypes and per-sample shapes, known without reading any data."""
        return self._node.spec

    @property
    def source(self) -> Source:
        return self._node.source

    def __len__(self) -> int:
        return len(self._node)

    def direct_source(self) -> Optional[Source]:
        return self._node.direct_source()

    def stream_source(self) -> Any:
        return self._node.stream_source()

    def sample(self, index: int, key: ReadKey = DEFAULT_KEY) -> Any:
        return self._node.sample(index, key)

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        return self._node.read(rows, key)

    def read_unstacked(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> list[Any]:
        return self._node.read_unstacked(rows, key)

    @property
    def class_names(self) -> Optional[list[str]]:
        """The names of the label values, where the data has them (an image folder's classes, a
        converted dataset's): label ``i`` is ``class_names[i]``.  Views, maps and mixes of datasets
        with the same class names keep them; otherwise None."""
        return self._node.class_names

    @property
    def image_fields(self) -> tuple[str, ...]:
        return self._node.image_fields

    def encoded(self) -> Node:
        return self._node.encoded()

    def lengths(self, name: str, epoch: int = 0) -> Any:
        """The length (first dimension; bytes or characters for binary and text) of field ``name``
        in every sample, as int64: from the stored offsets where the source keeps them (the chute
        format), else by reading the dataset once (kept for later calls)."""
        return self._node.lengths(name, epoch)

    def lineage(self) -> tuple[list[Node], str]:
        return [self._node], ""  # transparent: the state fingerprint is the node's

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # (also while unpickling, before _node is set)
            raise AttributeError(name)
        return getattr(self._node, name)

    def map(self, fn: Callable[..., Any], ragged: Sequence[str] = ()) -> Dataset:
        """This dataset with ``fn(sample)`` or ``fn(sample, rng)`` applied to every sample as it is read.

        The function runs where batches are read (in the loader's workers).  ``rng`` is a numpy
        Generator from (seed, epoch, sample index), so results are reproducible and the same
        whatever the number of workers.  The output's spec is taken from sample 0; ``ragged``
        names output fields whose first dimension varies between samples (padded or bucketed by
        the loader's ``pad=`` and ``bucket=``).
        """
        names = check_names("ragged", ragged) if ragged else ()
        return Dataset(MappedDataset(self, fn, batched=False, ragged=names))

    def map_batch(self, fn: Callable[..., Any]) -> Dataset:
        """This dataset with ``fn(batch)`` or ``fn(batch, rng)`` applied to every batch read."""
        return Dataset(MappedDataset(self, fn, batched=True))

    # -- choosing samples (see chute.datasets.views): each returns a random-access dataset -----------------
    def take(self, count: int) -> Dataset:
        """The first ``count`` samples (all of them if there are fewer)."""
        self._random_access("take")
        return Dataset(views.take(self, count))

    def skip(self, count: int) -> Dataset:
        """All but the first ``count`` samples."""
        self._random_access("skip")
        return Dataset(views.skip(self, count))

    def shard(self, index: int, count: int) -> Dataset:
        """Every ``count``-th sample from ``index`` on (tf.data's ``shard``; for splitting data by
        hand: loaders already split every epoch between distributed ranks themselves)."""
        self._random_access("shard")
        return Dataset(views.shard(self, index, count))

    def subset(self, indices: Any) -> Dataset:
        """Samples ``indices`` (ints, a slice or a boolean mask), in that order."""
        self._random_access("subset")
        return Dataset(views.subset(self, indices))

    def split(self, parts: Sequence[float | int], seed: Optional[int] = None) -> tuple[Dataset, ...]:
        """Disjoint parts holding every sample once, e.g. ``train, val, test = ds.split([0.8, 0.1, 0.1],
        seed=0)``: fractions summing to 1 or counts summing to ``len(ds)``.  With ``seed`` samples
        go to parts at random (the same for the same seed, on any machine); without, in runs."""
        self._random_access("split")
        return tuple(Dataset(part) for part in views.split(self, parts, seed))

    def filter(self, predicate: Callable[[Any], Any], batched: bool = False) -> Dataset:
        """The samples for which ``predicate(sample)`` is true (or, ``batched=True``, where
        ``predicate(batch)`` gives a boolean mask), in order.

        The length is exact: the first time it (or a sample) is needed, the whole dataset is read
        once to find the samples kept, which a progress bar shows when it takes long; after that
        the filter is a subset and reads only what it keeps.  The predicate sees samples as read
        outside a loader (maps' randomness of epoch 0): filter on what does not change by epoch.
        """
        stream: Any = self.stream_source()
        if stream is None:
            return Dataset(views.FilteredDataset(self, predicate, batched))
        on_its_samples = self.direct_source() is stream
        if batched or not on_its_samples:
            raise OptionError(
                explain(
                    "a filter of a generator's own samples, one at a time (kept as they are drawn)",
                    "a batched filter" if batched else "a filter after a map or padding",
                    "Filter before mapping, from_generator(fn).filter(keep).map(f), with batched=False; "
                    "or filter inside the generator.",
                )
            )
        return Dataset(Node(stream.filtered(predicate)))

    def cache(self, path: Optional[str] = None, ram_budget: Optional[int | str] = None) -> Dataset:
        """This dataset with each sample kept the first time it is read (see :mod:`chute.datasets.cache`):
        the first epoch runs as before, later epochs read the kept samples at memory speed.

        Kept in RAM when the samples fit ``ram_budget`` (default: a quarter of the available RAM),
        otherwise in files under ``path`` (default: the temporary directory).  Maps before the
        cache run once per sample, with the randomness of epoch 0, as tf.data's ``cache()``.
        """
        self._random_access("cache")
        return Dataset(CachedDataset(self, path, ram_budget))

    def loader(
        self,
        batch_size: Optional[int] = None,
        shuffle: bool | str | BlockShuffle = False,
        seed: Optional[int] = None,
        workers: int | str = 0,
        *,
        options: Optional[BatchOptions] = None,
        pipeline: Optional[PipelineOptions] = None,
        world: Optional[World] = None,
        **settings: Any,
    ) -> Loader:
        """Batches of this dataset in an epoch order fixed by ``seed`` (see :class:`chute.Loader`).

        ``shuffle``: ``False`` (in order), ``True`` (an exact uniform permutation per epoch), or
        ``"block"`` / :class:`chute.BlockShuffle` (blocks permuted, shuffled within windows:
        sequential reads for data bigger than RAM).  ``workers`` threads (or processes) read
        upcoming batches while the current one is used; the batches are the same whatever the
        workers.

        The rest of the settings live in three option records, given whole or field by field:

        - ``options``, a :class:`chute.BatchOptions` (how epochs are cut into batches):
          ``drop_remainder``, ``pad`` (:class:`chute.Pad`), ``bucket`` (:class:`chute.Bucket`),
          ``collate``, ``repeat``, ``epochs``; it may carry ``batch_size``, ``shuffle`` and
          ``seed`` instead of the arguments;
        - ``pipeline``, a :class:`chute.PipelineOptions` (how batches are produced): ``prefetch``,
          ``worker_type`` (``"thread"`` or ``"process"``), ``start_method``, ``on_error``
          (``"skip"`` leaves out samples whose read or map fails), ``ram_budget``, ``timeout``
          (seconds to wait for a batch before a :class:`chute.StallError` reports the stuck worker);
        - ``world``, a :class:`chute.World` (distributed training: this process reads rank
          ``rank`` of ``world_size`` ranks' disjoint shares of every epoch, all with the same
          number of batches, the tail split by ``remainder``); detected from torch.distributed,
          JAX, ``RANK``/``WORLD_SIZE`` or ``TF_CONFIG`` when not given.

        Any field of the three may also be given as a keyword (``loader(32, prefetch=4,
        pad=True, rank=0, world_size=2)``), which overrides the record's.
        """
        batch, piped, worldly = _split_settings(settings)
        if options is None:
            if batch_size is None:  # a generator of batches: its own batch size
                batch_size = getattr(self.stream_source(), "yield_size", None)
            if batch_size is None:
                raise OptionError(
                    explain("a batch_size", "none", "Pass one: ds.loader(32), or options=BatchOptions(32).")
                )
            options = BatchOptions(batch_size, shuffle, seed)
        else:
            given = {"batch_size": batch_size, "shuffle": shuffle, "seed": seed}
            clash = [name for name, value in given.items() if value is not None and value is not False]
            if clash:
                raise OptionError(
                    explain(
                        "batch_size, shuffle and seed in options= or as arguments, not both",
                        f"options={options!r} and {', '.join(clash)}",
                        "Put them in the BatchOptions record, or leave options= out.",
                    )
                )
        options = replace(options, **batch)
        pipeline = replace(pipeline or PipelineOptions(workers), **piped)
        if workers != 0 and pipeline.workers != workers:
            pipeline = replace(pipeline, workers=workers)
        if world is None or worldly:
            base = world or World()
            rank = worldly.get("rank", base.rank if world else None)
            size = worldly.get("world_size", base.size if world else None)
            world = detect_world(rank, size, worldly.get("remainder", base.remainder))
        return Loader(self, options, pipeline, world)

    def _random_access(self, what: str) -> None:
        """Refuse ``what`` on a generator's dataset, which can only be read in order."""
        if self.stream_source() is not None:
            raise OptionError(
                explain(
                    f"a dataset that can be read at any position for {what}",
                    "a generator's, read in order",
                    "Convert it once (chute.convert) and open the result, or pass length=/steps= "
                    "to chute.from_generator to cut its epochs.",
                )
            )

    def __repr__(self) -> str:
        return repr(self._node) if isinstance(self._node, views.DerivedDataset) else super().__repr__()


_BATCH = {f.name for f in fields(BatchOptions)} - {"batch_size", "shuffle", "seed"}
_PIPELINE = {f.name for f in fields(PipelineOptions)} - {"workers"}
_WORLD = {"rank", "world_size", "remainder"}


def _split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Keyword settings of ``loader()`` sorted into the three records' fields."""
    unknown = sorted(set(settings) - _BATCH - _PIPELINE - _WORLD)
    if unknown:
        raise OptionError(
            explain(
                "settings of BatchOptions, PipelineOptions or World",
                ", ".join(unknown),
                f"Use one of: {', '.join(sorted(_BATCH | _PIPELINE | _WORLD))}.",
            )
        )
    pick = lambda names: {k: v for k, v in settings.items() if k in names}  # noqa: E731
    return pick(_BATCH), pick(_PIPELINE), pick(_WORLD)


def concat(parts: Sequence[Dataset]) -> Dataset:
    """The samples of every dataset in ``parts``, one dataset after another (same spec required)."""
    for part in parts:
        if isinstance(part, Dataset):
            part._random_access("concat")
    return Dataset(views.ConcatDataset(parts))


def mix(
    datasets: Sequence[Dataset], weights: Sequence[float], seed: int = 0, length: Optional[int] = None
) -> Dataset:
    """A dataset drawing from ``datasets`` in the proportions ``weights`` (tf.data's
    ``sample_from_datasets``, Grain's ``mix``), exactly in every epoch.

    ``length`` samples per epoch; by default as many as the datasets give without repeating any
    within an epoch (``min(len(d) / w)``: the first to run out sets it).  Dataset ``i`` gives
    ``weights[i] * length`` of them (rounded to whole samples that sum to ``length``), different
    ones each epoch, chosen from ``seed`` and the epoch.  All datasets must have the same spec.
    """
    for part in datasets:
        if isinstance(part, Dataset):
            part._random_access("mix")
    return Dataset(MixedDataset(datasets, weights, seed, length))
