"""Files as a source: a list of paths (with labels), or an image folder with one sub-folder per class.

Nothing is read until a sample is asked for; each sample is one file read and decoded, in the
loader's workers.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from chute.errors import OptionError, ReadError, SpecError, explain
from chute.images.codecs import Size, decode_image, encode_jpeg
from chute.images.decode import resized
from chute.sources.base import Rows, row_indices
from chute.sources.images import DecodedImages
from chute.spec import Field, Spec, infer_spec
from chute.telemetry.timing import add_time, stage

if TYPE_CHECKING:
    from chute.dataset import Dataset

__all__ = ["FilesSource", "from_files", "image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
Decode = Callable[[bytes], Any]
UNREADABLE = (OSError, ValueError, SyntaxError)  # what file reads and decoders raise


class FilesSource:
    """Samples ``(value,)`` or ``(value, label)``: each file's bytes, passed through ``decode``.

    ``decode=None`` keeps the bytes as they are (a ``bytes`` field).  ``field`` declares what
    ``decode`` returns; without it the first file is decoded to find out, once.  ``names`` names
    the two fields; ``images=True`` says the values are encoded images (``image_fields``), which
    :class:`chute.sources.images.DecodedImages` decodes and a conversion marks as such;
    ``class_names`` names the labels.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: Optional[Sequence[int]] = None,
        decode: Optional[Decode] = None,
        field: Optional[Field] = None,
        *,
        names: tuple[str, str] = ("0", "1"),
        images: bool = False,
        class_names: Optional[Sequence[str]] = None,
    ) -> None:
        if labels is not None and len(labels) != len(paths):
            raise SpecError(
                explain(
                    "one label per path", f"{len(paths)} paths and {len(labels)} labels", "Align the lists."
                )
            )
        if not paths:
            raise SpecError(
                explain("at least one file path", "an empty list", "Check how the paths were listed.")
            )
        self.paths = [os.fspath(p) for p in paths]
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.decode = decode
        if decode is None:
            field = Field("0", np.dtype(object), (), "bytes")
        self._field = field
        self.names = names
        self.image_fields = (names[0],) if images else ()
        self.class_names = None if class_names is None else list(class_names)
        self._spec: Optional[Spec] = None

    vectorised = False  # one file at a time: conversion reads it in worker processes

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            field = self._field or infer_spec(self._value(0)).fields[0]
            value = Field(self.names[0], field.dtype, field.shape, field.kind)
            label = Field(self.names[1], np.dtype(np.int64), ())
            fields = (value,) if self.labels is None else (value, label)
            self._spec = Spec(fields, tuple(range(len(fields))))
        return self._spec

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """The file list and labels (not the files' bytes: reading them all would take an epoch)."""
        digest = hashlib.blake2b("\n".join(self.paths).encode(), digest_size=8)
        if self.labels is not None:
            digest.update(self.labels.tobytes())
        return digest.hexdigest()

    def _value(self, index: int) -> Any:
        path = self.paths[index]
        try:
            data = read_file(path)
            if self.decode is None:
                return data
            with stage("decode"):
                return self.decode(data)
        except UNREADABLE as error:
            raise self._unreadable(index, error) from None

    def _unreadable(self, index: int, error: Exception) -> ReadError:
        return ReadError(
            explain(
                f"a readable file at {self.paths[index]} (sample {index})",
                f"{type(error).__name__}: {error}",
                "Remove or replace the file, or convert with on_error='skip'.",
            )
        )

    def read_sample(self, index: int) -> list[Any]:
        value = self._value(index)
        return [value] if self.labels is None else [value, self.labels[index]]

    def read_rows(self, rows: Rows) -> list[Any]:
        indices = row_indices(rows)
        field = self.spec.fields[0]
        if field.kind == "array" and hasattr(self.decode, "into"):
            column = self._decode_into(field.empty(len(indices)), indices.tolist())
        else:
            values = [self._value(i) for i in indices.tolist()]
            if field.kind == "array":
                self._check_shapes(field, values, indices)
            with stage("collate"):
                column = field.stack(values)
        return [column] if self.labels is None else [column, self.labels[indices]]

    def _check_shapes(self, field: Field, values: list[Any], indices: np.ndarray) -> None:
        """Values of the shape the spec says (the first file's), or a SpecError naming the file."""
        like = "as declared" if self._field is not None else f"as decoded from {self.paths[0]}"
        for value, index in zip(values, indices.tolist(), strict=True):
            if np.shape(value) != field.shape:
                raise SpecError(
                    explain(
                        f"values of one shape to batch: {field.shape}, {like}",
                        f"shape {np.shape(value)} from {self.paths[index]} (sample {index})",
                        "Decode every file to one shape, e.g. decode=chute.decode.resized((height, width)) "
                        "for images, or bring each value to one shape in a map (ds.map) before batching.",
                    )
                )

    def _decode_into(self, column: np.ndarray, indices: list[int]) -> np.ndarray:
        """Each file decoded straight into its row of ``column``, never stacked (the loop is lean:
        it runs once per image; decode time is added up here and recorded once)."""
        into, paths, clock = self.decode.into, self.paths, time.perf_counter  # type: ignore[union-attr]
        decoding = 0.0
        for row, index in enumerate(indices):
            try:
                data = read_file(paths[index])
                started = clock()
                into(data, column[row])
                decoding += clock() - started
            except UNREADABLE as error:
                raise self._unreadable(index, error) from None
        add_time("decode", decoding)
        return column


_ONE_READ = 1 << 30  # (Linux returns at most 2 GB - 4 KB from one read())


def read_file(path: str) -> bytes:
    """A whole file's bytes in four system calls (``open().read()`` makes seven: a tty check, two
    sizes, a read to confirm the end); a file that grows while read is read to its end.

    The size comes from ``lseek`` (an int), not ``fstat`` (a 20-field object): 4.8 against 5.6 us
    for a 10 KB JPEG here.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            data = os.pread(fd, min(size + 1, _ONE_READ), 0)  # a byte more: a short read ends it
        except (OSError, AttributeError):  # not seekable (a pipe), or no pread (Windows)
            return _read_to_end(fd, b"")
        if len(data) == size and size < _ONE_READ:
            return data
        return _read_to_end(fd, data)  # a file that changed size, or too big for one read()
    finally:
        os.close(fd)


def _read_to_end(fd: int, start: bytes) -> bytes:
    """``start`` (the file's first bytes) and the rest of the file after it."""
    with contextlib.suppress(OSError):  # (a pipe has no position: it reads on from where it is)
        os.lseek(fd, len(start), os.SEEK_SET)
    parts = [start]
    while chunk := os.read(fd, _ONE_READ):
        parts.append(chunk)
    return b"".join(parts)


def _image(data: bytes, size: Optional[Size], jpeg_quality: Optional[int]) -> Any:
    pixels = decode_image(data, size)
    return pixels if jpeg_quality is None else encode_jpeg(pixels, jpeg_quality)


def from_files(
    paths: Sequence[str | os.PathLike[str]],
    labels: Optional[Sequence[int]] = None,
    decode: Optional[Decode] = None,
) -> Dataset:
    """A :class:`chute.Dataset` of ``(decode(file bytes), label)`` (or ``(value,)`` without labels).

    ``decode`` is any function of the file's bytes, e.g. :func:`chute.images.codecs.decode_image`;
    ``None`` keeps the bytes.  Files are read lazily, batch by batch, in the loader's workers.
    """
    from chute.dataset import Dataset

    return Dataset(FilesSource(paths, labels, decode))


def image_folder(
    root: str | os.PathLike[str],
    size: Optional[Size | int] = None,
    jpeg_quality: Optional[int] = None,
    *,
    decode: bool = True,
) -> Dataset:
    """A :class:`chute.Dataset` of ``(image, label)`` from ``root/<class name>/<image file>``.

    Class names are the sub-folders, sorted (``ds.class_names``); labels are their positions;
    files are sorted within each class.  The fields are named ``image`` and ``label``.

    Images come decoded, as uint8 pixels ``(height, width, 3)``: each at its own size, or resized
    to ``size=(height, width)`` (``size=n`` is ``(n, n)``; JPEG decoded at a reduced scale first).
    A batch needs images of one size: without ``size`` a map (``ds.map``) may crop or resize them,
    and a batch of images of other sizes is a :class:`chute.SpecError` naming the files.
    ``decode=False`` gives the files' encoded bytes instead.  ``jpeg_quality`` re-encodes the
    (resized) images as JPEG at that quality: what ``decode=False`` gives, and what a conversion
    stores.

    ``chute.convert`` stores the images compact, encoded as in the files (or re-encoded with
    ``jpeg_quality``), and ``chute.open`` decodes them again; with ``size`` and no
    ``jpeg_quality`` it stores the resized pixels, the fastest to read.  The class names are
    stored with them.
    """
    from chute.dataset import Dataset

    if decode not in (True, False):
        raise OptionError(explain("decode=True or decode=False", repr(decode), "Pass a bool."))
    size = None if size is None else _checked_size(size)
    if jpeg_quality is not None and (
        isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100
    ):
        raise OptionError(
            explain("jpeg_quality= an int from 1 to 100", repr(jpeg_quality), "Pass e.g. jpeg_quality=90.")
        )
    if not decode and size is not None and jpeg_quality is None:
        raise OptionError(
            explain(
                "jpeg_quality= with size= and decode=False (the resized images re-encoded as JPEG bytes)",
                f"size={size} without jpeg_quality",
                "Pass jpeg_quality=90 (say) for resized JPEG bytes, or leave decode=True for pixels.",
            )
        )
    paths, labels, classes = _listed(os.fspath(root))
    files = functools.partial(FilesSource, paths, labels, names=("image", "label"), class_names=classes)
    if size is not None and jpeg_quality is None:  # resized pixels, read (and stored) as such
        pixels = resized(size)
        return Dataset(files(pixels, Field("image", np.dtype(np.uint8), (*pixels.size, 3))))
    bytes_field = Field("image", np.dtype(object), (), "bytes")
    if jpeg_quality is None:
        encoded = files(images=True)
    else:
        encoded = files(
            functools.partial(_image, size=size, jpeg_quality=jpeg_quality), bytes_field, images=True
        )
    return Dataset(DecodedImages(encoded, size) if decode else encoded)


def _checked_size(size: Any) -> Size:
    """``size`` as (height, width): an int is a square; each side a positive int."""
    sides = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        height, width = sides
        ok = all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in (height, width))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionError(
            explain(
                "size=(height, width) of positive ints, or one int for a square",
                repr(size),
                "Pass e.g. size=(224, 224) or size=224.",
            )
        )
    return int(height), int(width)


def _listed(root: str) -> tuple[list[str], list[int], list[str]]:
    """The image files under ``root/<class>/``, their labels, and the class names, all sorted."""
    if not os.path.isdir(root):
        raise SpecError(explain("a folder with one sub-folder per class", repr(root), "Check the path."))
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(folder, file))
                labels.append(label)
    if not paths:
        raise SpecError(
            explain(
                f"image files ({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders of {root}",
                f"{len(classes)} sub-folders and no images",
                "Lay the data out as root/<class>/<image>.",
            )
        )
    return paths, labels, classes
