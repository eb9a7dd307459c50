"""Converting to object storage: each shard uploaded as it is finished, the manifest uploaded last.

Object stores have no atomic directory rename, so the manifest is the commit: a reader refuses a
URL without one, and the manifest is written only after every shard is uploaded.  After each
shard the journal (the same one a local conversion keeps) is uploaded beside the shards, so a
conversion killed part-way resumes from any machine with ``resume=True``, keeping the uploaded
shards (their sizes are checked against the journal; an object store writes an object whole or
not at all).  Shards are written to a local staging directory first and deleted once uploaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Optional

from chute.format.manifest import MANIFEST, SHARD_NAME, ShardInfo
from chute.format.reader import MANIFEST_LIMIT
from chute.format.storage import JOURNAL, LocalTarget, Target, exists_error
from chute.remote.store import Remote, Store, is_url

__all__ = ["RemoteTarget", "target_for"]


class RemoteTarget:
    """The files of a dataset being written at a URL."""

    def __init__(self, dst: str, remote: Optional[Remote], overwrite: bool) -> None:
        self.remote = remote or Remote()
        self.store = Store(dst, self.remote)
        self.dst = self.store.url
        self.overwrite = overwrite
        key = hashlib.sha256(self.dst.encode()).hexdigest()[:16]
        self.staging = os.path.join(self.remote.cache_path, "staging", key)
        self._sizes: dict[str, int] = {}

    def begin(self, resume: bool) -> Optional[str]:
        """The uploaded journal when resuming; otherwise an empty destination (old files removed)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging)
        self._sizes = self.store.sizes()
        if MANIFEST in self._sizes and not self.overwrite:
            raise exists_error(self.dst)
        if resume and JOURNAL in self._sizes:
            text = self.store.read_bytes(JOURNAL, MANIFEST_LIMIT)
            if text is not None:
                return text.decode("utf-8", errors="replace")
        self.store.remove(MANIFEST)  # first: from here on the old dataset is not taken as whole
        for name in self._sizes:
            if SHARD_NAME.match(name) or name == JOURNAL:
                self.store.remove(name)
        self._sizes = {}
        return None

    def intact(self, info: ShardInfo) -> bool:
        return self._sizes.get(info.file) == info.bytes

    def keep_only(self, names: set[str]) -> None:
        for name in self._sizes:
            if SHARD_NAME.match(name) and name not in names:  # uploaded after the last journal entry
                self.store.remove(name)

    def shard_written(self, name: str) -> None:
        local = os.path.join(self.staging, name)
        self.store.upload(local, name)
        os.remove(local)

    def journal(self, text: str) -> None:
        self.store.write_text(JOURNAL, text)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)  # (nothing was uploaded)

    def publish(self, manifest: str) -> None:
        self.store.write_text(MANIFEST, manifest)
        self.store.remove(JOURNAL)
        shutil.rmtree(self.staging, ignore_errors=True)


def target_for(dst: str, remote: Optional[Remote], overwrite: bool) -> Target:
    """Where a conversion to ``dst`` writes: a :class:`LocalTarget`, or a :class:`RemoteTarget` for a URL."""
    if is_url(dst):
        return RemoteTarget(dst, remote, overwrite)
    return LocalTarget(dst, overwrite)
