"""Ready-made ``decode`` functions for :func:`chute.from_files`: ``decode=chute.decode.image``.

``image`` turns a file's bytes into uint8 pixels ``(height, width, 3)`` (JPEG through a decoder
that releases the GIL, PNG and other formats through Pillow); ``resized((h, w))`` also brings
every image to one size, decoding big JPEGs at a reduced scale first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .codecs import Size, decode_image

__all__ = ["image", "resized"]


def image(data: bytes) -> Any:
    """Pixels of an encoded image (JPEG, PNG, ...) as a uint8 array ``(height, width, 3)``."""
    return decode_image(data)


def resized(size: Size) -> Callable[[bytes], Any]:
    """A decoder to uint8 pixels ``(size[0], size[1], 3)``: picklable, for process workers too."""
    return functools.partial(decode_image, size=(int(size[0]), int(size[1])))
