"""Image folders and codecs: decode (or keep bytes), resize, re-encode; conversion in workers."""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chute
from chute.images.codecs import decode_image, encode_jpeg, resize_image


def write_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((40 + i, 50, 3), 60 * label + 10 * i, np.uint8) + rng.integers(
                0, 5, (40 + i, 50, 3), np.uint8
            )
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}", quality=95)
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_decodes_by_default_and_keeps_bytes_on_request(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    ds = chute.image_folder(folder)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 12
    assert ds.spec.names == ("image", "label") and ds.spec.structure == ("image", "label")
    image, label = ds[7]  # dog/1.png: 41 x 50, each image at its own size
    assert label == 1 and image.dtype == np.uint8 and image.shape == (41, 50, 3)
    assert np.array_equal(image, np.asarray(Image.open(folder / "dog" / "1.png").convert("RGB")))
    raw = chute.image_folder(folder, decode=False)
    assert raw.spec.names == ("image", "label") and raw.spec.fields[0].kind == "bytes"
    assert raw[7][0] == (folder / "dog" / "1.png").read_bytes() and raw.class_names == ["cat", "dog"]
    jpeg = chute.image_folder(folder, size=(16, 24), jpeg_quality=90, decode=False)
    assert decode_image(jpeg[7][0]).shape == (16, 24, 3)  # resized JPEG bytes
    with pytest.raises(chute.OptionError, match="jpeg_quality="):
        chute.image_folder(folder, size=(16, 24), decode=False)


def test_images_of_different_sizes_fail_to_batch_naming_the_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")  # cat/0.jpg is 40 x 50, cat/1.png 41 x 50, ...
    ds = chute.image_folder(folder)
    expected = r"one size to batch: 40x50 .*cat/0\.jpg.*41x50 at .*cat/1\.png \(sample 1\)"
    fix = r"size=\(height, width\).*--resize HxW"
    with pytest.raises(chute.SpecError, match=f"{expected}.*{fix}"):
        ds[0:4]
    with pytest.raises(chute.SpecError, match=expected):
        list(ds.loader(4, workers=2))
    assert ds[[0, 0]][0].shape == (2, 40, 50, 3)  # images of the first one's size batch
    assert chute.image_folder(folder, size=(32, 48))[0:4][0].shape == (4, 32, 48, 3)
    files = chute.from_files(sorted(str(p) for p in folder.glob("cat/*")), decode=chute.decode.image)
    with pytest.raises(chute.SpecError, match=r"\(40, 50, 3\), as decoded from .*cat/0\.jpg.*cat/1\.png"):
        files[0:2]


def test_a_map_takes_each_decoded_image_at_its_own_size(tmp_path: Path) -> None:
    seen: list[tuple[type, tuple[int, ...]]] = []

    def crop(sample: tuple[np.ndarray, np.int64]) -> tuple[np.ndarray, np.int64]:
        image, label = sample
        seen.append((type(image), image.shape))
        return image[:32, :32], label

    loader = chute.image_folder(write_folder(tmp_path / "photos")).map(crop).loader(4)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3)] * 3 and batches[2][1].tolist() == [1] * 4
    assert {shape for _, shape in seen} == {(40 + i, 50, 3) for i in range(6)}
    assert {kind for kind, _ in seen} == {np.ndarray} and loader.class_names == ["cat", "dog"]


def test_image_folder_decodes_and_resizes(tmp_path: Path) -> None:
    ds = chute.image_folder(write_folder(tmp_path / "photos"), size=(16, 24))
    images, labels = ds[[0, 1, 11]]
    assert images.shape == (3, 16, 24, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 0, 1]
    assert abs(float(images[2].mean()) - (60 + 50 + 2)) < 6  # dog 5: value 110 plus noise


def test_codecs_round_trip() -> None:
    pixels = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (48, 1, 3)) * 3
    decoded = decode_image(encode_jpeg(pixels, quality=95))
    assert decoded.shape == pixels.shape and np.abs(decoded.astype(int) - pixels).mean() < 3
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    assert np.array_equal(decode_image(png.getvalue()), pixels)
    assert decode_image(encode_jpeg(pixels), size=(12, 16)).shape == (12, 16, 3)


def test_images_decode_into_a_row_of_a_batch() -> None:
    pixels = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (48, 1, 3)) * 3
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    decoder = pickle.loads(pickle.dumps(chute.decode.resized((12, 16))))  # picklable for processes
    batch = np.zeros((3, 12, 16, 3), np.uint8)
    for row, data in enumerate([encode_jpeg(pixels), png.getvalue(), encode_jpeg(pixels[:12, :16])]):
        decoder.into(data, batch[row])  # JPEG resized by OpenCV, PNG through Pillow, one at its size
        assert np.array_equal(batch[row], decoder(data))
    assert batch[1].any() and np.array_equal(batch[1], decode_image(png.getvalue(), (12, 16)))


def test_decode_into_any_out_and_from_any_bytes_like() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (90, 100, 3), dtype=np.uint8)
    data = encode_jpeg(pixels)
    expected = decode_image(data, (40, 30))
    assert np.array_equal(decode_image(memoryview(data), (40, 30)), expected)
    assert np.array_equal(decode_image(bytearray(data), (40, 30)), expected)
    strided = np.zeros((40, 60, 3), np.uint8)[:, ::2]  # not C-contiguous: written all the same
    assert decode_image(data, (40, 30), out=strided) is strided and np.array_equal(strided, expected)
    row = np.zeros((2, 40, 30, 3), np.uint8)[1]
    assert decode_image(data, (40, 30), out=row) is row and np.array_equal(row, expected)
    mirrored = pixels[:, ::-1]  # a strided source resizes like its contiguous copy
    assert np.array_equal(resize_image(mirrored, (40, 30), row), resize_image(mirrored.copy(), (40, 30)))


def test_convert_an_image_folder_in_workers(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    one = chute.convert(chute.image_folder(folder, size=(16, 16)), tmp_path / "a.chute")
    two = chute.convert(chute.image_folder(folder, size=(16, 16)), tmp_path / "b.chute", workers=2)
    np.testing.assert_array_equal(one[:][0], two[:][0])
    assert one[:][1].tolist() == [0] * 6 + [1] * 6
    jpeg = chute.convert(chute.image_folder(folder, size=(16, 16), jpeg_quality=80), tmp_path / "c.chute")
    assert jpeg[3][0].shape == (16, 16, 3) and jpeg.spec == one.spec  # stored as JPEG, read as pixels
    assert decode_image(chute.open(tmp_path / "c.chute", decode=False)[3][0]).shape == (16, 16, 3)


def test_a_converted_image_folder_stores_encoded_images_and_class_names(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    ds = chute.convert(chute.image_folder(folder), tmp_path / "a.chute")
    manifest = json.loads((tmp_path / "a.chute" / "manifest.json").read_text())
    fields = manifest["spec"]["fields"]
    assert [(f["name"], f["kind"], f.get("encoding")) for f in fields] == [
        ("image", "bytes", "image"),
        ("label", "array", None),
    ]
    assert manifest["class_names"] == ["cat", "dog"] and manifest["spec"]["structure"] == ["image", "label"]
    assert ds.class_names == ["cat", "dog"] and ds.spec.names == ("image", "label")
    assert ds.loader(4).class_names == ["cat", "dog"]
    folder_ds = chute.image_folder(folder)
    for i in range(12):  # decoded as the folder decodes them, every image at its own size
        np.testing.assert_array_equal(ds[i][0], folder_ds[i][0])
        assert ds[i][1] == folder_ds[i][1]
    stored = chute.open(tmp_path / "a.chute", decode=False)
    paths = sorted(p for p in folder.glob("*/*") if p.suffix in (".jpg", ".png"))
    assert [stored[i][0] for i in range(12)] == [p.read_bytes() for p in paths]  # the files, compact
    with pytest.raises(chute.SpecError, match=r"one size to batch.*sample 1 of .*a\.chute"):
        ds[0:4]
    in_workers = chute.convert(chute.image_folder(folder), tmp_path / "w.chute", workers=2)
    assert in_workers.spec.names == ("image", "label") and in_workers.class_names == ["cat", "dog"]
    again = chute.convert(ds, tmp_path / "again.chute")  # a converted dataset converts as stored
    assert again.source.manifest.images == ("image",) and again.class_names == ["cat", "dog"]  # type: ignore[attr-defined]


def test_views_of_an_image_folder_convert_encoded_with_their_class_names(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    train, val = chute.image_folder(folder).split([0.5, 0.5], seed=0)
    assert train.class_names == val.class_names == ["cat", "dog"]
    converted = chute.convert(val, tmp_path / "val.chute")
    assert converted.source.manifest.images == ("image",)  # type: ignore[attr-defined]
    assert converted.class_names == ["cat", "dog"] and len(converted) == 6
    for i in range(6):
        np.testing.assert_array_equal(converted[i][0], val[i][0])
    mapped = chute.convert(chute.image_folder(folder, size=(8, 8)).map(lambda s: s), tmp_path / "m.chute")
    assert mapped.class_names == ["cat", "dog"] and mapped.spec.fields[0].shape == (8, 8, 3)


def test_an_unreadable_image_names_the_file(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    (folder / "cat" / "2.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(chute.ConversionError, match=r"Sample 2 failed: ReadError: .*cat/2\.jpg"):
        chute.convert(chute.image_folder(folder, size=(8, 8)), tmp_path / "x.chute", workers=2)
    ds = chute.convert(chute.image_folder(folder, size=(8, 8)), tmp_path / "y.chute", on_error="skip")
    assert len(ds) == 11 and ds.source.manifest.made_by["skipped_samples"] == [2]  # type: ignore[attr-defined]


def test_cli_converts_an_image_folder_with_resize(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    dst = tmp_path / "p.chute"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chute.cli",
            "convert",
            str(folder),
            str(dst),
            "--resize",
            "24x16",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert chute.open(dst).spec.fields[0].shape == (24, 16, 3)  # HxW: height first, as size=(h, w)
    assert chute.image_folder(folder, size=(24, 16))[0][0].shape == (24, 16, 3)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(chute.SpecError, match="one sub-folder per class"):
        chute.image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(chute.SpecError, match="1 sub-folders and no images"):
        chute.image_folder(tmp_path / "empty")


def test_from_files_decodes_lazily_in_workers(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    paths = sorted(str(p) for p in folder.glob("*/*.*g"))
    labels = [0 if "/cat/" in p else 1 for p in paths]
    ds = chute.from_files(paths, labels, decode=functools.partial(decode_image, size=(8, 8)))
    assert ds.spec.fields[0] == chute.Field("0", np.dtype(np.uint8), (8, 8, 3))

    def flip(sample: tuple[np.ndarray, np.int64], rng: np.random.Generator) -> tuple[np.ndarray, np.int64]:
        image, label = sample
        return (image[:, ::-1] if rng.random() < 0.5 else image), label

    def run(workers: int) -> list[list[int]]:
        loader = ds.map(flip).loader(5, shuffle=True, seed=0, workers=workers)
        return [batch[0].reshape(len(batch[0]), -1).sum(axis=1).tolist() for batch in loader]

    assert run(0) == run(2)
    raw = chute.from_files(paths[:2])
    assert raw[0][0] == Path(paths[0]).read_bytes()


def test_a_missing_file_names_it_and_the_batch(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    paths = sorted(str(p) for p in folder.glob("*/*.*g"))
    loader = chute.from_files([*paths, str(folder / "gone.jpg")]).loader(4, workers=2)
    with pytest.raises(chute.ReadError, match=r"a readable file at .*gone\.jpg \(sample 12\)") as info:
        list(loader)
    if sys.version_info >= (3, 11):
        assert "chute: while reading samples 12..12" in info.value.__notes__
        assert "chute: while reading batch 3 of epoch 0" in info.value.__notes__


def test_resize_without_opencv_falls_back_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    from chute.images import codecs

    pixels = np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (96, 1, 3))
    with_cv2 = codecs.resize_image(pixels, (64, 64))
    monkeypatch.setitem(sys.modules, "cv2", None)
    codecs.opencv.cache_clear()
    try:
        with_pillow = codecs.resize_image(pixels, (64, 64))
        row = np.zeros((2, 64, 64, 3), np.uint8)[1]
        assert codecs.resize_image(pixels, (64, 64), out=row) is row  # into a batch's row, too
        assert np.array_equal(row, with_pillow)
    finally:
        codecs.opencv.cache_clear()
    assert with_pillow.shape == with_cv2.shape == (64, 64, 3)
    assert np.abs(with_pillow.astype(int) - with_cv2).max() <= 3  # two filters, nearly the same pixels


def test_the_loader_can_skip_unreadable_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos")
    (folder / "cat" / "2.jpg").write_bytes(b"\xff\xd8\xff broken")
    loader = chute.image_folder(folder, size=(8, 8)).loader(4, on_error="skip", workers=2)
    skipping = r"chute: skipping sample 2 of batch 0 \(epoch 0\), which failed \(ReadError"
    with pytest.warns(UserWarning, match=skipping):
        sizes = [len(batch[1]) for batch in loader]
    assert sizes == [3, 4, 4]  # the batch holding sample 2 comes out one short
    stats = loader.stats()
    assert stats["skipped"] == 1 and "cat/2.jpg" in stats["skipped_samples"][0][1]  # type: ignore[index]
    with pytest.raises(chute.OptionError, match="on_error='raise' or 'skip'"):
        chute.image_folder(folder).loader(4, on_error="ignore")


def test_read_file_reads_whole_files_of_any_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chute.sources import files

    for size in (0, 1, 23, 100_000):
        path = tmp_path / f"f{size}"
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        path.write_bytes(data)
        assert files.read_file(str(path)) == data
        monkeypatch.setattr(files, "_ONE_READ", 5)  # as if each read() returned 5 bytes at most
        assert files.read_file(str(path)) == data
        monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        files.read_file(str(tmp_path / "missing"))
    fifo = tmp_path / "pipe"  # not seekable: read to its end all the same
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(b"through a pipe" * 10_000,))
    writer.start()
    assert files.read_file(str(fifo)) == b"through a pipe" * 10_000
    writer.join()


def test_class_names_follow_views_maps_and_mixes_of_one_labelling(tmp_path: Path) -> None:
    ds = chute.image_folder(write_folder(tmp_path / "photos"), size=(8, 8))
    names = ["cat", "dog"]
    assert ds.map(lambda s: s).take(3).class_names == names and ds.cache().class_names == names
    assert ds.filter(lambda s: s[1] == 1).class_names == names
    assert chute.concat([ds, ds.skip(6)]).class_names == names
    other = write_folder(tmp_path / "more")
    (other / "cat").rename(other / "fox")
    foxes = chute.image_folder(other, size=(8, 8))
    assert foxes.class_names == ["dog", "fox"] and chute.mix([ds, foxes], [0.5, 0.5]).class_names is None
    arrays = chute.from_arrays(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64))
    assert arrays.class_names is None and arrays.map(lambda s: s).class_names is None
    assert ds.loader(4).class_names == names and arrays.loader(4).class_names is None


def test_the_doctor_advises_storing_decoded_images_when_decoding_limits() -> None:
    from chute.telemetry.doctor import Facts, advise

    report = {"waiting_fraction": 0.9, "stages_ms_per_batch": {"decode": 12.0, "read": 1.0}}
    limiting, advice = advise(report, Facts(2, "process", 2, "DecodedImages", "exact", cores=2))
    assert limiting == "decode" and any("--resize HxW" in line for line in advice)


def test_image_folder_takes_an_int_as_a_square_size_and_checks_the_rest(tmp_path: Path) -> None:
    from chute.images.codecs import encode_jpeg

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes(encode_jpeg(np.full((40, 30, 3), 90, np.uint8)))
    assert chute.image_folder(tmp_path, size=16)[0][0].shape == (16, 16, 3)
    for wrong in ((16,), (0, 16), (16.5, 16), "16x16", True, -3):
        with pytest.raises(chute.OptionError, match=r"size=\(height, width\) of positive ints"):
            chute.image_folder(tmp_path, size=wrong)  # type: ignore[arg-type]
    with pytest.raises(chute.OptionError, match="jpeg_quality= an int from 1 to 100"):
        chute.image_folder(tmp_path, size=16, jpeg_quality=0)
