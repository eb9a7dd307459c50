"""ds.cache(): the first epoch unchanged, later epochs served from the cache, shared by workers."""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import numpy as np

import chute
from engine import as_lists, check_engine

CALLS: list[int] = []
LOCK = threading.Lock()


def expensive(sample: tuple[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    with LOCK:
        CALLS.append(int(sample[0]))
    return sample[0], np.float32(rng.random())


def data(n: int = 60) -> chute.Dataset:
    return chute.from_arrays(np.arange(n, dtype=np.int64)).map(expensive)


def epoch(loader: chute.Loader) -> list[object]:
    return [as_lists(batch) for batch in loader]


def test_the_first_epoch_is_unchanged_and_later_ones_skip_the_map() -> None:
    CALLS.clear()
    cached = data().cache()
    plain = data().loader(8, shuffle=True, seed=1)
    loader = cached.loader(8, shuffle=True, seed=1, workers=2)
    first = epoch(loader)
    assert first == epoch(plain)  # the same batches, the same random values
    CALLS.clear()
    second = epoch(loader)
    assert CALLS == [] and cached.filled() == 1.0
    values = {s: v for b in first for s, v in zip(*b, strict=True)}
    assert all(values[s] == v for b in second for s, v in zip(*b, strict=True))  # epoch 0's values kept


def test_the_cache_is_shared_by_process_workers_and_threads() -> None:
    cached = data(50).cache()
    with cached.loader(10, shuffle=True, seed=0, workers=2, worker_type="process") as loader:
        first = epoch(loader)
    assert cached.filled() == 1.0  # filled by the worker processes, seen here
    CALLS.clear()
    again = cached.loader(10, shuffle=True, seed=0)
    assert epoch(again) == first and CALLS == []


def test_samples_larger_than_the_budget_spill_to_disk_and_are_removed_after(tmp_path: Path) -> None:
    cached = data(40).cache(path=str(tmp_path), ram_budget=64)
    assert cached.location.startswith(str(tmp_path))  # type: ignore[attr-defined]
    epoch(cached.loader(16))
    assert sorted(os.listdir(cached.location)) == ["0.npy", "1.npy", "filled.npy"]  # type: ignore[attr-defined]
    in_ram = data(40).cache()
    assert not in_ram.location.startswith(str(tmp_path))  # type: ignore[attr-defined]
    del cached, in_ram
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_variable_length_samples_are_cached_in_process_memory() -> None:
    def words(sample: tuple[np.ndarray]) -> dict[str, object]:
        with LOCK:
            CALLS.append(int(sample[0]))
        return {"text": "x" * int(sample[0]), "tokens": np.arange(int(sample[0]) % 5 + 1)}

    cached = chute.from_arrays(np.arange(30)).map(words, ragged=["tokens"]).cache()
    assert cached.location == "process memory"  # type: ignore[attr-defined]
    loader = cached.loader(7, shuffle=True, seed=0, pad=True)
    first = epoch(loader)
    CALLS.clear()
    assert epoch(loader) != first and CALLS == []  # another order, no map call
    check_engine(cached, 7, shuffle=True, pad=True)


def test_a_cache_keeps_the_engine_promises() -> None:
    check_engine(data(45).cache(), 6, shuffle=True)


def test_a_worker_forked_while_a_thread_fills_the_cache_can_fill_it_too() -> None:
    """A fork copies a lock held by another thread as held; the child gets a fresh one instead."""
    cached = chute.from_arrays(np.arange(40, dtype=np.int64)).cache()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with cached.node._lock:  # type: ignore[attr-defined]  # as a thread filling the cache holds it
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        with cached.loader(8, workers=2, worker_type="process", start_method="fork") as loader:
            assert [b[0].tolist() for b in loader][1] == list(range(8, 16))  # the workers fill it
    finally:
        release.set()
        holder.join()
