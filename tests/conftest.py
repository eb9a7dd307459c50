"""Shared test set-up: Keras on the torch backend, deterministic hypothesis runs."""

from __future__ import annotations

import importlib.util
import os

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
