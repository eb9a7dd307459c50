"""``chute demo``: chute's main job on built-in data.

Trains a small Keras model on scikit-learn's bundled digits (no download) through chute loaders,
then reports the validation accuracy and how fast the loader itself runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from chute._internal.require import require
from chute.options import check_int
from chute.order.epochs import epoch_order
from chute.sources.arrays import from_arrays

__all__ = ["DemoResult", "run_demo"]


@dataclass(frozen=True)
class DemoResult:
    val_accuracy: float
    loader_samples_per_s: float
    fit_seconds: float


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "for the demo's bundled digits", "pip install 'chute[demo]'")
    digits = datasets.load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _loader_speed(loader: object, seconds: float = 1.0) -> float:
    """Samples per second of iterating ``loader`` directly (whole epochs, for about ``seconds``)."""
    samples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for batch in loader:  # type: ignore[attr-defined]
            samples += len(batch[0])
    return samples / (time.perf_counter() - start)


def run_demo(epochs: int = 15, batch_size: int = 32, seed: int = 0, verbose: int = 2) -> DemoResult:
    """Train on digits with chute loaders; return the accuracy and the loader's throughput."""
    epochs = check_int("epochs", epochs, minimum=1)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    x, y = _load_digits()
    order = epoch_order(len(x), seed=seed, epoch=0, shuffle=True)
    cut = int(0.8 * len(x))
    train = from_arrays(x[order[:cut]], y[order[:cut]]).loader(batch_size, shuffle=True, seed=seed)
    val = from_arrays(x[order[cut:]], y[order[cut:]]).loader(256)

    from chute._internal.require import framework

    with framework("keras"):
        import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(
        f"chute demo: digits, {cut} train / {len(x) - cut} validation samples, "
        f"Keras {keras.__version__} on the {keras.backend.backend()} backend",
        flush=True,
    )
    start = time.perf_counter()
    history = model.fit(train.keras(), epochs=epochs, validation_data=val.keras(), verbose=verbose)
    fit_seconds = time.perf_counter() - start
    return DemoResult(
        val_accuracy=float(history.history["val_accuracy"][-1]),
        loader_samples_per_s=_loader_speed(train),
        fit_seconds=fit_seconds,
    )
