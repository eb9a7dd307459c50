"""The chute format: round trips, zero-copy reads, and every damaged dataset rejected clearly."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute
from chute.format import MANIFEST, Manifest


def arrays(n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 255, (n, 4, 4, 3), dtype=np.uint8),
        "f16": rng.random((n, 2)).astype(np.float16),
        "f64": rng.random(n),
        "flag": rng.random(n) > 0.5,
        "label": np.arange(n, dtype=np.int32),
    }


def test_round_trip_of_fixed_fields_across_shards(tmp_path: Path) -> None:
    data = arrays()
    ds = chute.convert(chute.from_arrays(data), tmp_path / "a.chute", shard_size=4000)
    assert len(ds.source.manifest.shards) > 3  # type: ignore[attr-defined]
    assert ds.spec == chute.from_arrays(data).spec
    order = np.random.default_rng(1).permutation(300)
    batch = ds[order]
    for name, array in data.items():
        np.testing.assert_array_equal(batch[name], array[order])
        assert batch[name].dtype == array.dtype
    np.testing.assert_array_equal(ds[17]["image"], data["image"][17])
    np.testing.assert_array_equal(ds[np.sort(order[:50])]["label"], np.sort(order[:50]))  # sorted path
    np.testing.assert_array_equal(ds[:]["f64"], data["f64"])  # a slice across every shard
    assert ds[300:300]["image"].shape == (0, 4, 4, 3) and ds[299:]["label"].tolist() == [299]


def test_columns_are_zero_copy_views_and_scans_are_read_once(tmp_path: Path) -> None:
    ds = chute.convert(chute.from_arrays(arrays()), tmp_path / "a.chute")
    column = ds.source._shard(0).columns[0]  # type: ignore[attr-defined]
    assert column.shape == (300, 4, 4, 3) and not column.flags.owndata and not column.flags.writeable
    scanned = ds[10:20]["image"]  # a contiguous read: one pread per field into a fresh array
    assert scanned.flags.owndata and scanned.flags.writeable
    np.testing.assert_array_equal(scanned, arrays()["image"][10:20])


def test_variable_size_fields_and_nesting(tmp_path: Path) -> None:
    def samples() -> list[tuple[dict[str, object], int]]:
        return [
            ({"text": f"é{i}" * i, "raw": bytes(range(i)), "tokens": np.arange(i % 4, dtype=np.int16)}, i)
            for i in range(40)
        ]

    ds = chute.convert(iter(samples()), tmp_path / "v.chute", ragged=["0/tokens"], shard_size=300)
    assert [f.kind for f in ds.spec.fields] == ["str", "bytes", "ragged", "array"]
    assert ds.spec.structure == ({"text": "0/text", "raw": "0/raw", "tokens": "0/tokens"}, "1")
    for (expected, label), (got, got_label) in zip(samples(), (ds[i] for i in range(40)), strict=True):
        assert got["text"] == expected["text"] and got["raw"] == expected["raw"] and got_label == label
        np.testing.assert_array_equal(got["tokens"], expected["tokens"])
    batch = ds[[39, 0, 21]]
    assert batch[0]["text"].tolist() == ["é39" * 39, "", "é21" * 21]
    assert [t.tolist() for t in batch[0]["tokens"]] == [[0, 1, 2], [], [0]]


Inner = collections.namedtuple("Inner", "a b")
Outer = collections.namedtuple("Outer", "inner tag")


def test_namedtuples_are_stored_and_come_back(tmp_path: Path) -> None:
    x, y = np.arange(40).reshape(20, 2), np.arange(20)
    ds = chute.convert(chute.from_arrays(y, Outer(Inner(x, y), {"t": y})), tmp_path / "n.chute")
    document = json.loads((tmp_path / "n.chute" / MANIFEST).read_text())
    assert document["spec"]["namedtuples"] == [
        {"at": [1], "name": "Outer"},
        {"at": [1, "inner"], "name": "Inner"},
    ]
    assert document["spec"]["structure"][1] == {
        "inner": {"a": "1/inner/a", "b": "1/inner/b"},
        "tag": {"t": "1/tag/t"},
    }
    for sample in (ds[3], ds.loader(8)[0]):
        outer = sample[1]
        assert (type(outer).__name__, outer._fields) == ("Outer", ("inner", "tag"))
        assert (type(outer.inner).__name__, outer.inner._fields) == ("Inner", ("a", "b"))
    assert ds[3][1].inner.a.tolist() == [6, 7] and ds[3][1].tag["t"] == 3


@pytest.mark.parametrize(
    "namedtuples",
    [
        [{"at": [], "name": "not a name"}],
        [{"at": ["nowhere"], "name": "Sample"}],
        [{"at": [{}], "name": "Sample"}],
        [{"at": [], "name": "Sample"}, {"at": [], "name": "Other"}, "x"],
        {"at": []},
    ],
)
def test_damaged_namedtuples_are_a_format_error(stored: Path, namedtuples: object) -> None:
    manifest = json.loads((stored / MANIFEST).read_text())
    manifest["spec"]["namedtuples"] = namedtuples
    (stored / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(chute.FormatError):
        chute.open(stored)


def test_shards_open_in_plain_pyarrow(tmp_path: Path) -> None:
    chute.convert(chute.from_arrays(arrays(10)), tmp_path / "a.chute")
    with pa.memory_map(str(tmp_path / "a.chute" / "shard-00000.arrow")) as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.num_rows == 10 and table.column("label").to_pylist() == list(range(10))


@pytest.mark.frameworks
def test_open_is_cheap_and_loader_trains(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(512, 3)).astype(np.float32)
    y = (x.sum(axis=1) > 0).astype(np.float32)
    chute.convert(chute.from_arrays(x, y), tmp_path / "t.chute")
    ds = chute.open(tmp_path / "t.chute")
    assert all(v is None for v in ds.source._views)  # type: ignore[attr-defined]  # nothing mapped yet
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    history = model.fit(ds.loader(64, shuffle=True, seed=0).keras(), epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    chute.convert(chute.from_arrays(arrays()), tmp_path / "s.chute", shard_size=8000)
    return tmp_path / "s.chute"


def shard(stored: Path, number: int = 1) -> Path:
    return stored / f"shard-{number:05d}.arrow"


def test_verify_catches_a_corrupted_shard(stored: Path) -> None:
    assert chute.verify(stored).rows == 300
    data = bytearray(shard(stored).read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard(stored).write_bytes(bytes(data))
    with pytest.raises(chute.FormatError, match=re.escape(str(shard(stored)))):
        chute.verify(stored)
    with pytest.raises(chute.FormatError, match="corrupted"):
        chute.open(stored, verify=True)


def test_open_rejects_a_truncated_shard(stored: Path) -> None:
    data = shard(stored).read_bytes()
    shard(stored).write_bytes(data[: len(data) // 2])
    with pytest.raises(chute.FormatError, match=r"bytes in shard .*shard-00001\.arrow.*truncated"):
        chute.open(stored)


def test_open_rejects_a_missing_shard(stored: Path) -> None:
    shard(stored).unlink()
    with pytest.raises(chute.FormatError, match=r"shard shard-00001\.arrow .*no such file"):
        chute.open(stored)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "sub/shard-00000.arrow", "shard-1.arrow"]
)
def test_open_rejects_shard_names_escaping_the_dataset(stored: Path, name: str) -> None:
    manifest = json.loads((stored / MANIFEST).read_text())
    manifest["shards"][0]["file"] = name
    (stored / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(chute.FormatError, match="could point outside the dataset"):
        chute.open(stored)


def test_open_rejects_other_versions_and_non_datasets(stored: Path, tmp_path: Path) -> None:
    manifest = json.loads((stored / MANIFEST).read_text())
    (stored / MANIFEST).write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(chute.FormatError, match=r"format version 1 .*version 99"):
        chute.open(stored)
    with pytest.raises(chute.FormatError, match="a chute dataset directory"):
        chute.open(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(chute.FormatError, match=r"0 entries and no manifest.json.*not a chute dataset"):
        chute.open(tmp_path / "empty")
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "cat" / "1.jpg").write_bytes(b"")
    with pytest.raises(chute.FormatError, match=r"an image folder.*chute.image_folder\(.*chute convert"):
        chute.open(tmp_path / "photos")
    (tmp_path / "table.parquet").write_bytes(b"")
    with pytest.raises(chute.FormatError, match=r"a Parquet file.*chute convert"):
        chute.open(tmp_path / "table.parquet")
    (tmp_path / ".killed.chute.partial").mkdir()
    with pytest.raises(chute.FormatError, match=r"did not finish.*--resume"):
        chute.open(tmp_path / "killed.chute")


def test_object_dtypes_are_refused(stored: Path) -> None:
    manifest = json.loads((stored / MANIFEST).read_text())
    manifest["spec"]["fields"][0]["dtype"] = "|O"
    (stored / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(chute.FormatError, match="numeric dtype"):
        chute.open(stored)


@pytest.fixture
def photos_stored(tmp_path: Path) -> Path:
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.fromarray(np.full((6, 8, 3), len(name), np.uint8)).save(tmp_path / "photos" / name / "0.png")
    chute.convert(chute.image_folder(tmp_path / "photos"), tmp_path / "p.chute")
    return tmp_path / "p.chute"


def test_a_manifest_without_class_names_or_image_encodings_opens_as_before(photos_stored: Path) -> None:
    manifest = json.loads((photos_stored / MANIFEST).read_text())
    assert manifest["class_names"] == ["cat", "dog"] and chute.open(photos_stored)[1][0].shape == (6, 8, 3)
    del manifest["class_names"], manifest["spec"]["fields"][0]["encoding"]  # as older chute wrote it
    (photos_stored / MANIFEST).write_text(json.dumps(manifest))
    ds = chute.open(photos_stored)
    assert ds.class_names is None and ds.spec.fields[0].kind == "bytes" and isinstance(ds[1][0], bytes)


@pytest.mark.parametrize(
    "class_names", ["cats and dogs", ["cat", 7], ["cat", "cat"], {"0": "cat"}, ["x" * 5000]]
)
def test_damaged_class_names_are_a_format_error_naming_the_manifest(
    photos_stored: Path, class_names: object
) -> None:
    manifest = json.loads((photos_stored / MANIFEST).read_text())
    (photos_stored / MANIFEST).write_text(json.dumps({**manifest, "class_names": class_names}))
    with pytest.raises(
        chute.FormatError, match=f"class_names.* in {re.escape(str(photos_stored / MANIFEST))}"
    ):
        chute.open(photos_stored)


@pytest.mark.parametrize(("field", "encoding"), [(0, "video"), (0, ["image"]), (1, "image")])
def test_an_image_encoding_only_marks_a_bytes_field(
    photos_stored: Path, field: int, encoding: object
) -> None:
    manifest = json.loads((photos_stored / MANIFEST).read_text())
    manifest["spec"]["fields"][field]["encoding"] = encoding
    (photos_stored / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(chute.FormatError, match=r"encoding 'image' on a bytes field.* in .*manifest\.json"):
        chute.open(photos_stored)


def test_a_garbage_shard_of_the_right_size_fails_on_read(stored: Path) -> None:
    size = os.path.getsize(stored / "shard-00000.arrow")
    (stored / "shard-00000.arrow").write_bytes(b"\0" * size)
    ds = chute.open(stored)  # sizes match: only checksums (verify) or reading can tell
    with pytest.raises(chute.FormatError, match=r"readable Arrow IPC file in shard .*shard-00000\.arrow"):
        ds[0]


mutations = st.sampled_from(["delete", "null", "string", "negative", "huge", "list"])


@given(data=st.data())
def test_fuzzed_manifests_are_valid_or_a_format_error(data: st.DataObject) -> None:
    spec = chute.from_arrays(arrays(4)).spec
    from chute.format import ShardInfo

    shards = (ShardInfo("shard-00000.arrow", 4, 10, "0" * 64),)
    valid = json.loads(Manifest(spec, shards, class_names=("cat", "dog")).to_json())
    document = json.loads(json.dumps(valid))
    for _ in range(data.draw(st.integers(1, 4))):
        node, key = _pick(document, data)
        if node is None:
            break
        how = data.draw(mutations)
        replacement: object = {
            "null": None,
            "string": "x",
            "negative": -1,
            "huge": 10**30,
            "list": [1, [2]],
        }.get(how)
        if how == "delete" and isinstance(node, dict):
            del node[key]
        else:
            node[key] = replacement
    with contextlib.suppress(chute.FormatError):  # valid, or refused with chute's error: nothing else
        Manifest.from_json(json.dumps(document), "fuzz")


def _pick(document: object, data: st.DataObject) -> tuple[object, object]:
    node, key = None, None
    current = document
    while isinstance(current, (dict, list)) and current:
        keys = list(current.keys()) if isinstance(current, dict) else list(range(len(current)))
        key = data.draw(st.sampled_from(keys))
        node, current = current, current[key]  # type: ignore[index]
        if data.draw(st.booleans()):
            break
    return node, key


def test_garbage_manifest_text(stored: Path) -> None:
    (stored / MANIFEST).write_bytes(b"\xff\xfe not json")
    with pytest.raises(chute.FormatError, match=r"UTF-8 JSON|JSON manifest"):
        chute.open(stored)


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_stored_loader_gives_the_in_memory_batches(tmp_path: Path, workers: int) -> None:
    data = arrays()
    stored = chute.convert(chute.from_arrays(data), tmp_path / "a.chute", shard_size=5000)
    expected = chute.from_arrays(data).loader(32, shuffle=True, seed=3)
    loader = stored.loader(32, shuffle=True, seed=3, workers=workers)
    for _ in range(2):
        for got, want in zip(loader, expected, strict=True):
            for name in data:
                np.testing.assert_array_equal(got[name], want[name])
