"""Where the time goes: cheap counters the loader keeps while it runs (``doctor.py`` reads them)."""

from __future__ import annotations

import resource
import threading
import time
from dataclasses import dataclass, field

from chute.telemetry.timing import COUNT

__all__ = ["Stats"]

STAGES = ("read", "decode", "map", "collate", "fetch")


@dataclass
class Stats:
    """Counters for one loader: batches and samples delivered, and seconds per stage.

    Producing a batch is split into stages, summed over workers: ``read`` (the source: files,
    gathers), ``decode`` (file decoders), ``map`` (the user's functions) and ``collate`` (stacking
    samples into a batch).  ``wait`` is the time the consumer spent waiting for the next batch;
    ``consume`` is the time between handing a batch over and being asked for the next one (the
    training step); ``ready`` counts the batches already waiting each time one was asked for.
    """

    batches: int = 0
    samples: int = 0
    produced: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    produced_bytes: int = 0
    wait: float = 0.0
    consume: float = 0.0
    ready: int = 0
    ready_max: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # e.g. bytes fetched from object storage
    skipped: int = 0
    skipped_samples: list[tuple[int, str]] = field(default_factory=list)  # the first 100: (index, why)
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_read(self, times: dict[str, float], nbytes: int) -> None:
        with self._lock:
            self.produced += 1
            self.produced_bytes += nbytes
            for stage, seconds in times.items():
                if stage.startswith(COUNT):
                    self.counts[stage[1:]] = self.counts.get(stage[1:], 0) + int(seconds)
                else:
                    self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def skip(self, index: int, why: str) -> bool:
        """Count a skipped sample; True for the first one (the caller warns once)."""
        with self._lock:
            self.skipped += 1
            if len(self.skipped_samples) < 100:
                self.skipped_samples.append((index, why))
            return self.skipped == 1

    def add_delivery(self, samples: int, waited: float, consumed: float, ready: int) -> None:
        with self._lock:
            self.batches += 1
            self.samples += samples
            self.wait += waited
            self.consume += consumed
            self.ready += ready
            self.ready_max = max(self.ready_max, ready)

    def report(self, pids: list[int]) -> dict[str, object]:
        with self._lock:
            busy = self.wait + self.consume
            waiting = self.wait / busy if busy > 0 else 0.0
            produced = max(self.produced, 1)
            per_batch = sum(self.stages.values()) / produced
            stages_ms = {s: round(1000 * self.stages.get(s, 0.0) / produced, 3) for s in STAGES}
            batch_mb = self.produced_bytes / produced / 2**20
            report: dict[str, object] = {
                "batches": self.batches,
                "samples": self.samples,
                "samples_per_s": round(self.samples / busy, 1) if busy > 0 else 0.0,
                "read_s": round(sum(self.stages.values()), 4),
                "read_ms_per_batch": round(1000 * per_batch, 3),
                "stages_ms_per_batch": stages_ms,
                "wait_s": round(self.wait, 4),
                "consume_s": round(self.consume, 4),
                "waiting_fraction": round(waiting, 4),
                "queue_depth_mean": round(self.ready / self.batches, 2) if self.batches else 0.0,
                "queue_depth_max": self.ready_max,
                "batch_mb": round(batch_mb, 3),
                "peak_rss_mb": round(_peak_rss_mb([]), 1),
                "workers_peak_rss_mb": round(_peak_rss_mb(pids), 1) if pids else 0.0,
                **({"remote": dict(self.counts)} if self.counts else {}),
                "skipped": self.skipped,
                "skipped_samples": list(self.skipped_samples),
            }
        return report


def _peak_rss_mb(pids: list[int]) -> float:
    """This process's peak resident memory, or the summed peaks of processes ``pids`` (Linux)."""
    if not pids:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        except OSError:
            continue
    return total / 1024
