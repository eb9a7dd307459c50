"""A human-readable summary of a chute dataset: spec, class names, rows, shards, sizes, a few samples."""

from __future__ import annotations

import os

import numpy as np

from chute.stored import open_dataset

__all__ = ["inspect"]


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _short(value: object) -> str:
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array{list(value.shape)} {value.dtype}, mean {value.mean():.4g}"
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _names(names: tuple[str, ...], shown: int = 20) -> str:
    listed = ", ".join(repr(n) for n in names[:shown])
    return listed if len(names) <= shown else f"{listed}, ... and {len(names) - shown} more"


def inspect(path: str | os.PathLike[str], samples: int = 3) -> str:
    """What ``chute inspect PATH`` prints: no checksum is computed (that is ``verify``)."""
    ds = open_dataset(path)
    manifest = ds.source.manifest  # type: ignore[attr-defined]
    lines = [
        f"{os.fspath(path)}: chute dataset, {manifest.rows:,} rows in {len(manifest.shards)} shard(s), "
        f"{_size(manifest.bytes)}",
        f"made by: {manifest.made_by}",
        "fields:",
    ]
    for f in manifest.spec.fields:
        dtype = f.dtype if f.kind not in ("bytes", "str") else ""
        encoded = " (encoded images, decoded when read)" if f.name in manifest.images else ""
        lines.append(f"  {f.name}: {f.kind} {dtype}{list(f.shape)}{encoded}")
    lines.append(f"structure: {manifest.spec.structure}")
    if manifest.class_names is not None:
        lines.append(f"class names ({len(manifest.class_names)}): {_names(manifest.class_names)}")
    lines.append("shards:")
    for info in manifest.shards[:10]:
        lines.append(f"  {info.file}: {info.rows:,} rows, {_size(info.bytes)}, sha256 {info.sha256[:12]}...")
    if len(manifest.shards) > 10:
        lines.append(f"  ... and {len(manifest.shards) - 10} more")
    for i in range(min(samples, len(ds))):
        leaves = ds.spec.flatten(ds[i])
        lines.append(
            f"sample {i}: "
            + ", ".join(f"{n}={_short(v)}" for n, v in zip(ds.spec.names, leaves, strict=True))
        )
    return "\n".join(lines)
