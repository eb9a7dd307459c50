"""Hostile chute datasets, for the fuzz tests and the atheris harness (``tests/fuzz_format.py``).

:func:`build` writes two small datasets: every field kind (numbers, text, bytes, ragged rows) and
fixed-size arrays only (the ``pread`` scan path).  :func:`damage` copies one and damages it as
``Damage`` says (truncation, bit flips, an overwritten range, appended bytes, a manifest whose row
counts or spec disagree with the shards) and then makes the manifest's byte counts agree with the
damaged files, as a hostile author would: only the reader's own checks stand between the damage
and the process.  :func:`read_everything` reads every row every way chute can; a damaged dataset
must end in a :class:`chute.ChuteError` (or read, when the damage hit only sample values).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import chute
from chute.format import MANIFEST

KINDS = ("truncate", "flip", "overwrite", "append", "rows", "spec")


def samples(n: int = 40) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    return [
        {
            "x": rng.random(4).astype(np.float32),
            "label": np.int64(i),
            "text": "é" * (i % 5) + str(i),
            "raw": bytes(range(i % 7)),
            "tokens": np.arange(2 * (i % 6), dtype=np.int16).reshape(-1, 2),
        }
        for i in range(n)
    ]


def build(root: Path) -> dict[str, Path]:
    """The two pristine datasets under ``root``: ``{"mixed": path, "fixed": path}``."""
    mixed = root / "mixed.chute"
    chute.convert(samples(), mixed, ragged=["tokens"], shard_size=600, progress=False)
    fixed = root / "fixed.chute"
    arrays = {"x": np.random.default_rng(1).random((60, 3), dtype=np.float32), "y": np.arange(60)}
    chute.convert(chute.from_arrays(arrays), fixed, shard_size=700, progress=False)
    return {"mixed": mixed, "fixed": fixed}


@dataclass(frozen=True)
class Damage:
    """What to do to a dataset; ``where``, ``size`` and ``value`` are scaled to the file."""

    kind: str
    shard: int  # which shard (modulo their number)
    where: float  # 0..1: a position in the file
    size: int  # bits flipped, bytes overwritten or appended, rows added
    value: int  # seed of the bytes written or the bits chosen


def damage(pristine: Path, into: Path, how: Damage) -> Path:
    """A copy of ``pristine`` in ``into``, damaged; its manifest's byte counts agree with the files."""
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(pristine, into)
    manifest = json.loads((into / MANIFEST).read_text())
    shards = manifest["shards"]
    info = shards[how.shard % len(shards)]
    path = into / info["file"]
    data = bytearray(path.read_bytes())
    at = int(how.where * len(data))
    rng = np.random.default_rng(how.value)
    if how.kind == "truncate":
        del data[at:]
    elif how.kind == "flip":
        for bit in rng.integers(0, 8 * len(data), max(1, how.size % 64)):
            data[bit // 8] ^= 1 << (bit % 8)
    elif how.kind == "overwrite":
        chunk = rng.integers(0, 256, max(1, how.size % 4096), dtype=np.uint8).tobytes()
        data[at : at + len(chunk)] = chunk[: len(data) - at]
    elif how.kind == "append":
        data += rng.integers(0, 256, max(1, how.size % 4096), dtype=np.uint8).tobytes()
    elif how.kind == "rows":  # the manifest claims other row counts than the shard holds
        info["rows"] = max(0, info["rows"] + (how.size % 2**40) * (1 if how.value % 2 else -1))
        manifest["rows"] = sum(s["rows"] for s in shards)
    elif how.kind == "spec":  # the manifest's fields disagree with the shards'
        _respec(manifest["spec"]["fields"], how, rng)
    path.write_bytes(bytes(data))
    info["bytes"] = len(data)
    (into / MANIFEST).write_text(json.dumps(manifest))
    return into


def _respec(fields: list[dict[str, object]], how: Damage, rng: np.random.Generator) -> None:
    field = fields[how.shard % len(fields)]
    choice = how.value % 4
    if choice == 0:
        field["dtype"] = str(rng.choice(["<f8", "|u1", "<i2", "<c16", "|b1", "<f2"]))
    elif choice == 1:
        field["shape"] = [int(d) for d in rng.integers(0, 9, how.size % 4)]
    elif choice == 2 and field["kind"] != "ragged":
        field["kind"] = str(rng.choice(["bytes", "str", "array"]))
    else:
        field["shape"] = [None, *[int(d) for d in rng.integers(1, 5, how.size % 3)]]
        field["kind"] = "ragged"


def read_everything(root: Path) -> None:
    """Open ``root`` and read every row every way: gathers in and out of order, contiguous slices,
    lengths, a padded loader; then verify it.  Raises whatever the reader raises."""
    ds = chute.open(root)
    n = len(ds)
    everything = np.arange(n)
    ds[everything]
    ds[everything[::-1]]
    ds[0:n]
    ds[n // 3 : n]
    for name in ("tokens", "text", "raw"):
        if name in ds.spec.names:
            ds.source.lengths(name)  # type: ignore[attr-defined]
    pad = any(field.kind == "ragged" for field in ds.spec.fields)  # (padding needs a ragged field)
    for batch in ds.loader(7, shuffle=True, seed=0, pad=pad):
        del batch
    chute.verify(root, progress=False)
