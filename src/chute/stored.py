"""Datasets stored in the chute format, in a local directory or at a URL: open and verify them.

The format (:mod:`chute.format`) reads local directories; :mod:`chute.remote` reads the same
files at a URL through a local shard cache.  These two functions choose between them by the path.
"""

from __future__ import annotations

import os
from typing import Optional

from chute.dataset import Dataset
from chute.errors import OptionError, explain
from chute.format.manifest import Manifest
from chute.format.reader import open_source, verify_local
from chute.remote.source import open_remote
from chute.remote.store import Remote, is_url
from chute.sources.images import DecodedImages

__all__ = ["open_dataset", "verify_dataset"]


def open_dataset(
    path: str | os.PathLike[str],
    verify: bool = False,
    *,
    remote: Optional[Remote] = None,
    decode: bool = True,
) -> Dataset:
    """A :class:`chute.Dataset` over a converted dataset directory, local or at a URL.

    Opening reads only the manifest and checks that every shard is present with the right size
    (milliseconds); shards are memory-mapped when first read.  ``verify=True`` also recomputes
    every checksum first, like ``chute verify``.

    ``path`` may be any fsspec URL (``s3://bucket/photos.chute``, ``gs://``, ``az://``,
    ``https://``; the protocol's package installed, e.g. ``pip install 'chute[s3]'``): the same
    Dataset, its shards fetched into a local cache as they are needed.  ``remote`` sets the cache
    directory and size, prefetch, retries and fsspec ``storage_options`` (:class:`chute.Remote`).

    Images stored encoded (a converted image folder's) come decoded, as uint8 pixels ``(height,
    width, 3)``, as ``chute.image_folder`` gives them; ``decode=False`` gives their bytes.
    ``ds.class_names`` are the class names stored with the data, if any.
    """
    if decode not in (True, False):
        raise OptionError(explain("decode=True or decode=False", repr(decode), "Pass a bool."))
    source = open_remote(str(path), remote, verify) if is_url(path) else open_source(path, verify)
    return Dataset(DecodedImages(source) if decode and source.image_fields else source)


def verify_dataset(root: str | os.PathLike[str], progress: Optional[bool] = None) -> Manifest:
    """Check every shard against the manifest (presence, size, sha256, readability).

    ``progress`` shows a bar of megabytes checked (default: when stderr is a terminal).
    """
    if is_url(root):
        return open_remote(str(root), None, verify=True).manifest
    return verify_local(root, progress)
