"""Variable-length sequences: padded and bucketed batches, chute against tf.data and the torch DataLoader.

N token sequences (default 200,000) of uniform random length 10-512 (int32), stored in the chute
format (a ragged field).  Every loader makes shuffled batches of 64 padded with zeros to the
longest sequence in the batch; figures are samples/s, medians of ``--repeats`` epochs taken
round-robin after a warm-up epoch each, and the padding fraction (padded cells that hold no token).

- chute: ``chute.open(...).loader(64, shuffle=True, pad=True)`` unbucketed, ``bucket=True``
  (windows sorted by length) and ``bucket=chute.Bucket(boundaries=...)`` (tf.data's buckets);
  0 workers and 2 worker threads;
- tf.data (if TensorFlow is installed): the same tokens as tensors in RAM, ``range(N)`` shuffled
  whole, each index sliced out in a parallel ``map``, then ``padded_batch(64)`` or
  ``bucket_by_sequence_length`` with the same boundaries, ``prefetch(AUTOTUNE)``;
- torch (if installed): a map-style ``Dataset`` over the same in-RAM arrays, ``DataLoader``
  ``shuffle=True`` with a ``pad_sequence`` collate, 0 and 2 worker processes.

    python benchmarks/text.py [--sequences 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from in_memory import interleaved_rates

BATCH = 64
BOUNDARIES = [64, 128, 192, 256, 320, 384, 448]


def make_tokens(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 tokens and the row offsets of ``n`` sequences of length 10-512."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 513, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rng.integers(1, 30_000, int(offsets[-1]), dtype=np.int32), offsets


def store(tokens: np.ndarray, offsets: np.ndarray, path: str) -> Any:
    import chute

    if not os.path.exists(os.path.join(path, "manifest.json")):
        rows = chute.from_arrays({"i": np.arange(len(offsets) - 1)})
        ds = rows.map(lambda s: {"tokens": tokens[offsets[s["i"]] : offsets[s["i"] + 1]]}, ragged=["tokens"])
        chute.convert(ds, path, progress=True)
    return chute.open(path)


class Counted:
    """Samples and padded cells of the batches drained by each runner (for the padding fraction)."""

    def __init__(self) -> None:
        self.cells: dict[str, int] = {}

    def runner(self, name: str, batches: Callable[[], Iterable[Any]]) -> Callable[[], int]:
        def run() -> int:
            samples = cells = 0
            for batch in batches():
                shape = tuple(batch.shape)
                samples, cells = samples + shape[0], cells + shape[0] * shape[1]
            self.cells[name] = cells
            return samples

        return run


def chute_runners(counted: Counted, ds: Any) -> dict[str, Callable[[], int]]:
    import chute

    runners = {}
    settings = {
        "padded": {"pad": True},
        "bucketed (windows)": {"pad": True, "bucket": True},
        "bucketed (boundaries)": {"pad": True, "bucket": chute.Bucket(boundaries=tuple(BOUNDARIES))},
    }
    for label, options in settings.items():
        for workers in (0, 2):
            loader = ds.loader(BATCH, shuffle=True, seed=0, workers=workers, prefetch=4, **options)
            name = f"chute {label}, {workers} threads"
            runners[name] = counted.runner(name, lambda loader=loader: (b["tokens"] for b in loader))
    return runners


def tf_runners(counted: Counted, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Callable[[], int]]:
    import tensorflow as tf

    flat, splits = tf.constant(tokens), tf.constant(offsets)
    n = len(offsets) - 1
    base = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=0)  # indices only: a full, exact shuffle costs little
        .map(lambda i: flat[splits[i] : splits[i + 1]], num_parallel_calls=tf.data.AUTOTUNE)
    )
    padded = base.padded_batch(BATCH).prefetch(tf.data.AUTOTUNE)
    bucketed = base.bucket_by_sequence_length(
        lambda x: tf.shape(x)[0], BOUNDARIES, [BATCH] * (len(BOUNDARIES) + 1)
    ).prefetch(tf.data.AUTOTUNE)
    return {
        "tf.data padded_batch": counted.runner("tf.data padded_batch", lambda: padded),
        "tf.data bucket_by_sequence_length": counted.runner(
            "tf.data bucket_by_sequence_length", lambda: bucketed
        ),
    }


class TorchSequences:
    """A map-style torch Dataset over the in-RAM sequences, one tensor per item."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens, self.offsets = tokens, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Any:
        import torch

        return torch.from_numpy(self.tokens[self.offsets[i] : self.offsets[i + 1]])


def pad_collate(batch: list[Any]) -> Any:
    from torch.nn.utils.rnn import pad_sequence

    return pad_sequence(batch, batch_first=True)


def torch_runners(counted: Counted, tokens: np.ndarray, offsets: np.ndarray) -> dict[str, Callable[[], int]]:
    from torch.utils.data import DataLoader

    runners = {}
    for workers in (0, 2):
        name = f"torch DataLoader + pad_sequence, {workers} workers"
        loader = DataLoader(
            TorchSequences(tokens, offsets),
            batch_size=BATCH,
            shuffle=True,
            collate_fn=pad_collate,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers else None,
        )
        runners[name] = counted.runner(name, lambda loader=loader: loader)
    return runners


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequences", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the chute copy is kept (default: a temp dir)")
    args = parser.parse_args()
    tokens, offsets = make_tokens(args.sequences)
    where = args.dir or os.path.join(tempfile.gettempdir(), f"chute-text-{args.sequences}")
    ds = store(tokens, offsets, where)
    counted = Counted()
    runners = chute_runners(counted, ds)
    if importlib.util.find_spec("tensorflow") is not None:
        runners.update(tf_runners(counted, tokens, offsets))
    if importlib.util.find_spec("torch") is not None:
        runners.update(torch_runners(counted, tokens, offsets))
    rates = interleaved_rates(runners, args.repeats)
    real = int(offsets[-1])
    peers = [rate for name, rate in rates.items() if not name.startswith("chute")]
    best_peer = max(peers) if peers else float("nan")
    print(
        f"\n{args.sequences:,} sequences of 10-512 int32 tokens, batch {BATCH}; medians of {args.repeats}\n"
    )
    print("| loader | samples/s | x fastest peer | padding |\n|---|---:|---:|---:|")
    results = {}
    for name, rate in rates.items():
        padding = 1 - real / counted.cells[name]
        results[name] = {"samples_per_s": rate, "padding": padding}
        print(f"| {name} | {rate:,.0f} | {rate / best_peer:.2f} | {padding:.1%} |")
    with open(os.path.join(os.path.dirname(__file__), "results-text.json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
