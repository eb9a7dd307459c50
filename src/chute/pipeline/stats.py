"""Where the time goes: cheap counters the loader keeps while it runs, and a one-line verdict."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

__all__ = ["Stats"]

INPUT_BOUND = 0.1  # waiting for data more than this share of the time means the input limits


@dataclass
class Stats:
    """Counters for one loader: batches and samples delivered, and seconds per stage.

    ``read`` is the time spent reading and mapping batches (summed over workers); ``wait`` is the
    time the consumer spent waiting for the next batch; ``consume`` is the time between handing a
    batch over and being asked for the next one (the training step).
    """

    batches: int = 0
    samples: int = 0
    read: float = 0.0
    wait: float = 0.0
    consume: float = 0.0
    skipped: int = 0
    skipped_samples: list[tuple[int, str]] = field(default_factory=list)  # the first 100: (index, why)
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_read(self, seconds: float) -> None:
        with self._lock:
            self.read += seconds

    def skip(self, index: int, why: str) -> bool:
        """Count a skipped sample; True for the first one (the caller warns once)."""
        with self._lock:
            self.skipped += 1
            if len(self.skipped_samples) < 100:
                self.skipped_samples.append((index, why))
            return self.skipped == 1

    def add_delivery(self, samples: int, waited: float, consumed: float) -> None:
        with self._lock:
            self.batches += 1
            self.samples += samples
            self.wait += waited
            self.consume += consumed

    def report(self, workers: int) -> dict[str, object]:
        with self._lock:
            busy = self.wait + self.consume
            waiting = self.wait / busy if busy > 0 else 0.0
            per_batch = self.read / self.batches if self.batches else 0.0
            report: dict[str, object] = {
                "batches": self.batches,
                "samples": self.samples,
                "samples_per_s": round(self.samples / busy, 1) if busy > 0 else 0.0,
                "read_s": round(self.read, 4),
                "read_ms_per_batch": round(1000 * per_batch, 3),
                "wait_s": round(self.wait, 4),
                "consume_s": round(self.consume, 4),
                "waiting_fraction": round(waiting, 4),
                "skipped": self.skipped,
                "skipped_samples": list(self.skipped_samples),
            }
        report["verdict"] = _verdict(waiting, per_batch, workers)
        return report


def _verdict(waiting: float, per_batch: float, workers: int) -> str:
    if waiting <= INPUT_BOUND:
        return f"not input-bound: the consumer waited {100 * waiting:.0f}% of the time for data"
    advice = f"raise workers (now {workers})" if workers < 8 else "move Python-heavy maps to process workers"
    return (
        f"input-bound: the consumer waited {100 * waiting:.0f}% of the time; reading and mapping take "
        f"{1000 * per_batch:.1f} ms a batch per worker: {advice}, raise prefetch, or convert the data "
        "to the chute format ahead of time"
    )
