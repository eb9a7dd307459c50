"""The bottleneck doctor: is training waiting for data, which stage limits, and what to change.

From the counters a loader keeps anyway (``loader.stats()``): the share of the consumer's time
spent waiting for the next batch decides whether the input limits training (more than 10%); the
stage with the most time per batch (fetch, read, decode, map, collate) is the one to name; the
advice follows from it and from the loader's settings.  :func:`diagnose` reports the time since
its last call (per epoch when called at each epoch's end); ``chute.keras.Doctor`` calls it from
Keras's ``on_epoch_end`` and puts the figures into Keras's logs (so TensorBoard and CSV loggers
record them).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

__all__ = ["INPUT_BOUND", "Diagnosis", "Facts", "advise", "diagnose", "shuffle_mode", "verdict"]

INPUT_BOUND = 0.1  # waiting for data more than this share of the time means the input limits


@dataclass(frozen=True)
class Facts:
    """What the advice depends on besides the counters: the loader's settings and its source."""

    workers: int
    worker_type: str
    prefetch: int
    source: str  # the source's class: ArraySource, ChuteSource, RemoteSource, FilesSource, ...
    shuffle: str  # "none", "exact" or "block"
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class Diagnosis:
    """One period's verdict (``str()`` is the one-line summary; ``to_dict()``/``to_json()`` export)."""

    epoch: Optional[int]
    samples_per_s: float
    waiting_fraction: float
    input_bound: bool
    limiting: str  # "model" when the input keeps up, else the slowest input stage
    stages_ms_per_batch: dict[str, float]
    advice: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["advice"] = list(self.advice)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __str__(self) -> str:
        head = f"epoch {self.epoch}: " if self.epoch is not None else ""
        waited = f"waited for data {100 * self.waiting_fraction:.0f}% of the time"
        if not self.input_bound:
            rate = f"{self.samples_per_s:,.0f} samples/s"
            return f"{head}not input-bound ({waited}), {rate}; the model sets the pace"
        stage = self.stages_ms_per_batch.get(self.limiting, 0.0)
        return (
            f"{head}input-bound ({waited}), {self.samples_per_s:,.0f} samples/s; limiting stage: "
            f"{self.limiting} ({stage:.1f} ms per batch per worker); try: " + "; ".join(self.advice)
        )


def shuffle_mode(shuffle: object) -> str:
    """``"none"``, ``"exact"`` or ``"block"`` for a loader's resolved ``shuffle`` option."""
    if shuffle is False:
        return "none"
    return "exact" if shuffle is True else "block"


def advise(report: dict[str, Any], facts: Facts) -> tuple[str, tuple[str, ...]]:
    """The limiting stage (or ``"model"``) and the advice, from a ``loader.stats()`` report."""
    waiting = float(report.get("waiting_fraction", 0.0))
    stages: dict[str, float] = dict(report.get("stages_ms_per_batch", {}))
    if waiting <= INPUT_BOUND:
        return "model", ()
    limiting = max(stages, key=stages.__getitem__) if stages else "read"
    advice = []
    if limiting == "fetch":
        advice.append(
            "fetch more shards ahead (chute.Remote(prefetch=...)) and keep the cache as big as the data"
        )
        if facts.shuffle == "exact":
            advice.append("use shuffle='block' so each window of batches needs few shards")
    if limiting == "map" and facts.worker_type == "thread" and facts.workers > 0:
        advice.append("the map runs Python under the GIL: use worker_type='process'")
    if facts.workers < facts.cores:
        advice.append(f"raise workers (now {facts.workers}) to {facts.cores}, the cores here")
    if limiting in ("read", "decode") and facts.source in ("FilesSource", "SequenceSource", "TableSource"):
        advice.append(
            "convert the data to the chute format ahead of time (chute convert): decode once, read fast"
        )
    if limiting == "decode" and facts.source == "DecodedImages":
        advice.append(
            "store the images decoded at the size you train on: convert with size=(height, width) "
            "(chute convert --resize HxW), decode once, read fast"
        )
    if limiting == "read" and facts.shuffle == "exact" and facts.source in ("ArraySource", "ChuteSource"):
        advice.append("random reads from slow storage: shuffle='block' reads contiguous blocks")
    if float(report.get("queue_depth_mean", 0.0)) < 1 and waiting < 0.3:
        advice.append(f"raise prefetch (now {facts.prefetch}) to absorb uneven batch times")
    if not advice:
        advice.append(
            "make the per-sample work cheaper (resize once at conversion, vectorise with map_batch)"
        )
    return limiting, tuple(advice)


def verdict(report: dict[str, Any], facts: Facts) -> str:
    """The one line ``loader.stats()["verdict"]`` carries."""
    waiting = float(report.get("waiting_fraction", 0.0))
    limiting, advice = advise(report, facts)
    if limiting == "model":
        return f"not input-bound: the consumer waited {100 * waiting:.0f}% of the time for data"
    per_batch = float(report.get("read_ms_per_batch", 0.0))
    return (
        f"input-bound: the consumer waited {100 * waiting:.0f}% of the time; producing a batch takes "
        f"{per_batch:.1f} ms per worker, most of it in {limiting}: " + "; ".join(advice)
    )


def diagnose(loader: Any, epoch: Optional[int] = None) -> Diagnosis:
    """The verdict on ``loader`` since the last call (its stats are reset): call it at each epoch's end.

    For PyTorch and JAX loops; Keras users add ``chute.keras.Doctor(loader)`` to the callbacks.
    """
    report = loader.stats(reset=True)
    limiting, advice = advise(report, loader.facts())
    return Diagnosis(
        epoch=epoch,
        samples_per_s=float(report.get("samples_per_s", 0.0)),
        waiting_fraction=float(report.get("waiting_fraction", 0.0)),
        input_bound=limiting != "model",
        limiting=limiting,
        stages_ms_per_batch=dict(report.get("stages_ms_per_batch", {})),
        advice=advice,
    )
