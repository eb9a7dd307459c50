"""loader.stats(): where the time goes, and whether the input limits training."""

from __future__ import annotations

import time

import numpy as np
import pytest

import chute


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


def test_a_slow_consumer_is_not_input_bound() -> None:
    loader = chute.from_arrays(np.arange(100)).loader(10, workers=2, prefetch=4)
    for _ in loader:
        time.sleep(0.01)
    stats = loader.stats(reset=True)
    assert stats["waiting_fraction"] < 0.5  # type: ignore[operator]
    assert str(stats["verdict"]).startswith("not input-bound")
    assert stats["consume_s"] > 0.08  # type: ignore[operator]
    assert loader.stats()["batches"] == 0


def test_keras_batches_are_counted() -> None:
    keras = pytest.importorskip("keras")
    x, y = np.zeros((64, 2), np.float32), np.zeros((64, 1), np.float32)
    loader = chute.from_arrays(x, y).loader(16)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(loader.keras(), epochs=2, verbose=0)
    assert loader.stats()["samples"] >= 128  # type: ignore[operator]
