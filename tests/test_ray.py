"""Conversion on a real local Ray cluster (ray.init(num_cpus=2)), compared with local conversion."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import chute
from chute.conversion.ray import convert_source_ray
from chute.images.codecs import encode_jpeg


@pytest.fixture(scope="module")
def ray() -> Iterator[Any]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 JPEGs of 24-40 px in 5 class folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(2000):
        side = int(rng.integers(24, 41))
        folder = root / f"class{i % 5}"
        folder.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        (folder / f"{i:05d}.jpg").write_bytes(encode_jpeg(pixels, quality=80))
    return root


def _contents(ds: chute.Dataset) -> list[np.ndarray]:
    return list(ds.spec.flatten(ds[np.arange(len(ds))]))


def _same(a: chute.Dataset, b: chute.Dataset) -> None:
    assert len(a) == len(b) and a.spec.fields == b.spec.fields
    for x, y in zip(_contents(a), _contents(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_an_image_folder_converted_by_ray_tasks_equals_the_local_conversion(
    ray: Any, photos: Path, tmp_path: Path
) -> None:
    folder = chute.image_folder(photos, size=(32, 32))
    local = chute.convert(folder, tmp_path / "local.chute", shard_size="256KB")
    distributed = convert_source_ray(folder, str(tmp_path / "ray.chute"), tasks=6, shard_size="256KB")
    _same(distributed, local)
    assert distributed.spec.structure == local.spec.structure
    assert len(distributed.source.manifest.shards) >= 6  # type: ignore[attr-defined]  # written by 6 tasks
    assert chute.verify(tmp_path / "ray.chute").rows == 2000


def test_a_ray_dataset_converted_to_s3_equals_converting_its_rows(
    ray: Any, tmp_path: Path, s3: tuple[str, chute.Remote]
) -> None:
    bucket, remote = s3
    items = [
        {"image": np.full((8, 8, 3), i % 251, np.uint8), "label": i % 10, "name": f"n{i}"}
        for i in range(3000)
    ]
    rows = ray.data.from_items(items, override_num_blocks=5)
    on_s3 = chute.convert(rows, f"{bucket}/rows.chute", shard_size="16KB", remote=remote)
    local = chute.convert(rows.iter_rows(), tmp_path / "rows.chute", shard_size="16KB")
    _same(on_s3, local)
    assert chute.open(f"{bucket}/rows.chute", remote=remote)[2999]["name"] == "n2999"


def test_blocks_that_disagree_on_the_spec_are_refused(ray: Any, tmp_path: Path) -> None:
    items = [{"x": np.zeros(3 if i < 10 else 4, np.float32)} for i in range(20)]
    with pytest.raises(chute.ConversionError, match="one spec in every block"):
        chute.convert(ray.data.from_items(items, override_num_blocks=2), tmp_path / "bad.chute")
    assert not (tmp_path / "bad.chute").exists()


def test_the_cli_converts_a_folder_with_ray(photos: Path, tmp_path: Path) -> None:
    dst = tmp_path / "cli.chute"
    command = [sys.executable, "-m", "chute.cli", "convert", str(photos), str(dst), "--engine", "ray"]
    done = subprocess.run(
        [*command, "--resize", "16x16", "--workers", "2", "--shard-size", "64KB"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 2,000 samples" in done.stdout
    _same(chute.open(dst), chute.convert(chute.image_folder(photos, size=(16, 16)), tmp_path / "l.chute"))
