"""JAX: a loader's batches as ``jax.Array``, moved to the device ahead of use.

``jax.device_put`` is asynchronous, so keeping ``device_prefetch`` batches in flight overlaps the
host-to-device copy with the step that uses the previous batch.  Given a ``jax.sharding.Sharding``
each batch becomes a global array split across its devices (in a multi-process run, from each
process's local part of the batch).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Optional

import jax
import numpy as np

from chute.adapters import on_arrays
from chute.adapters.contract import LoaderLike
from chute.options import check_int

__all__ = ["JaxBatches"]


class JaxBatches:
    """The batches of a :class:`chute.Loader` as jax arrays, one epoch per iteration."""

    def __init__(
        self, loader: LoaderLike, device_prefetch: int = 2, sharding: Optional[Any] = None, device: Any = None
    ) -> None:
        self._loader = loader
        self._depth = check_int("device_prefetch", device_prefetch, minimum=0)
        self._sharding = sharding
        self._device = device

    @property
    def loader(self) -> LoaderLike:
        return self._loader

    @property
    def class_names(self) -> Optional[list[str]]:
        """The loader's class names (label ``i`` is ``class_names[i]``), or None."""
        return self._loader.class_names

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        spec = self._loader.spec
        ahead: deque[Any] = deque()
        for batch in self._loader:
            ahead.append(on_arrays(spec, batch, self._put))
            if len(ahead) > self._depth:
                yield ahead.popleft()
        while ahead:
            yield ahead.popleft()

    def _put(self, leaf: np.ndarray) -> Any:
        if self._sharding is not None:
            if jax.process_count() > 1:
                return jax.make_array_from_process_local_data(self._sharding, leaf)
            return jax.device_put(leaf, self._sharding)
        return jax.device_put(leaf, self._device)
