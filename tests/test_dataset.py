"""Dataset over arrays: structures, zero-copy, gathers and the spec."""

from __future__ import annotations

import numpy as np

import chute


def test_tuple_samples_and_spec(xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = xy
    ds = chute.from_arrays(x, y)
    assert len(ds) == 100
    sample = ds[7]
    assert isinstance(sample, tuple) and sample[0].tolist() == [21.0, 22.0, 23.0] and sample[1] == 7
    assert ds.spec.names == ("0", "1")
    assert ds.spec.fields == (
        chute.Field("0", np.dtype("float32"), (3,)),
        chute.Field("1", np.dtype("int64"), ()),
    )
    assert ds.spec.structure == ("0", "1")
    assert repr(ds) == "Dataset(len=100, spec=Spec(0: float32[3], 1: int64[]))"


def test_samples_are_zero_copy_views(xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = xy
    ds = chute.from_arrays(x, y)
    assert np.shares_memory(ds[3][0], x)
    assert ds.source.arrays[0] is x  # type: ignore[attr-defined]


def test_dict_and_nested_structures() -> None:
    a, b, y = np.zeros((6, 2)), np.ones((6, 4), np.float32), np.arange(6)
    ds = chute.from_arrays({"input_1": a, "input_2": b}, {"output": y})
    assert ds.spec.structure == ({"input_1": "0/input_1", "input_2": "0/input_2"}, {"output": "1/output"})
    inputs, targets = ds[[1, 2]]
    assert inputs["input_2"].shape == (2, 4) and targets["output"].tolist() == [1, 2]
    flat = chute.from_arrays({"a": a, "y": y})
    assert flat.spec.structure == {"a": "a", "y": "y"} and flat[5]["y"] == 5


def test_gather_forms(xy: tuple[np.ndarray, np.ndarray]) -> None:
    ds = chute.from_arrays(*xy)
    assert ds[[3, 1, 3]][1].tolist() == [3, 1, 3]
    assert ds[np.array([-1, 0])][1].tolist() == [99, 0]
    assert ds[10:13][1].tolist() == [10, 11, 12]
    assert ds[90::4][1].tolist() == [90, 94, 98]
    mask = np.zeros(100, bool)
    mask[[5, 50]] = True
    assert ds[mask][1].tolist() == [5, 50]
    assert ds.gather([])[0].shape == (0, 3)
    assert ds[-1][1] == 99


def test_memory_maps_read_lazily(tmp_path: object) -> None:
    path = f"{tmp_path}/x.npy"
    np.save(path, np.arange(40, dtype=np.float32).reshape(20, 2))
    mapped = np.load(path, mmap_mode="r")
    ds = chute.from_arrays(mapped, np.arange(20))
    loader = ds.loader(8, shuffle=True, seed=0)
    batch = loader[0]
    assert type(batch[0]) is np.ndarray
    np.testing.assert_array_equal(batch[0][:, 0] / 2, batch[1])
    assert np.shares_memory(ds[2][0], mapped)


def test_batch_gather_is_one_take_per_field(xy: tuple[np.ndarray, np.ndarray]) -> None:
    # A batch of array data is one vectorised gather, never a Python loop over samples: the
    # source is asked once per batch, with all the batch's indices.
    ds = chute.from_arrays(*xy)
    calls: list[object] = []
    source = ds.source
    original = source.read_rows

    def spy(rows: object) -> list[np.ndarray]:
        calls.append(rows)
        return original(rows)  # type: ignore[arg-type]

    source.read_rows = spy  # type: ignore[method-assign]
    ds.loader(25, shuffle=True, seed=0)[2]
    assert len(calls) == 1 and len(calls[0]) == 25  # type: ignore[arg-type]


def test_block_shuffle_over_a_memory_map_reads_ahead_and_visits_all(tmp_path: object) -> None:
    path = f"{tmp_path}/big.npy"
    np.save(path, np.arange(50_000, dtype=np.float32).reshape(10_000, 5))
    mapped = np.load(path, mmap_mode="r")
    shuffle = chute.BlockShuffle(block_size=100, window=4)
    loader = chute.from_arrays(mapped).loader(64, shuffle=shuffle, seed=1, workers=2)
    seen = np.concatenate([batch[0][:, 0] for batch in loader]) / 5
    assert sorted(seen.astype(int).tolist()) == list(range(10_000))
