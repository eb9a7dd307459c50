"""Where a dataset being written goes: the target interface the writer writes through.

A target takes finished shards, the journal after each, and finally the manifest, which commits
the dataset: :class:`LocalTarget` (a hidden ``.NAME.partial`` directory renamed into place) here,
``chute.remote.target.RemoteTarget`` (each shard uploaded when finished, the manifest last) for a
URL.  The format depends only on this interface; object stores implement it from below.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Optional, Protocol

from chute.errors import DatasetExistsError, explain
from chute.format.manifest import MANIFEST, ShardInfo
from chute.format.shard import sha256_file

__all__ = ["JOURNAL", "LocalTarget", "Target", "exists_error", "partial_dir", "write_atomic"]

JOURNAL = "journal.json"


class Target(Protocol):
    """The files of a dataset being written (``dst`` names it)."""

    dst: str
    staging: str  # a local directory where shards are written before :meth:`shard_written`

    def begin(self, resume: bool) -> Optional[str]:
        """The journal of the conversion being resumed, if any; otherwise an empty destination."""

    def intact(self, info: ShardInfo) -> bool:
        """Whether a shard the journal lists is there, whole."""

    def keep_only(self, names: set[str]) -> None:
        """Remove the shards not in ``names`` (a shard being written when a conversion was killed)."""

    def shard_written(self, name: str) -> None:
        """Shard ``name`` is finished in the staging directory."""

    def journal(self, text: str) -> None:
        """Keep the journal (after every shard)."""

    def publish(self, manifest: str) -> None:
        """Write the manifest: the dataset is complete."""

    def discard(self) -> None:
        """Remove what a conversion that finished no shard began (its staging directory)."""


def partial_dir(dst: str) -> str:
    head, tail = os.path.split(os.path.abspath(dst))
    return os.path.join(head, f".{tail}.partial")


class LocalTarget:
    """A local directory: shards are written in ``.NAME.partial``, renamed into place at the end."""

    def __init__(self, dst: str, overwrite: bool) -> None:
        self.dst = os.path.abspath(dst)
        self.staging = partial_dir(dst)
        if os.path.exists(self.dst) and not overwrite:
            raise exists_error(self.dst)

    def begin(self, resume: bool) -> Optional[str]:
        """The journal of the conversion being resumed, if any; otherwise a clean staging area."""
        path = os.path.join(self.staging, JOURNAL)
        if resume and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging)
        return None

    def intact(self, info: ShardInfo) -> bool:
        file = os.path.join(self.staging, info.file)
        return (
            os.path.isfile(file) and os.path.getsize(file) == info.bytes and sha256_file(file) == info.sha256
        )

    def keep_only(self, names: set[str]) -> None:
        for stray in set(os.listdir(self.staging)) - names - {JOURNAL}:  # a shard being written when killed
            os.remove(os.path.join(self.staging, stray))

    def shard_written(self, name: str) -> None:
        """The shard is already where it belongs."""

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def journal(self, text: str) -> None:
        write_atomic(os.path.join(self.staging, JOURNAL), text)

    def publish(self, manifest: str) -> None:
        write_atomic(os.path.join(self.staging, MANIFEST), manifest)
        with contextlib.suppress(FileNotFoundError):  # a Ray conversion keeps no journal
            os.remove(os.path.join(self.staging, JOURNAL))
        if os.path.exists(self.dst):
            trash = self.staging + ".old"
            os.replace(self.dst, trash)
            os.replace(self.staging, self.dst)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.staging, self.dst)
        _fsync_dir(os.path.dirname(self.dst))


def exists_error(where: str, what: str = "it exists") -> DatasetExistsError:
    return DatasetExistsError(
        explain(
            f"no existing dataset at {where}",
            what,
            "Choose another destination, or pass overwrite=True (--overwrite) to replace it.",
        )
    )


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
