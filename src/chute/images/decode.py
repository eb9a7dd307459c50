"""Ready-made ``decode`` functions for :func:`chute.from_files`: ``decode=chute.decode.image``.

``image`` turns a file's bytes into uint8 pixels ``(height, width, 3)`` (JPEG through a decoder
that releases the GIL, PNG and other formats through Pillow); ``resized((h, w))`` also brings
every image to one size, decoding big JPEGs at a reduced scale first.

A decoder may also have an ``into(data, out)`` method that writes the value into ``out``, a row of
the batch being built: :class:`Resized` has one, so a batch of images is decoded in place, in the
shared memory it travels in from a worker process, and never stacked afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from chute.images.codecs import Size, decode_image

__all__ = ["Resized", "image", "resized"]


def image(data: bytes) -> Any:
    """Pixels of an encoded image (JPEG, PNG, ...) as a uint8 array ``(height, width, 3)``."""
    return decode_image(data)


@dataclass(frozen=True)
class Resized:
    """Decodes to uint8 pixels ``(size[0], size[1], 3)``; picklable, for process workers too."""

    size: Size

    def __call__(self, data: bytes) -> np.ndarray:
        return decode_image(data, self.size)

    def into(self, data: bytes, out: np.ndarray) -> None:
        """Decode into ``out``, a C-contiguous uint8 array ``(*size, 3)`` (a row of a batch)."""
        decode_image(data, self.size, out)


def resized(size: Size) -> Resized:
    """A decoder to uint8 pixels ``(size[0], size[1], 3)``: picklable, for process workers too."""
    return Resized((int(size[0]), int(size[1])))
