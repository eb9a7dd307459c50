"""``workers="auto"`` and ``prefetch="auto"``: values picked from what the first batch cost.

The loader reads its first batch inline and times it; this module turns that time, the batch's
size, the cores this process may use and a RAM budget into a worker count and a prefetch depth,
with a sentence saying why, which the loader logs and reports in ``stats()["pipeline"]``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from chute.options import AUTO, PipelineOptions

__all__ = ["Plan", "check_workers", "choose", "cores", "default_ram_budget"]

CHEAP = 0.0005  # a batch read faster than this needs no more than one worker to keep ahead
BUDGET_CAP = 2 << 30
THREADS_PER_CORE = 8  # more worker threads than this a core is a slip (I/O-bound reads want a few)


@dataclass(frozen=True)
class Plan:
    """The worker count and prefetch depth a loader runs with, and why."""

    workers: int
    prefetch: int
    why: str = "as given"


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(options: PipelineOptions) -> None:
    """Warn (as torch's DataLoader does) when ``workers`` exceeds what the cores can run: more
    processes than cores, or more than ``THREADS_PER_CORE`` threads a core."""
    if options.workers == AUTO:
        return
    workers, available = int(options.workers), cores()
    limit = available if options.worker_type == "process" else THREADS_PER_CORE * available
    if workers > limit:
        kind = "processes" if options.worker_type == "process" else "threads"
        warnings.warn(
            f"chute: workers={workers} {kind} on {available} CPU cores this process may use: more "
            f"than {limit} rarely help, and the rest cost memory and switching. Use "
            f"workers<={limit}, or workers='auto' to pick from a measured batch.",
            stacklevel=4,
        )


def default_ram_budget() -> int:
    """A quarter of the RAM available now, at most 2 GiB."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = 8 << 30
    return min(available // 4, BUDGET_CAP)


def choose(options: PipelineOptions, read_seconds: float, batch_bytes: int) -> Plan:
    """The plan for ``options`` after a first batch took ``read_seconds`` and ``batch_bytes``."""
    reasons = []
    workers = options.workers
    if workers == AUTO:
        workers = 1 if read_seconds < CHEAP else cores()
        reasons.append(
            f"workers={workers}: a batch took {1000 * read_seconds:.2f} ms to read on one core, "
            f"{cores()} cores available"
        )
    prefetch = options.prefetch
    if prefetch == AUTO:
        budget = options.ram_budget or default_ram_budget()
        copies = 2 if options.worker_type == "process" else 1  # processes add a shared-memory copy
        fits = int(budget) // max(1, batch_bytes * copies) - 1
        prefetch = max(1, min(max(2, 2 * int(workers)), fits))
        reasons.append(
            f"prefetch={prefetch}: {2 * int(workers)} wanted for {workers} workers, "
            f"{max(fits, 0)} batches of {batch_bytes / 2**20:.1f} MB fit in ram_budget "
            f"{int(budget) / 2**20:.0f} MB"
        )
    return Plan(int(workers), int(prefetch), "; ".join(reasons) or "as given")
