"""loader.stats(): where the time goes, and whether the input limits training."""

from __future__ import annotations

import time

import numpy as np
import pytest

import chute
import chute.pipeline.auto
from conftest import LoaderClock


def slow_read(batch: tuple[np.ndarray]) -> tuple[np.ndarray]:
    time.sleep(0.01)
    return batch


def test_a_slow_map_is_reported_as_input_bound() -> None:
    loader = chute.from_arrays(np.arange(100)).map_batch(slow_read).loader(10, workers=1, prefetch=1)
    for _ in loader:
        pass
    stats = loader.stats()
    assert stats["batches"] == 10 and stats["samples"] == 100
    assert stats["read_ms_per_batch"] >= 9  # type: ignore[operator]
    assert stats["waiting_fraction"] > 0.5  # type: ignore[operator]
    assert str(stats["verdict"]).startswith("input-bound: the consumer waited")
    assert "raise workers (now 1)" in str(stats["verdict"])


def test_a_slow_consumer_is_not_input_bound(loader_clock: LoaderClock) -> None:
    loader = chute.from_arrays(np.arange(100)).loader(10, workers=2, prefetch=4)
    for _ in loader:
        loader_clock.advance(0.01)  # the training step: 10 ms; reading takes no time on this clock
    stats = loader.stats(reset=True)
    assert stats["wait_s"] == 0 and stats["consume_s"] == pytest.approx(0.09)  # 9 steps between asks
    assert stats["waiting_fraction"] == 0 and stats["samples_per_s"] == pytest.approx(100 / 0.09, abs=0.1)
    assert str(stats["verdict"]).startswith("not input-bound: the consumer waited 0%")
    assert loader.stats()["batches"] == 0


@pytest.mark.frameworks
def test_keras_batches_are_counted() -> None:
    keras = pytest.importorskip("keras")
    x, y = np.zeros((64, 2), np.float32), np.zeros((64, 1), np.float32)
    loader = chute.from_arrays(x, y).loader(16)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(loader.keras(), epochs=2, verbose=0)
    assert loader.stats()["samples"] >= 128  # type: ignore[operator]


def test_stages_queue_depth_and_memory_are_reported() -> None:
    mapped: set[int] = set()

    def double(sample: tuple[np.ndarray]) -> tuple[np.ndarray]:
        time.sleep(0.001)
        mapped.add(int(sample[0][0]))
        return (sample[0] * 2,)

    x = np.zeros((400, 256), np.float32)
    x[:, 0] = np.arange(400)  # each sample says which it is
    loader = chute.from_arrays(x).map(double).loader(20, workers=2, prefetch=4)
    for number, _ in enumerate(loader):
        # Slower than the producer by construction: the next batch is asked for once the last one
        # read ahead (4 ahead) is mapped; a worker took it after the 3 before it, of which the
        # other worker holds one at most: two at least are ready (batches 1 to 16; one at 17).
        last = set(loader.indices(min(number + 4, len(loader) - 1)).tolist())
        deadline = time.monotonic() + 60  # (a guard against a hang)
        while not last <= mapped:
            assert time.monotonic() < deadline, f"batch {number + 4} was not read ahead"
            time.sleep(0.001)
    stats = loader.stats()
    stages = stats["stages_ms_per_batch"]
    assert stages["map"] >= 15 and stages["collate"] > 0 and stages["decode"] == 0  # type: ignore[index]
    assert stats["queue_depth_max"] >= 2 and stats["queue_depth_mean"] > 1  # type: ignore[operator]
    assert stats["batch_mb"] == round(20 * 256 * 4 / 2**20, 3)
    assert stats["peak_rss_mb"] > 10  # type: ignore[operator]
    assert stats["pipeline"] == {"workers": 2, "worker_type": "thread", "prefetch": 4, "chosen": "as given"}


def test_auto_picks_workers_and_prefetch_within_the_ram_budget(loader_clock: LoaderClock) -> None:
    def costly(batch: tuple[np.ndarray]) -> tuple[np.ndarray]:
        loader_clock.advance(0.01)  # 10 ms a batch on the clock the loader times its first read with
        return batch

    x = np.zeros((1000, 64, 64), np.float32)  # 16 KiB a sample, 1 MiB a batch of 64
    slow = chute.from_arrays(x).map_batch(costly)
    loader = slow.loader(64, workers="auto", prefetch="auto", ram_budget="8MiB")
    assert loader.stats()["pipeline"]["chosen"].startswith("not chosen yet")  # type: ignore[index]
    batches = sum(1 for _ in loader)
    plan = loader.stats()["pipeline"]
    assert batches == 16 and plan["workers"] == chute.pipeline.auto.cores()  # type: ignore[index]
    assert plan["prefetch"] == min(2 * plan["workers"], 7)  # type: ignore[index, operator]
    assert "ram_budget 8 MB" in plan["chosen"] and "ms to read" in plan["chosen"]  # type: ignore[index]
    tight = slow.loader(64, prefetch="auto", workers=1, ram_budget="1MiB")
    list(tight)
    assert tight.stats()["pipeline"]["prefetch"] == 1  # type: ignore[index]
    cheap = chute.from_arrays(np.arange(100)).loader(10, workers="auto")  # read in no time on that clock
    assert len(list(cheap)) == 10 and cheap.stats()["pipeline"]["workers"] == 1  # type: ignore[index]
