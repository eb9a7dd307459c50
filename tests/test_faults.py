"""Faults under load: workers killed at random, a full disk during conversion, shards vanishing
mid-epoch, SIGTERM and SIGINT at random moments.  Each ends in a clear error or a clean stop,
leaves no process, shared memory or temporary file, and a resumed run loses and repeats nothing."""

from __future__ import annotations

import json
import os
import random
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
from test_processes import live


def leftovers(owner: int) -> list[str]:
    """Shared-memory segments and cache directories of process ``owner`` still on disk."""
    return [
        name
        for directory in ("/dev/shm", "/tmp")
        for name in os.listdir(directory)
        if name.startswith((f"chute-{owner}-", f"chute-cache-{owner}-"))
    ]


def slow(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    time.sleep(0.0005)
    return sample


@pytest.mark.filterwarnings("ignore:chute. workers=3 processes:UserWarning")  # (on fewer than 3 cores)
def test_workers_killed_at_random_lose_and_repeat_nothing() -> None:
    n, epochs = 2400, 3
    ds = chute.from_arrays({"x": np.arange(n * 4, dtype=np.float32).reshape(n, 4), "y": np.arange(n)})
    expected = [b["y"].tolist() for b in ds.loader(40, shuffle=True, seed=9, epochs=epochs)]
    loader = ds.map(slow).loader(40, shuffle=True, seed=9, epochs=epochs, workers=3, worker_type="process")
    rng = random.Random(0)
    # Four kills: each asked for at a batch picked at random (the next once the last one's error
    # has come) and made by another thread a random moment later, while the workers read ahead and
    # the caller reads or waits; the caller waits for it five batches on, so it lands in the run.
    plan = [10 + 30 * k + rng.randrange(20) for k in range(4)]
    kills, errors, got, pids = 0, 0, [], set()
    asked, made, stop = threading.Semaphore(0), threading.Event(), threading.Event()

    def killer() -> None:
        nonlocal kills
        while asked.acquire() and not stop.is_set():
            time.sleep(rng.uniform(0.0, 0.05))
            running = loader._pids()
            if running:  # (always: the caller got its last batch from these workers)
                pids.update(running)
                os.kill(rng.choice(running), signal.SIGKILL)
                kills += 1
            made.set()

    thread = threading.Thread(target=killer)
    thread.start()
    wanted, asked_at = 0, 0
    try:
        while len(got) < len(expected):
            try:
                for batch in loader:  # after a worker dies, the next iteration goes on where it stopped
                    got.append(batch["y"].tolist())
                    if wanted == errors and wanted < len(plan) and len(got) >= plan[wanted]:
                        wanted, asked_at = wanted + 1, len(got)
                        made.clear()
                        asked.release()
                    elif wanted > errors and len(got) == asked_at + 5:
                        made.wait(timeout=60)  # (a guard against a hang)
            except chute.WorkerError:
                errors += 1
    finally:
        stop.set()
        asked.release()
        thread.join()
        loader.close()
    assert got == expected  # every batch of three epochs, in order: none lost, none twice
    assert kills == errors == len(plan), (kills, errors)  # each kill made, and reported
    assert not live(sorted(pids)) and not [n for n in leftovers(os.getpid()) if "cache" not in n]  # (other
    # tests' caches may still be alive in this process)


DISK_FULL = """
import json, os, subprocess, sys
import numpy as np, chute
where = sys.argv[1]
dst = os.path.join(where, "out.chute")
data = {"x": np.random.default_rng(0).integers(0, 255, (4000, 256), dtype=np.uint8), "y": np.arange(4000)}
report = {}
try:
    chute.convert(chute.from_arrays(data), dst, shard_size="64KB", progress=False)
except chute.ConversionError as error:
    report["error"] = str(error)
staging = os.path.join(where, ".out.chute.partial")
report["left"] = sorted(os.listdir(where))
report["staged"] = sorted(os.listdir(staging)) if os.path.isdir(staging) else []
subprocess.run(["mount", "-o", "remount,size=8m", where], check=True)  # space freed
ds = chute.convert(chute.from_arrays(data), dst, shard_size="64KB", resume=True, progress=False)
report["equal"] = bool(np.array_equal(ds[:]["x"], data["x"]) and np.array_equal(ds[:]["y"], data["y"]))
report["shards"] = [s.sha256 for s in ds.source.manifest.shards]
report["after"] = sorted(os.listdir(where))
print(json.dumps(report))
"""


def test_a_full_disk_during_convert_is_a_clear_error_and_resume_completes(tmp_path: Path) -> None:
    """A real full file system: a 512 KB tmpfs (mounted in a private mount namespace) for 1.1 MB."""
    script, disk = tmp_path / "convert.py", tmp_path / "disk"
    script.write_text(DISK_FULL)
    disk.mkdir()
    mount = f'mount -t tmpfs -o size=512k tmpfs "{disk}" && exec "{sys.executable}" "{script}" "{disk}"'
    run = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert "No space left on device" in report["error"] and "resume=True" in report["error"]
    assert report["left"] == [".out.chute.partial"]  # nothing published, nothing else written
    finished = [name for name in report["staged"] if name != "journal.json"]
    assert finished and all(n.startswith("shard-") and n.endswith(".arrow") for n in finished)
    assert len(finished) + 1 == len(report["staged"])  # the half-written shard and temp files are gone
    assert report["equal"] and report["after"] == ["out.chute"]
    data = {"x": np.random.default_rng(0).integers(0, 255, (4000, 256), dtype=np.uint8), "y": np.arange(4000)}
    reference = chute.convert(
        chute.from_arrays(data), tmp_path / "ref.chute", shard_size="64KB", progress=False
    )
    assert report["shards"] == [s.sha256 for s in reference.source.manifest.shards]  # type: ignore[attr-defined]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shard_vanishing_mid_epoch_is_named_and_the_epoch_resumes_exactly(
    tmp_path: Path, workers: int
) -> None:
    n = 1000
    root = tmp_path / "d.chute"
    chute.convert(chute.from_arrays({"y": np.arange(n)}), root, shard_size="1KB", progress=False)
    loader = chute.open(root).loader(50, shuffle=False, workers=workers, worker_type="process")
    got = []
    batches = iter(loader)
    got += [next(batches)["y"].tolist() for _ in range(4)]  # shards 0..1 mapped by now
    hidden = root / "shard-00005.arrow"
    os.replace(hidden, tmp_path / "aside.arrow")  # a disk or network mount losing a file
    with pytest.raises(chute.FormatError, match=r"shard-00005\.arrow.*no such file"):
        for batch in batches:
            got.append(batch["y"].tolist())
    state = loader.state_dict()
    os.replace(tmp_path / "aside.arrow", hidden)  # the file is back: a new loader goes on
    again = chute.open(root).loader(50, shuffle=False, workers=workers, worker_type="process")
    again.load_state_dict(state)
    got += [batch["y"].tolist() for batch in again]
    assert sorted(i for batch in got for i in batch) == list(range(n))


SIGNALLED = """
import os, signal, sys, time, numpy as np, chute
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
def slow(s):
    time.sleep(0.002)
    return s
ds = chute.from_arrays({"x": np.zeros((100_000, 16), np.float32)}).cache().map(slow)
loader = ds.loader(32, workers=2, worker_type="process", repeat=True)
for i, batch in enumerate(loader):
    if i == 0:
        print(os.getpid(), *loader._pids(), flush=True)
"""


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_at_random_moments_stop_cleanly(tmp_path: Path, name: str, seed: int) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SIGNALLED))
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    time.sleep(random.Random(seed).uniform(0.0, 1.0))
    child.send_signal(getattr(signal, name))
    try:
        _, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError(f"no clean stop after {name}: {child.communicate()[1][-2000:]}") from None
    if name == "SIGTERM":
        assert child.returncode == 143, err[-2000:]  # SystemExit(128 + 15): clean-up ran
    else:
        assert child.returncode in (1, -signal.SIGINT) and "KeyboardInterrupt" in err, err[-2000:]
    deadline = time.monotonic() + 60  # (a guard against a hang: the workers end at once)
    while live(pids[1:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == 3 and not live(pids[1:])
    assert not leftovers(pids[0])  # no segment, no cache directory


def test_sigkill_of_the_trainer_leaves_no_shared_memory(tmp_path: Path) -> None:
    """Nothing can run in a SIGKILLed process: its workers notice and remove its segments."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SIGNALLED.replace(".cache()", "")))
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    time.sleep(0.3)
    child.kill()
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL  # killed while it ran, not ended by itself
    deadline = time.monotonic() + 60  # (a guard against a hang: the workers notice at once)
    while (live(pids[1:]) or leftovers(pids[0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live(pids[1:]) and not leftovers(pids[0])


def test_what_a_sigkilled_run_left_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """A SIGKILLed process with thread workers and a cache leaves its cache folder (nothing runs
    in it, no worker process outlives it); the next cache or process pool made removes it."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SIGNALLED.replace('worker_type="process"', 'worker_type="thread"')))
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    owner = int(child.stdout.readline().split()[0])
    child.kill()
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL  # killed while it ran, not ended by itself
    left = leftovers(owner)
    assert left and all(name.startswith(f"chute-cache-{owner}-") for name in left)
    chute.from_arrays(np.zeros((4, 2))).cache()  # made in RAM, like the one killed: sweeps first
    assert not leftovers(owner)
