"""chute.convert: every kind of source, transforms in workers, errors, resume, atomic publish."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chute
from chute.format import partial_dir


def sample(i: int) -> dict[str, object]:
    return {"x": np.full(3, i, np.float32), "y": i}


def double(s: dict[str, object]) -> dict[str, object]:
    """A module-level transform, so worker processes can import it."""
    return {"x": np.asarray(s["x"]) * 2, "y": s["y"]}


def fail_on_7(s: dict[str, object]) -> dict[str, object]:
    if s["y"] == 7:
        raise ValueError("cannot decode this one")
    return s


class Sequence:
    """Anything with __len__ and __getitem__ returning samples (a torch Dataset, a Keras Sequence)."""

    def __len__(self) -> int:
        return 25

    def __getitem__(self, i: int) -> dict[str, object]:
        return sample(i)


def ys(ds: chute.Dataset) -> list[int]:
    return ds[:]["y"].tolist()  # type: ignore[no-any-return]


def shard_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("shard-*.arrow"))}


def test_from_a_generator(tmp_path: Path) -> None:
    ds = chute.convert((sample(i) for i in range(30)), tmp_path / "g.chute")
    assert ys(ds) == list(range(30))
    assert ds.spec.fields[0] == chute.Field("x", np.dtype(np.float32), (3,))
    assert ds.source.manifest.made_by["source"] == "generator"  # type: ignore[attr-defined]


def test_from_a_sequence(tmp_path: Path) -> None:
    assert ys(chute.convert(Sequence(), tmp_path / "s.chute")) == list(range(25))


def table() -> pa.Table:
    return pa.table(
        {"a": np.arange(20, dtype=np.int64), "b": np.linspace(0, 1, 20), "name": [f"n{i}" for i in range(20)]}
    )


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_from_tables_columns_become_fields(tmp_path: Path, suffix: str) -> None:
    path = str(tmp_path / f"t.{suffix}")
    (pq.write_table if suffix == "parquet" else pcsv.write_csv)(table(), path)
    ds = chute.convert(path, tmp_path / "t.chute")
    assert ds.spec.names == ("a", "b", "name")
    assert ds[[3, 4]]["name"].tolist() == ["n3", "n4"]
    np.testing.assert_allclose(ds[:]["b"], np.linspace(0, 1, 20))


def test_transform_in_workers_matches_inline(tmp_path: Path) -> None:
    inline = chute.convert(Sequence(), tmp_path / "a.chute", transform=double)
    parallel = chute.convert(Sequence(), tmp_path / "b.chute", transform=double, workers=2)
    assert shard_bytes(tmp_path / "a.chute") == shard_bytes(tmp_path / "b.chute")
    np.testing.assert_array_equal(parallel[:]["x"], inline[:]["x"])
    assert parallel[5]["x"].tolist() == [10.0, 10.0, 10.0]


def test_a_failing_transform_names_the_sample(tmp_path: Path) -> None:
    with pytest.raises(chute.ConversionError, match="Sample 7 failed: ValueError: cannot decode this one"):
        chute.convert(Sequence(), tmp_path / "f.chute", transform=fail_on_7, workers=2)
    assert not (tmp_path / "f.chute").exists()


def test_a_spec_mismatch_mid_stream(tmp_path: Path) -> None:
    def stream() -> Iterator[dict[str, object]]:
        yield from (sample(i) for i in range(10))
        yield {"x": np.zeros(4, np.float32), "y": 10}

    with pytest.raises(
        chute.ConversionError, match=r"field 'x' of sample 10 as float32\[3\].*ndarray float32\[4\]"
    ):
        chute.convert(stream(), tmp_path / "m.chute")
    assert not (tmp_path / "m.chute").exists()


def test_skipped_samples_are_counted_and_listed(tmp_path: Path) -> None:
    def stream() -> Iterator[dict[str, object]]:
        for i in range(12):
            yield {"x": np.zeros(5 if i in (3, 8) else 3, np.float32), "y": i}

    ds = chute.convert(stream(), tmp_path / "k.chute", on_error="skip")
    assert ys(ds) == [i for i in range(12) if i not in (3, 8)]
    made_by = ds.source.manifest.made_by  # type: ignore[attr-defined]
    assert made_by["skipped"] == 2 and made_by["skipped_samples"] == [3, 8]
    skipped = chute.convert(Sequence(), tmp_path / "k2.chute", transform=fail_on_7, on_error="skip")
    assert 7 not in ys(skipped) and len(skipped) == 24


class Interrupt(Exception):
    pass


def interrupted(n: int, stop_at: int) -> Iterator[dict[str, object]]:
    for i in range(n):
        if i == stop_at:
            raise Interrupt  # a crash of the converting process, at sample `stop_at`
        yield {"x": np.full(i % 7 + 1, i, np.int64), "y": i}


@settings(max_examples=15)
@given(stop_at=st.integers(0, 199))
def test_resume_after_a_crash_gives_identical_shards(
    tmp_path_factory: pytest.TempPathFactory, stop_at: int
) -> None:
    root = tmp_path_factory.mktemp("resume")
    whole = chute.convert(interrupted(200, -1), root / "whole.chute", ragged=["x"], shard_size=600)
    with pytest.raises(Interrupt):
        chute.convert(interrupted(200, stop_at), root / "r.chute", ragged=["x"], shard_size=600)
    assert not (root / "r.chute").exists()  # nothing half-written is visible
    with pytest.raises(chute.FormatError):
        chute.open(root / "r.chute")
    resumed = chute.convert(interrupted(200, -1), root / "r.chute", ragged=["x"], shard_size=600, resume=True)
    assert shard_bytes(root / "r.chute") == shard_bytes(root / "whole.chute")
    assert len(resumed) == len(whole) == 200
    assert not Path(partial_dir(str(root / "r.chute"))).exists()


KILLABLE = """
import sys, time, numpy as np, chute
def slow():
    for i in range(400):
        if i > 150:
            time.sleep(0.01)
        yield {"x": np.full(64, i, np.int64), "y": i}
chute.convert(slow(), sys.argv[1], shard_size=2000, resume=len(sys.argv) > 2)
"""


def test_resume_after_sigkill(tmp_path: Path) -> None:
    dst = str(tmp_path / "killed.chute")
    journal = Path(partial_dir(dst)) / "journal.json"
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, dst])
    deadline = time.monotonic() + 60
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert journal.exists() and not os.path.exists(dst)
    subprocess.run([sys.executable, "-c", KILLABLE, dst, "resume"], check=True, timeout=120)
    subprocess.run([sys.executable, "-c", KILLABLE, str(tmp_path / "whole.chute")], check=True, timeout=120)
    assert shard_bytes(Path(dst)) == shard_bytes(tmp_path / "whole.chute")
    assert ys(chute.open(dst)) == list(range(400))


def test_existing_destination_needs_overwrite(tmp_path: Path) -> None:
    chute.convert(Sequence(), tmp_path / "o.chute")
    with pytest.raises(chute.ChuteError, match="overwrite=True"):
        chute.convert(Sequence(), tmp_path / "o.chute")
    ds = chute.convert((sample(i) for i in range(3)), tmp_path / "o.chute", overwrite=True)
    assert len(ds) == 3


@pytest.mark.parametrize(
    "size, expected", [("256MB", 256_000_000), ("64KiB", 65536), (1000, 1000), ("1.5GB", 1_500_000_000)]
)
def test_shard_sizes(size: object, expected: int) -> None:
    from chute.conversion.converter import parse_size

    assert parse_size(size) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("size", ["0MB", "lots", -5, "12XB"])
def test_bad_shard_sizes(tmp_path: Path, size: object) -> None:
    with pytest.raises(chute.OptionError, match="a size such as 256MB"):
        chute.convert(Sequence(), tmp_path / "b.chute", shard_size=size)  # type: ignore[arg-type]


def test_unsupported_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(chute.SpecError, match=r"numbers, bytes or text for field 'y'.*Convert the value"):
        chute.convert(iter([{"x": 1, "y": object()}]), tmp_path / "u.chute")


def test_progress_bar_reports_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chute.convert(Sequence(), tmp_path / "p.chute", progress=True)
    assert "converting: 25/25 samples (100%)" in capsys.readouterr().err


def test_a_parquet_file_is_streamed_and_resumable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "big.parquet")
    n = 50_000
    pq.write_table(pa.table({"i": np.arange(n), "v": np.arange(n) * 0.5}), path, row_group_size=7_000)
    whole = chute.convert(path, tmp_path / "whole.chute", shard_size="100KB")
    assert len(whole) == n and whole[[0, n - 1]]["v"].tolist() == [0.0, (n - 1) * 0.5]
    assert whole.source.manifest.made_by["source"] == path  # type: ignore[attr-defined]

    from chute.format.writer import DatasetWriter

    real_flush, calls = DatasetWriter._flush, []

    def crash_on_third(self: DatasetWriter) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Interrupt
        real_flush(self)

    monkeypatch.setattr(DatasetWriter, "_flush", crash_on_third)
    with pytest.raises(Interrupt):
        chute.convert(path, tmp_path / "r.chute", shard_size="100KB")
    monkeypatch.setattr(DatasetWriter, "_flush", real_flush)
    chute.convert(path, tmp_path / "r.chute", shard_size="100KB", resume=True)
    assert shard_bytes(tmp_path / "r.chute") == shard_bytes(tmp_path / "whole.chute")


def test_missing_values_in_a_table_are_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "nulls.parquet")
    pq.write_table(pa.table({"a": [1, None, 3]}), path)
    with pytest.raises(chute.SpecError, match=r"column 'a' without missing values.*1 nulls"):
        chute.convert(path, tmp_path / "n.chute")


def test_converting_a_mapped_or_viewed_dataset_writes_what_it_reads(tmp_path: Path) -> None:
    ds = chute.from_arrays(np.arange(10.0)).map(lambda s: (s[0] * 10,)).skip(6)
    stored = chute.convert(ds, str(tmp_path / "mapped"))
    assert stored[:][0].tolist() == [60.0, 70.0, 80.0, 90.0]


def test_resuming_a_finished_conversion_returns_the_dataset_if_it_is_the_same(tmp_path: Path) -> None:
    ds = chute.from_arrays(np.arange(30, dtype=np.float32))
    dst = tmp_path / "done.chute"
    chute.convert(ds, dst, progress=False)
    written = {p.name: p.stat().st_mtime_ns for p in dst.iterdir()}
    again = chute.convert(ds, dst, resume=True, progress=False)  # the job started once more
    assert len(again) == 30 and {p.name: p.stat().st_mtime_ns for p in dst.iterdir()} == written
    with pytest.raises(chute.DatasetExistsError, match=r"30 samples made from 'Dataset'.*overwrite=True"):
        chute.convert(chute.from_arrays(np.arange(40, dtype=np.float32)), dst, resume=True, progress=False)
    with pytest.raises(FileExistsError):  # (a chute error, and the exception Python users expect)
        chute.convert(ds, dst, progress=False)


def test_a_conversion_failing_before_its_first_shard_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(chute.ChuteError):
        chute.convert(str(tmp_path / "nowhere.parquet"), tmp_path / "out.chute", progress=False)

    def broken(sample: object) -> object:
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        chute.convert(chute.from_arrays(np.arange(10)).map(broken), tmp_path / "out.chute", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no hidden .out.chute.partial


@pytest.mark.parametrize("dtype", [object, "<U2", "S2"])
def test_text_held_in_numpy_arrays_converts_and_opens(tmp_path: Path, dtype: object) -> None:
    values = np.array(["a", "bc"] * 5, dtype=dtype)
    stored = chute.convert(
        chute.from_arrays({"s": values, "n": np.arange(10)}), tmp_path / "t.chute", progress=False
    )
    kind = "bytes" if dtype == "S2" else "str"
    assert stored.spec.field("s").kind == kind
    assert [stored[i]["s"] for i in range(3)] == list(values[:3])
    assert chute.open(tmp_path / "t.chute")[1]["s"] == values[1]
