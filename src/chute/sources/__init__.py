"""Where samples come from.

A source is anything with ``spec``, ``__len__``, ``read_sample(i)`` and ``read_rows(indices)``
(see :class:`Source`): users never inherit from a chute class to plug data in.
"""

from __future__ import annotations

from .arrays import ArraySource, from_arrays
from .base import Source

__all__ = ["ArraySource", "Source", "from_arrays"]
