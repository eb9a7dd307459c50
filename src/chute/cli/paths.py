"""What a path on the command line is: an image folder, a chute dataset, an array file or a table.

It is told by the path alone, before anything is read: a URL or a directory holding
``manifest.json`` is a chute dataset, any other directory an image folder, and a file goes by its
suffix.  A path that does not exist, or a file of another kind, is refused saying so, never handed
to a reader that would report it as a damaged table.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from chute.errors import FormatError, OptionError, SpecError, explain

__all__ = ["KINDS", "dataset", "source"]

KINDS = (
    "an image folder (a directory of class subfolders of images: root/<class>/<image>), "
    "a chute dataset (a directory holding manifest.json, or its URL), "
    "a Parquet or CSV table (.parquet, .csv) or a NumPy array file (.npy, .npz)"
)
_HOW = (
    "chute tells them apart by the path alone: a directory by its layout "
    "(manifest.json or class subfolders), a file by its suffix"
)
_TABLES = (".parquet", ".csv")


def source(text: str, name: str, resize: Optional[tuple[int, int]], jpeg_quality: Optional[int]) -> object:
    """The source at ``text`` (the argument ``name``, e.g. SRC): a Dataset, or a table's path."""
    from chute.format.manifest import MANIFEST
    from chute.remote.store import is_url

    if is_url(text) or os.path.isfile(os.path.join(text, MANIFEST)):
        from chute.stored import open_dataset

        return open_dataset(text)
    if os.path.isdir(text):
        return _image_folder(text, name, resize, jpeg_quality)
    if not os.path.exists(text):
        raise OptionError(
            explain(
                f"{name} to be an existing file or directory",
                f"{text!r}, {_missing(text)}",
                f"Check the spelling; a relative path starts from the current directory, {os.getcwd()}.",
            )
        )
    suffix = os.path.splitext(text)[1].lower()
    if suffix in (".npy", ".npz"):
        return _arrays(text, suffix)
    if suffix in _TABLES:
        return text
    raise OptionError(explain(f"{name} to be {KINDS}", f"{text!r}, a file {_suffix(suffix)}", _fix(suffix)))


def dataset(
    text: str, name: str, resize: Optional[tuple[int, int]], jpeg_quality: Optional[int] = None
) -> Any:
    """The source at ``text`` as a Dataset with random access (a table loaded whole)."""
    from chute.dataset import Dataset
    from chute.sources.table import from_table

    found = source(text, name, resize, jpeg_quality)
    return found if isinstance(found, Dataset) else from_table(str(found))


def _missing(text: str) -> str:
    parent = os.path.dirname(os.path.abspath(text))
    return "which does not exist" if os.path.isdir(parent) else f"whose directory {parent} does not exist"


def _suffix(suffix: str) -> str:
    return f"ending in {suffix!r}" if suffix else "without a suffix"


def _fix(suffix: str) -> str:
    from chute.sources.files import IMAGE_EXTENSIONS

    if suffix in IMAGE_EXTENSIONS:
        return (
            f"{_HOW}. An image file alone is not a dataset: give the folder that holds one subfolder "
            "of images per class, e.g. chute convert photos photos.chute."
        )
    return f"{_HOW}. Convert the file to one of these (or rename it, if it is one) and try again."


def _image_folder(
    text: str, name: str, resize: Optional[tuple[int, int]], jpeg_quality: Optional[int]
) -> object:
    from chute.format.manifest import MANIFEST
    from chute.sources.files import image_folder

    try:
        return image_folder(text, size=resize, jpeg_quality=jpeg_quality)
    except SpecError as error:  # no images in class subfolders: say how the directory was taken
        raise SpecError(
            f"{error} ({name} {text!r} is a directory without {MANIFEST}, so it was read as an image "
            f"folder; {name} may be {KINDS}.)"
        ) from None


def _arrays(text: str, suffix: str) -> object:
    import numpy as np

    from chute.sources.arrays import from_arrays

    try:
        if suffix == ".npy":
            return from_arrays(np.load(text, mmap_mode="r"))
        with np.load(text) as arrays:
            return from_arrays({key: arrays[key] for key in arrays.files})
    except (ValueError, OSError, EOFError) as error:
        raise FormatError(
            explain(
                f"a NumPy {suffix} file of numeric arrays at {text}",
                f"{type(error).__name__}: {str(error).rstrip('.')}",
                "Check the file: numpy.save (or numpy.savez) writes one, and chute never loads pickled "
                "(object) arrays.",
            )
        ) from None
