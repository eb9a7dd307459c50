"""What an adapter may use of a loader: the contract between chute's engine and its consumers.

The Keras, torch, tf.data and JAX adapters take any object with these methods (a
:class:`chute.Loader` is one) and use nothing else of it; a fifth adapter (Grain, Lightning, a
custom training loop) needs nothing more.  The adapters import no other part of chute's engine,
and the engine imports no adapter: ``loader.keras()`` and its siblings are the only way in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional, Protocol

import numpy as np

from chute.spec import Spec

__all__ = ["LoaderLike", "Position"]

Position = tuple[int, int, int]  # (epoch, samples of its order consumed before batch 0, batches handed out)


class LoaderLike(Protocol):
    """The loader's side of the contract (see the module docstring)."""

    @property
    def spec(self) -> Spec:
        """What a batch holds: field names, dtypes, per-sample shapes, the user's nesting."""

    def __len__(self) -> int:
        """Batches per epoch."""

    def __iter__(self) -> Iterator[Any]:
        """The rest of the current epoch, in order; running to its end moves to the next epoch."""

    @property
    def epoch(self) -> int: ...

    @property
    def class_names(self) -> Optional[list[str]]:
        """The names of the label values (label ``i`` is ``class_names[i]``), where the data has them."""

    @property
    def batches_in_epoch(self) -> int:
        """Batches of the current epoch: ``len()``, or fewer in an epoch restored part-way."""

    @property
    def batch_size(self) -> int: ...

    @property
    def in_order(self) -> bool:
        """Whether batches can only be drawn in order (a generator's)."""

    @property
    def length_known(self) -> bool:
        """Whether ``len()`` is known (False: a generator's epochs of no given length)."""

    @property
    def static_batch_size(self) -> Optional[int]:
        """``batch_size`` when every batch of every epoch holds exactly that many samples
        (``drop_remainder=True``), else None."""

    def fetch(self, batch: int, epoch: int) -> tuple[Any, int]:
        """Batch ``batch`` of ``epoch`` through the workers (read ahead when asked in order), and
        how many batches were ready; the position is not touched."""

    def indices(self, batch: int, epoch: Optional[int] = None) -> np.ndarray:
        """The sample indices of batch ``batch`` of ``epoch``."""

    def on_epoch_end(self) -> None:
        """Finish the current epoch and move to the first batch of the next."""

    def position(self) -> Position:
        """Where iteration stands (for :meth:`rewind` and :meth:`state_at`)."""

    def rewind(self, position: Position) -> None:
        """Back to ``position``: the batches handed out since are handed out again."""

    def state_at(self, position: Position) -> dict[str, Any]:
        """``state_dict()`` as it would be at ``position``."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def record_delivery(self, batch: int, waited: float, consumed: float = 0.0, ready: int = 0) -> None:
        """Count batch ``batch`` as handed to the model: the seconds the consumer waited for it,
        the seconds it spent on the batch before, and how many batches were ready (``stats()``)."""

    def arrays_in_ram(self) -> Optional[list[np.ndarray]]:
        """The arrays whose rows the batches are, when batches are plain gathers of numpy arrays
        in RAM (no map, no padding): consumers may gather them themselves.  Else None."""

    def stats(self, reset: bool = False) -> dict[str, object]:
        """Where the time went (see :meth:`chute.Loader.stats`)."""

    def facts(self) -> Any:
        """The settings the bottleneck doctor's advice depends on (``chute.telemetry.doctor.Facts``)."""

    def close(self) -> None:
        """Stop the workers; the next read starts them again."""
