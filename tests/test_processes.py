"""Process workers: same batches as inline, kept across epochs, faults reported, nothing leaked."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import chute
from chute._internal.stale import owner_tag, sweep

pytestmark = pytest.mark.timeout(120)


def noisy(sample: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y = sample
    return x * 2 + rng.random(x.shape, dtype=np.float32), y


def fails_at_42(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if int(sample[1]) == 42:
        raise ValueError("sample 42 is bad")
    return sample


def dies_at_42(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if int(sample[1]) == 42 and not os.environ.get("CHUTE_TEST_SURVIVE"):
        os.kill(os.getpid(), signal.SIGKILL)
    return sample


def crashes(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    os._exit(3)  # as a C extension that aborts the interpreter


def segfaults(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV
    return sample


def never_in_the_caller(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if os.environ.get("CHUTE_TEST_CALLER") == str(os.getpid()):
        raise AssertionError("the map ran in the training process")
    return sample[0] * 2, sample[1]


def dataset(n: int = 200) -> chute.Dataset:
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    return chute.from_arrays(x, np.arange(n))


def epochs(loader: chute.Loader, count: int = 2) -> list[list[np.ndarray]]:
    return [[np.concatenate([batch[0].ravel(), batch[1]]) for batch in loader] for _ in range(count)]


def same(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "zombie" not in f.read():
                    alive.append(pid)
        except OSError:
            pass
    return alive


def segments(pid: int | None = None) -> list[str]:
    prefix = f"chute-{pid or os.getpid()}-"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_process_workers_give_the_inline_batches(start_method: str) -> None:
    ds = dataset().map(noisy)
    expected = epochs(ds.loader(16, shuffle=True, seed=3))
    loader = ds.loader(
        16, shuffle=True, seed=3, workers=2, prefetch=3, worker_type="process", start_method=start_method
    )
    assert same(epochs(loader), expected)
    threads = epochs(ds.loader(16, shuffle=True, seed=3, workers=2, prefetch=3))
    assert same(threads, expected)
    loader.close()


def test_workers_are_kept_across_epochs_and_stopped_by_close() -> None:
    before = set(segments())
    loader = dataset().map(noisy).loader(16, shuffle=True, seed=0, workers=2, worker_type="process")
    epochs(loader, 1)
    pids = loader._pids()
    assert len(live(pids)) == 2 and set(segments()) - before
    epochs(loader, 3)
    assert loader._pids() == pids
    loader.close()
    assert not live(pids) and set(segments()) <= before
    assert len(epochs(loader, 1)[0]) == 13  # usable again: new workers
    loader.close()


def test_memory_maps_and_chute_datasets_are_reopened_under_spawn(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(4000, dtype=np.float32).reshape(1000, 4))
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    chute.convert(
        chute.from_arrays(np.asarray(mapped), np.arange(1000)), tmp_path / "x.chute", progress=False
    )
    for ds in (chute.from_arrays(mapped, np.arange(1000)), chute.open(tmp_path / "x.chute")):
        expected = epochs(ds.loader(64, shuffle=True, seed=1), 1)
        with ds.loader(
            64, shuffle=True, seed=1, workers=2, worker_type="process", start_method="spawn"
        ) as loader:
            assert same(epochs(loader, 1), expected)


def test_an_error_in_a_worker_reaches_the_caller_with_its_traceback() -> None:
    before = set(segments())
    # timeout=: an error that did not reach the caller would end as a StallError, not this one
    loader = dataset().map(fails_at_42).loader(10, workers=2, worker_type="process", timeout=60)
    got = []
    with pytest.raises(ValueError, match="sample 42 is bad") as info:
        for batch in loader:
            got.append(int(batch[1][0]))
    assert got == [0, 10, 20, 30]
    notes = "\n".join(info.value.__notes__)
    assert "in the map function fails_at_42, for sample 42" in notes
    assert "raised in worker process" in notes and "batch 4 of epoch 0" in notes
    assert "fails_at_42" in str(info.value.__cause__)  # the worker's own traceback
    assert not loader._pids() and set(segments()) <= before  # the loader shut its workers down


def test_a_killed_worker_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(segments())  # other tests' loaders may not be collected yet
    # timeout=: a death noticed only by waiting would end as a StallError, which names no signal
    loader = dataset().map(dies_at_42).loader(10, workers=2, worker_type="process", timeout=60)
    seen: list[int] = []
    with pytest.raises(chute.WorkerError, match=r"worker process \d \(pid \d+\).*SIGKILL.*42") as info:
        for batch in loader:
            seen.extend(batch[1].tolist())
    assert not isinstance(info.value, chute.StallError)
    assert set(segments()) <= before
    assert len(seen) <= 40  # batch 4 held sample 42 (the error may come while waiting for batch 3)
    monkeypatch.setenv("CHUTE_TEST_SURVIVE", "1")  # the next iteration starts fresh workers
    seen.extend(label for batch in loader for label in batch[1].tolist())
    assert sorted(seen) == list(range(200))  # the rest of the epoch: every sample exactly once


def test_break_and_garbage_collection_leave_nothing_behind() -> None:
    fds = len(os.listdir("/proc/self/fd"))
    before = set(segments())
    loader = dataset(2000).map(noisy).loader(50, workers=2, prefetch=4, worker_type="process")
    for i, batch in enumerate(loader):
        if i == 3:
            held = batch
            break
    pids = loader._pids()
    assert not pids and set(segments()) <= before  # break stopped the workers
    iterator = iter(loader)
    next(iterator)
    pids = loader._pids()
    assert live(pids)
    assert held[1].tolist() == list(range(150, 200))  # a batch still held stays readable...
    del iterator, loader, batch, held  # ...and keeps its segment mapped (one descriptor) until dropped
    gc.collect()
    assert not live(pids) and set(segments()) <= before
    assert len(os.listdir("/proc/self/fd")) <= fds


SCRIPT = """
import os, signal, sys, numpy as np, chute
# As at a terminal: a CI runner started in the background may hand SIGINT down ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
def slow(s):
    import time; time.sleep(0.01); return s
if __name__ == "__main__":
    ds = chute.from_arrays(np.zeros((10_000, 8), np.float32)).map(slow)
    loader = ds.loader(8, workers=2, worker_type="process")
    it = iter(loader)
    next(it)
    print(os.getpid(), *loader._pids(), flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)   # interpreter exit with a loader mid-epoch
    for _ in it:      # Ctrl-C arrives here
        pass
"""


@pytest.mark.parametrize("how", ["exit", "ctrl-c"])
def test_exit_and_ctrl_c_stop_workers_and_free_shared_memory(tmp_path: Path, how: str) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    child = subprocess.Popen(
        [sys.executable, str(script), how], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    if how == "ctrl-c":
        # Press Ctrl-C until the child stops: a KeyboardInterrupt that lands inside a finalizer
        # (``__del__``, a weakref callback) is printed and swallowed by Python itself.
        time.sleep(0.2)
        for _ in range(6):
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=3)  # the clean-up a first Ctrl-C starts is not interrupted
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        _, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        _, err = child.communicate()
        raise AssertionError(f"the child did not stop; its stderr:\n{err}") from None
    assert child.returncode in ((0,) if how == "exit" else (1, -signal.SIGINT)), err
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in err
    deadline = time.monotonic() + 60  # (a hang guard: the workers stop with the loader)
    while live(pids[1:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == 3 and not live(pids[1:])
    assert not segments(pids[0])


def test_small_shared_memory_falls_back_to_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHUTE_SHM_DIR", str(tmp_path / "no-such-dir"))
    ds = dataset().map(noisy)
    expected = epochs(ds.loader(16, seed=2, shuffle=True), 1)
    loader = ds.loader(16, seed=2, shuffle=True, workers=2, worker_type="process")
    with pytest.warns(ResourceWarning, match="file-backed shared memory"):
        got = epochs(loader, 1)
    assert same(got, expected)
    loader.close()


def test_spawn_refuses_a_lambda_with_a_fix() -> None:
    loader = dataset().map(lambda s: s).loader(10, workers=1, worker_type="process", start_method="spawn")
    with pytest.raises(chute.OptionError, match="module level"):
        next(iter(loader))


def test_batches_bigger_than_expected_grow_the_shared_memory() -> None:
    def grow(batch: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.repeat(batch[0], 64, axis=1), batch[1]  # 64x the bytes announced by the spec ...

    ds = dataset().map_batch(grow)
    ds.spec  # noqa: B018  (... found before the workers start, then the batches outgrow it)
    expected = epochs(ds.loader(32), 1)
    with ds.loader(32, workers=2, worker_type="process") as loader:
        assert same(epochs(loader, 1), expected)


def test_memory_stays_flat_with_process_workers() -> None:
    x = np.zeros((4096, 1024), np.float32)  # 1 MiB a batch of 256: one leaked an epoch is 30 MiB
    loader = (
        chute.from_arrays(x, np.arange(4096))
        .map_batch(lambda b: b)
        .loader(256, shuffle=True, seed=0, workers=2, prefetch=4, worker_type="process")
    )
    for _ in range(3):
        epochs(loader, 1)
    pids = loader._pids()
    start, workers = _rss(), _workers_rss(pids)
    for _ in range(30):
        for batch in loader:
            batch[0][:, 0].sum()  # read, as training would (a page of each row): mapped here too
    assert loader._pids() == pids  # the same workers throughout
    grown, workers_grown = _rss() - start, _workers_rss(pids) - workers
    assert grown < 16 << 20, f"the loader's process grew {grown / 2**20:.1f} MiB"
    assert workers_grown < 16 << 20, f"the worker processes grew {workers_grown / 2**20:.1f} MiB"
    loader.close()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _workers_rss(pids: list[int]) -> int:
    """The resident bytes of processes ``pids`` together (VmRSS)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) << 10
    return total


def test_batches_held_by_the_caller_are_never_overwritten() -> None:
    """Batches lie in shared memory uncopied: a segment is reused only once its batch is dropped."""
    ds = dataset().map(noisy)
    inline = ds.loader(16, shuffle=True, seed=1)
    expected = [[leaf.copy() for leaf in batch] for _ in range(3) for batch in inline]
    before = set(segments())
    with ds.loader(16, shuffle=True, seed=1, workers=2, prefetch=2, worker_type="process") as loader:
        held = [batch for _ in range(3) for batch in loader]  # 39 batches kept
        made = len(set(segments()) - before)
        assert made >= len(held)
        held[0][0][:] = -1  # the caller's own memory: writable, and nobody else's
        pairs = zip(held[1:], expected[1:], strict=True)
        assert all(np.array_equal(a, b) for h, e in pairs for a, b in zip(h, e, strict=True))
        del held
        gc.collect()
        for _ in loader:  # dropped as it goes: the freed segments are reused, none added
            pass
        assert len(set(segments()) - before) == made


Batch = tuple[np.ndarray, np.ndarray]


def flip_and_scale(batch: Batch, rng: np.random.Generator) -> Batch:
    images, labels = batch
    flipped = chute.transforms.flip_left_right(chute.transforms.random_flip(images, rng))
    return chute.transforms.to_float(flipped), labels


def test_segments_grow_once_to_build_a_batch_map_and_its_intermediates_in_place() -> None:
    """A batch map's intermediate arrays (flipped copies) are built in the segment too: the first
    batches outgrow it; segments then grow to hold everything and are reused, not remade per batch."""
    pictures = np.random.default_rng(0).integers(0, 256, (128, 32, 32, 3), dtype=np.uint8)
    ds = chute.from_arrays(pictures, np.arange(128)).map_batch(flip_and_scale)
    expected = epochs(ds.loader(16, shuffle=True, seed=2), count=4)
    before = set(segments())
    with ds.loader(16, shuffle=True, seed=2, workers=2, prefetch=2, worker_type="process") as loader:
        got = epochs(loader, count=2)
        grown = set(segments()) - before
        got += epochs(loader, count=2)
        assert set(segments()) - before == grown  # no segment made (nor replaced) after the first epochs
    assert same(got, expected)


def test_a_worker_builds_batch_columns_in_the_segment_and_packs_them_in_place() -> None:
    import mmap

    from chute.pipeline.arena import arena, batch_array
    from chute.pipeline.shm import Segments, arena_size, pack, unpack
    from chute.spec import infer_spec

    field = infer_spec(np.zeros(3, np.float32)).fields[0]
    buffer = mmap.mmap(-1, 4096)
    with arena(buffer) as built:
        column = field.stack([np.full(3, i, np.float64) for i in range(4)])  # cast to the field's float32
    assert column.dtype == np.float32 and built.offset_of(column) == 0
    extra = np.arange(5)
    shared = Segments()
    shared._maps["segment"] = buffer
    layout = pack([column, extra, b"raw"], "segment", shared, built)
    assert [record[3] for record in layout] == [0, 64, 0]  # the column where it was built, the rest after
    released: list[bool] = []
    leaves = unpack(layout, "segment", shared, lambda: released.append(True))
    assert leaves[0].tolist() == column.tolist() and leaves[1].tolist() == list(range(5))
    assert leaves[2] == b"raw"
    with arena(bytearray(100)) as small:  # what did not fit is remembered, to size the next segment
        kept = small.take((10,), np.dtype(np.uint8))
        outside = batch_array((30,), np.dtype(np.float32))  # 120 bytes: no room
        made = np.zeros(7)  # made without asking the arena (a map's own array)
    assert kept is not None and small.offset_of(outside) is None and small.wanted == 64 + 120
    assert arena_size([kept, outside, made], small) == 64 + 128 + 56
    view = leaves[0][1:]
    del leaves
    gc.collect()
    assert not released  # a view still sees the segment
    del view
    gc.collect()
    assert released == [True]


def test_a_sweep_removes_only_what_dead_processes_of_this_boot_and_namespace_left(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    space = owner_tag().split("-")[1]
    dead = [f"chute-{gone.pid}-{space}-0a1b2c3d-s0", f"chute-cache-{gone.pid}-{space}-x1y2"]
    kept = [
        f"chute-{os.getpid()}-{space}-0a1b2c3d-s0",  # a live process's
        f"chute-{gone.pid}-00000000-0a1b2c3d-s0",  # another boot's or container's
        f"chute-{gone.pid}-0a1b2c3d-s0",  # named before owners had a space
        "chute-images-abc",
    ]
    for name in dead + kept:
        (tmp_path / name).mkdir() if "cache" in name else (tmp_path / name).write_bytes(b"x")
    (tmp_path / dead[1] / "0.npy").write_bytes(b"x")
    removed = sweep([str(tmp_path), str(tmp_path / "missing")])
    assert sorted(removed) == sorted(str(tmp_path / name) for name in dead)
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


@pytest.mark.parametrize("crash", [crashes, segfaults], ids=["os._exit", "SIGSEGV"])
def test_a_map_that_crashes_the_interpreter_is_a_worker_error_not_the_callers_death(crash: object) -> None:
    """A map's output spec is learned from sample 0: with process workers, in a process too."""
    before = set(segments())
    loader = dataset().map(crash).loader(10, workers=2, worker_type="process")  # type: ignore[arg-type]
    how = "exit code 3" if crash is crashes else "killed by signal SIGSEGV"
    with pytest.raises(chute.WorkerError, match=rf"stopped \({how}\) while mapping sample 0"):
        next(iter(loader))
    assert not loader._pids() and set(segments()) <= before


def test_process_workers_learn_a_maps_spec_outside_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUTE_TEST_CALLER", str(os.getpid()))
    ds = dataset(40).map(never_in_the_caller)
    loader = ds.loader(10, workers=2, worker_type="process")
    got = [batch[0] for batch in loader]
    assert ds.spec.fields[0].shape == (4,)  # learned, and kept by the caller's dataset
    np.testing.assert_array_equal(np.concatenate(got), np.arange(160, dtype=np.float32).reshape(40, 4) * 2)
    starts_at_42 = chute.from_arrays(np.zeros((10, 4), np.float32), np.arange(42, 52)).map(fails_at_42)
    with pytest.raises(ValueError, match="sample 42 is bad") as info:  # an error is raised as it was
        next(iter(starts_at_42.loader(10, workers=2, worker_type="process")))
    assert "in the map function fails_at_42, for sample 0" in "\n".join(info.value.__notes__)
    assert "fails_at_42" in str(info.value.__cause__)  # the process's own traceback


UNGUARDED = """
import sys
import {framework}  # loaded: chute starts process workers with forkserver, which imports the script
import numpy as np
import chute

print("the script ran", flush=True)


def double(sample):
    return sample[0] * 2, sample[1]


ds = chute.from_arrays(np.arange(32, dtype=np.float32).reshape(16, 2), np.arange(16))
if sys.argv[1] == "map defined here":
    ds = ds.map(double)
if sys.argv[2] == "convert":
    ds = chute.convert(ds, "out.chute", workers=2)
loader = ds.loader(4, workers=2, worker_type="process")
print("labels", sum(int(batch[1].sum()) for batch in loader), flush=True)
"""


@pytest.mark.frameworks
@pytest.mark.parametrize("job", ["loader", "convert"])
@pytest.mark.parametrize("what", ["no map", "map defined here"])
def test_a_script_without_the_main_guard_runs_once(tmp_path: Path, what: str, job: str) -> None:
    """A plain script (no ``if __name__ == "__main__":``) with JAX or TensorFlow loaded: its
    workers start without running it again, or, where they need it (a map defined in it), the
    first batch is an error naming the line and the guard, before the script runs a second time."""
    framework = next(name for name in ("jax", "tensorflow") if _importable(name))
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED.format(framework=framework))
    done = subprocess.run(
        [sys.executable, str(script), what, job], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.stdout.count("the script ran") == 1, done.stdout + done.stderr[-3000:]
    if what == "no map":
        assert done.returncode == 0 and "labels 120" in done.stdout, done.stderr[-3000:]
    else:
        assert done.returncode == 1
        starts = "    ds = chute.convert(" if job == "convert" else 'print("labels"'
        line = 1 + next(i for i, text in enumerate(UNGUARDED.splitlines()) if text.startswith(starts))
        assert "chute.errors.OptionError" in done.stderr and f"line {line} of" in done.stderr
        assert 'if __name__ == "__main__":' in done.stderr and "RuntimeError" not in done.stderr


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


AT_EXIT = """
import os, sys, numpy as np, chute
if __name__ == "__main__":
    if sys.argv[1] == "cache":  # clean-up registered before multiprocessing is imported
        ds = chute.from_arrays(np.zeros((4000, 64), np.float32)).cache()
    else:
        ds = chute.open(sys.argv[2])
    loader = ds.loader(8, workers=2, worker_type="process")
    it = iter(loader)
    next(it)
    print(os.getpid(), flush=True)  # and exit, the loader mid-epoch
"""


@pytest.mark.parametrize("after", ["cache", "open"])
def test_interpreter_exit_with_a_live_loader_leaves_no_shared_memory(tmp_path: Path, after: str) -> None:
    script = tmp_path / "run.py"
    script.write_text(AT_EXIT)
    stored = tmp_path / "data.chute"
    if after == "open":
        chute.convert(chute.from_arrays(np.zeros((4000, 64), np.float32)), str(stored))
    left, errors = [], []
    for _ in range(20):  # (the race it guards against lost about half of the runs)
        done = subprocess.run(
            [sys.executable, str(script), after, str(stored)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        pid = int(done.stdout.split()[0])
        left += [name for name in os.listdir("/dev/shm") if name.startswith(f"chute-{pid}-")]
        errors += [line for line in done.stderr.splitlines() if "Error" in line]
    assert not left and not errors


HUNG = """
import os, sys, time, numpy as np, chute

def hang(sample):
    if np.asarray(sample).ravel()[0] >= 8:  # (sample 0, read to learn the map's output, returns)
        open(os.path.join(sys.argv[2], f"worker-{os.getpid()}"), "w").close()
        time.sleep(3600)
    return sample

if __name__ == "__main__":
    ds = chute.from_arrays(np.arange(64, dtype=np.float32).reshape(16, 4)).map(hang)
    if sys.argv[1] == "convert":
        chute.convert(ds, os.path.join(sys.argv[2], "out.chute"), workers=2)
    else:
        for batch in ds.loader(2, workers=2, worker_type="process"):
            pass
"""


@pytest.mark.parametrize("job", ["convert", "loader"])
def test_workers_stuck_in_a_hung_map_end_with_a_sigkilled_parent(tmp_path: Path, job: str) -> None:
    script = tmp_path / "run.py"
    script.write_text(HUNG)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        parent = subprocess.Popen([sys.executable, str(script), job, str(tmp_path)], stderr=stderr)
    workers: list[int] = []
    for _ in range(600):  # until a worker is in the hung map (a minute at most)
        workers = [int(p.name[7:]) for p in tmp_path.glob("worker-*")]
        if workers or parent.poll() is not None:
            break
        time.sleep(0.1)
    assert workers, log.read_text()[-3000:]
    parent.kill()
    parent.wait()
    for _ in range(300):  # each worker ends (at once: allow 30 s for a loaded machine)
        if not live(workers):
            break
        time.sleep(0.1)
    orphans = live(workers)
    for pid in orphans:  # (not left behind by a failing run)
        os.kill(pid, signal.SIGKILL)
    assert not orphans
    assert not segments(parent.pid)


RELEASE = threading.Event()  # lets a thread stuck in `stuck` go at the end of a test


def stuck(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if int(sample[1]) >= 4:
        RELEASE.wait(3600)  # a map stuck in a lock: in a worker process, until it is stopped
    return sample


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_a_stuck_map_is_reported_after_the_timeout_with_the_worker_its_samples_and_its_stack(
    worker_type: str,
) -> None:
    before = set(segments())
    RELEASE.clear()
    loader = dataset(12).map(stuck).loader(4, workers=2, worker_type=worker_type, timeout=3)
    try:
        batches = iter(loader)
        first = next(batches)
        with pytest.raises(chute.StallError) as info:
            next(batches)
    finally:
        RELEASE.set()
    assert first[1].tolist() == [0, 1, 2, 3]
    report = str(info.value)
    assert "batch 1 of epoch 0 within timeout=3 s" in report and "samples [4, 5, 6, 7]" in report
    assert (
        f"worker {worker_type}" in report
    )  # which one: "worker thread chute-read_0", "worker process 1 (pid ...)"
    assert (
        "in stuck" in report or "stuck\n" in report
    )  # the stack, down to the map (faulthandler's, or Python's)
    assert isinstance(info.value, TimeoutError)
    if worker_type == "process":
        assert not loader._pids() and set(segments()) <= before  # stopped: nothing left


def test_a_timeout_must_be_positive_seconds() -> None:
    for wrong in (0, -1, "60", True):
        with pytest.raises(chute.OptionError, match="timeout"):
            dataset(8).loader(4, timeout=wrong)
