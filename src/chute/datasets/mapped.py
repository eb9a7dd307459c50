"""Per-sample and per-batch functions over a dataset, run wherever batches are read (in workers).

``ds.map(fn)`` calls ``fn(sample)`` or ``fn(sample, rng)``; ``ds.map_batch(fn)`` calls
``fn(batch)`` or ``fn(batch, rng)``.  ``rng`` is a ``numpy.random.Generator`` derived from the
loader's seed, the epoch and the sample index (see :mod:`chute.rng`), valid during the call (use
it there; do not keep it for later), so augmentations are
reproducible and independent of the number of workers.  Maps compose: each wraps the one before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from chute.datasets.base import DerivedDataset, Node, qualified_name
from chute.errors import SpecError, add_note, explain
from chute.rng import DEFAULT_KEY, ReadKey, SampleStreams, batch_rng
from chute.sources.base import Rows, Source, row_indices
from chute.spec import Spec, infer_spec
from chute.telemetry.timing import stage

__all__ = [
    "MappedDataset",
    "adopt_specs",
    "learn_specs",
    "stack",
    "unbatched_spec",
    "unknown_maps",
    "wants_rng",
]


def wants_rng(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes a second positional parameter (the generator)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: called with the sample only
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def stack(spec: Spec, samples: list[list[Any]]) -> list[Any]:
    return [field.stack([leaves[i] for leaves in samples]) for i, field in enumerate(spec.fields)]


class MappedDataset(DerivedDataset):
    """A dataset whose samples (or batches) pass through a function when they are read.

    Its spec is taken from the function's output for sample 0, the first time it is needed; with
    ``objects`` (a collate function's), leaves that are not arrays are kept as they are.
    """

    def __init__(
        self,
        parent: Node,
        fn: Callable[..., Any],
        batched: bool,
        ragged: tuple[str, ...] = (),
        objects: bool = False,
    ) -> None:
        if not callable(fn):
            raise SpecError(
                explain("a function to map", f"{fn!r} of type {type(fn).__name__}", "Pass a callable.")
            )
        self._parent, self._fn, self._batched, self._ragged = parent, fn, batched, ragged
        self._objects = objects
        self.wants_rng = wants_rng(fn)
        self._spec: Optional[Spec] = None

    @property
    def source(self) -> Source:  # the same rows as the parent's: its source's read-ahead hints hold
        return self._parent.source

    def stream_source(self) -> Any:
        return self._parent.stream_source()  # (a map reads its parent's rows as they are)

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            first = self._apply(self._input(np.array([0], dtype=np.int64), DEFAULT_KEY), [0], DEFAULT_KEY)
            if self._batched:
                self._spec = unbatched_spec(first, self._objects)
            else:
                self._spec = infer_spec(first[0], self._ragged)
        return self._spec

    def __len__(self) -> int:
        return len(self._parent)

    def lineage(self) -> tuple[list[Node], str]:
        return [self._parent], f"map:{qualified_name(self._fn)}"

    def read(self, rows: Rows, key: ReadKey = DEFAULT_KEY) -> Any:
        indices = row_indices(rows)
        outputs = self._apply(self._input(rows, key), indices.tolist(), key)
        if self._batched:
            return outputs
        spec = self.spec
        with stage("collate"):
            leaves = [_checked_leaves(spec, out, i) for out, i in zip(outputs, indices.tolist(), strict=True)]
            return spec.unflatten(stack(spec, leaves))

    def _input(self, rows: Rows, key: ReadKey) -> Any:
        """The parent's rows as the function takes them: a batch, or (per sample) a list of samples,
        which the parent need not stack (decoded images of different sizes, say)."""
        return self._parent.read(rows, key) if self._batched else self._parent.read_unstacked(rows, key)

    def _apply(self, batch: Any, indices: list[int], key: ReadKey) -> Any:
        if self._batched:
            if not indices:
                return batch
            with stage("map"):
                return self._fn(batch, batch_rng(key, indices[0])) if self.wants_rng else self._fn(batch)
        outputs = []
        streams = SampleStreams(key) if self.wants_rng else None
        with stage("map"):
            for index, sample in zip(indices, batch, strict=True):
                try:
                    out = self._fn(sample, streams(index)) if streams else self._fn(sample)
                except Exception as error:
                    add_note(error, f"chute: in the map function {_name(self._fn)}, for sample {index}")
                    raise
                outputs.append(out)
        return outputs


def unknown_maps(node: Any) -> list[MappedDataset]:
    """The maps in ``node``'s lineage, parents first, whose output spec is not known yet (learning
    it runs the map on sample 0: process workers do that in a process of their own)."""
    found: list[MappedDataset] = []

    def walk(current: Any) -> None:
        try:
            parents = current.lineage()[0] if hasattr(current, "lineage") else []
        except NotImplementedError:
            parents = []
        for parent in parents:
            walk(parent)
        if isinstance(current, MappedDataset) and current._spec is None and current not in found:
            found.append(current)

    walk(node)
    return found


def learn_specs(node: Any) -> list[Spec]:
    """The specs of ``unknown_maps(node)``, in its order (running each map on sample 0)."""
    return [m.spec for m in unknown_maps(node)]


def adopt_specs(node: Any, specs: list[Spec]) -> None:
    """Give ``unknown_maps(node)`` the specs learned elsewhere (by :func:`learn_specs`)."""
    for mapped, spec in zip(unknown_maps(node), specs, strict=True):
        mapped._spec = spec


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def unbatched_spec(batch: Any, objects: bool = False) -> Spec:
    spec = infer_spec(batch, objects=objects)
    from chute.spec import Field

    return Spec(
        tuple(Field(f.name, f.dtype, f.shape[1:], f.kind) if f.kind == "array" else f for f in spec.fields),
        spec.treedef,
    )


def _checked_leaves(spec: Spec, sample: Any, index: int) -> list[Any]:
    """The leaves of one mapped sample, checked against the spec taken from sample 0."""
    try:
        leaves = spec.flatten(sample)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise SpecError(
            explain(
                f"the map's output for sample {index} to have the structure {spec.structure}",
                f"{type(error).__name__}: {error}",
                "Return samples of one structure from the map function.",
            )
        ) from None
    for field, value in zip(spec.fields, leaves, strict=True):
        shape = np.shape(value)
        if field.kind == "ragged" and (not shape or shape[1:] != field.shape[1:]):
            raise SpecError(
                explain(
                    f"ragged field {field.name!r} of shape {list(field.shape)} from the map (as sample 0)",
                    f"shape {shape} for sample {index}",
                    "Return arrays that differ only in their first dimension.",
                )
            )
        if field.kind == "array" and shape != field.shape:
            raise SpecError(
                explain(
                    f"field {field.name!r} of shape {field.shape} from the map (as for sample 0)",
                    f"shape {np.shape(value)} for sample {index}",
                    "Return arrays of one shape (resize or pad in the map function).",
                )
            )
    return leaves
