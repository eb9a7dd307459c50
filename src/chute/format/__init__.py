"""chute's on-disk format: Arrow IPC shards plus a JSON manifest written last."""

from __future__ import annotations

from .manifest import FORMAT, MANIFEST, VERSION, Manifest, ShardInfo
from .reader import ChuteSource, open_dataset, read_manifest, verify_dataset
from .writer import DatasetWriter, partial_dir

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "ChuteSource",
    "DatasetWriter",
    "Manifest",
    "ShardInfo",
    "open_dataset",
    "partial_dir",
    "read_manifest",
    "verify_dataset",
]
