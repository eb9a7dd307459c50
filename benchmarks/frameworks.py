"""Every framework's path, fed by chute and by what its users write; all figures from one run.

On N x 784 float32 + int64 labels, batch 256 (default N = 100,000), medians of ``--repeats``
epochs taken round-robin:

- per Keras backend (each in its own process): ``model.fit`` of a tiny model for one epoch fed by
  ``loader.keras()`` (2 worker threads), by the tutorial PyDataset with workers=2 (threads and
  processes), by ``tf.data.from_tensor_slices`` and by ``loader.tf()``;
- adapters (one process): the loader iterated directly, ``loader.torch()`` vs the torch
  DataLoader, ``loader.tf()`` vs ``tf.data.from_tensor_slices``, ``loader.jax()``, and
  ``chute.from_generator(...).loader().tf()`` vs ``tf.data.Dataset.from_generator`` (target >= 3x),
  with each adapter's per-batch overhead over iterating the loader directly.

    python benchmarks/frameworks.py [--samples 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from in_memory import (
    BATCH,
    count,
    fit_epoch,
    interleaved_rates,
    make_data,
    torch_dataloader,
    tutorial_sequence,
)

BACKENDS = ("torch", "jax", "tensorflow")


def tf_slices(x: np.ndarray, y: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(BATCH).prefetch(2)


def measure_fit(backend: str, n: int, repeats: int) -> dict[str, float]:
    import chute

    x, y = make_data(n, 784)
    loader = chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0, workers=2, prefetch=4)
    tf_loader = chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0, workers=2, prefetch=4)
    runners = {
        "fit: chute loader.keras(), 2 worker threads": fit_epoch(n, lambda: {"x": loader.keras()}),
        "fit: tutorial PyDataset, workers=2 threads": fit_epoch(
            n, lambda: {"x": tutorial_sequence(x, y, workers=2)}
        ),
        "fit: tutorial PyDataset, workers=2 processes": fit_epoch(
            n, lambda: {"x": tutorial_sequence(x, y, workers=2, use_multiprocessing=True)}
        ),
    }
    if importlib.util.find_spec("tensorflow") is not None:
        slices, tf_data = tf_slices(x, y), tf_loader.tf()  # each made once, iterated every epoch
        runners["fit: tf.data.from_tensor_slices"] = fit_epoch(n, lambda: {"x": slices, "shuffle": False})
        runners["fit: chute loader.tf()"] = fit_epoch(n, lambda: {"x": tf_data, "shuffle": False})
    return interleaved_rates(runners, repeats)


def samples(x: np.ndarray, y: np.ndarray) -> Callable[[], Iterator[tuple[np.ndarray, np.int64]]]:
    def generate() -> Iterator[tuple[np.ndarray, np.int64]]:
        for i in range(len(x)):
            yield x[i], y[i]

    return generate


def measure_adapters(n: int, repeats: int) -> dict[str, float]:
    import chute

    x, y = make_data(n, 784)

    def made(**kwargs: Any) -> chute.Loader:
        return chute.from_arrays(x, y).loader(BATCH, shuffle=True, seed=0, workers=2, prefetch=4, **kwargs)

    direct, torch_loader, tf_loader, jax_loader = made(), made(), made(), made()
    runners: dict[str, Callable[[], int]] = {
        "chute loader, iterated directly, 2 worker threads": lambda: count(direct),
        "chute loader.torch()": lambda: count(torch_loader.torch()),
        "torch DataLoader(TensorDataset, shuffle=True)": torch_dataloader(x, y),
    }
    if importlib.util.find_spec("jax") is not None:
        runners["chute loader.jax(device_prefetch=2)"] = lambda: count(jax_loader.jax())
    if importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        slices = tf_slices(x, y)
        gen = chute.from_generator(samples(x, y), length=n).loader(BATCH, workers=2)
        signature = (tf.TensorSpec((784,), tf.float32), tf.TensorSpec((), tf.int64))
        tf_gen = tf.data.Dataset.from_generator(samples(x, y), output_signature=signature).batch(BATCH)
        tf_data = tf_loader.tf()
        runners["chute loader.tf()"] = lambda: count(tf_data.as_numpy_iterator())
        runners["tf.data.from_tensor_slices"] = lambda: count(slices.as_numpy_iterator())
        runners["chute.from_generator(...).loader().tf()"] = lambda: count(gen.tf().as_numpy_iterator())
        runners["tf.data.Dataset.from_generator(...).batch()"] = lambda: count(tf_gen.as_numpy_iterator())
    return interleaved_rates(runners, repeats)


def child(args: argparse.Namespace) -> None:
    os.environ["KERAS_BACKEND"] = args.backend
    rates = measure_fit(args.backend, args.samples, args.repeats)
    if args.backend == "torch":
        rates.update(measure_adapters(args.samples, args.repeats))
    print(json.dumps(rates))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        child(args)
        return
    results: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        command = [sys.executable, __file__, "--backend", backend, "--samples", str(args.samples)]
        out = subprocess.run(
            [*command, "--repeats", str(args.repeats)], capture_output=True, text=True, check=True
        )
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{args.samples:,} x 784 float32, batch 256; samples/s, medians of {args.repeats}\n")
    print("| backend | input | samples/s | x best peer |\n|---|---|---:|---:|")
    for backend, rates in results.items():
        fits = {k: v for k, v in rates.items() if k.startswith("fit:")}
        peers = max(v for k, v in fits.items() if "chute" not in k)
        for name, rate in fits.items():
            print(f"| {backend} | {name[5:]} | {rate:,.0f} | {rate / peers:.2f} |")
    adapters = {k: v for k, v in results["torch"].items() if not k.startswith("fit:")}
    direct = adapters["chute loader, iterated directly, 2 worker threads"]
    print("\n| adapter | samples/s | x direct | overhead us/batch |\n|---|---:|---:|---:|")
    for name, rate in adapters.items():
        overhead = 1e6 * BATCH * (1 / rate - 1 / direct)
        print(f"| {name} | {rate:,.0f} | {rate / direct:.2f} | {overhead:,.0f} |")
    pairs = [
        (
            "chute loader.torch()",
            "torch DataLoader(TensorDataset, shuffle=True)",
            "loader.torch() / torch DataLoader",
        ),
        ("chute loader.tf()", "tf.data.from_tensor_slices", "loader.tf() / tf.data.from_tensor_slices"),
        (
            "chute.from_generator(...).loader().tf()",
            "tf.data.Dataset.from_generator(...).batch()",
            "from_generator().tf() / tf.data.from_generator (target >= 3)",
        ),
    ]
    print()
    for mine, theirs, label in pairs:
        if mine in adapters and theirs in adapters:
            print(f"{label}: {adapters[mine] / adapters[theirs]:.2f}")


if __name__ == "__main__":
    main()
