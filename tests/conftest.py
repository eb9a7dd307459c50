"""Shared test set-up: Keras on the torch backend, deterministic hypothesis runs, a clock for
the loader that only the test moves."""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # two CPU devices for JAX
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KERAS = importlib.util.find_spec("keras") is not None

settings.register_profile("chute", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("chute")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """``test_keras.py`` is left out of the run without frameworks (``-m "not frameworks"``, as
    dev.py runs it in .venv-core, where Keras is not installed); any other run without Keras is
    an error, not a suite that passes having tested no Keras."""
    if collection_path.name != "test_keras.py" or KERAS:
        return None
    if str(config.getoption("markexpr")).split() == ["not", "frameworks"]:
        return True
    raise pytest.UsageError(
        "tests/test_keras.py needs Keras, which this environment lacks: install chute[dev] "
        '(python dev.py test does), or leave the framework tests out with -m "not frameworks".'
    )


class LoaderClock:
    """Stands in for the ``time`` module in ``chute.loader``: ``perf_counter()`` moves only by
    :meth:`advance`, so what the loader measures (the wait for a batch, the consumer's step, the
    first batch's read for ``workers="auto"``) is what the test says, however busy the machine."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def perf_counter(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def __getattr__(self, name: str) -> Any:  # the rest of the time module, as it is
        return getattr(time, name)


@pytest.fixture
def loader_clock(monkeypatch: pytest.MonkeyPatch) -> LoaderClock:
    """The clock the loader times deliveries with, moved by the test alone."""
    clock = LoaderClock()
    monkeypatch.setattr(importlib.import_module("chute.loader"), "time", clock)
    return clock


@pytest.fixture
def xy() -> tuple[np.ndarray, np.ndarray]:
    """100 samples of 3 float32 features and an int64 label equal to the sample's index."""
    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    return x, np.arange(100, dtype=np.int64)


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    """A real S3-protocol server (moto) on loopback, for the whole session."""
    from s3 import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, request, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh bucket on the loopback server: (url prefix, chute.Remote with a private cache)."""
    import chute
    from s3 import make_bucket, storage_options

    bucket = f"b{zlib.crc32(request.node.nodeid.encode()):010d}"
    make_bucket(s3_server.endpoint, bucket)
    remote = chute.Remote(
        cache_dir=str(tmp_path / "cache"), storage_options=storage_options(s3_server.endpoint)
    )
    return f"s3://{bucket}", remote
