"""Shuffled batches from a float32 array file evicted from the page cache: block vs exact shuffle.

Writes a ``.npy`` of ``--rows`` x 1024 float32 (4 KB rows; default 2 GB), opens it as a memory
map with ``chute.from_arrays(np.load(path, mmap_mode="r"))`` and, with the file evicted
(``posix_fadvise(DONTNEED)``) before each run, measures in one run (alternated, medians):

- the disk's sequential read rate of the same bytes (``read()`` in 4 MB chunks);
- ``shuffle="block"`` (blocks of 1024 rows, windows of 16 blocks), iterated with 2 worker
  threads and prefetch 8: a whole epoch of batches of 256 by default (``--batches``; the
  read-ahead of the next window is wasted in a partial epoch) (target >= 0.8x the sequential
  rate over the same bytes);
- ``shuffle=True`` (exact permutation): the first ``--exact-batches`` batches, reported beside it,
  with each order's ``shuffle_quality()``.

    python benchmarks/out_of_core.py [--rows 500000] [--batches N] [--repeats 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time

import numpy as np

import chute
from _cache import evict

BATCH, ROW = 256, 1024


def sequential(path: str, nbytes: int) -> float:
    start, done = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        while done < nbytes and (chunk := f.read(4 << 20)):
            done += len(chunk)
    return done / (time.perf_counter() - start)


def loader_rate(path: str, shuffle: object, batches: int, workers: int) -> tuple[float, dict[str, float]]:
    data = chute.from_arrays(np.load(path, mmap_mode="r"))
    loader = data.loader(BATCH, shuffle=shuffle, seed=0, workers=workers, prefetch=8)  # type: ignore[arg-type]
    quality = loader.shuffle_quality()
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == batches:
            break
    rate = batches * BATCH * ROW * 4 / (time.perf_counter() - start)
    loader.close()
    del loader
    gc.collect()
    return rate, quality


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--batches", type=int, default=0, help="default: a whole epoch")
    parser.add_argument("--exact-batches", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    args.batches = args.batches or args.rows // BATCH
    folder = tempfile.mkdtemp(prefix="chute-ooc-", dir=args.dir)
    path = os.path.join(folder, "x.npy")
    try:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.rows, ROW))
        for start in range(0, args.rows, 65536):
            out[start : start + 65536] = np.float32(start)
        out.flush()
        del out
        runs: dict[str, list[float]] = {"disk": [], "block": [], "exact": []}
        qualities: dict[str, dict[str, float]] = {}
        for _ in range(args.repeats):
            evict(path)
            runs["disk"].append(sequential(path, args.batches * BATCH * ROW * 4))
            evict(path)
            rate, qualities["block"] = loader_rate(path, "block", args.batches, workers=2)
            runs["block"].append(rate)
            evict(path)
            rate, qualities["exact"] = loader_rate(path, True, args.exact_batches, workers=2)
            runs["exact"].append(rate)
        disk, block, exact = (statistics.median(runs[k]) for k in ("disk", "block", "exact"))
        size = args.rows * ROW * 4 / 1e9
        print(f"\n{args.rows:,} x {ROW} float32 ({size:.1f} GB) .npy, evicted before each run")
        print(f"medians of {args.repeats}\n")
        print("| read | MB/s | x sequential | batch_spread | displacement |\n|---|---:|---:|---:|---:|")
        print(f"| disk sequential read() | {disk / 1e6:,.0f} | 1.00 | | |")
        for name, rate, count in (("block", block, args.batches), ("exact", exact, args.exact_batches)):
            q = qualities[name]
            label = (
                f'shuffle="block" ({count} batches)' if name == "block" else f"shuffle=True ({count} batches)"
            )
            figures = [
                f"{rate / 1e6:,.1f}",
                f"{rate / disk:.2f}",
                f"{q['batch_spread']:.3f}",
                f"{q['displacement']:.3f}",
            ]
            print(f"| {label} | " + " | ".join(figures) + " |")
    finally:
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(folder)


if __name__ == "__main__":
    main()
