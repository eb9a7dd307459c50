"""TensorFlow: a loader as a ``tf.data.Dataset`` of whole batches.

The element spec comes from chute's spec (no batch is read to find it); each iteration of the
dataset is one whole epoch of the loader.  Two ways in:

- numpy arrays in RAM with no map (``from_arrays(x, y).loader(...)``): the arrays are copied into
  TensorFlow once, and Python hands over only each epoch's rows (one call per epoch); every batch
  is then a ``tf.gather`` in TensorFlow's own threads, with no Python or GIL per batch;
- anything else: read ahead by chute's own workers and handed to TensorFlow through
  ``from_generator`` one batch at a time, so the per-element cost of that path (GIL-bound, tens of
  microseconds) is paid per batch, not per sample.

Both give the batches iteration gives, in the same order.  Ragged fields become ``tf.RaggedTensor``
(or pad them with the loader's ``pad=``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from chute.adapters.contract import LoaderLike
from chute.adapters.tf_threads import serving
from chute.errors import SpecError, explain
from chute.spec import OBJECT, Field, Spec

__all__ = ["dataset", "signature"]


def signature(loader: LoaderLike) -> Any:
    """The ``tf.TensorSpec`` structure of the loader's batches."""
    spec = loader.spec
    batch = loader.static_batch_size
    return spec.unflatten([_tensor_spec(field, batch) for field in spec.fields])


def _tensor_spec(field: Field, batch: Optional[int]) -> Any:
    """The field's spec in a batch: its first dimension ``batch`` where every batch has that many
    samples (``drop_remainder=True``: static, as tf.data's ``batch(drop_remainder=True)`` gives,
    which XLA and TPUs rely on), else None."""
    if field.kind == "array":
        return tf.TensorSpec((batch, *field.shape), tf.as_dtype(field.dtype), name=_name(field))
    if field.kind in ("bytes", "str"):
        return tf.TensorSpec((batch,), tf.string, name=_name(field))
    if field.kind == OBJECT:
        raise SpecError(
            explain(
                "batches of arrays, bytes and text (in tuples and dicts), which tf.data can describe",
                f"an object that is not an array from the collate function (field {field.name!r})",
                "Return numpy arrays from collate=, or use the batches another way than loader.tf(): "
                "iterate the loader, or loader.torch().",
            )
        )
    return tf.RaggedTensorSpec(
        (batch, None, *field.shape[1:]), tf.as_dtype(field.dtype), ragged_rank=1, row_splits_dtype=tf.int64
    )


def _ragged(spec: Spec, batch: Any) -> Any:
    """``batch`` with its ragged fields (object arrays of rows) as ``tf.RaggedTensor``."""
    leaves = spec.flatten(batch)
    for i, field in enumerate(spec.fields):
        if field.kind == "ragged":
            rows = leaves[i]
            lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
            inner = tuple(int(d or 0) for d in field.shape[1:])
            values = np.concatenate(list(rows)) if len(rows) else np.empty((0, *inner), field.dtype)
            leaves[i] = tf.RaggedTensor.from_row_lengths(values, lengths, validate=False)
    return spec.unflatten(leaves)


def _name(field: Field) -> str:
    return "".join(c if c.isalnum() else "_" for c in field.name) or "field"


def dataset(loader: LoaderLike, prefetch: int = 2) -> Any:
    """A ``tf.data.Dataset`` over ``loader``: each iteration is the loader's current epoch, whole.

    An iteration that runs to the end moves the loader to its next epoch; one abandoned part-way
    (Keras peeking at a few batches to learn the shapes) changes nothing, so the next iteration
    still serves the whole epoch.
    """

    arrays = loader.arrays_in_ram()
    if arrays is not None:
        return _finished(_gathered(loader, arrays), loader, prefetch)

    spec = loader.spec
    ragged = any(f.kind == "ragged" for f in spec.fields)

    def batches() -> Iterator[Any]:
        epoch = loader.epoch
        for number in range(loader.batches_in_epoch):
            serving(loader)
            asked = time.perf_counter()
            batch, ready = loader.fetch(number, epoch)
            loader.record_delivery(number, time.perf_counter() - asked, 0.0, ready)
            yield _ragged(spec, batch) if ragged else batch
        if loader.epoch == epoch:
            loader.on_epoch_end()

    data = tf.data.Dataset.from_generator(batches, output_signature=signature(loader))
    return _finished(data, loader, prefetch)


def _finished(data: Any, loader: LoaderLike, prefetch: int) -> Any:
    if loader.batches_in_epoch == len(loader):  # (else the first epoch is shorter than the rest)
        data = data.apply(tf.data.experimental.assert_cardinality(len(loader)))
    options = tf.data.Options()
    # chute splits data between ranks itself; tf.distribute must not shard a generator by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    data = data.with_options(options).prefetch(prefetch)
    data.class_names = loader.class_names  # (as Keras's image_dataset_from_directory gives them)
    return data


def _gathered(loader: LoaderLike, arrays: list[Any]) -> Any:
    """Batches gathered in TensorFlow from the arrays, by the rows chute chose for each epoch."""
    spec = loader.spec
    tensors = [tf.constant(a) for a in arrays]
    batch = loader.static_batch_size

    def epochs() -> Iterator[Any]:
        serving(loader)
        epoch = loader.epoch
        rows = [loader.indices(b, epoch) for b in range(loader.batches_in_epoch)]
        bounds = np.cumsum([0] + [len(r) for r in rows], dtype=np.int64)
        yield np.concatenate(rows), bounds
        # Asked for the next epoch: this one has been read to its end (flat_map drains it first).
        for number in range(len(rows)):
            loader.record_delivery(number, 0.0, 0.0)
        if loader.epoch == epoch:
            loader.on_epoch_end()

    def batches(order: Any, bounds: Any) -> Any:
        def gather(number: Any) -> Any:
            rows = order[bounds[number] : bounds[number + 1]]
            gathered = [tf.gather(t, rows) for t in tensors]
            if batch is not None:  # (every batch full: a static first dimension, as the signature's)
                gathered = [tf.ensure_shape(g, (batch, *g.shape[1:])) for g in gathered]
            return spec.unflatten(gathered)

        count = tf.size(bounds, out_type=tf.int64) - 1
        numbers = tf.data.Dataset.range(count)
        return numbers.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    rows_spec = (tf.TensorSpec((None,), tf.int64), tf.TensorSpec((None,), tf.int64))
    return tf.data.Dataset.from_generator(epochs, output_signature=rows_spec).flat_map(batches)
