"""Epochs from object storage: a loopback S3 server with a cold cache, a warm cache, and local disk.

Converts ``--rows`` x 512 float32 (about 200 MB with the default) to a local chute dataset and,
with the same shards, to a real S3-protocol server (moto) on 127.0.0.1, then reads shuffled
epochs (batch 1024, 2 thread workers) in one run, alternating, medians of ``--repeats``:

- local disk (page cache warm), 5 epochs;
- S3 with a cold cache (the cache directory emptied first: whole shards fetched), 1 epoch;
- S3 with a warm cache (shards already local: the target is within 10% of local disk), 5 epochs;
- S3 with a cache half the dataset's size, the first ``--batches`` batches (cache emptied first):
  ranged requests of the rows needed (``ranged="auto"``, the default, for data bigger than the
  cache) vs whole shards (``ranged=False``: each batch of an exact shuffle touches every shard).

Then the first shuffled batch of 64 from a cold cache, ranged (``ranged=True``) vs whole shards:
seconds and MB fetched.

    python benchmarks/remote.py [--rows 100000] [--repeats 3]

Needs ``s3fs`` and ``moto[server]`` (``pip install 'chute[s3]' 'moto[server]'``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

import chute

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from s3 import S3Server, make_bucket, storage_options

BATCH, FEATURES, FIRST = 1024, 512, 64


def epoch_rate(
    ds: chute.Dataset, before: Callable[[], None] = lambda: None, epochs: int = 1, batches: int = 0
) -> float:
    """Samples/s over ``epochs`` shuffled epochs of one loader, or its first ``batches`` batches
    (``before`` runs first, untimed)."""
    before()
    loader = ds.loader(BATCH, shuffle=True, seed=0, workers=2)
    start = time.perf_counter()
    if batches:
        samples = sum(len(y) for _, (_, y) in zip(range(batches), loader, strict=False))
    else:
        samples = sum(len(y) for _ in range(epochs) for _, y in loader)
    return samples / (time.perf_counter() - start)


def first_batch(url: str, remote: chute.Remote) -> tuple[float, float]:
    """Seconds to the first shuffled batch from an empty cache, and MB fetched for it."""
    shutil.rmtree(remote.cache_path, ignore_errors=True)
    loader = chute.open(url, remote=remote).loader(FIRST, shuffle=True, seed=0, workers=0)
    start = time.perf_counter()
    next(iter(loader))
    return time.perf_counter() - start, loader.stats()["remote"].get("fetched_bytes", 0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="chute-remote-")
    server = S3Server()
    try:
        x = np.random.default_rng(0).normal(size=(args.rows, FEATURES)).astype(np.float32)
        y = np.arange(args.rows, dtype=np.int64)
        local = chute.convert(chute.from_arrays(x, y), os.path.join(work, "local.chute"), shard_size="16MB")
        make_bucket(server.endpoint, "bench")
        cache = os.path.join(work, "cache")
        remote = chute.Remote(cache_dir=cache, storage_options=storage_options(server.endpoint))
        start = time.perf_counter()
        chute.convert(chute.from_arrays(x, y), "s3://bench/data.chute", shard_size="16MB", remote=remote)
        upload = time.perf_counter() - start
        on_s3 = chute.open("s3://bench/data.chute", remote=remote)
        megabytes = local.source.manifest.bytes / 1e6  # type: ignore[attr-defined]

        def empty_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        half = dataclasses.replace(remote, cache_size=int(megabytes * 1e6 / 2))
        url = "s3://bench/data.chute"
        rates: dict[str, list[float]] = {
            "local disk": [],
            "S3, cold cache": [],
            "S3, warm cache": [],
            "S3, cache half the data, ranged (auto)": [],
            "S3, cache half the data, ranged=False": [],
        }
        epoch_rate(local)  # page cache and code paths warm
        for _ in range(args.repeats):
            rates["local disk"].append(epoch_rate(local, epochs=5))
            rates["S3, cold cache"].append(epoch_rate(chute.open(url, remote=remote), empty_cache))
            rates["S3, warm cache"].append(epoch_rate(on_s3, epochs=5))
            whole = dataclasses.replace(half, ranged=False)
            for name, options in (("ranged (auto)", half), ("ranged=False", whole)):
                rates[f"S3, cache half the data, {name}"].append(
                    epoch_rate(chute.open(url, remote=options), empty_cache, batches=args.batches)
                )
        base = statistics.median(rates["local disk"])
        shards = len(local.source.manifest.shards)  # type: ignore[attr-defined]
        print(
            f"{args.rows:,} x {FEATURES} float32 ({megabytes:,.0f} MB, {shards} shards), batch {BATCH}, "
            f"shuffled, 2 thread workers; medians of {args.repeats}; upload took {upload:.1f} s"
        )
        print("| reading from | samples/s | MB/s | vs local disk |")
        print("|---|---:|---:|---:|")
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"| {name} | {rate:,.0f} | {rate * FEATURES * 4 / 1e6:,.0f} | {rate / base:.2f}x |")
        firsts = {
            name: [first_batch("s3://bench/data.chute", options) for _ in range(args.repeats)]
            for name, options in (
                ("ranges (ranged=True)", dataclasses.replace(remote, ranged=True)),
                ("whole shards (ranged=False)", dataclasses.replace(remote, ranged=False)),
            )
        }
        print(f"\nfirst shuffled batch of {FIRST} from a cold cache; medians of {args.repeats}")
        print("| shards fetched by | seconds | MB fetched |")
        print("|---|---:|---:|")
        for name, runs in firsts.items():
            seconds = statistics.median(t for t, _ in runs)
            print(f"| {name} | {seconds:.2f} | {statistics.median(m for _, m in runs):,.1f} |")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
