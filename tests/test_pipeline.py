"""Worker threads and prefetch: same batches whatever the workers, nothing consumed early."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute
from chute.sources.arrays import ArraySource


def epoch_labels(loader: chute.Loader) -> list[list[int]]:
    return [batch[0].tolist() for batch in loader]


@given(
    n=st.integers(1, 300),
    batch_size=st.integers(1, 40),
    workers=st.integers(1, 4),
    prefetch=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_same_batches_with_0_1_and_n_workers(
    n: int, batch_size: int, workers: int, prefetch: int, seed: int
) -> None:
    def run(w: int, p: int) -> list[list[list[int]]]:
        loader = chute.from_arrays(np.arange(n)).loader(
            batch_size, shuffle=True, seed=seed, workers=w, prefetch=p
        )
        return [epoch_labels(loader) for _ in range(2)]

    expected = run(0, 1)
    assert run(1, 1) == expected
    assert run(workers, prefetch) == expected


def test_batches_read_ahead_are_not_consumed() -> None:
    loader = chute.from_arrays(np.arange(100)).loader(10, shuffle=True, seed=1, workers=2, prefetch=6)
    expected = [loader[i][0].tolist() for i in range(len(loader))]
    got = []
    for batch in loader:
        got.append(batch[0].tolist())
        if len(got) == 3:
            break
    assert (loader.epoch, loader.step) == (0, 3)
    got += epoch_labels(loader)
    assert got == expected
    assert (loader.epoch, loader.step) == (1, 0)


def test_setting_the_epoch_stops_a_running_loop() -> None:
    loader = chute.from_arrays(np.arange(100)).loader(10, workers=2)
    seen = 0
    for _ in loader:
        seen += 1
        loader.epoch = 5
    assert seen == 1 and (loader.epoch, loader.step) == (5, 0)


def test_worker_pool_is_kept_across_epochs() -> None:
    loader = chute.from_arrays(np.arange(1000)).loader(10, shuffle=True, seed=0, workers=3)
    epoch_labels(loader)
    threads = {t.ident for t in threading.enumerate() if t.name.startswith("chute-read")}
    for _ in range(3):
        epoch_labels(loader)
    assert {t.ident for t in threading.enumerate() if t.name.startswith("chute-read")} == threads
    assert 1 <= len(threads) <= 3


class Failing(ArraySource):
    """An array source whose batch containing sample 42 cannot be read."""

    def read_rows(self, rows: object) -> list[np.ndarray]:
        if 42 in np.arange(100)[rows]:  # type: ignore[index]
            raise OSError("disk read failed at sample 42")
        return super().read_rows(rows)  # type: ignore[arg-type]


def test_worker_errors_reach_the_consumer_in_order() -> None:
    loader = chute.Dataset(Failing((np.arange(100),))).loader(10, workers=2, prefetch=4)
    got = []
    with pytest.raises(OSError, match="sample 42") as info:
        for batch in loader:
            got.append(batch[0][0])
    assert got == [0, 10, 20, 30]  # every batch before the failing one, in order
    assert "read_rows" in str(info.traceback[-1])
    assert (loader.epoch, loader.step) == (0, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"workers": -1}, "workers >= 0"),
        ({"workers": 1.5}, "an integer for workers"),
        ({"prefetch": 0}, "prefetch >= 1"),
    ],
)
def test_pipeline_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(chute.OptionError, match=message):
        chute.from_arrays(np.arange(10)).loader(2, **kwargs)  # type: ignore[arg-type]


def test_an_abandoned_loader_leaves_no_threads() -> None:
    import gc
    import time

    def chute_threads() -> int:
        return sum(t.name.startswith("chute-read") for t in threading.enumerate())

    loader = chute.from_arrays(np.arange(1000)).loader(10, workers=3, prefetch=4)
    iterator = iter(loader)
    next(iterator)
    assert chute_threads() > 0
    del iterator, loader
    gc.collect()  # this loader and any other test's that is gone: none keeps a thread
    deadline = time.monotonic() + 60  # (a guard against a hang: they end at once)
    while chute_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert chute_threads() == 0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat_over_many_epochs() -> None:
    x = np.random.default_rng(0).random((4096, 1024), dtype=np.float32)  # 1 MiB a batch of 256:
    loader = (  # one batch leaked an epoch is 30 MiB
        chute.from_arrays(x, np.arange(4096))
        .map_batch(lambda b: b)
        .loader(256, shuffle=True, seed=0, workers=2, prefetch=4)
    )
    for _ in range(3):  # warm up: pools, orders, allocator
        for _ in loader:
            pass
    start = rss_bytes()
    for _ in range(30):
        for _ in loader:
            pass
    growth = rss_bytes() - start
    assert growth < 16 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 30 epochs"
