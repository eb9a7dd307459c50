"""The manifest: what a chute dataset holds, written last, checked on every open.

It is plain JSON, read with ``json.loads`` and validated field by field: nothing in it is ever
unpickled or evaluated, shard names are bare file names inside the dataset directory, and dtypes
are limited to plain numbers, bytes and text.

Two optional keys describe what the values mean: a bytes field marked ``"encoding": "image"``
holds encoded images (JPEG, PNG, ...), which ``chute.open`` decodes as they are read, and
``class_names`` names the label values (an image folder's classes, label ``i`` is
``class_names[i]``).  Manifests without them (older ones) open as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from chute.errors import FormatError, explain
from chute.spec import KINDS, Field, Named, Spec, Treedef, namedtuple_type

__all__ = ["FORMAT", "MANIFEST", "VERSION", "Manifest", "ShardInfo"]

FORMAT = "chute"
VERSION = 1
MANIFEST = "manifest.json"
SHARD_NAME = re.compile(r"^shard-[0-9]{5,9}\.arrow$")
_NUMERIC_KINDS = "biuf"  # bool, int, uint, float: nothing with objects or raw memory
_MAX_DIMS, _MAX_ITEMS = 32, 2**40
IMAGE = "image"  # the one encoding a bytes field may declare
_MAX_CLASSES, _MAX_CLASS_NAME = 1 << 20, 4096


@dataclass(frozen=True)
class ShardInfo:
    """One shard file: its name, row count, size in bytes and sha256 checksum."""

    file: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a dataset holds: its spec and shards; which bytes fields are encoded images
    (``images``, field names) and the names of the label values (``class_names``), if known."""

    spec: Spec
    shards: tuple[ShardInfo, ...]
    made_by: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    class_names: Optional[tuple[str, ...]] = None

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "rows": self.rows,
            "spec": _spec_to_json(self.spec),
            "shards": [vars(s) for s in self.shards],
            "made_by": self.made_by,
        }
        for entry in document["spec"]["fields"]:
            if entry["name"] in self.images:
                entry["encoding"] = IMAGE
        if self.class_names is not None:
            document["class_names"] = list(self.class_names)
        return json.dumps(document, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse and validate a manifest; any defect is a FormatError naming ``where``."""
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            raise _bad(where, "a JSON manifest", f"unparseable text ({error})") from None
        try:
            return _parse(document, where)
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as error:
            raise _bad(where, "a chute manifest", f"{type(error).__name__}: {error}") from None


def _bad(where: str, expected: str, received: object) -> FormatError:
    return FormatError(
        explain(
            f"{expected} in {where}",
            received,
            "The dataset is damaged or not a chute dataset: convert it again, or check the path.",
        )
    )


def _parse(document: Any, where: str) -> Manifest:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _bad(
            where,
            f"format {FORMAT!r}",
            repr(document.get("format") if isinstance(document, dict) else document),
        )
    if document.get("version") != VERSION:
        raise FormatError(
            explain(
                f"format version {VERSION} in {where}",
                f"version {document.get('version')!r}",
                "Open it with the chute version that wrote it, or convert it again with this one.",
            )
        )
    fields = tuple(_field_from_json(f, where) for f in document["spec"]["fields"])
    images = tuple(f.name for f, d in zip(fields, document["spec"]["fields"], strict=True) if "encoding" in d)
    names = [f.name for f in fields]
    if len(set(names)) != len(names) or not fields:
        raise _bad(where, "distinct field names", names)
    named = _namedtuples_from_json(document["spec"].get("namedtuples", []), where)
    treedef = _structure_from_json(
        document["spec"]["structure"], {n: i for i, n in enumerate(names)}, named, where
    )
    shards = tuple(_shard_from_json(s, where) for s in document["shards"])
    if len({s.file for s in shards}) != len(shards):
        raise _bad(where, "distinct shard files", [s.file for s in shards])
    if document.get("rows") != sum(s.rows for s in shards):
        raise _bad(where, "a row count equal to the shards' sum", document.get("rows"))
    _check_room(fields, shards, where)
    made_by = document.get("made_by", {})
    made_by = made_by if isinstance(made_by, dict) else {}
    names_given = document.get("class_names")
    class_names = None if names_given is None else _class_names_from_json(names_given, where)
    return Manifest(Spec(fields, treedef), shards, made_by, images, class_names)


def _class_names_from_json(names: Any, where: str) -> tuple[str, ...]:
    if (
        not isinstance(names, list)
        or len(names) > _MAX_CLASSES
        or not all(isinstance(n, str) and len(n) <= _MAX_CLASS_NAME for n in names)
    ):
        expected = f"class_names as a list of strings of at most {_MAX_CLASS_NAME:,} characters"
        raise _bad(where, expected, repr(names)[:200])
    if len(set(names)) != len(names):
        raise _bad(where, "distinct class_names", repr(names)[:200])
    return tuple(names)


def _check_room(fields: tuple[Field, ...], shards: tuple[ShardInfo, ...], where: str) -> None:
    """Each shard's bytes can hold the rows it claims: a manifest cannot make a reader plan (and
    allocate for) more rows than its files could hold."""
    row = sum(8 if f.kind != "array" else f.dtype.itemsize * f.items for f in fields)  # 8: an offset
    for shard in shards:
        if shard.rows * row > shard.bytes or (row == 0 and shard.rows > 2**31):
            raise _bad(
                where,
                f"at most {shard.bytes // max(row, 1):,} rows of {row} bytes in the {shard.bytes:,} bytes of "
                f"shard {shard.file}",
                f"{shard.rows:,} rows",
            )


def _field_to_json(f: Field) -> dict[str, Any]:
    return {"name": f.name, "kind": f.kind, "dtype": f.dtype.str, "shape": list(f.shape)}


def _field_from_json(document: dict[str, Any], where: str) -> Field:
    name, kind, dtype_text, shape = document["name"], document["kind"], document["dtype"], document["shape"]
    if (
        not isinstance(name, str)
        or kind not in KINDS
        or not isinstance(dtype_text, str)
        or len(dtype_text) > 8
    ):
        raise _bad(where, "a field with a name, a known kind and a dtype", repr(document)[:200])
    dtype = np.dtype(dtype_text)
    if kind in ("bytes", "str"):
        if dtype != np.dtype(object) or shape != []:
            raise _bad(where, f"dtype '|O' and shape [] for {kind} field {name!r}", (dtype_text, shape))
    elif dtype.kind not in _NUMERIC_KINDS:
        raise _bad(where, f"a numeric dtype for field {name!r}", dtype_text)
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS:
        raise _bad(where, f"a shape list for field {name!r}", shape)
    for i, dim in enumerate(shape):
        variable = dim is None and kind == "ragged" and i == 0
        if not variable and (isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim <= _MAX_ITEMS):
            raise _bad(where, f"non-negative dimensions for field {name!r}", shape)
    if kind == "ragged" and (not shape or shape[0] is not None):
        raise _bad(where, f"a ragged shape [null, ...] for field {name!r}", shape)
    if int(np.prod([d or 1 for d in shape], dtype=np.float64)) * max(dtype.itemsize, 1) > _MAX_ITEMS:
        raise _bad(where, f"a per-sample size under 1 TiB for field {name!r}", shape)
    if "encoding" in document and (document["encoding"] != IMAGE or kind != "bytes"):
        raise _bad(
            where, f"encoding {IMAGE!r} on a bytes field, if any, for field {name!r}", repr(document)[:200]
        )
    return Field(name, dtype, tuple(shape), kind)


def _spec_to_json(spec: Spec) -> dict[str, Any]:
    """The spec as JSON: the structure with field names at its leaves (tuples as lists, dicts and
    namedtuples as objects) and, if there are namedtuples, where they are and their type names."""
    named: list[dict[str, Any]] = []

    def walk(treedef: Treedef, at: tuple[str | int, ...]) -> Any:
        if isinstance(treedef, int):
            return spec.names[treedef]
        if isinstance(treedef, Named):
            named.append({"at": list(at), "name": treedef.name})
            return {key: walk(child, (*at, key)) for key, child in zip(treedef.fields, treedef, strict=True)}
        if isinstance(treedef, dict):
            return {key: walk(child, (*at, key)) for key, child in treedef.items()}
        return [walk(child, (*at, i)) for i, child in enumerate(treedef)]

    document = {"structure": walk(spec.treedef, ()), "fields": [_field_to_json(f) for f in spec.fields]}
    return {**document, "namedtuples": named} if named else document


def _namedtuples_from_json(document: Any, where: str) -> dict[tuple[str | int, ...], str]:
    """Where the structure's namedtuples are (paths of keys and positions) and their type names."""
    if not isinstance(document, list):
        raise _bad(where, "a list of namedtuples", type(document).__name__)
    named = {}
    for entry in document:
        at, name = entry["at"], entry["name"]
        if not isinstance(at, list) or not all(isinstance(step, (str, int)) for step in at):
            raise _bad(where, "a namedtuple's place as a list of keys and positions", repr(at)[:200])
        if not isinstance(name, str) or not name.isidentifier():
            raise _bad(where, "a namedtuple's type name", repr(name)[:200])
        named[tuple(at)] = name
    return named


def _structure_from_json(
    document: Any, position: dict[str, int], named: dict[tuple[str | int, ...], str], where: str
) -> Treedef:
    seen: set[str] = set()
    found = 0

    def walk(node: Any, at: tuple[str | int, ...]) -> Treedef:
        nonlocal found
        if len(at) > _MAX_DIMS:
            raise _bad(where, "a structure nested at most 32 deep", "deeper")
        if isinstance(node, str):
            if node not in position or node in seen:
                raise _bad(where, "each field named once in the structure", repr(node))
            seen.add(node)
            return position[node]
        if isinstance(node, dict) and at in named:
            found += 1
            kind = namedtuple_type(named[at], tuple(str(k) for k in node))  # ValueError: bad names
            return Named(kind, [walk(v, (*at, str(k))) for k, v in node.items()])
        if isinstance(node, dict):
            return {str(k): walk(v, (*at, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return tuple(walk(v, (*at, i)) for i, v in enumerate(node))
        raise _bad(where, "a structure of lists, objects and field names", type(node).__name__)

    treedef = walk(document, ())
    if len(seen) != len(position):
        raise _bad(where, "every field in the structure", sorted(set(position) - seen))
    if found != len(named):
        raise _bad(where, "namedtuples at objects of the structure", sorted(map(str, named)))
    return treedef


def _shard_from_json(document: dict[str, Any], where: str) -> ShardInfo:
    name, rows, size, digest = document["file"], document["rows"], document["bytes"], document["sha256"]
    if not isinstance(name, str) or not SHARD_NAME.match(name):
        raise FormatError(
            explain(
                f"a shard file name like 'shard-00000.arrow' inside the dataset ({where})",
                repr(name)[:200],
                "Refusing a name that could point outside the dataset directory; the manifest is not "
                "one chute wrote.",
            )
        )
    for label, value in (("rows", rows), ("bytes", size)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**62:
            raise _bad(where, f"a non-negative {label} count for shard {name}", value)
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise _bad(where, f"a sha256 hex digest for shard {name}", repr(digest)[:80])
    return ShardInfo(name, rows, size, digest)


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.arrow"
