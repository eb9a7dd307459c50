"""Datasets on object storage, against a real S3-protocol server (moto) on loopback through s3fs."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chute
from chute.remote.cache import ShardCache, _locked


def _data(n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 16, dtype=np.float32).reshape(n, 16)
    return x, np.arange(n, dtype=np.int64)


def _upload(
    tmp_path: Path, url: str, remote: chute.Remote, n: int = 1000, shard: str = "4KB"
) -> chute.Dataset:
    """The arrays converted locally, then again straight to ``url``; the remote one returned."""
    x, y = _data(n)
    local = chute.convert(chute.from_arrays(x, y), tmp_path / "local.chute", shard_size=shard)
    remote_ds = chute.convert(chute.from_arrays(x, y), url, shard_size=shard, remote=remote)
    assert remote_ds.source.fingerprint() == local.source.fingerprint()  # type: ignore[attr-defined]
    return remote_ds


def test_convert_to_s3_then_open_gives_the_same_dataset(tmp_path: Path, s3: tuple[str, chute.Remote]) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    ds = chute.open(url, remote=remote)
    x, y = _data()
    assert len(ds) == 1000 and len(ds.source.manifest.shards) > 10  # type: ignore[attr-defined]
    # random access, then sequential and shuffled epochs: every row exactly once, right values
    rows = np.array([999, 3, 500, 3, 0])
    np.testing.assert_array_equal(ds[rows][0], x[rows])
    for shuffle in (False, True, "block"):
        seen = [b for b in ds.loader(64, shuffle=shuffle, seed=1, workers=2)]
        np.testing.assert_array_equal(np.sort(np.concatenate([b[1] for b in seen])), y)
        for bx, by in seen:
            np.testing.assert_array_equal(bx, x[by])


def test_the_cli_finds_credentials_and_endpoint_in_the_environment(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    options = remote.storage_options
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": options["key"],
        "AWS_SECRET_ACCESS_KEY": options["secret"],
        "AWS_ENDPOINT_URL": options["client_kwargs"]["endpoint_url"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "CHUTE_CACHE": str(tmp_path / "cli-cache"),
    }
    run = [sys.executable, "-m", "chute.cli"]
    shown = subprocess.run([*run, "inspect", url], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "1,000 rows" in shown.stdout and options["secret"] not in shown.stdout + shown.stderr
    checked = subprocess.run([*run, "verify", url], env=env, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_stats_show_fetches_then_cache_hits(tmp_path: Path, s3: tuple[str, chute.Remote]) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    cold = chute.open(url, remote=remote).loader(100, workers=0)
    list(cold)
    counts = cold.stats()["remote"]
    shards = len(cold.dataset.source.manifest.shards)  # type: ignore[attr-defined]
    assert counts["cache_misses"] == shards
    assert counts["fetched_bytes"] == cold.dataset.source.manifest.bytes  # type: ignore[attr-defined]
    warm = chute.open(url, remote=remote).loader(100, workers=0)
    list(warm)
    assert warm.stats()["remote"] == {"cache_hits": shards}


def test_a_missing_dataset_or_manifest_is_refused(tmp_path: Path, s3: tuple[str, chute.Remote]) -> None:
    bucket, remote = s3
    with pytest.raises(chute.FormatError, match="no manifest"):
        chute.open(f"{bucket}/nothing.chute", remote=remote)
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    with pytest.raises(chute.ChuteError, match="exists"):
        chute.convert(chute.from_arrays(*_data()), url, remote=remote)


@pytest.mark.parametrize("name", ["../other.chute/shard-00000.arrow", "s3://elsewhere/shard-00000.arrow"])
def test_shard_names_escaping_the_dataset_url_are_refused(
    tmp_path: Path, s3: tuple[str, chute.Remote], name: str
) -> None:
    import json

    import fsspec

    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote, n=100)
    fs = fsspec.filesystem("s3", **remote.storage_options)
    manifest = json.loads(fs.cat(f"{url}/manifest.json"))
    manifest["shards"][0]["file"] = name
    fs.pipe(f"{url}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(chute.FormatError, match="Refusing a name that could point outside"):
        chute.open(url, remote=remote)


def test_credentials_never_appear_in_errors_or_reprs(s3: tuple[str, chute.Remote]) -> None:
    _, remote = s3
    secret = remote.storage_options["secret"]
    assert secret not in repr(remote)
    broken = dataclasses.replace(
        remote, retries=1, storage_options={**remote.storage_options, "key": "wrong"}
    )
    with pytest.raises(chute.ChuteError) as caught:
        chute.open("s3://no-such-bucket-anywhere/x.chute", remote=broken)
    assert secret not in str(caught.value)


def test_cache_evicts_least_recently_used_within_its_limit(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote, shard="16KB")
    shard_bytes = max(s.bytes for s in chute.open(url, remote=remote).source.manifest.shards)  # type: ignore[attr-defined]
    small = dataclasses.replace(remote, cache_size=3 * shard_bytes, prefetch=0)
    ds = chute.open(url, remote=small)
    x, _ = _data()
    for epoch in range(2):
        loader = ds.loader(50, workers=0)
        loader.epoch = epoch
        for bx, by in loader:
            np.testing.assert_array_equal(bx, x[by])
            assert ShardCache(small.cache_path, 0).size() <= 4 * shard_bytes
    assert loader.stats()["remote"]["cache_misses"] > 0  # the second epoch fetched again


def _reader_script(url: str, remote: chute.Remote) -> str:
    return textwrap.dedent(
        f"""
        import numpy as np, chute
        remote = chute.Remote(cache_dir={remote.cache_dir!r}, cache_size={remote.cache_size!r},
                              storage_options={remote.storage_options!r})
        ds = chute.open({url!r}, remote=remote)
        total = 0
        for x, y in ds.loader(100, shuffle=True, seed=0, workers=2):
            assert np.array_equal(x[:, 0], y * 16), "wrong rows"
            total += len(y)
        assert total == len(ds) == 1000
        print("ok")
        """
    )


def test_two_processes_share_one_cache(tmp_path: Path, s3: tuple[str, chute.Remote]) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    script = _reader_script(url, remote)
    runs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0] and all("ok" in o for o in outputs)
    cache = Path(remote.cache_path) / "shards"
    assert not [p for p in cache.iterdir() if not p.name.endswith(".arrow")]  # nothing half-written left
    shards = chute.open(url, remote=remote).source.manifest.shards  # type: ignore[attr-defined]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s.sha256}.arrow" for s in shards)


def test_process_workers_read_from_s3(tmp_path: Path, s3: tuple[str, chute.Remote]) -> None:
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    ds = chute.open(url, remote=remote)
    loader = ds.loader(100, shuffle=True, seed=3, workers=2, worker_type="process")
    batches = list(loader)
    inline = list(ds.loader(100, shuffle=True, seed=3, workers=0))
    for (a, b), (c, d) in zip(batches, inline, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert loader.stats()["remote"]["fetched_bytes"] > 0


def test_a_cache_lock_held_across_a_fork_is_free_once_its_holder_lets_go(tmp_path: Path) -> None:
    """A process forked while a fetch thread held a shard lock inherits the lock's descriptor: the
    lock must still be free once the holder lets go (closing its descriptor did not free it then,
    and a forked worker's fetch threads waited on it for ever: 1 run in ~20 of the test below)."""
    lock = str(tmp_path / "shard.lock")
    let_go, went = os.pipe()
    with _locked(lock):
        pid = os.fork()
        if pid == 0:  # the child: once the parent has let go, take the lock without waiting
            code = 1
            try:
                os.close(went)
                os.read(let_go, 1)
                fd = os.open(lock, os.O_RDWR)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                code = 0
            finally:
                os._exit(code)
    os.write(went, b"x")
    os.close(went)
    os.close(let_go)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked child found the lock still held"


@pytest.mark.timeout(90)
def test_forked_workers_fetch_for_themselves_after_the_parent_read(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    """A remote dataset read in the parent has a fetch pool whose threads a fork does not copy: the
    forked workers start their own (they waited for ever on the parent's)."""
    bucket, remote = s3
    url = f"{bucket}/xy.chute"
    _upload(tmp_path, url, remote)
    inline = list(chute.open(url, remote=remote).loader(100, shuffle=True, seed=3))
    ds = chute.open(url, remote=dataclasses.replace(remote, cache_dir=str(tmp_path / "empty cache")))
    ds[[0, 1]]  # read here first: this process's connection and fetch pool exist before the fork
    loader = ds.loader(100, shuffle=True, seed=3, workers=2, worker_type="process", start_method="fork")
    with loader:
        batches = list(loader)
    for (a, b), (c, d) in zip(batches, inline, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


_KILLED_CONVERSION = """
import sys, time, numpy as np, chute
from test_remote import _data, slow
remote = chute.Remote(cache_dir=sys.argv[2], storage_options=eval(sys.argv[3]))
chute.convert(chute.from_arrays(*_data(3000)), sys.argv[1], transform=slow, shard_size="4KB", remote=remote)
"""


def slow(sample: object) -> object:
    time.sleep(0.002)
    return sample


def test_a_conversion_killed_mid_upload_resumes_to_the_same_dataset(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    import s3fs

    bucket, remote = s3
    url = f"{bucket}/killed.chute"
    fs = s3fs.S3FileSystem(**remote.storage_options)
    script = [
        sys.executable,
        "-c",
        _KILLED_CONVERSION,
        url,
        str(tmp_path / "c"),
        repr(remote.storage_options),
    ]
    run = subprocess.Popen(script, cwd=Path(__file__).parent, env={**os.environ, "PYTHONPATH": "."})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(fs.glob(f"{url}/shard-*.arrow", refresh=True)) < 5:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(10)
    assert fs.exists(f"{url}/journal.json") and not fs.exists(f"{url}/manifest.json")
    with pytest.raises(chute.FormatError, match="incomplete"):
        chute.open(url, remote=remote)  # a half-finished upload is never taken as a dataset
    resumed = chute.convert(
        chute.from_arrays(*_data(3000)), url, transform=slow, shard_size="4KB", resume=True, remote=remote
    )
    whole = chute.convert(chute.from_arrays(*_data(3000)), tmp_path / "whole.chute", shard_size="4KB")
    assert resumed.source.fingerprint() == whole.source.fingerprint()  # type: ignore[attr-defined]
    assert not fs.exists(f"{url}/journal.json")


def test_a_flaky_server_loses_nothing(
    tmp_path: Path, s3_server: object, s3: tuple[str, chute.Remote]
) -> None:
    from s3 import FaultyProxy, storage_options

    bucket, remote = s3
    proxy = FaultyProxy(remote.storage_options["client_kwargs"]["endpoint_url"], fail_every=5, damage_every=3)
    try:
        flaky = dataclasses.replace(
            remote, retries=8, ranged=False, storage_options=storage_options(proxy.endpoint)
        )
        url = f"{bucket}/flaky.chute"
        _upload(tmp_path, url, flaky)
        fresh = dataclasses.replace(flaky, cache_dir=str(tmp_path / "fresh-cache"))
        x, _ = _data()
        seen = 0
        for bx, by in chute.open(url, remote=fresh).loader(100, shuffle=True, seed=0, workers=2):
            np.testing.assert_array_equal(bx, x[by])
            seen += len(by)
        assert seen == 1000
        assert proxy.failed > 0 and proxy.damaged > 0  # faults were injected, and none got through
    finally:
        proxy.stop()


def _wide(tmp_path: Path, url: str, remote: chute.Remote) -> tuple[chute.Dataset, np.ndarray]:
    """200 rows of 16 KB (3.2 MB) in shards of 32 rows, at ``url``: a batch of a few rows is sparse."""
    x = np.arange(200 * 4096, dtype=np.float32).reshape(200, 4096)
    return chute.convert(chute.from_arrays(x), url, shard_size="512KB", remote=remote), x


def _checked_epoch(batches: Any, x: np.ndarray) -> int:
    """Check every batch of a ``_wide`` dataset (row i starts with i * 4096); the rows seen."""
    seen = []
    for (batch,) in batches:
        rows = batch[:, 0].astype(int) // 4096
        np.testing.assert_array_equal(batch, x[rows])
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(len(x)))
    return len(seen)


def test_ranged_reads_retry_failed_requests_and_catch_damage_when_the_shard_completes(
    tmp_path: Path, s3_server: object, s3: tuple[str, chute.Remote]
) -> None:
    from s3 import FaultyProxy, storage_options

    bucket, remote = s3
    url = f"{bucket}/ranged-flaky.chute"
    ds, x = _wide(tmp_path, url, remote)
    for damage_every, cache in ((0, "retried"), (5, "damaged")):
        proxy = FaultyProxy(remote.storage_options["client_kwargs"]["endpoint_url"], 5, damage_every)
        try:
            flaky = dataclasses.replace(
                remote,
                retries=8,
                cache_dir=str(tmp_path / cache),
                cache_size="3MB",  # smaller than the dataset: rows come by ranges only
                storage_options=storage_options(proxy.endpoint),
            )
            loader = chute.open(url, remote=flaky).loader(4, shuffle=True, seed=0, workers=0)
            if not damage_every:  # failed requests are retried: every row right
                assert _checked_epoch(loader, x) == 200 and proxy.failed > 0
                counts = loader.stats()["remote"]  # shards completed by ranges (checked), or fetched whole
                assert counts["promoted"] >= 5
                assert counts["promoted"] + counts.get("cache_misses", 0) == len(ds.source.manifest.shards)  # type: ignore[attr-defined]
            else:  # a damaged range is caught by the shard's sha256 once all its rows have come
                with pytest.raises(chute.RemoteError, match=r"ranged-flaky\.chute/shard-\d+\.arrow.*sha256"):
                    list(loader)
                assert proxy.damaged > 0
        finally:
            proxy.stop()


def test_ranged_rows_are_checked_against_the_whole_shard_when_it_arrives(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    bucket, remote = s3
    url = f"{bucket}/wide.chute"
    ds, x = _wide(tmp_path, url, remote)
    shards = len(ds.source.manifest.shards)  # type: ignore[attr-defined]
    eager = dataclasses.replace(remote, ranged=True)  # ranges even though the dataset fits the cache
    loader = chute.open(url, remote=eager).loader(4, shuffle=True, seed=0, workers=2)
    _checked_epoch(loader, x)  # the first batches by ranges, the rest from whole shards fetched meanwhile
    counts = loader.stats()["remote"]
    assert counts["range_requests"] > 0 and counts["cache_misses"] == shards
    source = chute.open(url, remote=eager).source  # a cached shard and damaged ranged rows disagree
    partial = source._partials_for([0])[0]
    partial.write(np.array([[partial.first_spans(np.array([1]))[0, 0], 0]]), [b"\xff"])
    partial.mark(np.array([1]), 1)
    with pytest.raises(chute.RemoteError, match=r"wide\.chute/shard-00000\.arrow.*differ"):
        source.read_rows(np.array([0, 40]))


def _mixed(n: int, width: int) -> list[tuple[dict[str, Any], int]]:
    """Samples with text, bytes, ragged and fixed-size fields (``width`` floats)."""
    return [
        (
            {
                "text": f"é{i}" * (i % 7),
                "raw": bytes(range(i % 50)),
                "tokens": np.arange(i % 5 * 3, dtype=np.int16).reshape(-1, 3),
                "x": np.full(width, i, np.float32),
            },
            i,
        )
        for i in range(n)
    ]


def _same(got: list[Any], want: list[tuple[dict[str, Any], int]], rows: np.ndarray) -> None:
    sample, label = got
    assert label.tolist() == rows.tolist()
    for i, row in enumerate(rows.tolist()):
        expected = want[row][0]
        assert sample["text"][i] == expected["text"] and sample["raw"][i] == expected["raw"]
        np.testing.assert_array_equal(sample["tokens"][i], expected["tokens"])
        np.testing.assert_array_equal(sample["x"][i], expected["x"])


def test_random_rows_of_uncached_shards_fetch_only_their_bytes(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    bucket, remote = s3
    url = f"{bucket}/mixed.chute"
    samples = _mixed(400, 4096)  # 16 KB rows, 60 to a shard
    chute.convert(iter(samples), url, ragged=["0/tokens"], shard_size="1MB", remote=remote)
    manifest = chute.open(url, remote=remote).source.manifest  # type: ignore[attr-defined]
    assert len(manifest.shards) >= 4
    small = dataclasses.replace(remote, cache_size=manifest.bytes // 2)  # too small for the whole dataset
    loader = chute.open(url, remote=small).loader(8, shuffle=True, seed=3, workers=0, prefetch=1)
    first = next(iter(loader))
    _same(first, samples, first[1])
    counts = loader.stats()["remote"]
    assert counts["range_requests"] > 0 and "cache_misses" not in counts  # no shard was fetched whole
    assert 0 < counts["fetched_bytes"] < manifest.bytes / 4
    assert os.listdir(os.path.join(remote.cache_path, "partial")) == []  # sparse files are never left visible
    for workers, kind, size in ((2, "thread", small.cache_size), (2, "process", "1GB")):  # whole epochs
        fresh = dataclasses.replace(remote, cache_dir=str(tmp_path / f"{kind}-cache"), cache_size=size)
        for got in chute.open(url, remote=fresh).loader(
            16, shuffle=True, seed=4, workers=workers, worker_type=kind
        ):
            _same(got, samples, got[1])


def test_a_permanent_failure_names_the_object_and_the_cause(
    tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    import s3fs

    bucket, remote = s3
    url = f"{bucket}/gone.chute"
    _upload(tmp_path, url, remote)
    ds = chute.open(url, remote=remote)
    s3fs.S3FileSystem(**remote.storage_options).rm_file(f"{url}/shard-00003.arrow")
    with pytest.raises(chute.RemoteError, match=r"gone\.chute/shard-00003\.arrow.*FileNotFoundError"):
        ds[np.arange(len(ds))]
