"""chute's on-disk format: Arrow IPC shards plus a JSON manifest written last."""

from __future__ import annotations

from chute.format.manifest import FORMAT, MANIFEST, VERSION, Manifest, ShardInfo
from chute.format.reader import ChuteSource, open_source, read_manifest, verify_local
from chute.format.storage import partial_dir
from chute.format.writer import DatasetWriter

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "ChuteSource",
    "DatasetWriter",
    "Manifest",
    "ShardInfo",
    "open_source",
    "partial_dir",
    "read_manifest",
    "verify_local",
]
