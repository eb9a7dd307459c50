"""Several loaders over one dataset, in one process and in several; readers during a conversion to
the same path see nothing or a complete dataset, never a mix."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import numpy as np
import pytest

import chute

N = 3000


def data(version: int) -> dict[str, np.ndarray]:
    """Version 0 and 1 have the same shapes, dtypes and so the same shard sizes, other values."""
    x = np.arange(N * 8, dtype=np.float32).reshape(N, 8) + version * 10**6
    return {"x": x, "y": np.arange(N, dtype=np.int64) + version * N}


def digest(loader: chute.Loader, epochs: int = 2) -> str:
    h = hashlib.sha256()
    for _ in range(epochs):
        for batch in loader:
            h.update(batch["x"].tobytes())
            h.update(batch["y"].tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("c") / "d.chute"
    chute.convert(chute.from_arrays(data(0)), path, shard_size="20KB", progress=False)
    return path


LOADERS = [
    {"seed": 1},
    {"seed": 2, "workers": 2},
    {"seed": 1, "workers": 2, "worker_type": "process"},
    {"seed": 3, "shuffle": False},
]


def expected(stored: Path) -> list[str]:
    return [digest(chute.from_arrays(data(0)).loader(64, **{"shuffle": True, **o})) for o in LOADERS]


def test_loaders_in_threads_over_one_open_dataset(stored: Path) -> None:
    want = expected(stored)
    ds = chute.open(stored)  # one Dataset shared by every thread and loader
    got: dict[tuple[int, int], str] = {}

    def run(i: int, copy: int) -> None:
        got[i, copy] = digest(ds.loader(64, **{"shuffle": True, **LOADERS[i]}))

    threads = [threading.Thread(target=run, args=(i, c)) for i in range(len(LOADERS)) for c in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for i, digest_of_i in enumerate(want):  # each thread's own result: one wrong one cannot hide
        assert [got.get((i, 0)), got.get((i, 1))] == [digest_of_i, digest_of_i], LOADERS[i]


def _in_a_process(path: str, i: int) -> str:
    return digest(chute.open(path).loader(64, **{"shuffle": True, **LOADERS[i]}))


def test_loaders_in_processes_over_one_dataset(stored: Path) -> None:
    want = expected(stored)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=spawn) as pool:  # (workers that may have workers)
        got = list(pool.map(_in_a_process, [str(stored)] * len(LOADERS), range(len(LOADERS))))
    assert got == want


def _convert_back_and_forth(path: str, rounds: int, read: Synchronized[int]) -> None:
    """Convert ``rounds`` times; after each, wait for the reader to read a whole dataset once (so
    it reads, during the conversions and between them, however slow either side is)."""
    for r in range(rounds):
        chute.convert(chute.from_arrays(data(r % 2)), path, shard_size="20KB", overwrite=True, progress=False)
        before, deadline = read.value, time.monotonic() + 60  # (a guard against a reader that hangs)
        while read.value == before and time.monotonic() < deadline:
            time.sleep(0.001)


def whole(ds: chute.Dataset) -> int:
    """Which version ``ds`` holds, read shard by shard in order (mapped lazily, while conversions
    replace the directory); AssertionError if it is a mix."""
    y = np.concatenate([ds[i : i + 100]["y"] for i in range(0, N, 100)])
    version = int(y[0] // N)
    np.testing.assert_array_equal(y, np.arange(N) + version * N)
    np.testing.assert_array_equal(ds[N - 1]["x"], data(version)["x"][N - 1])
    return version


def test_a_reader_sees_nothing_or_a_whole_dataset_while_it_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "busy.chute"
    chute.convert(chute.from_arrays(data(1)), path, shard_size="20KB", progress=False)
    spawn = multiprocessing.get_context("spawn")
    read = spawn.Value("i", 0)  # whole datasets read so far
    writer = spawn.Process(target=_convert_back_and_forth, args=(str(path), 30, read))
    writer.start()
    outcomes = {"version 0": 0, "version 1": 0, "nothing": 0, "replaced while open": 0}
    held: object = chute.open(path)  # opened once, read throughout: its own version or a clear error
    try:
        while writer.is_alive():
            for fresh in (True, False):
                try:
                    ds = chute.open(path) if fresh or held is None else held
                    held = ds if held is None else held
                    outcomes[f"version {whole(ds)}"] += 1  # type: ignore[arg-type]
                    with read.get_lock():
                        read.value += 1
                except chute.FormatError as error:
                    text = str(error)
                    assert "replaced" in text or "directory" in text or "no manifest" in text, text
                    outcomes["replaced while open" if "replaced" in text else "nothing"] += 1
                    held = None if not fresh else held  # the held one is done: hold the next
            time.sleep(0.001)
    finally:
        writer.join(timeout=120)
    assert writer.exitcode == 0
    assert outcomes["version 0"] + outcomes["version 1"] >= 30, outcomes  # one after each conversion at least
    assert whole(chute.open(path)) == 1  # the 30th round wrote version 1
