"""The element spec: what one sample looks like, known without reading any data.

A sample is a *structure*: a single array row, or tuples and dicts nested to any depth whose leaves
are array rows.  chute keeps the structure apart from the leaves (the *fields*), so the engine
works on a flat list of arrays and only the edges rebuild the user's structure.
"""

from __future__ import annotations

import collections
import functools
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Optional, Union

import numpy as np

from chute.errors import SpecError, explain
from chute.pipeline.arena import batch_array

__all__ = [
    "OBJECT",
    "Field",
    "Named",
    "Spec",
    "Treedef",
    "flatten",
    "infer_spec",
    "is_namedtuple",
    "is_sample_leaf",
    "namedtuple_type",
    "unflatten",
]

# A treedef is a leaf position (int), a tuple of treedefs (a Named one for a namedtuple), or a
# dict of treedefs.
Treedef = Union[int, tuple["Treedef", ...], dict[str, "Treedef"]]


KINDS = ("array", "bytes", "str", "ragged")  # the kinds a stored dataset holds
OBJECT = "object"  # a collate function's leaf that is none of those: handed on as it is


def is_namedtuple(node: Any) -> bool:
    """Whether ``node`` is a ``collections.namedtuple`` or ``typing.NamedTuple`` instance."""
    return isinstance(node, tuple) and isinstance(getattr(type(node), "_fields", None), tuple)


# The namedtuple types of the treedefs made in this process, by name and fields: a treedef whose
# type pickle cannot name (one defined in a function) comes back from another process (a worker,
# the process that learns a map's spec) with the user's type wherever this process knows it.
_SEEN: weakref.WeakValueDictionary[tuple[str, tuple[str, ...]], type] = weakref.WeakValueDictionary()


def namedtuple_type(name: str, fields: tuple[str, ...]) -> type:
    """The namedtuple type ``name(*fields)`` for a treedef whose type is known only by its name and
    fields (a stored dataset's, or one pickled in another process): the type of that name and
    fields in a treedef made in this process, else an equivalent one made once."""
    return _SEEN.get((name, fields)) or _remade(name, fields)


@functools.cache
def _remade(name: str, fields: tuple[str, ...]) -> type:
    """A namedtuple type made here, whose instances pickle by its name and fields (pickle cannot
    name the type itself)."""
    kind = collections.namedtuple(name, fields)  # type: ignore[misc]
    kind.__reduce__ = _reduce_remade  # type: ignore[assignment,method-assign]
    return kind


def _reduce_remade(value: tuple[Any, ...]) -> tuple[Any, ...]:
    return _remade_value, (type(value).__name__, type(value)._fields, tuple(value))  # type: ignore[attr-defined]


def _remade_value(name: str, fields: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    return _remade(name, fields)(*values)


class Named(tuple):
    """The treedef of a namedtuple: its children's treedefs in field order, and its type.

    It is a tuple, so code that walks tuple treedefs walks it too, and it compares equal to the
    plain tuple of its children: the type rebuilds samples, it is not part of what must match.
    Pickled, it names its type where that can be imported, else its name and fields (the type is
    then remade by :func:`namedtuple_type`).
    """

    tuple_type: type

    def __new__(cls, tuple_type: type, children: Iterable[Any]) -> Named:
        node = super().__new__(cls, children)
        node.tuple_type = tuple_type
        _SEEN[node.name, node.fields] = tuple_type
        return node

    @property
    def name(self) -> str:
        return self.tuple_type.__name__

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.tuple_type._fields)  # type: ignore[attr-defined]

    def like(self, children: Iterable[Any]) -> Named:
        """A treedef of the same type around other children."""
        return Named(self.tuple_type, children)

    def __reduce__(self) -> tuple[Any, ...]:
        kind: Any = self.tuple_type if _importable(self.tuple_type) else (self.name, self.fields)
        return _named, (kind, tuple(self))

    def __repr__(self) -> str:
        return f"{self.name}{tuple.__repr__(self)}"


def _named(kind: type | tuple[str, tuple[str, ...]], children: tuple[Any, ...]) -> Named:
    return Named(namedtuple_type(*kind) if isinstance(kind, tuple) else kind, children)


def _importable(kind: type) -> bool:
    """Whether pickle can name ``kind`` (defined at the top level of an importable module)."""
    found: Any = sys.modules.get(kind.__module__)
    for part in kind.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is kind


@dataclass(frozen=True)
class Field:
    """One leaf of a sample: its path-like name, dtype, per-sample shape and kind.

    ``kind`` is ``"array"`` for fixed-shape values (batches stack to ``(batch, *shape)``),
    ``"bytes"`` or ``"str"`` for variable-size binary or text (batches are object arrays), and
    ``"ragged"`` for arrays whose first dimension varies (``shape[0]`` is ``None``).  A collate
    function's batch may also hold ``"object"`` leaves: anything else, handed on as it is.
    """

    name: str
    dtype: np.dtype
    shape: tuple[Optional[int], ...]
    kind: str = "array"

    def empty(self, n: int) -> np.ndarray:
        """An uninitialised column of ``n`` samples of this field (object array unless fixed-shape)."""
        if self.kind == "array":
            return batch_array((n, *self.items_shape), self.dtype)
        return np.empty(n, dtype=object)

    def stack(self, values: Sequence[Any]) -> np.ndarray:
        """Per-sample values as one batch column: stacked if fixed-shape (in the field's dtype), else
        an object array."""
        if self.kind == "array" and len(values):
            try:
                return np.stack(values, out=batch_array((len(values), *self.items_shape), self.dtype))
            except (TypeError, ValueError):  # values of another shape or kind: let numpy say what it makes
                return np.stack(values)
        column = self.empty(len(values))
        if len(values):
            column[:] = values
        return column

    @property
    def items_shape(self) -> tuple[int, ...]:
        """The shape with variable dimensions as 0 (for empty arrays of this field)."""
        return tuple(dim or 0 for dim in self.shape)

    @property
    def fixed_bytes(self) -> int:
        """Bytes one sample of this field takes if its shape is fixed (kind "array"), else 0."""
        return self.dtype.itemsize * self.items if self.kind == "array" else 0

    @property
    def items(self) -> int:
        """Values per sample in the fixed dimensions (per first-dimension row for ragged fields)."""
        count = 1
        for dim in self.shape[1:] if self.kind == "ragged" else self.shape:
            count *= dim or 0
        return count

    def __repr__(self) -> str:
        extra = "" if self.kind == "array" else f", kind={self.kind!r}"
        return f"Field({self.name!r}, {self.dtype}, {self.shape}{extra})"


def flatten(
    obj: Any, is_leaf: Callable[[Any], bool], prefix: str = ""
) -> tuple[Treedef, list[tuple[str, Any]]]:
    """Split a nested tuple/list/dict into its treedef and its (name, leaf) pairs, depth first.

    Dict keys keep their insertion order.  Names are ``/``-joined keys, namedtuple field names and
    positions; a top-level tuple gives names ``"0"``, ``"1"``, ..., a top-level dict its own keys
    and a top-level namedtuple its field names.
    """
    leaves: list[tuple[str, Any]] = []

    def walk(node: Any, path: str) -> Treedef:
        if is_leaf(node):
            leaves.append((path or "0", node))
            return len(leaves) - 1
        if isinstance(node, Mapping):
            out: dict[str, Treedef] = {}
            for key, child in node.items():
                if not isinstance(key, str):
                    raise SpecError(
                        explain(
                            "string keys in a dict of arrays",
                            f"key {key!r} of type {type(key).__name__}",
                            "Use str keys, e.g. the Keras layer names.",
                        )
                    )
                out[key] = walk(child, f"{path}/{key}" if path else key)
            return out
        if is_namedtuple(node):
            parts = zip(type(node)._fields, node, strict=True)
            return Named(type(node), [walk(child, f"{path}/{key}" if path else key) for key, child in parts])
        if isinstance(node, (tuple, list)):
            return tuple(walk(child, f"{path}/{i}" if path else str(i)) for i, child in enumerate(node))
        raise SpecError(
            explain(
                "a numpy array, or tuples, lists and dicts of numpy arrays",
                f"{type(node).__name__} at {path or 'the top level'}",
                "Convert it with np.asarray(...) first.",
            )
        )

    return walk(obj, prefix), leaves


def unflatten(treedef: Treedef, leaves: Sequence[Any]) -> Any:
    """Rebuild the structure described by ``treedef`` around ``leaves``."""
    if isinstance(treedef, int):
        return leaves[treedef]
    if isinstance(treedef, dict):
        return {key: unflatten(child, leaves) for key, child in treedef.items()}
    children = (unflatten(child, leaves) for child in treedef)
    return treedef.tuple_type(*children) if isinstance(treedef, Named) else tuple(children)


@dataclass(frozen=True)
class Spec:
    """The element spec of a dataset: its fields, in flat order, and how they nest.

    ``spec.fields`` lists :class:`Field` s; ``spec.structure`` is the nesting with field names at
    the leaves, e.g. ``("0", "1")`` for ``from_arrays(x, y)``.  Namedtuples keep their type:
    :meth:`unflatten` rebuilds them.
    """

    fields: tuple[Field, ...]
    treedef: Treedef

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def structure(self) -> Any:
        return unflatten(self.treedef, self.names)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise SpecError(
            explain(
                f"one of the field names {list(self.names)}",
                repr(name),
                "Check ds.spec.names for the fields this dataset has.",
            )
        )

    @cached_property
    def _flat_tuple(self) -> bool:
        """Whether the structure is a plain tuple of leaves in field order (the common case)."""
        return type(self.treedef) is tuple and self.treedef == tuple(range(len(self.fields)))

    def flatten(self, sample: Any) -> list[Any]:
        """The leaves of a sample or batch with this structure, in field order."""
        if self._flat_tuple and type(sample) in (tuple, list) and len(sample) == len(self.fields):
            return list(sample)
        out: list[Any] = [None] * len(self.fields)

        def walk(treedef: Treedef, node: Any) -> None:
            if isinstance(treedef, int):
                out[treedef] = node
            elif isinstance(treedef, dict):
                for key, child in treedef.items():
                    walk(child, node[key])
            else:
                for child, part in zip(treedef, node, strict=True):
                    walk(child, part)

        walk(self.treedef, sample)
        return out

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """Put a flat list of per-field values back into the sample structure."""
        return tuple(leaves) if self._flat_tuple else unflatten(self.treedef, leaves)

    def unstack(self, batch: Any) -> Iterator[Any]:
        """The samples of a batch with this structure, one at a time."""
        leaves = self.flatten(batch)
        for j in range(len(leaves[0]) if leaves else 0):
            yield self.unflatten([leaf[j] for leaf in leaves])

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{f.name}: {f.kind if f.kind in ('bytes', 'str', OBJECT) else f.dtype}{list(f.shape)}"
            for f in self.fields
        )
        return f"Spec({inner})"


def is_sample_leaf(node: Any) -> bool:
    """Leaves of a sample are anything but tuples, lists and dicts."""
    return not isinstance(node, (tuple, list, dict))


def infer_spec(sample: Any, ragged: Iterable[str] = (), objects: bool = False) -> Spec:
    """The spec of a sample: its structure, and for each leaf its kind, dtype and shape.

    A leaf that is not numbers, bytes or text is refused, or with ``objects`` (a collate
    function's batch) kept as an ``"object"`` field, handed on as it is.
    """
    treedef, leaves = flatten(sample, is_leaf=is_sample_leaf)
    ragged = set(ragged)
    fields = []
    for name, value in leaves:
        if isinstance(value, (bytes, bytearray, memoryview)):
            fields.append(Field(name, np.dtype(object), (), "bytes"))
        elif isinstance(value, str):
            fields.append(Field(name, np.dtype(object), (), "str"))
        else:
            try:
                array = np.asarray(value)
            except Exception:
                if not objects:
                    raise
                array = np.empty((), dtype=object)
            if array.dtype.kind not in "biuf":
                if objects:
                    fields.append(Field(name, np.dtype(object), (), OBJECT))
                    continue
                raise SpecError(
                    explain(
                        f"numbers, bytes or text for field {name!r}",
                        f"{type(value).__name__} with dtype {array.dtype}",
                        "Convert the value to a numeric numpy array, bytes or str in your transform.",
                    )
                )
            shape: tuple[Optional[int], ...] = array.shape
            kind = "array"
            if name in ragged:
                if array.ndim == 0:
                    raise SpecError(
                        explain(f"an array for ragged field {name!r}", "a scalar", "Drop it from ragged=")
                    )
                shape, kind = (None, *array.shape[1:]), "ragged"
            fields.append(Field(name, array.dtype, shape, kind))
    return Spec(tuple(fields), treedef)
