"""Reading the chute format: warm random batches, cold random batches, cold sequential scan.

200,000 records of 32x32x3 uint8 plus an int64 label (default) are converted once; then, in one
run, medians of ``--repeats``:

- warm: random batches of 256 from the page cache, against the numpy in-RAM gather ceiling
  (target >= 0.7x);
- cold: the shard files evicted with ``posix_fadvise(DONTNEED)`` before each run, the first
  ``--cold-batches`` shuffled batches; bytes read from disk (``/proc/self/io``) per byte delivered
  (target <= 3);
- cold sequential scan (an unshuffled epoch) against the disk's sequential read rate of the same
  files measured in the same run (target >= 0.8x).

    python benchmarks/format.py [--records 200000] [--dir /tmp/chute-bench]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np

import chute
import chute.format
from _cache import evict

BATCH = 256


def read_bytes() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes"):
                return int(line.split()[1])
    return 0


def warm(paths: list[str]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def median(run: Callable[[], float], repeats: int, before: Callable[[], None] = lambda: None) -> float:
    values = []
    for _ in range(repeats):
        before()
        values.append(run())
    return statistics.median(values)


def warm_rates(
    x: np.ndarray, y: np.ndarray, path: str, shards: list[str], repeats: int
) -> tuple[float, float]:
    """Samples/s of the in-RAM numpy gather and of chute over the warm files, taken round-robin."""
    rng = np.random.default_rng(0)
    n = len(x)

    def ceiling() -> float:
        perm = rng.permutation(n)
        t = time.perf_counter()
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            x[idx], y[idx]
        return n / (time.perf_counter() - t)

    shuffled = chute.open(path).loader(BATCH, shuffle=True, seed=0)

    def chute_epoch() -> float:
        t = time.perf_counter()
        count = sum(len(batch[1]) for batch in shuffled)
        return count / (time.perf_counter() - t)

    warm(shards)
    rates: dict[str, list[float]] = {"ceiling": [], "chute": []}
    for _ in range(repeats):  # round-robin, so the machine's drift touches both alike
        rates["ceiling"].append(ceiling())
        rates["chute"].append(chute_epoch())
    return statistics.median(rates["ceiling"]), statistics.median(rates["chute"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-batches", type=int, default=200)
    parser.add_argument(
        "--dir", default=None, help="where to write the dataset (default: a temporary folder)"
    )
    args = parser.parse_args()

    root = args.dir or tempfile.mkdtemp(prefix="chute-bench-")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (args.records, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, args.records).astype(np.int64)
    path = os.path.join(root, "records.chute")
    start = time.perf_counter()
    chute.convert(chute.from_arrays(x, y), path, overwrite=True, progress=False)
    convert_seconds = time.perf_counter() - start
    manifest = chute.format.read_manifest(path)
    shards = [os.path.join(path, s.file) for s in manifest.shards]
    record_bytes = x[0].nbytes + y[0].nbytes
    n = args.records

    warm_ceiling, warm_chute = warm_rates(x, y, path, shards, args.repeats)
    gc.collect()  # pages mapped by a live dataset cannot be evicted: no map may outlive warm_rates

    amplification: list[float] = []

    def cold_random() -> float:
        loader = chute.open(path).loader(BATCH, shuffle=True, seed=1)
        before, t = read_bytes(), time.perf_counter()
        for i in range(args.cold_batches):
            loader[i]
        elapsed = time.perf_counter() - t
        amplification.append((read_bytes() - before) / (args.cold_batches * BATCH * record_bytes))
        del loader
        gc.collect()
        return args.cold_batches * BATCH / elapsed

    cold_rate = median(cold_random, args.repeats, before=lambda: evict(*shards))

    def disk_sequential() -> float:
        t = time.perf_counter()
        total = 0
        for shard in shards:
            with open(shard, "rb", buffering=0) as f:
                while chunk := f.read(1 << 22):
                    total += len(chunk)
        return total / (time.perf_counter() - t)

    def chute_scan() -> float:
        loader = chute.open(path).loader(BATCH)
        t = time.perf_counter()
        for batch in loader:
            batch[0][:, 0, 0, 0].sum()  # one byte of every 3 KB record: every page is read
        rate = n * record_bytes / (time.perf_counter() - t)
        del loader, batch
        gc.collect()
        return rate

    disk_runs, scan_runs = [], []
    for _ in range(args.repeats):  # alternated, so the shared disk's drift touches both alike
        evict(*shards)
        disk_runs.append(disk_sequential())
        evict(*shards)
        scan_runs.append(chute_scan())
    disk_rate, scan_rate = statistics.median(disk_runs), statistics.median(scan_runs)

    table = [
        ("numpy in-RAM gather (ceiling), warm", f"{warm_ceiling:,.0f} samples/s", "1.00", ""),
        (
            "chute.open(...).loader(256, shuffle=True), warm",
            f"{warm_chute:,.0f} samples/s",
            f"{warm_chute / warm_ceiling:.2f}",
            ">= 0.7",
        ),
        (f"cold random batches ({args.cold_batches} x 256), 1 thread", f"{cold_rate:,.0f} samples/s", "", ""),
        (
            "cold random: bytes read from disk per byte delivered",
            f"{statistics.median(amplification):.2f}",
            "",
            "<= 3",
        ),
        ("disk sequential read of the shard files, cold", f"{disk_rate / 1e6:,.0f} MB/s", "1.00", ""),
        (
            "chute unshuffled scan, cold",
            f"{scan_rate / 1e6:,.0f} MB/s",
            f"{scan_rate / disk_rate:.2f}",
            ">= 0.8",
        ),
    ]
    print(
        f"\n{n:,} records of 32x32x3 uint8 + int64 label in {len(shards)} shard(s), converted in "
        f"{convert_seconds:.1f} s; medians of {args.repeats} runs; batch {BATCH}\n"
    )
    print("| measurement | figure | ratio | target |\n|---|---:|---:|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
