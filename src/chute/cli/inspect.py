"""A human-readable summary of a chute dataset: spec, class names, rows, shards, sizes, a few samples."""

from __future__ import annotations

import os

import numpy as np

from chute.stored import open_dataset
from chute.telemetry.progress import format_size

__all__ = ["inspect"]


def _short(value: object) -> str:
    """A field's value as text: plain numbers (``0``, not ``np.int64(0)``), arrays summarised."""
    if isinstance(value, np.ndarray) and value.size > 6:
        return f"array{list(value.shape)} {value.dtype}, mean {value.mean():.4g}"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value):,} bytes"
    plain = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
    text = repr(plain) if isinstance(plain, str) else str(plain)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: object) -> str:
    """A manifest value as text: ``none``, ``3``, ``a, b``, not a Python repr."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_plain(v) for v in value[:10])
        return shown if len(value) <= 10 else f"{shown}, ... and {len(value) - 10} more"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def _structure(structure: object) -> str:
    """A sample's layout by field name: ``(image, label)``, ``{x, y}``."""
    if isinstance(structure, dict):
        inner = (k if v == k else f"{k}: {_structure(v)}" for k, v in structure.items())
        return "{" + ", ".join(inner) + "}"
    if isinstance(structure, (list, tuple)):
        return "(" + ", ".join(_structure(v) for v in structure) + ")"
    return str(structure)


def _names(names: tuple[str, ...], shown: int = 20) -> str:
    listed = ", ".join(repr(n) for n in names[:shown])
    return listed if len(names) <= shown else f"{listed}, ... and {len(names) - shown} more"


def inspect(path: str | os.PathLike[str], samples: int = 3) -> str:
    """What ``chute inspect PATH`` prints: no checksum is computed (that is ``verify``)."""
    ds = open_dataset(path)
    manifest = ds.source.manifest  # type: ignore[attr-defined]
    lines = [
        f"{os.fspath(path)}: chute dataset, {manifest.rows:,} rows in {len(manifest.shards)} shard(s), "
        f"{format_size(manifest.bytes)}",
        "made by:",
        *(f"  {key}: {_plain(value) or 'none'}" for key, value in manifest.made_by.items()),
        "fields:",
    ]
    for f in manifest.spec.fields:
        dtype = f.dtype if f.kind not in ("bytes", "str") else ""
        encoded = " (encoded images, decoded when read)" if f.name in manifest.images else ""
        lines.append(f"  {f.name}: {f.kind} {dtype}{list(f.shape)}{encoded}")
    lines.append(f"structure: {_structure(manifest.spec.structure)}")
    if manifest.class_names is not None:
        lines.append(f"class names ({len(manifest.class_names)}): {_names(manifest.class_names)}")
    lines.append("shards:")
    for info in manifest.shards[:10]:
        lines.append(
            f"  {info.file}: {info.rows:,} rows, {format_size(info.bytes)}, sha256 {info.sha256[:12]}..."
        )
    if len(manifest.shards) > 10:
        lines.append(f"  ... and {len(manifest.shards) - 10} more")
    for i in range(min(samples, len(ds))):
        leaves = ds.spec.flatten(ds[i])
        lines.append(
            f"sample {i}: "
            + ", ".join(f"{n}={_short(v)}" for n, v in zip(ds.spec.names, leaves, strict=True))
        )
    return "\n".join(lines)
