"""``chute bench``: the loader measured on the user's own data, settings against each other and peers.

For each (workers, prefetch) setting it times a loader for a share of the time budget: samples/s,
MB/s of batches, time to the first batch, peak memory (this process and its workers) and the
stage breakdown; beside them the raw read rate of the same storage (the files' or shards' bytes
read one after the other on one thread, nothing decoded: a reference, not a bound, as a loader's
workers read in parallel and from the page cache) and, when installed, the pipelines users
would otherwise write (torch DataLoader, tf.data with AUTOTUNE, Keras PyDataset, 2 workers each).
It recommends the fastest setting and, with ``plot=``, draws throughput and stages (matplotlib).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, cast

import numpy as np

from chute.dataset import Dataset

__all__ = ["BenchOptions", "Measurement", "bench", "format_table", "quiet_tensorflow", "shuffle_table"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class BenchOptions:
    """What ``chute bench`` tries: settings, batch size, peers and its time budget in seconds."""

    batch_size: int = 128
    workers: tuple[int, ...] = (0, 1, 2)
    prefetch: tuple[int, ...] = (2, 8)
    compare: tuple[str, ...] = ()  # any of "torch", "tf", "keras"
    seconds: float = 30.0
    shuffle: bool = True


@dataclass
class Measurement:
    """One pipeline's figures."""

    name: str
    samples_per_s: float
    mb_per_s: float
    first_batch_s: float
    peak_rss_mb: float
    stages_ms: dict[str, float] = field(default_factory=dict)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def _nbytes(batch: Any) -> int:
    if isinstance(batch, dict):
        return sum(_nbytes(v) for v in batch.values())
    if isinstance(batch, (tuple, list)):
        return sum(_nbytes(v) for v in batch)
    return int(getattr(batch, "nbytes", 0))


def _size(batch: Any) -> int:
    while isinstance(batch, (tuple, list, dict)):
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return len(batch)


def _time(name: str, epochs: Callable[[], Iterable[Any]], budget: float) -> Measurement:
    """Iterate fresh epochs for about ``budget`` seconds (at least one batch)."""
    start, samples, nbytes, peak, first = time.perf_counter(), 0, 0, _rss_mb(), -1.0
    deadline = start + budget
    while True:
        for batch in epochs():
            if first < 0:
                first = time.perf_counter() - start
            samples, nbytes = samples + _size(batch), nbytes + _nbytes(batch)
            peak = max(peak, _rss_mb())
            if time.perf_counter() > deadline:
                break
        if time.perf_counter() > deadline or samples == 0:
            break
    seconds = max(time.perf_counter() - start, 1e-9)  # the first batch included, as users wait for it
    return Measurement(name, samples / seconds, nbytes / seconds / 1e6, first, peak)


def _chute(ds: Dataset, options: BenchOptions, workers: int, prefetch: int, budget: float) -> Measurement:
    loader = ds.loader(
        options.batch_size, shuffle=options.shuffle, seed=0, workers=workers, prefetch=prefetch
    )
    try:
        result = _time(f"chute workers={workers} prefetch={prefetch}", lambda: loader, budget)
        stats = loader.stats()
        result.stages_ms = dict(stats["stages_ms_per_batch"])  # type: ignore[call-overload]
        result.peak_rss_mb += float(stats["workers_peak_rss_mb"])  # type: ignore[arg-type]
    finally:
        loader.close()
    return result


def raw_read_rate(ds: Dataset, budget: float) -> Optional[float]:
    """Samples/s of reading the raw bytes behind ``ds`` (files, shards or an array file), or None."""
    files, per_sample = _raw_files(ds)
    if not files:
        return None
    start, read, buffer = time.perf_counter(), 0, bytearray(1 << 22)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                read += n
                if time.perf_counter() - start > budget:
                    break
        if time.perf_counter() - start > budget:
            break
    seconds = max(time.perf_counter() - start, 1e-9)
    return read / seconds / per_sample


def _raw_files(ds: Dataset) -> tuple[list[str], float]:
    source = ds.source
    paths = getattr(source, "paths", None)
    if paths is not None:  # a file list: one file per sample
        chosen = list(paths)
        return chosen, max(1.0, sum(os.path.getsize(p) for p in chosen[:200]) / min(200, len(chosen)))
    manifest = getattr(source, "manifest", None)
    root = getattr(source, "root", "")
    if manifest is not None and os.path.isdir(root):  # a local chute dataset
        return [os.path.join(root, s.file) for s in manifest.shards], manifest.bytes / max(1, manifest.rows)
    for array in getattr(source, "arrays", []):  # a memory-mapped array file (np.load(mmap_mode="r"))
        base = array
        while base is not None and not isinstance(base, np.memmap):
            base = base.base
        if base is not None and getattr(base, "filename", None):
            return [str(base.filename)], array.nbytes / max(1, len(array))
    return [], 1.0


def _peer(name: str, ds: Dataset, options: BenchOptions, budget: float) -> Optional[Measurement]:
    try:
        make = {"torch": _torch_epochs, "tf": _tf_epochs, "keras": _keras_epochs}[name]
        epochs = make(ds, options.batch_size)
    except ImportError:
        return None
    return _time(_PEER_NAMES[name], epochs, budget)


_PEER_NAMES = {
    "torch": "torch DataLoader, 2 workers",
    "tf": "tf.data map(AUTOTUNE), prefetch",
    "keras": "Keras PyDataset, 2 workers",
}


class _Samples:
    """What a torch user writes around a dataset: a map-style dataset of single samples."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        return self.ds[i]


def _quiet_torch_worker(worker: int) -> None:
    """Samples of a memory-mapped file are read-only arrays: torch warns of each, once per worker."""
    import warnings

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def _torch_epochs(ds: Dataset, batch: int) -> Callable[[], Iterable[Any]]:
    from multiprocessing import get_context

    from torch.utils.data import DataLoader

    from chute.pipeline.processes import default_start_method

    loader: Any = DataLoader(
        cast(Any, _Samples(ds)),
        batch_size=batch,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=get_context(default_start_method()),  # no fork once JAX or TF is loaded
        worker_init_fn=_quiet_torch_worker,
    )
    return lambda: loader


def _tf_epochs(ds: Dataset, batch: int) -> Callable[[], Iterable[Any]]:
    with _quiet_loading():
        import tensorflow as tf

    spec = ds.spec
    types = [tf.string if f.kind in ("bytes", "str") else tf.as_dtype(f.dtype) for f in spec.fields]

    def gather(rows: np.ndarray) -> list[Any]:
        return list(spec.flatten(ds[np.sort(rows)]))

    pipeline = (
        tf.data.Dataset.range(len(ds))
        .shuffle(len(ds))
        .batch(batch)
        .map(lambda rows: tf.numpy_function(gather, [rows], types), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return pipeline.as_numpy_iterator


def _keras_epochs(ds: Dataset, batch: int) -> Callable[[], Iterable[Any]]:
    with _quiet_loading():  # (Keras's backend may be TensorFlow)
        import keras
        from keras.src.trainers.data_adapters import get_data_adapter

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return -(-len(ds) // batch)

        def __getitem__(self, b: int) -> Any:
            return tuple(ds.spec.flatten(ds[np.arange(b * batch, min(len(ds), (b + 1) * batch))]))

    adapter = get_data_adapter(x=Batches(workers=2), shuffle=False)

    def epoch() -> Iterator[Any]:
        adapter.on_epoch_begin()
        yield from adapter.get_numpy_iterator()
        adapter.on_epoch_end()

    return epoch


def quiet_tensorflow() -> None:
    """Keep TensorFlow's log lines (CPU features, CUDA, oneDNN) out of the report: its level is
    read when TensorFlow is first imported, so this comes before.  A level the user set stays."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # errors only
    try:
        absl = importlib.import_module("absl.logging")  # TensorFlow's Python logging
    except ImportError:
        return
    absl.set_verbosity(absl.ERROR)


# What native libraries log to stderr while they load, before their log level applies (absl's
# C++ logging writes everything until initialised): information and warnings, left out.
_LOADING_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} ")


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Around a framework's first import: its native information and warning lines are dropped;
    anything else it writes to stderr (an error) is written after."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _LOADING_NOISE.match(line)))


def bench(ds: Dataset, options: BenchOptions, say: Callable[[str], Any] = print) -> dict[str, Any]:
    """Measure every setting and peer within ``options.seconds``; the table rows and a recommendation."""
    if {"tf", "keras"} & set(options.compare):  # Keras may run on TensorFlow
        quiet_tensorflow()
    settings = [
        (w, p) for w in options.workers for p in options.prefetch if w > 0 or p == options.prefetch[0]
    ]
    deadline = time.perf_counter() + options.seconds * 0.9  # the rest: starting and stopping workers
    left = len(settings) + len(options.compare) + 1

    def share() -> float:  # what is left of the budget, split evenly over what is left to measure
        nonlocal left
        left -= 1
        return max(0.05, (deadline - time.perf_counter()) / (left + 1))

    ceiling = raw_read_rate(ds, share())
    rows = []
    for workers, prefetch in settings:
        say(f"measuring chute with workers={workers}, prefetch={prefetch} ...")
        rows.append(_chute(ds, options, workers, prefetch, share()))
    for name in options.compare:
        say(f"measuring {_PEER_NAMES.get(name, name)} ...")
        measured = _peer(name, ds, options, share())
        if measured is not None:
            rows.append(measured)
        else:
            say(f"  {name} is not installed: left out")
    best = max((r for r in rows if r.name.startswith("chute")), key=lambda r: r.samples_per_s)
    return {"rows": rows, "ceiling": ceiling, "recommended": best.name.removeprefix("chute ")}


def format_table(result: dict[str, Any]) -> str:
    ceiling = result["ceiling"]
    lines = [
        "| pipeline | samples/s | MB/s | first batch (s) | peak RSS (MB) | x raw read, 1 thread |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ratio = f"{r.samples_per_s / ceiling:.2f}" if ceiling else "-"
        lines.append(
            f"| {r.name} | {r.samples_per_s:,.0f} | {r.mb_per_s:,.1f} | {r.first_batch_s:.3f} | "
            f"{r.peak_rss_mb:,.0f} | {ratio} |"
        )
    if ceiling:
        lines.append(f"| raw read of the same files, 1 thread (a reference) | {ceiling:,.0f} | | | | 1.00 |")
    lines.append(f"recommended: {result['recommended']}")
    return "\n".join(lines)


def shuffle_table(ds: Dataset, batch_size: int) -> str:
    """Shuffle quality of each mode on this dataset's size (1.0 = a uniform permutation)."""
    from chute.options import BlockShuffle

    modes: list[tuple[str, Any]] = [("exact (shuffle=True)", True), ("block (default)", "block")]
    for block in (64, 4096):
        modes.append((f"block, block_size={block}", BlockShuffle(block_size=block)))
    lines = ["| shuffle | batch_spread | displacement |", "|---|---:|---:|"]
    for name, shuffle in modes:
        quality = ds.loader(batch_size, shuffle=shuffle, seed=0).shuffle_quality()
        lines.append(f"| {name} | {quality['batch_spread']:.3f} | {quality['displacement']:.3f} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    """Throughput per pipeline and the stage breakdown of chute's settings, as a PNG."""
    from chute._internal.require import require

    require("matplotlib", "for --plot", "pip install 'chute[plot]'")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh([r.name for r in rows], [r.samples_per_s for r in rows], color="tab:blue")
    if result["ceiling"]:
        left.axvline(result["ceiling"], color="tab:red", linestyle="--", label="raw read, 1 thread")
        left.legend()
    left.set_xlabel("samples/s")
    chute_rows = [r for r in rows if r.stages_ms]
    bottom = np.zeros(len(chute_rows))
    for stage in ("fetch", "read", "decode", "map", "collate"):
        values = np.array([r.stages_ms.get(stage, 0.0) for r in chute_rows])
        right.bar([r.name.removeprefix("chute ") for r in chute_rows], values, bottom=bottom, label=stage)
        bottom += values
    right.set_ylabel("ms per batch per worker")
    right.tick_params(axis="x", labelrotation=30)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
