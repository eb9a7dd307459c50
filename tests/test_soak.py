"""Long runs: epoch after epoch, memory stays flat, descriptor, thread and shared-memory segment
counts stay put: nothing piles up that would make later epochs slower.

The suite soaks for a few seconds; ``CHUTE_SOAK_SECONDS=1800 pytest tests/test_soak.py -s`` soaks
for half an hour (docs/guarantees.md quotes such a run).  The samples per second early and late in
the run are printed, not asserted: on a shared machine they measure the neighbours as much as chute.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import chute

SECONDS = float(os.environ.get("CHUTE_SOAK_SECONDS", "10"))
WARM_UP = 3  # epochs before the baseline: caches filled, pages mapped, pools at their size


def resident(pids: list[int]) -> int:
    """Resident bytes of these processes (the loader's and its workers')."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except FileNotFoundError:
            pass
    return total


def segments() -> int:
    """Shared-memory segments of this process (the process workers' batches)."""
    return sum(name.startswith(f"chute-{os.getpid()}-") for name in os.listdir("/dev/shm"))


def native_threads() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def jitter(sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"x": sample["x"] + rng.normal(size=sample["x"].shape).astype(np.float32), "y": sample["y"]}


@pytest.mark.timeout(SECONDS + 300)
def test_soak_many_epochs_flat_memory_stable_handles_and_segments(tmp_path: Path) -> None:
    n = 20_000
    data = {"x": np.random.default_rng(0).random((n, 32), dtype=np.float32), "y": np.arange(n)}
    stored = chute.convert(
        chute.from_arrays(data), tmp_path / "soak.chute", shard_size="256KB", progress=False
    )
    sequences = ({"tokens": np.arange(i % 40, dtype=np.int32), "y": np.int64(i)} for i in range(n))
    text = chute.convert(
        sequences, tmp_path / "text.chute", ragged=["tokens"], shard_size="256KB", progress=False
    )
    loaders = [
        stored.map(jitter).loader(128, shuffle=True, seed=1, workers=2, worker_type="process"),
        chute.from_arrays(data).loader(512, shuffle=True, seed=2, workers=2),
        stored.cache().loader(256, shuffle=True, seed=3),
        text.loader(64, shuffle=True, seed=4, pad=True, bucket=True, workers=2),
    ]
    records = []
    started = time.monotonic()
    epoch = 0
    while epoch < WARM_UP + 12 or time.monotonic() - started < SECONDS:
        t0 = time.perf_counter()
        seen = 0
        for loader in loaders:
            for batch in loader:
                seen += len(batch["y"])
        elapsed = time.perf_counter() - t0
        assert seen == len(loaders) * n  # every sample of every loader, every epoch
        pids = [os.getpid(), *loaders[0]._pids()]
        descriptors = len(os.listdir("/proc/self/fd"))
        records.append((seen / elapsed, resident(pids), descriptors, native_threads(), segments()))
        epoch += 1
    for loader in loaders:
        loader.close()
    rates, rss, fds, threads, shm = (np.array(column) for column in zip(*records, strict=True))
    base = WARM_UP
    growth = (rss[base:].max() - rss[base]) / 2**20
    third = max(1, (len(rates) - base) // 3)
    early, late = statistics.median(rates[base : base + third]), statistics.median(rates[-third:])
    print(
        f"\nsoak: {epoch} epochs x {len(loaders)} loaders ({epoch * len(loaders) * n:,} samples) in "
        f"{time.monotonic() - started:.0f} s; "
        f"RSS {rss[base] / 2**20:.0f} MB -> max {rss[base:].max() / 2**20:.0f} MB (+{growth:.1f} MB); "
        f"fds {sorted(set(fds[base:].tolist()))}; threads {sorted(set(threads[base:].tolist()))}; "
        f"segments {sorted(set(shm[base:].tolist()))}; "
        f"samples/s early {early:,.0f}, late {late:,.0f} ({late / early:.2f}x)"
    )
    assert growth < 24, f"resident memory grew {growth:.1f} MB over {epoch - base} epochs"
    assert set(fds[base:].tolist()) == {fds[base]}, fds
    assert set(threads[base:].tolist()) == {threads[base]}, threads
    assert shm[base] > 0 and shm[base:].max() <= shm[base], shm  # (fewer: other tests' loaders freed theirs)
