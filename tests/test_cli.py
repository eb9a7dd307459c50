"""`chute convert | inspect | verify`, run as a user would, through subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def chute_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chute.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_convert_inspect_verify_a_parquet_table(tmp_path: Path) -> None:
    src, dst = str(tmp_path / "t.parquet"), str(tmp_path / "t.chute")
    pq.write_table(pa.table({"id": np.arange(1000), "score": np.linspace(0, 1, 1000)}), src)
    done = chute_cli("convert", src, dst, "--shard-size", "4KB")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 1,000 samples to {dst}"
    assert "converting: 1,000/1,000 samples (100%)" in done.stderr

    shown = chute_cli("inspect", dst)
    assert shown.returncode == 0, shown.stderr
    assert "1,000 rows in 4 shard(s)" in shown.stdout
    assert "  id: array int64[]" in shown.stdout and "sample 2: id=np.int64(2)" in shown.stdout

    verified = chute_cli("verify", dst)
    assert verified.returncode == 0 and "OK, 4 shard(s), 1,000 rows" in verified.stdout
    assert "verifying:" in verified.stderr


def test_verify_names_the_bad_shard(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(4000, dtype=np.float32).reshape(1000, 4))
    dst = tmp_path / "x.chute"
    assert chute_cli("convert", str(tmp_path / "x.npy"), str(dst), "--shard-size", "8KB").returncode == 0
    bad = dst / "shard-00001.arrow"
    data = bytearray(bad.read_bytes())
    data[-100] ^= 1
    bad.write_bytes(bytes(data))
    result = chute_cli("verify", str(dst))
    assert result.returncode == 1
    assert str(bad) in result.stderr and "corrupted" in result.stderr and "Traceback" not in result.stderr


def test_convert_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    args = ["convert", str(tmp_path / "x.npy"), str(tmp_path / "x.chute")]
    assert chute_cli(*args).returncode == 0
    again = chute_cli(*args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert chute_cli(*args, "--overwrite").returncode == 0
