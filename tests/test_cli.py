"""`chute convert | inspect | verify`, run as a user would, through subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


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


def _photos(root: Path, n: int = 300) -> Path:
    from chute.images.codecs import encode_jpeg

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.jpg").write_bytes(encode_jpeg(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)))
    return root


def test_convert_and_inspect_an_image_folder_keep_images_encoded_and_class_names(tmp_path: Path) -> None:
    import chute

    photos, dst = _photos(tmp_path / "photos", n=9), tmp_path / "p.chute"
    done = chute_cli("convert", str(photos), str(dst))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote 9 samples of 3 classes to {dst}"
    shown = chute_cli("inspect", str(dst))
    assert shown.returncode == 0, shown.stderr
    assert "  image: bytes [] (encoded images, decoded when read)" in shown.stdout
    assert "class names (3): 'c0', 'c1', 'c2'" in shown.stdout
    assert "sample 0: image=array[40, 40, 3] uint8" in shown.stdout
    ds = chute.open(dst)
    assert ds.class_names == ["c0", "c1", "c2"] and ds.spec.names == ("image", "label")
    assert ds[0:9][0].shape == (9, 40, 40, 3)  # decoded, as chute.image_folder(photos) gives them
    assert chute.open(dst, decode=False)[0][0] == (photos / "c0" / "0000.jpg").read_bytes()


def test_bench_measures_settings_within_its_budget_and_plots(tmp_path: Path) -> None:
    import time

    photos = _photos(tmp_path / "photos")
    started = time.monotonic()
    done = chute_cli(
        "bench",
        str(photos),
        "--resize",
        "32x32",
        "--seconds",
        "6",
        "--workers",
        "0,2",
        "--prefetch",
        "2,4",
        "--batch-size",
        "32",
        "--plot",
        str(tmp_path / "bench.png"),
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 6 + 8  # the budget, plus starting Python and the workers
    table = done.stdout
    for setting in ("workers=0 prefetch=2", "workers=2 prefetch=2", "workers=2 prefetch=4"):
        assert f"| chute {setting} |" in table
    assert "raw read of the same storage (ceiling)" in table and "recommended: workers=" in table
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_shuffle_quality_per_mode(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((5000, 4), np.float32))
    done = chute_cli("bench", str(tmp_path / "x.npy"), "--shuffle-quality")
    assert done.returncode == 0, done.stderr
    assert "| exact (shuffle=True) | 1.0" in done.stdout and "| block (default) |" in done.stdout


def test_bench_refuses_unknown_peers(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((100, 4), np.float32))
    done = chute_cli("bench", str(tmp_path / "x.npy"), "--compare", "mxnet")
    assert done.returncode == 2 and "mxnet" in done.stderr


@pytest.mark.frameworks
def test_bench_compares_with_torch_tf_and_keras() -> None:
    import chute
    from chute.cli.bench import BenchOptions, bench

    ds = chute.from_arrays(np.zeros((2000, 8), np.float32), np.arange(2000))
    result = bench(ds, BenchOptions(64, (0,), (2,), ("torch", "tf", "keras"), seconds=6), say=lambda _: None)
    names = [row.name for row in result["rows"]]
    assert names[1:] == [
        "torch DataLoader, 2 workers",
        "tf.data map(AUTOTUNE), prefetch",
        "Keras PyDataset, 2 workers",
    ]
    assert all(row.samples_per_s > 0 for row in result["rows"])
