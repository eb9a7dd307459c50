"""Image codecs: decode (at a reduced scale first when only a small size is wanted), resize, encode.

JPEG goes through simplejpeg when it is installed (libjpeg-turbo, releases the GIL; measured 2.3x
Pillow per core here) and Pillow otherwise; every other format goes through Pillow.  Resizing uses
OpenCV when it is installed, Pillow otherwise.
"""

from __future__ import annotations

import functools
import io
from typing import Any, Optional

import numpy as np

from chute._internal.require import require

__all__ = ["decode_image", "encode_jpeg", "opencv", "resize_image"]

Size = tuple[int, int]  # (height, width)


def _pillow() -> Any:
    return require("PIL.Image", "to decode and encode images", "pip install 'chute[images]'")


@functools.cache
def _simplejpeg() -> Optional[Any]:
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


@functools.cache
def opencv() -> Optional[Any]:
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_image(data: bytes, size: Optional[Size] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """RGB pixels ``(height, width, 3)`` uint8 of an encoded image, resized to ``size`` if given.

    For JPEG with a target size, the decoder scales while decoding (DCT scaling) to the smallest
    image still at least ``size``, so a large photo costs a fraction to decode.  ``out`` (with
    ``size``): a C-contiguous uint8 array ``(*size, 3)`` to write the pixels into, e.g. a row of a
    batch, which is returned.  ``data`` may be any bytes-like object (``bytes``, a ``memoryview``).
    """
    jpeg = _simplejpeg() if _is_jpeg(data) else None
    if jpeg is None:
        pixels = _pillow_decode(data, size)
    elif size is None:
        return jpeg.decode_jpeg(data, "RGB")
    else:  # (the path every image of a resized folder takes: no calls beyond the two it needs)
        pixels = jpeg.decode_jpeg(data, "RGB", min_height=size[0], min_width=size[1])
    return pixels if size is None else resize_image(pixels, size, out)


def _pillow_decode(data: bytes, size: Optional[Size]) -> np.ndarray:
    image_module = _pillow()
    with image_module.open(io.BytesIO(data)) as image:
        if size is not None and _is_jpeg(data):
            image.draft("RGB", (size[1], size[0]))  # Pillow's own reduced-scale JPEG decode
        return np.asarray(image.convert("RGB"))


def resize_image(pixels: np.ndarray, size: Size, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``pixels`` resized to exactly ``size`` (height, width).

    With OpenCV installed (it releases the GIL): area averaging when shrinking by 2x or more (no
    aliasing), bilinear otherwise, which after a reduced-scale JPEG decode is the usual case
    (measured: 10 us against 45 us for area averaging on 75 -> 64 px); otherwise Pillow's
    bilinear filter.  The two give slightly different pixels: keep one installed for
    reproducibility.  ``out``: a C-contiguous array of the result's shape and dtype to write into
    (returned), e.g. a row of a batch.
    """
    height, width = size
    shape = pixels.shape
    if shape[0] == height and shape[1] == width:
        return pixels if out is None else _copied(out, pixels)
    cv2 = opencv()
    if cv2 is None:
        image_module = _pillow()
        image = image_module.fromarray(np.ascontiguousarray(pixels))
        resized = np.asarray(image.resize((width, height), image_module.Resampling.BILINEAR))
        return resized if out is None else _copied(out, resized)
    method = cv2.INTER_AREA if shape[0] >= 2 * height and shape[1] >= 2 * width else cv2.INTER_LINEAR
    if out is None or not out.flags.c_contiguous or out.shape != (height, width, *shape[2:]):
        resized = np.asarray(cv2.resize(np.ascontiguousarray(pixels), (width, height), interpolation=method))
        return resized if out is None else _copied(out, resized)
    cv2.resize(pixels, (width, height), dst=out, interpolation=method)  # (it copies a strided source)
    return out


def _copied(out: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    np.copyto(out, pixels)
    return out


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of RGB uint8 ``pixels`` at ``quality`` (1-100)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    jpeg = _simplejpeg()
    if jpeg is not None:
        return bytes(jpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB"))
    buffer = io.BytesIO()
    _pillow().fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
