"""Encoded images decoded as they are read: what ``image_folder`` and ``chute.open`` give by default.

A source whose fields hold encoded images (JPEG, PNG, ... as bytes) names them in
``image_fields``; :class:`DecodedImages` wraps it and gives those fields as uint8 pixels
``(height, width, 3)``, resized to ``size`` if given.  The wrapped source stays reachable as
``encoded``: a conversion stores the images as they are encoded, compact, and the manifest marks
them so that the converted dataset decodes them again when read.

Without ``size`` every image keeps its own size.  A sample can be read alone, or handed to a map
(which may crop or resize it), whatever its size; a batch needs images of one size, and a
:class:`chute.SpecError` naming the files of other sizes says how to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from chute.errors import ReadError, SpecError, explain
from chute.images.codecs import Size, decode_image
from chute.sources.base import Rows, Source, row_indices
from chute.spec import Field, Spec
from chute.telemetry.timing import stage

__all__ = ["DecodedImages"]

UNDECODABLE = (OSError, ValueError, SyntaxError, RuntimeError)  # what Pillow and simplejpeg raise


class DecodedImages:
    """The samples of ``encoded`` with its ``image_fields`` decoded to uint8 pixels."""

    vectorised = False  # one decode per image: conversion reads ``encoded`` instead
    image_fields: tuple[str, ...] = ()  # (all decoded here)

    def __init__(self, encoded: Source, size: Optional[Size] = None) -> None:
        self.encoded = encoded
        self.size = None if size is None else (int(size[0]), int(size[1]))
        names = encoded.spec.names
        self._positions = tuple(names.index(name) for name in getattr(encoded, "image_fields", ()))
        self._spec: Optional[Spec] = None

    @property
    def spec(self) -> Spec:
        """The encoded spec with each image field as uint8 ``(*size, 3)``; without ``size``, the shape
        of the first image (decoded once to find out)."""
        if self._spec is None:
            fields = list(self.encoded.spec.fields)
            first = self.encoded.read_sample(0) if self.size is None else []
            for position in self._positions:
                shape = (*self.size, 3) if self.size is not None else self._decode(first[position], 0).shape
                fields[position] = Field(fields[position].name, np.dtype(np.uint8), shape)
            self._spec = Spec(tuple(fields), self.encoded.spec.treedef)
        return self._spec

    def __len__(self) -> int:
        return len(self.encoded)

    @property
    def class_names(self) -> Optional[list[str]]:
        return getattr(self.encoded, "class_names", None)

    def fingerprint(self) -> str:
        inner = getattr(self.encoded, "fingerprint", None)
        return f"{inner() if inner is not None else len(self)}:decoded:{self.size}"

    @property
    def lengths(self) -> Optional[Callable[[str], np.ndarray]]:
        """The encoded source's stored lengths of its variable-size fields (not images), if any."""
        return getattr(self.encoded, "lengths", None)

    def will_need(self, starts: np.ndarray, length: int) -> None:
        hint = getattr(self.encoded, "will_need", None)
        if hint is not None:
            hint(starts, length)

    # Where the encoded data lives (``chute bench``'s raw-read ceiling and the doctor read these).
    @property
    def paths(self) -> Optional[list[str]]:
        return getattr(self.encoded, "paths", None)

    @property
    def labels(self) -> Optional[np.ndarray]:
        return getattr(self.encoded, "labels", None)

    @property
    def manifest(self) -> Any:
        return getattr(self.encoded, "manifest", None)

    @property
    def root(self) -> Optional[str]:
        return getattr(self.encoded, "root", None)

    def read_sample(self, index: int) -> list[Any]:
        leaves = self.encoded.read_sample(index)
        with stage("decode"):
            for position in self._positions:
                leaves[position] = self._decode(leaves[position], index)
        return leaves

    def read_unstacked(self, rows: Rows) -> list[list[Any]]:
        """Each row's leaves, its images decoded at their own size (nothing stacked): for maps, which
        may bring images of different sizes to one."""
        columns = self.encoded.read_rows(rows)
        indices = row_indices(rows).tolist()
        samples = [[column[j] for column in columns] for j in range(len(indices))]
        with stage("decode"):
            for sample, index in zip(samples, indices, strict=True):
                for position in self._positions:
                    sample[position] = self._decode(sample[position], index)
        return samples

    def read_rows(self, rows: Rows) -> list[Any]:
        columns = list(self.encoded.read_rows(rows))
        indices = row_indices(rows).tolist()
        fields = self.spec.fields
        with stage("decode"):
            for position in self._positions:
                columns[position] = self._decode_column(columns[position], fields[position], indices)
        return columns

    def _decode_column(self, encoded: Any, field: Field, indices: list[int]) -> np.ndarray:
        """The images of one batch decoded into one uint8 array ``(rows, *field.shape)``."""
        out = field.empty(len(indices))
        for row, (data, index) in enumerate(zip(encoded, indices, strict=True)):
            if self.size is not None:
                try:
                    decode_image(data, self.size, out[row])
                except UNDECODABLE as error:
                    raise self._undecodable(index, error) from None
                continue
            pixels = self._decode(data, index)
            if pixels.shape != field.shape:
                raise self._other_size(pixels.shape, field.shape, index)
            out[row] = pixels
        return out

    def _decode(self, data: Any, index: int) -> np.ndarray:
        try:
            return decode_image(data, self.size)
        except UNDECODABLE as error:
            raise self._undecodable(index, error) from None

    def _where(self, index: int) -> str:
        paths = getattr(self.encoded, "paths", None)
        if paths is not None:
            return str(paths[index])
        root = getattr(self.encoded, "root", None)
        return f"sample {index}" + (f" of {root}" if root else "")

    def _undecodable(self, index: int, error: Exception) -> ReadError:
        return ReadError(
            explain(
                f"an image chute can decode at {self._where(index)} (sample {index})",
                f"{type(error).__name__}: {error}",
                "Remove or replace the file, or skip such samples with on_error='skip'.",
            )
        )

    def _other_size(self, shape: tuple[int, ...], expected: tuple[Any, ...], index: int) -> SpecError:
        return SpecError(
            explain(
                f"images of one size to batch: {_hw(expected)} (height x width), as {self._where(0)}",
                f"{_hw(shape)} at {self._where(index)} (sample {index})",
                "Resize every image to one size: chute.image_folder(root, size=(height, width)), or "
                "--resize HxW on the command line (convert a folder so, too); or bring each image to "
                "one size in a map (ds.map) before batching.",
            )
        )

    def __repr__(self) -> str:
        return f"DecodedImages({type(self.encoded).__name__}, size={self.size})"


def _hw(shape: tuple[Any, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"
