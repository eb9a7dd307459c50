"""One module per framework; each imports its framework itself, only when it is used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from chute.spec import Spec

__all__ = ["on_arrays"]


def on_arrays(spec: Spec, batch: Any, convert: Callable[[np.ndarray], Any]) -> Any:
    """``batch`` with ``convert`` applied to each numeric array leaf; bytes, text and ragged rows
    (object arrays) have no framework form and stay as they are."""
    return spec.unflatten(
        [
            convert(leaf) if isinstance(leaf, np.ndarray) and not leaf.dtype.hasobject else leaf
            for leaf in spec.flatten(batch)
        ]
    )
