"""Whole-batch image transforms: exact results, fixed randomness, the same with any workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chute
from chute.images.codecs import decode_image, encode_jpeg
from chute.images.transforms import flip_left_right, random_flip, to_float
from chute.rng import batch_rng


def images(n: int = 6, dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 5, 7, 3)).astype(dtype)


def test_flip_left_right_mirrors_the_chosen_images_into_a_copy() -> None:
    batch = images()
    batch.setflags(write=False)  # a read-only input (a memory map) is fine: the result is new
    which = np.array([True, False, True, True, False, False])
    out = flip_left_right(batch, which)
    assert np.array_equal(out[which], batch[which][:, :, ::-1])
    assert np.array_equal(out[~which], batch[~which])
    assert np.array_equal(flip_left_right(batch), batch[:, :, ::-1])
    gray = batch[..., 0]  # (N, H, W) too
    assert np.array_equal(flip_left_right(gray, which)[which], gray[which][:, :, ::-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=24), st.sampled_from([1, 3, 4]))
def test_flip_left_right_mirrors_exactly_the_chosen_images_in_runs_of_any_length(
    mask: list[bool], channels: int
) -> None:
    which = np.array(mask)  # (runs of consecutive chosen images are mirrored by one call each)
    batch = np.random.default_rng(len(mask)).integers(0, 256, (len(mask), 3, 5, channels), dtype=np.uint8)
    expected = np.where(which[:, None, None, None], batch[:, :, ::-1], batch)
    assert np.array_equal(flip_left_right(batch, which), expected)
    assert flip_left_right(batch, which, out=batch) is batch  # in place: the same
    assert np.array_equal(batch, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float16, np.int64])
def test_flip_left_right_gives_one_result_whatever_does_the_flipping(dtype: type) -> None:
    batch = images(4, dtype)  # float16 and int64: numpy flips (OpenCV has no such types)
    assert np.array_equal(flip_left_right(batch), batch[:, :, ::-1])


def test_flips_write_into_out_in_place_or_elsewhere_and_refuse_what_cannot_take_them() -> None:
    batch, which = images(), np.array([True, False, True, True, False, False])
    expected = np.where(which[:, None, None, None], batch[:, :, ::-1], batch)
    other = np.zeros_like(batch)
    assert flip_left_right(batch, which, out=other) is other and np.array_equal(other, expected)
    strided = np.zeros((6, 5, 14, 3), np.uint8)[:, :, ::2]  # not contiguous: numpy flips
    assert np.array_equal(flip_left_right(batch, which, out=strided), expected)
    copy = batch.copy()
    assert random_flip(copy, batch_rng((0, 0), 0), out=copy) is copy
    assert np.array_equal(copy, random_flip(batch, batch_rng((0, 0), 0)))
    batch.setflags(write=False)
    with pytest.raises(chute.SpecError, match=r"out: a writable .*\(6, 5, 7, 3\).*read-only.*out=images"):
        flip_left_right(batch, which, out=batch)
    with pytest.raises(chute.SpecError, match=r"dtype uint8.*ndarray \(6, 5, 7, 3\) float32"):
        random_flip(batch, batch_rng((0, 0), 0), out=np.zeros(batch.shape, np.float32))
    with pytest.raises(chute.SpecError, match=r"Received: list\. "):
        flip_left_right(batch, out=[])


def test_random_flip_flips_what_the_batch_generator_draws() -> None:
    batch = images(8)
    out = random_flip(batch, batch_rng((0, 0), 0))
    flipped = [i for i in range(8) if not np.array_equal(out[i], batch[i])]
    assert flipped == [0, 1, 5, 6]  # fixed by (seed 0, epoch 0, first index 0): Philox is stable
    assert np.array_equal(random_flip(batch, batch_rng((0, 0), 0), p=0.0), batch)
    assert np.array_equal(random_flip(batch, batch_rng((0, 0), 0), p=1.0), batch[:, :, ::-1])


def test_to_float_scales_into_floats() -> None:
    batch = images()
    out = to_float(batch)
    assert out.dtype == np.float32 and out.shape == batch.shape
    assert np.array_equal(out, batch.astype(np.float32) * np.float32(1 / 255))
    assert to_float(batch, scale=2.0, dtype=np.float64).tolist() == (batch * 2.0).tolist()
    many = np.arange(3 * 200 * 300, dtype=np.uint16).reshape(3, 200, 300)  # more than one pass a row
    assert np.array_equal(to_float(many, scale=0.5), many.astype(np.float32) * np.float32(0.5))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, per channel
    normal = to_float(batch, mean=mean, std=std)
    expected = (batch / 255.0 - np.array(mean)) / np.array(std)
    assert normal.dtype == np.float32 and np.allclose(normal, expected, atol=1e-5)
    assert np.allclose(to_float(batch, mean=0.5), batch / 255.0 - 0.5, atol=1e-6)
    table = np.arange(12, dtype=np.int16).reshape(4, 3)  # (N, features): per feature
    assert np.allclose(to_float(table, scale=1.0, mean=(0, 1, 2), std=2), (table - [0, 1, 2]) / 2)
    assert to_float(np.uint8(51)) == np.float32(51) * np.float32(1 / 255) and to_float(
        np.zeros((0, 4))
    ).shape == (0, 4)


def test_transforms_say_what_they_expected() -> None:
    with pytest.raises(chute.SpecError, match=r"a batch of images .* shape \(5, 7\)"):
        flip_left_right(images()[0, :, :, 0])
    with pytest.raises(chute.SpecError, match=r"one boolean per image \(6\)"):
        flip_left_right(images(), [True, False])
    with pytest.raises(chute.SpecError, match=r"a probability p in \[0, 1\].*1.5"):
        random_flip(images(), np.random.default_rng(0), p=1.5)
    with pytest.raises(chute.SpecError, match=r"std: one number, or one per channel \(3, .*none of them 0"):
        to_float(images(), std=(0.2, 0.0, 0.2))
    with pytest.raises(chute.SpecError, match=r"mean: one number, or one per channel \(3"):
        to_float(images(), mean=(0.5, 0.5))
    with pytest.raises(chute.SpecError, match=r"a floating-point dtype.*int32"):
        to_float(images(), dtype=np.int32)


def write_jpegs(root: Path, count: int = 40) -> Path:
    for i in range(count):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0 : 20 + i, 0:30]
        pixels = np.stack([x * 7 % 256, y * 5 % 256, (x + y + i) % 256], axis=-1).astype(np.uint8)
        (folder / f"{i:03d}.jpg").write_bytes(encode_jpeg(pixels))
    return root


def augment(batch: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    images, labels = batch  # decoded for this batch: mirrored in place
    return to_float(random_flip(images, rng, out=images)), labels


def test_an_image_pipeline_is_the_same_inline_on_threads_and_in_processes(tmp_path: Path) -> None:
    root = write_jpegs(tmp_path / "photos")
    ds = chute.image_folder(root, size=(16, 16)).map_batch(augment)
    loader = ds.loader(8, shuffle=True, seed=4)
    inline = [batch for _ in range(2) for batch in loader]  # epochs 0 and 1
    paths = ds.source.paths  # type: ignore[attr-defined]
    pixels = np.stack([decode_image(Path(path).read_bytes(), (16, 16)) for path in paths])
    for batch, (floats, labels) in enumerate(inline[:5]):  # each image decoded, maybe mirrored, scaled
        rows = loader.indices(batch, epoch=0)
        mirrored = batch_rng((4, 0), int(rows[0])).random(len(rows)) < 0.5  # the batch map's generator
        expected = np.where(mirrored[:, None, None, None], pixels[rows][:, :, ::-1], pixels[rows])
        assert np.array_equal(floats, expected * np.float32(1 / 255)) and 0 < mirrored.sum() < 8
        assert labels.tolist() == ds.source.labels[rows].tolist()  # type: ignore[attr-defined]
    for options in ({"workers": 2}, {"workers": 2, "worker_type": "process"}):
        with ds.loader(8, shuffle=True, seed=4, prefetch=3, **options) as loader:  # type: ignore[arg-type]
            got = [batch for _ in range(2) for batch in loader]
        pairs = zip(got, inline, strict=True)
        assert all(np.array_equal(a, b) for x, y in pairs for a, b in zip(x, y, strict=True))
