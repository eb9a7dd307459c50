"""Conversion on Ray Data: shards written by parallel Ray tasks across the cluster, one manifest at the end.

``chute.convert(ray_dataset, dst)`` writes through a Ray ``Datasink``: each write task cuts its
rows into shards by the same byte rule as a local conversion, names them by its task index (so
tasks never collide) and uploads them (``dst`` a URL) or writes them into the shared staging
directory (``dst`` local: a local cluster or a shared file system); the driver collects the
shards in task order, checks that every task found the same spec, and publishes the manifest
last.  Ray's ``preserve_order`` is set for the write, so the rows keep the dataset's order and the
result holds the same rows, in the same order, as ``chute.convert(ray_dataset.iter_rows(), dst)``.

``convert_source_ray`` converts a chute source (an image folder, a table) the same way: Ray tasks
read disjoint row ranges of it (decoding in parallel) and feed the same sink.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any, Optional

import numpy as np

from chute._internal.require import require
from chute.conversion.samples import sample_blocks
from chute.dataset import Dataset
from chute.errors import ConversionError, explain
from chute.format.manifest import Manifest, ShardInfo
from chute.format.storage import partial_dir
from chute.format.writer import DatasetWriter
from chute.options import parse_size
from chute.remote.store import Remote, Store, is_url
from chute.remote.target import target_for
from chute.spec import Spec
from chute.stored import open_dataset
from chute.telemetry.progress import Progress

__all__ = ["convert_ray", "convert_source_ray"]

_PER_TASK = 10_000  # shard numbers per task: task t writes shard-(t * 10000 + j)


class _TaskShards:
    """A write task's side of the destination: shard files only (the driver writes the manifest)."""

    def __init__(self, dst: str, remote: Remote) -> None:
        self.dst = dst
        self.store = Store(dst, remote) if is_url(dst) else None
        self.staging = tempfile.mkdtemp(prefix="chute-ray-") if self.store else partial_dir(dst)

    def begin(self, resume: bool) -> None:
        return None

    def shard_written(self, name: str) -> None:
        if self.store is not None:
            local = os.path.join(self.staging, name)
            self.store.upload(local, name)
            os.remove(local)

    def journal(self, text: str) -> None:
        """Ray re-runs a failed task itself; the tasks keep no journal."""

    def intact(self, info: ShardInfo) -> bool:
        return False  # (never asked: there is no journal to resume from)

    def keep_only(self, names: set[str]) -> None:
        """Nothing to clean: a re-run task writes its shards afresh."""

    def publish(self, manifest: str) -> None:
        raise ConversionError("chute: a Ray write task does not publish; the driver writes the manifest")

    def discard(self) -> None:
        """The driver cleans up a failed conversion."""

    def close(self) -> None:
        if self.store is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def write_rows(
    rows: Iterable[Any], dst: str, task: int, shard_bytes: int, remote: Remote, spec: Optional[Spec]
) -> dict[str, Any]:
    """Write one task's rows as shards (as a local conversion of them would); their infos and spec.

    The spec is ``spec`` when given, else inferred from the first row and checked on every other.
    """

    if task >= _PER_TASK * 10:
        raise ConversionError(explain("at most 100,000 write tasks", task, "Repartition to fewer blocks."))
    target = _TaskShards(dst, remote)
    writer = DatasetWriter(dst, shard_bytes, target=target, first_shard=task * _PER_TASK)
    if spec is not None:
        writer.start(spec)
    with Progress("writing", None, enabled=False) as bar:
        sample_blocks(iter(rows), writer, None, 0, (), "raise", bar)
    shards = writer.finish()
    target.close()
    return {
        "task": task,
        "shards": [(s.file, s.rows, s.bytes, s.sha256) for s in shards],
        "spec": None if writer.spec is None else Manifest(writer.spec, ()).to_json(),
    }


def _sink(dst: str, shard_bytes: int, remote: Remote, spec: Optional[Spec]) -> Any:
    from ray.data import Datasink
    from ray.data.block import BlockAccessor

    class ChuteDatasink(Datasink):
        """Each write task writes its rows as chute shards; the driver writes the manifest."""

        def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
            rows = (
                dict(row) if spec is None else _sample(spec, row)
                for block in blocks
                for row in BlockAccessor.for_block(block).iter_rows(public_row_format=True)
            )
            return write_rows(rows, dst, int(ctx.task_idx), shard_bytes, remote, spec)

        def on_write_complete(self, write_result: Any) -> None:  # on the driver
            self.results = list(write_result.write_returns)

    return ChuteDatasink()


def _manifest(
    results: list[dict[str, Any]],
    dst: str,
    spec: Optional[Spec],
    images: tuple[str, ...] = (),
    class_names: Optional[list[str]] = None,
) -> Manifest:
    specs = {r["spec"] for r in results if r["spec"] is not None}
    if not specs:
        raise ConversionError(explain("at least one row to convert", "none", "Check the Ray Dataset."))
    if len(specs) > 1:
        found = sorted(str(Manifest.from_json(s, dst).spec) for s in specs)
        raise ConversionError(
            explain("one spec in every block", found, "Make every row the same structure, dtypes and shapes.")
        )
    found_spec = spec or Manifest.from_json(specs.pop(), dst).spec
    shards = [ShardInfo(*info) for r in sorted(results, key=lambda r: r["task"]) for info in r["shards"]]
    made_by = {"source": "ray.data.Dataset", "engine": "ray"}
    names = None if class_names is None else tuple(class_names)
    return Manifest(found_spec, tuple(shards), made_by, images, names)


def convert_ray(
    ds: Any,
    dst: str,
    *,
    shard_size: int | str = "256MB",
    overwrite: bool = False,
    remote: Optional[Remote] = None,
    spec: Optional[Spec] = None,
    images: tuple[str, ...] = (),
    class_names: Optional[list[str]] = None,
) -> Dataset:
    """Convert a ``ray.data.Dataset`` to a chute dataset at ``dst`` (local path or URL) with Ray tasks.

    ``images`` names bytes fields of encoded images and ``class_names`` the labels, for the manifest.
    """
    ray = require("ray", "to convert on Ray", "pip install 'chute[ray]'")
    remote = remote or Remote()
    target = target_for(dst, remote, overwrite)
    target.begin(resume=False)
    context = ray.data.DataContext.get_current()
    ordered = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # rows keep the dataset's order
    sink = _sink(target.dst, parse_size(shard_size), remote, spec)
    try:
        ds.write_datasink(sink)
    finally:
        context.execution_options.preserve_order = ordered
    target.publish(_manifest(sink.results, target.dst, spec, images, class_names).to_json())
    return open_dataset(target.dst, remote=remote)


def convert_source_ray(
    source: Dataset,
    dst: str,
    *,
    tasks: int = 0,
    shard_size: int | str = "256MB",
    overwrite: bool = False,
    remote: Optional[Remote] = None,
) -> Dataset:
    """A chute dataset (image folder, table, ...) converted by Ray tasks reading disjoint row ranges:
    its images stored encoded and its class names kept, as :func:`chute.convert` does."""
    ray = require("ray", "to convert on Ray", "pip install 'chute[ray]'")
    class_names = source.class_names
    source = Dataset(source.encoded())
    spec = source.spec
    blocks = tasks or max(1, min(len(source) // 256, 4 * int(ray.available_resources().get("CPU", 1))))

    def read(batch: dict[str, np.ndarray]) -> dict[str, Any]:
        rows = np.asarray(batch["id"], dtype=np.int64)
        leaves = spec.flatten(source.read(rows))
        return {f.name: _column(f, leaf) for f, leaf in zip(spec.fields, leaves, strict=True)}

    rows = ray.data.range(len(source), override_num_blocks=blocks).map_batches(read, batch_size=None)
    return convert_ray(
        rows,
        dst,
        shard_size=shard_size,
        overwrite=overwrite,
        remote=remote,
        spec=spec,
        images=source.image_fields,
        class_names=class_names,
    )


def _sample(spec: Spec, row: Any) -> Any:
    """A row whose columns are the fields of ``spec`` as a sample of its structure and dtypes."""
    return spec.unflatten(
        [row[f.name] if f.kind != "array" else np.asarray(row[f.name], dtype=f.dtype) for f in spec.fields]
    )


def _column(field: Any, leaf: Any) -> Any:
    return list(leaf) if field.kind in ("bytes", "str", "ragged") else leaf
