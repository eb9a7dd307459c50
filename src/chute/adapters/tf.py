"""TensorFlow: a loader as a ``tf.data.Dataset`` of whole batches.

The element spec comes from chute's spec (no batch is read to find it); each iteration of the
dataset is one whole epoch of the loader, read ahead by chute's own workers and handed to TensorFlow through
``from_generator`` one batch at a time, so the per-element cost of that path (GIL-bound, tens of
microseconds) is paid per batch, not per sample.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from ..errors import SpecError, explain
from ..spec import Field

if TYPE_CHECKING:
    from ..loader import Loader

__all__ = ["dataset", "signature"]


def signature(loader: Loader) -> Any:
    """The ``tf.TensorSpec`` structure of the loader's batches."""
    spec = loader.spec
    return spec.unflatten([_tensor_spec(field) for field in spec.fields])


def _tensor_spec(field: Field) -> Any:
    if field.kind == "array":
        return tf.TensorSpec((None, *field.shape), tf.as_dtype(field.dtype), name=_name(field))
    if field.kind in ("bytes", "str"):
        return tf.TensorSpec((None,), tf.string, name=_name(field))
    raise SpecError(
        explain(
            f"fixed-shape, bytes or text fields for loader.tf() (field {field.name!r})",
            f"a ragged field of shape {field.shape}",
            "Pad it in a map (ds.map) or read it with loader.torch() / iteration instead.",
        )
    )


def _name(field: Field) -> str:
    return "".join(c if c.isalnum() else "_" for c in field.name) or "field"


def dataset(loader: Loader, prefetch: int = 2) -> Any:
    """A ``tf.data.Dataset`` over ``loader``: each iteration is the loader's current epoch, whole.

    An iteration that runs to the end moves the loader to its next epoch; one abandoned part-way
    (Keras peeking at a few batches to learn the shapes) changes nothing, so the next iteration
    still serves the whole epoch.
    """

    def batches() -> Iterator[Any]:
        epoch = loader.epoch
        for number in range(len(loader)):
            asked = time.perf_counter()
            batch, ready = loader.fetch(number, epoch)
            loader._delivered(number, time.perf_counter() - asked, 0.0, ready)
            yield batch
        if loader.epoch == epoch:
            loader.on_epoch_end()

    data = tf.data.Dataset.from_generator(batches, output_signature=signature(loader))
    data = data.apply(tf.data.experimental.assert_cardinality(len(loader)))
    options = tf.data.Options()
    # chute splits data between ranks itself; tf.distribute must not shard a generator by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options).prefetch(prefetch)
