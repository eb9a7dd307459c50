"""Where samples come from.

A source is anything with ``spec``, ``__len__``, ``read_sample(i)`` and ``read_rows(indices)``
(see :class:`Source`, which also names the optional hooks): users never inherit from a chute class
to plug data in.  ``arrays``, ``files``, ``table``, ``sequence`` and ``generator`` hold chute's own
sources and the functions that make datasets of them (``chute.from_arrays``, ...).
"""

from __future__ import annotations

from chute.sources.base import Rows, Source

__all__ = ["Rows", "Source"]
