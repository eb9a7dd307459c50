"""Datasets at a URL (object storage, HTTP): the store, a local shard cache, ranged reads of
uncached shards, and the target conversions write through to upload."""
