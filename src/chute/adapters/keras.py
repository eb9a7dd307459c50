"""Keras 3: a loader as a ``keras.utils.PyDataset`` (any backend: tensorflow, jax, torch).

chute does the parallel work itself, so the PyDataset asks Keras for no workers of its own: no
thread or process pool is started or rebuilt per epoch, and no batch is pickled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras

from ..errors import SpecError, explain
from ..spec import Spec

if TYPE_CHECKING:
    from ..loader import Loader

__all__ = ["KerasDataset"]

Arrange = Callable[[Any], Any]


class KerasDataset(keras.utils.PyDataset):  # type: ignore[misc]
    """A :class:`chute.Loader` behind Keras's PyDataset contract.

    While Keras runs an epoch (between its ``on_epoch_begin`` and ``on_epoch_end``) batches are
    served in the loader's own order, whatever index Keras asks for: ``fit(shuffle=True)``'s
    reshuffling of batch numbers cannot make the order unreproducible, and a ``steps_per_epoch``
    shorter than the data continues where the last Keras epoch stopped instead of skipping
    samples.  Outside an epoch (Keras peeking at a batch for its spec, or a user indexing by hand)
    ``ds[i]`` is the loader's batch ``i``, with no side effect.
    """

    def __init__(self, loader: Loader, x: Any = None, y: Any = None, sample_weight: Any = None) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=1)
        self._loader = loader
        self._arrange = arrangement(loader.spec, x, y, sample_weight)
        self._in_epoch = False

    @property
    def loader(self) -> Loader:
        return self._loader

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def num_batches(self) -> int:
        return len(self._loader)

    def __getitem__(self, index: int) -> Any:
        batch = self._loader.next_batch() if self._in_epoch else self._loader[index]
        return self._arrange(batch)

    def on_epoch_begin(self) -> None:
        self._in_epoch = True

    def on_epoch_end(self) -> None:
        # The loader's position moves on by itself as batches are served, so a full Keras epoch
        # has already started the next chute epoch, and a partial one (steps_per_epoch) resumes.
        self._in_epoch = False


def arrangement(spec: Spec, x: Any, y: Any, sample_weight: Any) -> Arrange:
    """How a loader batch becomes the ``(x, y, sample_weight)`` structure Keras takes."""
    if x is None:
        if y is not None or sample_weight is not None:
            raise SpecError(
                explain("x together with y or sample_weight", "y or sample_weight without x", "Also pass x=...")
            )
        treedef = spec.treedef
        if isinstance(treedef, tuple) and not 1 <= len(treedef) <= 3:
            raise SpecError(
                explain(
                    "samples of (x,), (x, y) or (x, y, sample_weight) for Keras",
                    f"a tuple of {len(treedef)} parts {spec.structure}",
                    "Name the parts: loader.keras(x=[...], y=..., sample_weight=...).",
                )
            )
        return _identity
    if sample_weight is not None and y is None:
        raise SpecError(explain("y together with sample_weight", "sample_weight without y", "Also pass y=..."))
    pickers = [_picker(spec, part) for part in (x, y, sample_weight) if part is not None]

    def arrange(batch: Any) -> tuple[Any, ...]:
        leaves = spec.flatten(batch)
        return tuple(pick(leaves) for pick in pickers)

    return arrange


def _identity(batch: Any) -> Any:
    return batch


def _picker(spec: Spec, selector: Any) -> Callable[[list[Any]], Any]:
    position = {name: i for i, name in enumerate(spec.names)}

    def where(name: Any) -> int:
        if name not in position:
            spec.field(str(name))  # raises the SpecError that lists the names
        return position[name]

    if isinstance(selector, str):
        i = where(selector)
        return lambda leaves: leaves[i]
    if isinstance(selector, Mapping):
        pairs = [(str(key), where(name)) for key, name in selector.items()]
    elif isinstance(selector, Sequence):
        pairs = [(str(name), where(name)) for name in selector]
    else:
        raise SpecError(
            explain(
                "a field name, a list of names or a dict {layer_name: field_name}",
                f"{selector!r} of type {type(selector).__name__}",
                f"Choose among the fields {list(spec.names)}.",
            )
        )
    return lambda leaves: {key: leaves[i] for key, i in pairs}
