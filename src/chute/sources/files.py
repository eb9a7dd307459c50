"""Files as a source: a list of paths (with labels), or an image folder with one sub-folder per class.

Nothing is read until a sample is asked for; each sample is one file read and decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..codecs import Size, decode_image, encode_jpeg
from ..errors import ReadError, SpecError, explain
from ..spec import Field, Spec
from .base import Rows

if TYPE_CHECKING:
    from ..dataset import Dataset

__all__ = ["FilesSource", "image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class FilesSource:
    """Samples ``(image, label)`` read from files.

    ``size=None`` and ``jpeg_quality=None`` keep each file's bytes as they are (a ``bytes``
    field); ``size=(h, w)`` decodes and resizes to uint8 pixels ``(h, w, 3)``; ``jpeg_quality``
    re-encodes the (resized) pixels as JPEG bytes at that quality.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Optional[Sequence[int]] = None,
        size: Optional[Size] = None,
        jpeg_quality: Optional[int] = None,
    ) -> None:
        if labels is not None and len(labels) != len(paths):
            raise SpecError(
                explain(
                    "one label per path", f"{len(paths)} paths and {len(labels)} labels", "Align the lists."
                )
            )
        self.paths = [os.fspath(p) for p in paths]
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.jpeg_quality = jpeg_quality
        if self.size is not None and jpeg_quality is None:
            image = Field("0", np.dtype(np.uint8), (*self.size, 3))
        else:
            image = Field("0", np.dtype(object), (), "bytes")
        fields = (image,) if self.labels is None else (image, Field("1", np.dtype(np.int64), ()))
        self._spec = Spec(fields, tuple(range(len(fields))))

    @property
    def spec(self) -> Spec:
        return self._spec

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, index: int) -> Any:
        path = self.paths[index]
        try:
            with open(path, "rb") as f:
                data = f.read()
            if self.size is None and self.jpeg_quality is None:
                return data
            pixels = decode_image(data, self.size)
        except (OSError, ValueError, SyntaxError) as error:  # what Pillow and simplejpeg raise
            raise ReadError(
                explain(
                    f"a readable image at {path} (sample {index})",
                    f"{type(error).__name__}: {error}",
                    "Remove or replace the file, or convert with on_error='skip'.",
                )
            ) from None
        return pixels if self.jpeg_quality is None else encode_jpeg(pixels, self.jpeg_quality)

    def read_sample(self, index: int) -> list[Any]:
        image = self._image(index)
        return [image] if self.labels is None else [image, self.labels[index]]

    def read_rows(self, rows: Rows) -> list[Any]:
        indices = range(len(self))[rows] if isinstance(rows, slice) else rows.tolist()
        images = [self._image(i) for i in indices]
        if self._spec.fields[0].kind == "array":
            column: Any = np.stack(images) if images else np.empty((0, *self._spec.fields[0].shape), np.uint8)
        else:
            column = np.empty(len(images), dtype=object)
            column[:] = images
        if self.labels is None:
            return [column]
        return [column, self.labels[list(indices)] if isinstance(rows, slice) else self.labels[rows]]


def image_folder(
    root: str | os.PathLike[str], size: Optional[Size] = None, jpeg_quality: Optional[int] = None
) -> Dataset:
    """A :class:`chute.Dataset` of ``(image, label)`` from ``root/<class name>/<image file>``.

    Class names are the sub-folders, sorted; labels are their positions (``ds.class_names``).
    Files are sorted within each class. See :class:`FilesSource` for ``size`` and ``jpeg_quality``.
    """
    from ..dataset import Dataset

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
    dataset = Dataset(FilesSource(paths, labels, size, jpeg_quality))
    dataset.class_names = classes  # type: ignore[attr-defined]
    return dataset
