"""Batches of samples that do not stack: padding, bucketing by length, and a user's collate function.

``loader(..., pad=chute.Pad(...))`` pads each variable-length (ragged) field to the longest sample
of its batch, a fixed length or a multiple of N, and can add each sample's length or a mask;
``bucket=chute.Bucket(...)`` orders each epoch so that batches hold samples of similar length
(the order itself is :func:`chute.order.epochs.bucket_order`, a pure function of the lengths, seed and
epoch); ``collate=fn`` hands ``fn`` the batch's samples as a list and takes whatever it returns
(arrays in tuples, lists and dicts, or any other object, which is handed on as it is).
Padding and collate run where batches are read (in the workers), as one more step of the read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from chute.datasets.base import DerivedDataset, Node, qualified_name
from chute.datasets.mapped import MappedDataset
from chute.errors import OptionError, SpecError, explain
from chute.options import Pad
from chute.pipeline.arena import batch_array
from chute.rng import DEFAULT_KEY, ReadKey
from chute.sources.base import Rows
from chute.spec import Field, Named, Spec, Treedef

if TYPE_CHECKING:
    from chute.options import BatchOptions

__all__ = ["PaddedDataset", "collated", "reader"]

# -- lengths ------------------------------------------------------------------------------------


# -- padding ------------------------------------------------------------------------------------


def _padded_fields(spec: Spec, pad: Pad) -> list[int]:
    names = pad.fields or tuple(f.name for f in spec.fields if f.kind == "ragged")
    positions = [spec.names.index(spec.field(name).name) for name in names]
    wrong = [spec.fields[i] for i in positions if spec.fields[i].kind != "ragged"]
    if not positions or wrong:
        raise OptionError(
            explain(
                "ragged fields to pad",
                f"{wrong[0]!r}" if wrong else f"no ragged field in {spec!r}",
                "Store variable-length arrays as ragged fields (convert(..., ragged=[...]) or "
                "ds.map(fn, ragged=[...])), or drop pad=.",
            )
        )
    return positions


def _with_extra(treedef: Treedef, padded: list[int], suffixes: list[str], first: int) -> Treedef:
    """``treedef`` with keys ``<key><suffix>`` beside each padded leaf (numbered from ``first``)."""
    index = first

    def walk(node: Treedef) -> Treedef:
        nonlocal index
        if isinstance(node, int):
            return node
        if isinstance(node, Named):
            return node.like(walk(child) for child in node)
        if isinstance(node, tuple):
            return tuple(walk(child) for child in node)
        out: dict[str, Treedef] = {}
        for key, child in node.items():
            out[key] = walk(child)
            if isinstance(child, int) and child in padded:
                for suffix in suffixes:
                    if key + suffix in node:
                        raise OptionError(
                            explain(
                                f"no field {key + suffix!r} beside the padded field {key!r}",
                                f"the keys {list(node)}",
                                "Rename that field, or use Pad(lengths=False, mask=False).",
                            )
                        )
                    out[key + suffix] = index
                    index += 1
        return out

    new = walk(treedef)
    if index - first != len(padded) * len(suffixes):
        raise OptionError(
            explain(
                "padded fields inside a dict, to add their lengths or masks beside them",
                f"fields in a tuple or alone (structure {treedef})",
                "Name the sample's parts with a dict (e.g. ds.map(lambda s: {'tokens': s[0], ...})), "
                "or use Pad(lengths=False, mask=False).",
            )
        )
    return new


class PaddedDataset(DerivedDataset):
    """Reads of ``parent`` with its ragged fields padded into arrays, as :class:`Pad` says."""

    def __init__(self, parent: Node, pad: Pad) -> None:
        super().__init__()
        self._parent, self._pad = parent, pad
        spec = parent.spec
        self._padded = _padded_fields(spec, pad)
        suffixes = [s for s, on in (("_length", pad.lengths), ("_mask", pad.mask)) if on]
        treedef = _with_extra(spec.treedef, self._padded, suffixes, len(spec.fields))
        fields = list(spec.fields)
        for i in self._padded:
            f = fields[i]
            fields[i] = Field(f.name, f.dtype, (pad.length, *f.shape[1:]), "array")
        for i in self._padded:
            for suffix in suffixes:
                name = spec.fields[i].name + suffix
                if suffix == "_length":
                    fields.append(Field(name, np.dtype(np.int64), ()))
                else:
                    fields.append(Field(name, np.dtype(bool), (pad.length,)))
        self._spec = Spec(tuple(fields), treedef)

    @property
    def spec(self) -> Spec:
        return self._spec

    def __len__(self) -> int:
        return len(self._parent)

    def stream_source(self) -> Any:
        return self._parent.stream_source()  # (padding reads its parent's rows as they are)

    def lineage(self) -> tuple[list[Node], str]:
        return [self._parent], f"pad:{self._pad!r}"

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        parent = self._parent.spec
        leaves = parent.flatten(self._parent.read(rows, key))
        extra = []
        for i in self._padded:
            leaves[i], lengths = self._pad_column(leaves[i], parent.fields[i])
            if self._pad.lengths:
                extra.append(lengths)
            if self._pad.mask:
                extra.append(np.arange(leaves[i].shape[1]) < lengths[:, None])
        return self._spec.unflatten(leaves + extra)

    def _pad_column(self, column: np.ndarray, field: Field) -> tuple[np.ndarray, np.ndarray]:
        """A column of ragged rows as one padded array, and the rows' lengths (after any cut)."""
        pad = self._pad
        lengths = np.fromiter((len(v) for v in column), np.int64, len(column))
        longest = int(lengths.max()) if len(lengths) else 0
        width = pad.length or longest
        if longest > width:
            if not pad.truncate:
                raise SpecError(
                    explain(
                        f"samples of field {field.name!r} at most {width} long (Pad(length={width}))",
                        f"a sample of length {longest}",
                        "Pass Pad(truncate=True) to cut longer samples, or a larger length.",
                    )
                )
            column = np.array([v[:width] for v in column] + [None], dtype=object)[:-1]
            lengths = np.minimum(lengths, width)
        width = -(-width // pad.multiple) * pad.multiple
        inner = tuple(int(d or 0) for d in field.shape[1:])
        out = batch_array((len(column), width, *inner), field.dtype)
        out.fill(pad.value)
        # One copy per row: measured 2x faster than a boolean-mask scatter of the concatenated rows
        # (23 vs 47 us for 64 rows of 10-512 int32), which builds a mask and a copy first.
        for row, values in zip(out, column, strict=True):
            row[: len(values)] = values
        return out, lengths


# -- collate ------------------------------------------------------------------------------------


class _Collate:
    """A batch map that hands the user's collate function the batch's samples as a list."""

    def __init__(self, fn: Callable[[list[Any]], Any], spec: Spec) -> None:
        self._fn, self._spec = fn, spec
        self.__qualname__ = f"collate:{qualified_name(fn)}"  # names the map in state fingerprints

    def __call__(self, batch: Any) -> Any:
        return self._fn(list(self._spec.unstack(batch)))


def collated(dataset: Node, fn: Callable[[list[Any]], Any]) -> Node:
    """``dataset`` whose batches are ``fn(samples)`` (a list of samples in, any batch structure out)."""

    if not callable(fn):
        raise OptionError(
            explain("a function for collate", repr(fn), "Pass collate=fn, fn(list of samples).")
        )
    return MappedDataset(dataset, _Collate(fn, dataset.spec), batched=True, objects=True)


def reader(dataset: Node, options: BatchOptions) -> Node:
    """What a loader reads its batches from: ``dataset``, padded or collated as ``options`` say."""
    if options.pad is not None:
        return PaddedDataset(dataset, options.pad)
    if options.collate is not None:
        return collated(dataset, options.collate)
    return dataset
