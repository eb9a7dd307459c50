"""take, skip, shard, subset, split, filter and concat: exact views that keep every engine promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute
from engine import check_engine


def data(n: int = 50) -> chute.Dataset:
    return chute.from_arrays(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.float32) * 2)


def first(ds: chute.Dataset) -> list[int]:
    return ds[:][0].tolist()


def test_take_skip_shard_subset_pick_the_documented_samples() -> None:
    ds = data(20)
    assert first(ds.take(3)) == [0, 1, 2] and first(ds.take(99)) == list(range(20))
    assert first(ds.skip(17)) == [17, 18, 19] and len(ds.skip(25)) == 0
    assert first(ds.shard(1, 6)) == [1, 7, 13, 19]
    assert first(ds.subset([5, 2, 2, -1])) == [5, 2, 2, 19]
    assert first(ds.subset(np.arange(20) % 5 == 0)) == [0, 5, 10, 15]
    assert first(ds.skip(5).take(4).shard(0, 2)) == [5, 7]
    assert ds.take(4)[2] == (2, 4.0)
    with pytest.raises(chute.OutOfRangeError, match="20 samples"):
        ds.subset([3, 20])
    with pytest.raises(chute.OptionError, match="index in"):
        ds.shard(3, 3)


def test_contiguous_views_read_zero_copy_from_arrays() -> None:
    x = np.arange(100, dtype=np.int64)
    view = chute.from_arrays(x).skip(10).take(50)
    batch = view.loader(20)[1][0]
    assert batch.tolist() == list(range(30, 50)) and np.shares_memory(batch, x)


def test_split_is_disjoint_covers_everything_and_is_fixed_by_the_seed() -> None:
    ds = data(103)
    train, val, test = ds.split([0.8, 0.1, 0.1], seed=7)
    assert (len(train), len(val), len(test)) == (83, 10, 10)
    together = np.concatenate([first(p) for p in (train, val, test)])
    assert sorted(together.tolist()) == list(range(103))
    again = ds.split([0.8, 0.1, 0.1], seed=7)
    assert [first(p) for p in again] == [first(p) for p in (train, val, test)]
    assert first(ds.split([0.8, 0.1, 0.1], seed=8)[1]) != first(val)
    assert first(val) == sorted(first(val))  # each part reads in ascending order
    assert first(val) == [20, 22, 32, 43, 54, 55, 63, 89, 94, 99]  # fixed on every machine
    runs = ds.split([50, 53])
    assert first(runs[0]) == list(range(50)) and first(runs[1]) == list(range(50, 103))


@given(
    n=st.integers(0, 300),
    parts=st.lists(st.integers(0, 9), min_size=1, max_size=5),
    seed=st.integers(0, 2**64 - 1),
)
def test_split_sizes_follow_the_fractions_exactly(n: int, parts: list[int], seed: int) -> None:
    if not sum(parts):
        return
    fractions = [p / sum(parts) for p in parts]
    pieces = data(max(n, 1)).take(n).split(fractions, seed=seed)
    sizes = [len(p) for p in pieces]
    assert sum(sizes) == n and all(abs(s - f * n) < 1 for s, f in zip(sizes, fractions, strict=True))
    seen = np.concatenate([p.indices for p in pieces]) if n else np.empty(0)
    assert sorted(seen.tolist()) == list(range(n))


@pytest.mark.parametrize("parts", [[0.5, 0.6], [0.5, -0.5], "abc", [], [10, 20]])
def test_split_refuses_parts_that_do_not_add_up(parts: object) -> None:
    with pytest.raises(chute.OptionError, match=r"Pass e\.g|add up"):
        data(50).split(parts)  # type: ignore[arg-type]


def test_filter_has_an_exact_length_and_scans_once() -> None:
    calls = []

    def even(sample: tuple[np.ndarray, np.ndarray]) -> bool:
        calls.append(int(sample[0]))
        return int(sample[0]) % 2 == 0

    kept = data(9000).filter(even)
    assert not calls  # nothing read until the length or a sample is needed
    assert len(kept) == 4500 and len(calls) == 9000
    assert first(kept.take(4)) == [0, 2, 4, 6] and kept[-1][0] == 8998
    assert len(calls) == 9000  # the scan is not repeated
    batched = data(9000).filter(lambda b: b[1] > 17990, batched=True)
    assert first(batched) == [8996, 8997, 8998, 8999]
    with pytest.raises(chute.SpecError, match="one flag per sample"):
        len(data(10).filter(lambda b: True, batched=True))


def test_concat_joins_datasets_in_order_and_checks_their_specs() -> None:
    both = chute.concat([data(5), data(10).skip(7)])
    assert len(both) == 8 and first(both) == [0, 1, 2, 3, 4, 7, 8, 9]
    assert first(both.subset([6, 0, 5, 1])) == [8, 0, 7, 1]  # interleaved parts come back in order
    other = chute.from_arrays(np.arange(5, dtype=np.int32), np.zeros(5, np.float32))
    with pytest.raises(chute.SpecError, match="dataset 1"):
        chute.concat([data(5), other])
    with pytest.raises(chute.OptionError, match="non-empty list"):
        chute.concat([])


def noisy(sample: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return sample[0], np.float32(rng.random())


@pytest.mark.parametrize(
    "make",
    [
        lambda: data(60).map(noisy).skip(7).take(40),
        lambda: data(60).split([0.7, 0.3], seed=1)[0].map(noisy),
        lambda: data(60).filter(lambda s: int(s[0]) % 3 != 0).map(noisy),
        lambda: chute.concat([data(20).map(noisy), data(30).shard(1, 2)]),
    ],
    ids=["skip-take", "split", "filter", "concat"],
)
def test_views_keep_the_engine_promises(make: object) -> None:
    ds = make()  # type: ignore[operator]
    expected = check_engine(ds, 7, shuffle=True)
    samples = [i for batch in expected[: -(-len(ds) // 7)] for i in batch[0]]
    assert sorted(samples) == sorted(first(ds))  # exactly once per epoch


def test_resume_refuses_a_state_of_another_view() -> None:
    state = data(50).take(40).loader(8, shuffle=True, seed=0).state_dict()
    with pytest.raises(chute.OptionError, match="fingerprint"):
        data(50).skip(10).loader(8, shuffle=True).load_state_dict(state)


def test_a_view_has_a_source_face_for_code_that_reads_sources() -> None:
    source = data(10).skip(2).take(3).source
    assert len(source) == 3 and source.read_rows(slice(0, 2))[0].tolist() == [2, 3]
    assert source.read_sample(2)[0] == 4 and source.spec == data(1).spec
