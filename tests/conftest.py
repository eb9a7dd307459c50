"""Shared test set-up: Keras on the torch backend, deterministic hypothesis runs."""

from __future__ import annotations

import importlib.util
import os
import zlib

import numpy as np
import pytest
from hypothesis import settings

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # two CPU devices for JAX
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The environment without frameworks (dev.py's .venv-core) cannot even import the Keras tests.
collect_ignore = [] if importlib.util.find_spec("keras") else ["test_keras.py"]

settings.register_profile("chute", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("chute")


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
