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

from chute.errors import ReadError, SpecError, explain
from chute.images.codecs import Size, decode_image, encode_jpeg
from chute.images.decode import resized
from chute.sources.base import Rows, row_indices
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
    ``decode`` returns; without it the first file is decoded to find out, once.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: Optional[Sequence[int]] = None,
        decode: Optional[Decode] = None,
        field: Optional[Field] = None,
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
        self._spec: Optional[Spec] = None

    vectorised = False  # one file at a time: conversion reads it in worker processes

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            field = self._field or infer_spec(self._value(0)).fields[0]
            value = Field("0", field.dtype, field.shape, field.kind)
            fields = (value,) if self.labels is None else (value, Field("1", np.dtype(np.int64), ()))
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
            with stage("collate"):
                column = field.stack(values)
        return [column] if self.labels is None else [column, self.labels[indices]]

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
    root: str | os.PathLike[str], size: Optional[Size] = None, jpeg_quality: Optional[int] = None
) -> Dataset:
    """A :class:`chute.Dataset` of ``(image, label)`` from ``root/<class name>/<image file>``.

    Class names are the sub-folders, sorted; labels are their positions (``ds.class_names``);
    files are sorted within each class.  ``size=None`` and ``jpeg_quality=None`` keep each file's
    bytes; ``size=(h, w)`` decodes (at a reduced scale first, for JPEG) and resizes to uint8
    pixels ``(h, w, 3)``; ``jpeg_quality`` re-encodes the (resized) pixels as JPEG bytes.
    """
    from chute.dataset import Dataset

    root = os.fspath(root)
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
    decode: Optional[Decode] = None
    field = None
    if jpeg_quality is not None:
        decode = functools.partial(_image, size=size, jpeg_quality=jpeg_quality)
        field = Field("0", np.dtype(object), (), "bytes")
    elif size is not None:
        decode = resized(size)
        field = Field("0", np.dtype(np.uint8), (*decode.size, 3))
    dataset = Dataset(FilesSource(paths, labels, decode, field))
    dataset.class_names = classes  # type: ignore[attr-defined]
    return dataset
