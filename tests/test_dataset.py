"""Dataset over arrays: structures, zero-copy, gathers and the spec."""

from __future__ import annotations

import collections
import gc
import pickle
import typing

import numpy as np

import chute
from chute.spec import Named


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


Sample = collections.namedtuple("Sample", ["image", "label"])


class Pair(typing.NamedTuple):
    first: np.ndarray
    second: np.ndarray


def test_namedtuple_samples_keep_their_type_and_field_names() -> None:
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    ds = chute.from_arrays(Sample(x, y))
    assert ds.spec.names == ("image", "label") and ds.spec.structure == Sample("image", "label")
    assert type(ds[3]) is Sample and ds[3].label == 3
    batches = list(ds.loader(4, workers=2))
    assert all(type(b) is Sample for b in batches) and batches[2].label.tolist() == [8, 9]
    nested = chute.from_arrays({"outer": Sample(x, y)})
    assert nested.spec.names == ("outer/image", "outer/label")
    assert type(nested.loader(4)[0]["outer"]) is Sample

    def samples() -> typing.Iterator[Sample]:
        yield from (Sample(np.full(2, i), np.int64(i)) for i in range(10))

    streamed = list(chute.from_generator(samples).loader(4))
    assert all(type(b) is Sample for b in streamed) and streamed[0].label.tolist() == [0, 1, 2, 3]
    mapped = ds.map(lambda s: Pair(s.image, s.label * 2))
    assert mapped.spec.names == ("first", "second") and type(mapped[1]) is Pair
    assert [type(b) for b in mapped.loader(5)] == [Pair, Pair]


def test_a_namedtuple_treedef_pickles_even_when_its_type_cannot() -> None:
    Local = collections.namedtuple("Local", "p q")  # defined in a function: pickle cannot name it
    pickled = pickle.dumps(Named(Local, (0, 1)))
    assert pickle.loads(pickled).tuple_type is Local  # known here by its name and fields
    del Local
    gc.collect()
    again = pickle.loads(pickled)  # where it is not known (another process): an equivalent type
    assert again == (0, 1) and (again.name, again.fields) == ("Local", ("p", "q"))
    assert again.tuple_type.__module__ == "chute.spec"
    assert pickle.loads(pickle.dumps(again.tuple_type(1, 2))).q == 2  # its values pickle too
    assert pickle.loads(pickle.dumps(Named(Sample, (1, 0)))).tuple_type is Sample


def doubled(sample: typing.Any) -> typing.Any:
    return sample._replace(image=sample.image * 2)


def test_namedtuples_cross_to_process_workers() -> None:
    Local = collections.namedtuple("Local", "image label")
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    ds = chute.from_arrays(Local(x, y)).map(doubled)  # the workers get remade Local samples
    with ds.loader(4, workers=2, worker_type="process", start_method="spawn") as loader:
        batches = list(loader)
    assert all(type(b) is Local for b in batches), [type(b) for b in batches]
    assert np.concatenate([b.image for b in batches]).tolist() == (x * 2).tolist()
