"""Exact mid-epoch resume (state_dict / load_state_dict), ranks, and elastic restores."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chute


def data(n: int) -> chute.Dataset:
    return chute.from_arrays(np.arange(n, dtype=np.int64))


def noisy(sample: tuple[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return sample[0], rng.integers(0, 1000)


def run(loader: chute.Loader, batches: int) -> list[list[int]]:
    """The next ``batches`` batches of iteration, across epochs, as lists of sample indices."""
    out: list[list[int]] = []
    while len(out) < batches:
        for batch in loader:
            out.append(np.asarray(batch[0] if isinstance(batch, tuple) else batch).tolist())
            if len(out) == batches:
                break
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120),
    batch_size=st.integers(1, 17),
    seed=st.integers(0, 2**63),
    shuffle=st.sampled_from([False, True, "block"]),
    drop_remainder=st.booleans(),
    stop=st.integers(0, 40),
    workers=st.sampled_from([0, 2]),
)
def test_resume_equals_an_uninterrupted_run(
    n: int, batch_size: int, seed: int, shuffle: object, drop_remainder: bool, stop: int, workers: int
) -> None:
    if drop_remainder and n < batch_size:
        return
    make = lambda w: data(n).loader(  # noqa: E731
        batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder, workers=w, prefetch=3
    )
    whole = make(0)
    expected = run(whole, stop + 2 * len(whole))
    first = make(workers)
    assert run(first, stop) == expected[:stop]
    state = json.loads(json.dumps(first.state_dict()))  # JSON-ready
    first.close()
    again = data(n).loader(batch_size, shuffle=shuffle, seed=None, drop_remainder=drop_remainder)
    again.load_state_dict(state)
    assert run(again, 2 * len(whole)) == expected[stop:]


def test_resume_at_every_step_with_maps_and_any_workers() -> None:
    ds = data(45).map(noisy)
    expected = [b[1].tolist() for b in ds.loader(4, shuffle=True, seed=3)]
    for workers, kind in ((0, "thread"), (1, "thread"), (3, "thread"), (2, "process")):
        for stop in range(len(expected) + 1):
            loader = ds.loader(4, shuffle=True, seed=3, workers=workers, worker_type=kind, prefetch=4)
            head = [b[1].tolist() for _, b in zip(range(stop), loader, strict=False)]
            state = loader.state_dict()
            loader.close()
            fresh = ds.loader(4, shuffle=True, workers=workers, worker_type=kind)
            fresh.load_state_dict(state)
            tail = [b[1].tolist() for b in fresh] if stop < len(expected) else []
            assert head + tail == expected, (workers, kind, stop)
            fresh.close()


def test_state_is_small_json_and_restores_fast_at_any_position() -> None:
    n = 2_000_000
    read: list[list[int]] = []

    def recorded(batch: tuple[np.ndarray]) -> tuple[np.ndarray]:
        read.append(batch[0].tolist())
        return batch

    ds = data(n).map_batch(recorded)
    loader = ds.loader(256, shuffle=True, seed=1)
    loader.epoch = 7
    run(loader, 3000)
    state = loader.state_dict()
    text = json.dumps(state)
    assert len(text) < 1024 and state["epoch"] == 7 and state["consumed"] == 3000 * 256
    fresh = ds.loader(256, shuffle=True)
    read.clear()
    fresh.load_state_dict(json.loads(text))
    first = next(iter(fresh))
    assert first[0].tolist() == loader.indices(3000).tolist()
    assert read == [first[0].tolist()]  # fast: the batch asked for is read, none replayed before it


def test_batches_read_ahead_are_not_counted_as_consumed() -> None:
    loader = data(100).loader(10, workers=2, prefetch=6)
    run(loader, 3)
    assert loader.state_dict()["consumed"] == 30


def test_restoring_onto_other_data_or_batching_is_a_clear_error() -> None:
    state = data(100).loader(10, shuffle=True, seed=0).state_dict()
    with pytest.raises(chute.OptionError, match="fingerprint"):
        chute.from_arrays(np.arange(100, dtype=np.int64)[::-1].copy()).loader(10).load_state_dict(state)
    with pytest.raises(chute.OptionError, match="samples=101"):
        data(101).loader(10, shuffle=True).load_state_dict(state)
    with pytest.raises(chute.OptionError, match="batch_size=20"):
        data(100).loader(20, shuffle=True).load_state_dict(state)
    with pytest.raises(chute.OptionError, match="state dict"):
        data(100).loader(10).load_state_dict({"epoch": 1})  # type: ignore[arg-type]


# -- ranks ---------------------------------------------------------------------------------------
def rank_epochs(n: int, batch_size: int, world: int, **kwargs: object) -> list[list[list[int]]]:
    """Each rank's batches of epoch 0."""
    loaders = [data(n).loader(batch_size, rank=r, world_size=world, **kwargs) for r in range(world)]  # type: ignore[arg-type]
    return [[b[0].tolist() for b in loader] for loader in loaders]


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 200),
    batch_size=st.integers(1, 9),
    world=st.integers(1, 5),
    remainder=st.sampled_from(["pad", "drop"]),
    shuffle=st.booleans(),
)
def test_ranks_are_disjoint_cover_the_epoch_and_get_equal_batch_counts(
    n: int, batch_size: int, world: int, remainder: str, shuffle: bool
) -> None:
    try:
        ranks = rank_epochs(n, batch_size, world, remainder=remainder, shuffle=shuffle, seed=4)
    except chute.EmptyDatasetError:
        assert remainder == "drop" and n < world  # nothing to deal out evenly
        return
    counts = {len(batches) for batches in ranks}
    assert len(counts) == 1  # no rank waits for another
    sizes = {len(batch) for batches in ranks for batch in batches[:-1]}
    assert sizes <= {batch_size}
    assert len({len(batches[-1]) for batches in ranks}) == 1  # last batches alike too
    seen = Counter(i for batches in ranks for batch in batches for i in batch)
    if remainder == "drop":
        assert max(seen.values()) == 1 and n - len(seen) < world
    else:
        assert set(seen) == set(range(n))
        assert sum(seen.values()) - n < world  # the padding: fewer than world_size repeats


def test_rank_and_world_size_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    loader = data(30).loader(5)
    assert (loader.world.rank, loader.world.size, loader.world.source) == (1, 3, "RANK/WORLD_SIZE")
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert (data(30).loader(5).world.rank, data(30).loader(5).world.size) == (2, 3)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(chute.OptionError, match="TF_CONFIG"):
        data(30).loader(5)
    with pytest.raises(chute.OptionError, match="together"):
        data(30).loader(5, rank=0)
    with pytest.raises(chute.OptionError, match="rank in"):
        data(30).loader(5, rank=2, world_size=2)


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 1), (1, 2)])
@pytest.mark.parametrize("steps", [0, 1, 3])
def test_elastic_restore_deals_the_rest_of_the_epoch_exactly_once(
    before: int, after: int, steps: int
) -> None:
    n, batch_size = 97, 4

    def loaders(world: int) -> list[chute.Loader]:
        return [
            data(n).loader(batch_size, shuffle=True, seed=9, rank=r, world_size=world, remainder="drop")
            for r in range(world)
        ]

    old = loaders(before)
    seen = Counter(i for loader in old for batch in run(loader, steps) for i in batch)
    states = [loader.state_dict() for loader in old]
    assert len({s["consumed"] for s in states}) == 1  # every rank agrees where the epoch stands
    new = loaders(after)
    for loader in new:
        loader.load_state_dict(states[0])
    rest = [[b[0].tolist() for b in loader] for loader in new]
    assert len({len(batches) for batches in rest}) == 1
    seen.update(i for batches in rest for batch in batches for i in batch)
    assert max(seen.values()) == 1 and n - len(seen) < after  # once each; the tail drop only
    assert all(loader.epoch == 1 for loader in new)
