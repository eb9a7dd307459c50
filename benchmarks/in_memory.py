"""In-memory loading: chute against the numpy ceiling and its peers, all measured in one run.

One shuffled epoch over N x 784 float32 plus int64 labels, batch 256 (defaults: N = 500,000).
Every figure is the median of ``--repeats`` epochs, and every ratio is taken against the numpy
ceiling measured in the same process, because this machine's speed drifts.  Each Keras backend
runs in its own process (KERAS_BACKEND is read once, at import).

    python benchmarks/in_memory.py                       # torch backend (+ tensorflow if installed)
    python benchmarks/in_memory.py --samples 100000 --repeats 3 --backends torch
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

BATCH = 256


def interleaved_rates(runners: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Samples/s of each runner: the median of ``repeats`` epochs, taken round-robin.

    Round-robin (A B C, A B C, ...) rather than one loader after another, so that the machine's
    drift over the run touches every loader alike.  One untimed warm-up epoch each comes first.
    """
    timings: dict[str, list[float]] = {key: [] for key in runners}
    for round_ in range(repeats + 1):
        for key, run_epoch in runners.items():
            start = time.perf_counter()
            samples = run_epoch()
            if round_:
                timings[key].append(samples / (time.perf_counter() - start))
    return {key: statistics.median(rates) for key, rates in timings.items()}


def count(batches: Iterable[Any]) -> int:
    """Drain an iterable of (x, y, ...) batches, returning the number of samples seen."""
    total = 0
    for batch in batches:
        total += len(batch[0])
    return total


def make_data(n: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, features), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def numpy_ceiling(x: np.ndarray, y: np.ndarray) -> Callable[[], int]:
    rng = np.random.default_rng(0)

    def epoch() -> int:
        perm = rng.permutation(len(x))
        total = 0
        for i in range(0, len(x), BATCH):
            idx = perm[i : i + BATCH]
            total += len(x[idx]) + 0 * len(y[idx])
        return total

    return epoch


def tutorial_sequence(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> Any:
    """The Sequence every Keras data-loading tutorial has users write by hand."""
    import keras

    class TutorialSequence(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.indices = np.arange(len(x))
            np.random.shuffle(self.indices)

        def __len__(self) -> int:
            return math.ceil(len(x) / BATCH)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            idx = self.indices[i * BATCH : (i + 1) * BATCH]
            return x[idx], y[idx]

        def on_epoch_end(self) -> None:
            np.random.shuffle(self.indices)

    return TutorialSequence()


def through_keras(data: Any, backend: str, **adapter_kwargs: Any) -> Callable[[], int]:
    """Iterate ``data`` the way ``model.fit`` on ``backend`` does, through Keras's data adapter."""
    from keras.src.trainers.data_adapters import get_data_adapter

    adapter = get_data_adapter(x=data, shuffle=True, **adapter_kwargs)
    batches = {
        "torch": adapter.get_torch_dataloader,
        "tensorflow": adapter.get_tf_dataset,
        "jax": adapter.get_jax_iterator,
    }[backend]

    def epoch() -> int:
        adapter.on_epoch_begin()
        total = count(batches())
        adapter.on_epoch_end()
        return total

    return epoch


def fit_epoch(n: int, make_input: Callable[[], dict[str, Any]]) -> Callable[[], int]:
    """One epoch of ``model.fit`` of a tiny model; the input comes from ``make_input``."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    fit_kwargs = make_input()

    def epoch() -> int:
        model.fit(epochs=1, verbose=0, **fit_kwargs)
        return n

    return epoch


def torch_dataloader(x: np.ndarray, y: np.ndarray) -> Callable[[], int]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=True
    )
    return lambda: count(loader)


LABELS = {
    "ceiling": "numpy gather `x[perm[i:i+256]]` (ceiling)",
    "chute": "chute Loader, iterated directly",
    "chute_2w": "chute Loader, iterated directly, 2 worker threads, prefetch 4",
    "chute_keras": "chute `loader.keras()` through Keras's adapter",
    "tutorial": "tutorial Sequence, iterated directly",
    "tutorial_keras_1": "tutorial Sequence through Keras's adapter, workers=1",
    "tutorial_keras_2t": "tutorial Sequence through Keras's adapter, 2 threads",
    "tutorial_keras_2p": "tutorial Sequence through Keras's adapter, 2 processes",
    "keras_numpy": "Keras's own numpy-array path (`fit(x, y, shuffle=True)`'s adapter)",
    "torch_dataloader": "torch `DataLoader(TensorDataset, shuffle=True)`",
    "fit_chute": "`model.fit`, tiny model, one epoch fed by chute",
    "fit_numpy": "`model.fit`, tiny model, one epoch fed by numpy arrays",
}

# (numerator, denominator, target, description): the ratios this benchmark is held to.
TARGETS = [
    ("chute", "ceiling", 0.9, "chute iterated directly / numpy ceiling"),
    ("chute_keras", "keras_numpy", 1.0, "chute through Keras's adapter / Keras's numpy-array path"),
    ("fit_chute", "fit_numpy", 1 / 1.05, "model.fit speed fed by chute / fed by numpy arrays"),
    ("chute", "torch_dataloader", 10.0, "chute / torch DataLoader"),
    ("chute_2w", "torch_dataloader", 10.0, "chute with 2 worker threads / torch DataLoader"),
    ("chute_2w", "ceiling", 1.0, "chute with 2 worker threads / numpy ceiling"),
]


def measure_backend(backend: str, n: int, repeats: int) -> dict[str, float]:
    """Samples/s of every loader for one Keras backend, all measured in this process."""
    os.environ["KERAS_BACKEND"] = backend
    import chute

    x, y = make_data(n, 784)
    loader = chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0)
    threaded = chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0, workers=2, prefetch=4)
    fit_loader = chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0)
    runners = {
        "ceiling": numpy_ceiling(x, y),
        "chute": lambda: count(loader),
        "chute_2w": lambda: count(threaded),
        "chute_keras": through_keras(loader.keras(), backend),
        "tutorial": lambda: count(tutorial_sequence(x, y)),
        "tutorial_keras_1": through_keras(tutorial_sequence(x, y), backend),
        "tutorial_keras_2t": through_keras(tutorial_sequence(x, y, workers=2), backend),
        "tutorial_keras_2p": through_keras(
            tutorial_sequence(x, y, workers=2, use_multiprocessing=True), backend
        ),
        "keras_numpy": through_keras(x, backend, y=y, batch_size=BATCH),
        "fit_chute": fit_epoch(n, lambda: {"x": fit_loader.keras()}),
        "fit_numpy": fit_epoch(n, lambda: {"x": x, "y": y, "batch_size": BATCH, "shuffle": True}),
    }
    if importlib.util.find_spec("torch") is not None:
        runners["torch_dataloader"] = torch_dataloader(x, y)
    rates = interleaved_rates(runners, repeats)
    for key, rate in rates.items():
        print(f"  [{backend}] {LABELS[key]}: {rate:,.0f} samples/s", file=sys.stderr, flush=True)
    return rates


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| backend | loader | samples/s | x ceiling |", "|---|---|---:|---:|"]
    for backend, rates in results.items():
        for key, rate in rates.items():
            lines.append(f"| {backend} | {LABELS[key]} | {rate:,.0f} | {rate / rates['ceiling']:.2f} |")
    return "\n".join(lines)


def targets(results: dict[str, dict[str, float]]) -> str:
    lines = ["| backend | ratio | measured | target | met |", "|---|---|---:|---:|---|"]
    for backend, rates in results.items():
        for top, bottom, goal, what in TARGETS:
            if top in rates and bottom in rates:
                value = rates[top] / rates[bottom]
                met = "yes" if value >= goal else "NO"
                lines.append(f"| {backend} | {what} | {value:.2f} | >= {goal:.2f} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--backends", default=None, help="comma-separated; default: torch and tensorflow if installed"
    )
    parser.add_argument("--json", default=None, help="also write the raw figures to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_backend(args.worker, args.samples, args.repeats)))
        return
    backends = (
        args.backends.split(",")
        if args.backends
        else [b for b in ("torch", "tensorflow", "jax") if importlib.util.find_spec(b) is not None]
    )
    results = {}
    for backend in backends:
        print(f"measuring on the {backend} backend ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", backend, "--samples", str(args.samples)]
        out = subprocess.run(
            [*cmd, "--repeats", str(args.repeats)], check=True, stdout=subprocess.PIPE, text=True
        )
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{args.samples:,} x 784 float32 + int64 labels, batch {BATCH}, medians of {args.repeats}\n")
    print(table(results))
    print()
    print(targets(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
