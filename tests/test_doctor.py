"""The bottleneck doctor's verdict on constructed cases: slow map, slow model, slow storage."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

import chute
from chute.sources.base import Rows, row_indices
from chute.spec import infer_spec
from conftest import LoaderClock


def slow_map(sample: Any) -> Any:
    time.sleep(0.002)  # Python work, per sample
    return sample


def test_a_slow_map_is_named_with_process_workers_advised() -> None:
    loader = chute.from_arrays(np.arange(400)).map(slow_map).loader(20, workers=1, prefetch=2)
    list(loader)
    diagnosis = chute.diagnose(loader, epoch=0)
    assert diagnosis.input_bound and diagnosis.limiting == "map"
    assert any("worker_type='process'" in advice for advice in diagnosis.advice)
    assert any("raise workers (now 1)" in advice for advice in diagnosis.advice)
    assert str(diagnosis).startswith("epoch 0: input-bound") and "limiting stage: map" in str(diagnosis)
    assert json.loads(diagnosis.to_json())["limiting"] == "map"


def test_a_slow_model_is_not_input_bound(loader_clock: LoaderClock) -> None:
    loader = chute.from_arrays(np.arange(400)).loader(20, workers=1, prefetch=2)
    for _ in loader:
        loader_clock.advance(0.01)  # the training step: 10 ms; reading takes no time on this clock
    diagnosis = chute.diagnose(loader)
    assert not diagnosis.input_bound and diagnosis.limiting == "model" and diagnosis.advice == ()
    assert diagnosis.waiting_fraction == 0 and diagnosis.samples_per_s == pytest.approx(400 / 0.19, abs=0.1)
    assert "the model sets the pace" in str(diagnosis)


class SlowStorage:
    """A source whose reads take 20 ms a batch, like a cold disk or a network share."""

    def __init__(self, n: int) -> None:
        self.values = np.arange(n, dtype=np.float32)
        self.spec = infer_spec(self.values[0])

    def __len__(self) -> int:
        return len(self.values)

    def read_sample(self, index: int) -> list[np.ndarray]:
        return [self.values[index]]

    def read_rows(self, rows: Rows) -> list[np.ndarray]:
        time.sleep(0.02)
        return [self.values[row_indices(rows)]]


def test_slow_storage_names_the_read_stage() -> None:
    loader = chute.Dataset(SlowStorage(200)).loader(20, shuffle=True, workers=1, prefetch=2)
    list(loader)
    diagnosis = chute.diagnose(loader)
    assert diagnosis.input_bound and diagnosis.limiting == "read"
    assert diagnosis.stages_ms_per_batch["read"] >= 15


def test_each_call_reports_the_time_since_the_last() -> None:
    loader = chute.from_arrays(np.arange(100)).loader(10)
    list(loader)
    assert chute.diagnose(loader).samples_per_s > 0
    assert chute.diagnose(loader).samples_per_s == 0  # nothing read since
