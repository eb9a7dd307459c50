"""Offline conversion: bake any source into the chute format, in parallel and resumable.

Sources: a chute Dataset (read in vectorised blocks), anything with ``__len__`` and
``__getitem__`` returning samples (a torch Dataset, a hand-written Sequence), any iterable or
generator of samples, and Parquet or CSV files (columns become fields).  A per-sample
``transform`` runs in worker processes; its output spec is taken from the first sample and every
other sample is checked against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Optional

import numpy as np

from chute._internal.version import VERSION
from chute.conversion.samples import sample_blocks
from chute.dataset import Dataset
from chute.errors import ChuteError, OptionError, explain
from chute.format.storage import exists_error
from chute.format.writer import DatasetWriter
from chute.options import check_int, parse_size
from chute.remote.store import Remote
from chute.remote.target import target_for
from chute.stored import open_dataset
from chute.telemetry.progress import Progress

__all__ = ["convert", "parse_size"]

_BLOCK_BYTES = 8 << 20  # rows read per block from a Dataset: about 8 MB


def _dataset_blocks(ds: Dataset, writer: DatasetWriter, progress: Progress) -> None:
    writer.start(ds.spec)
    row_bytes = sum(f.fixed_bytes for f in ds.spec.fields)
    block = max(1, min(65536, _BLOCK_BYTES // max(1, row_bytes)))
    for start in range(writer.consumed, len(ds), block):
        stop = min(start + block, len(ds))
        columns = ds.spec.flatten(ds.read(slice(start, stop)))  # through the dataset's maps and views
        writer.add(columns, np.arange(start, stop, dtype=np.int64))
        progress.update(stop - start)


def convert(
    source: Any,
    dst: str | os.PathLike[str],
    *,
    transform: Optional[Callable[[Any], Any]] = None,
    workers: int = 0,
    shard_size: int | str = "256MB",
    resume: bool = False,
    overwrite: bool = False,
    on_error: str = "raise",
    ragged: Iterable[str] = (),
    progress: Optional[bool] = None,
    remote: Optional[Remote] = None,
) -> Dataset:
    """Convert ``source`` into a chute dataset at ``dst`` and return it opened.

    ``transform`` runs per sample (in ``workers`` processes; it must be picklable, i.e. defined at
    module level).  ``shard_size`` is the target size of a shard.  ``resume=True`` keeps the
    shards a killed conversion to ``dst`` had finished and writes the rest, giving the same
    result as an uninterrupted run.  ``on_error='skip'`` skips samples that fail or do not match
    the spec, counting and listing them in the manifest; the default stops with an error naming
    the sample.  ``ragged`` names fields whose first dimension varies between samples.

    A Dataset's images are stored as it keeps them encoded (an image folder's files, compact; see
    :func:`chute.image_folder`), marked so in the manifest, and decoded when the converted
    dataset is read; its ``class_names`` are stored too.  A ``transform`` sees the samples as the
    Dataset gives them (images decoded) and its output is stored as it is.

    ``dst`` may be an fsspec URL (``s3://bucket/out.chute``): shards are uploaded as they are
    finished and the manifest last, so a half-finished upload is never taken as a dataset, and
    ``resume=True`` continues it; ``remote`` (:class:`chute.Remote`) carries ``storage_options``.
    A ``ray.data.Dataset`` source is converted by parallel Ray tasks (see ``chute.conversion.ray``).
    """
    if _is_ray_dataset(source):
        from chute.conversion.ray import convert_ray

        return convert_ray(source, os.fspath(dst), shard_size=shard_size, overwrite=overwrite, remote=remote)
    workers = check_int("workers", workers, minimum=0)
    if on_error not in ("raise", "skip"):
        raise OptionError(explain("on_error='raise' or 'skip'", repr(on_error), "Choose one of the two."))
    described = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
    if resume and not overwrite:  # a conversion started again after it finished: nothing to do
        finished = _finished(os.fspath(dst), remote, _made_by(described, transform), source, on_error)
        if finished is not None:
            return finished
    writer = DatasetWriter(
        os.fspath(dst),
        parse_size(shard_size),
        resume=resume,
        target=target_for(os.fspath(dst), remote, overwrite),
    )
    try:
        _write(source, writer, described, transform, workers, ragged, on_error, progress)
    except BaseException:
        writer.abandon()  # (a conversion that failed before finishing a shard leaves nothing)
        raise
    return open_dataset(writer.dst, remote=remote)


def _write(
    source: Any,
    writer: DatasetWriter,
    described: str,
    transform: Optional[Callable[[Any], Any]],
    workers: int,
    ragged: Iterable[str],
    on_error: str,
    progress: Optional[bool],
) -> None:
    if isinstance(source, (str, os.PathLike)) and transform is None and workers == 0:
        _convert_table(os.fspath(source), writer, progress, made_by=_made_by(described, None))
        return
    if isinstance(source, (str, os.PathLike)):
        from chute.sources.table import from_table

        source = from_table(os.fspath(source))
    class_names = source.class_names if isinstance(source, Dataset) else None
    if isinstance(source, Dataset) and transform is None:
        source = Dataset(source.encoded())  # images stored as encoded, not decoded
    images = source.image_fields if isinstance(source, Dataset) and transform is None else ()
    if isinstance(source, Dataset) and source.stream_source() is not None:
        source = _StreamSamples(source)
    total = len(source) if hasattr(source, "__len__") else getattr(source, "length", None)
    with Progress("converting", total, unit="samples", enabled=progress) as bar:
        bar.update(writer.consumed)
        blocks = isinstance(source, Dataset) and getattr(source.source, "vectorised", False)
        if blocks and transform is None and workers == 0:
            _dataset_blocks(source, writer, bar)
        else:
            if isinstance(source, Dataset) and transform is None and not ragged:
                writer.start(source.spec)  # its field names, not the positions of its samples' leaves
            sample_blocks(source, writer, transform, workers, ragged, on_error, bar)
    writer.close(_made_by(described, transform), images=images, class_names=class_names)


class _StreamSamples:
    """A generator's dataset as the samples of its first epoch (maps applied, with seed 0), in order:
    ``length`` of them, or one call of its function."""

    def __init__(self, ds: Dataset) -> None:
        stream = ds.stream_source()
        if stream.length is None and stream.steps is not None:
            raise OptionError(
                explain(
                    "length= (samples) on a generator to convert, or neither length= nor steps=",
                    f"steps={stream.steps} (batches of a loader's size)",
                    "Pass length=N to chute.from_generator: the conversion stores N samples.",
                )
            )
        self._ds, self.length = ds, stream.length

    def __iter__(self) -> Iterator[Any]:
        loader = self._ds.loader(256, seed=0)
        for batch in loader:
            yield from loader.spec.unstack(batch)


def _is_ray_dataset(source: Any) -> bool:
    return type(source).__module__.startswith("ray.data") and hasattr(source, "write_datasink")


def _finished(
    dst: str, remote: Optional[Remote], made_by: dict[str, Any], source: Any, on_error: str
) -> Optional[Dataset]:
    """The dataset at ``dst``, if a conversion finished it, checked to be this conversion's (the
    same source and transform, and as many samples where the source says how many)."""
    try:
        manifest = open_dataset(dst, remote=remote, decode=False).source.manifest  # type: ignore[attr-defined]
    except (ChuteError, OSError):  # none there (a killed conversion keeps its shards aside)
        return None
    sized = hasattr(source, "__len__") and not isinstance(source, (str, os.PathLike)) and on_error == "raise"
    total = len(source) if sized else None
    theirs = {key: manifest.made_by.get(key) for key in ("source", "transform")}
    mine = {key: made_by[key] for key in ("source", "transform")}
    if theirs != mine or (total is not None and total != manifest.rows):
        raise exists_error(
            dst,
            f"a finished dataset of {manifest.rows} samples made from {theirs['source']!r} (transform "
            f"{theirs['transform']!r}), not this conversion's ({mine['source']!r}, {mine['transform']!r})",
        )
    return open_dataset(dst, remote=remote)


def _made_by(source: str, transform: Optional[Callable[[Any], Any]]) -> dict[str, Any]:
    name = getattr(transform, "__qualname__", None) if transform else None
    return {"source": source, "transform": name, "chute": _version()}


def _convert_table(
    path: str, writer: DatasetWriter, progress: Optional[bool], made_by: dict[str, Any]
) -> None:
    """A Parquet or CSV file streamed block by block into the writer: never held whole in memory."""
    from chute.sources.table import stream_table

    spec, total, blocks = stream_table(path)
    writer.start(spec)
    done = 0
    with Progress("converting", total, unit="samples", enabled=progress) as bar:
        for columns in blocks:
            n = len(columns[0])
            skip = min(n, max(0, writer.consumed - done))  # rows a resumed run already stored
            if skip < n:
                writer.add([c[skip:] for c in columns], np.arange(done + skip, done + n, dtype=np.int64))
            done += n
            bar.update(n)
    writer.close(made_by)


def _version() -> str:
    return VERSION
