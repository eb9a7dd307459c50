"""Loader: the Sequence contract, epochs, iteration and exactly-once properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute


def labels(loader: chute.Loader) -> list[list[int]]:
    return [loader[i][1].tolist() for i in range(len(loader))]


def test_pinned_batches_for_seed_7() -> None:
    loader = chute.from_arrays(np.arange(10)).loader(3, shuffle=True, seed=7)
    # The epoch order for seed 7 is 6 3 9 1 2 0 5 7 8 4; each batch holds its samples in ascending order.
    assert [b[0].tolist() for b in loader] == [[3, 6, 9], [0, 1, 2], [5, 7, 8], [4]]


def test_more_workers_than_the_cores_can_run_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """As torch's DataLoader warns: workers=1000 is a slip, not a setting."""
    import chute.pipeline.auto as auto

    monkeypatch.setattr(auto, "cores", lambda: 2)
    ds = chute.from_arrays(np.arange(10))
    with pytest.warns(UserWarning, match=r"workers=1000 threads on 2 CPU cores .* workers<=16") as caught:
        ds.loader(2, workers=1000)
    assert caught[0].filename == __file__  # pointing at the line that asked for them
    with pytest.warns(UserWarning, match=r"workers=3 processes on 2 CPU cores .* workers<=2"):
        ds.loader(2, workers=3, worker_type="process")
    ds.loader(2, workers=2, worker_type="process")  # (as many as the cores: no warning)
    ds.loader(2, workers=16)


@given(
    n=st.integers(1, 500),
    batch_size=st.integers(1, 64),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 50),
    drop=st.booleans(),
    shuffle=st.booleans(),
)
def test_every_sample_once_per_epoch(
    n: int, batch_size: int, seed: int, epoch: int, drop: bool, shuffle: bool
) -> None:
    if drop and n < batch_size:
        return  # an error, tested below
    loader = chute.from_arrays(np.arange(n)).loader(
        batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop
    )
    loader.epoch = epoch
    assert len(loader) == (n // batch_size if drop else -(-n // batch_size))
    seen = np.concatenate([loader[i][0] for i in range(len(loader))])
    assert len(np.unique(seen)) == len(seen)
    if drop:
        assert len(seen) == len(loader) * batch_size
        assert all(len(loader[i][0]) == batch_size for i in range(len(loader)))
    else:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


@given(seed=st.integers(0, 2**64 - 1), epoch=st.integers(0, 100), n=st.integers(15, 300))
def test_getitem_is_stable_and_seeded(seed: int, epoch: int, n: int) -> None:
    a = chute.from_arrays(np.arange(n)).loader(7, shuffle=True, seed=seed)
    b = chute.from_arrays(np.arange(n)).loader(7, shuffle=True, seed=seed)
    a.epoch = b.epoch = epoch
    first = [a[i][0].tolist() for i in range(len(a))]
    next(iter(a))  # moves the position within the epoch, not what loader[i] means
    assert [a[i][0].tolist() for i in reversed(range(len(a)))] == first[::-1]
    assert [b[i][0].tolist() for i in range(len(b))] == first


def test_epochs_differ_and_on_epoch_end_moves_on(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(10, shuffle=True, seed=0)
    first = labels(loader)
    loader.on_epoch_end()
    assert loader.epoch == 1
    assert labels(loader) != first
    loader.epoch = 0
    assert labels(loader) == first


def test_iteration_yields_one_epoch_then_advances(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(30, shuffle=True, seed=1)
    expected = labels(loader)
    assert [b[1].tolist() for b in loader] == expected
    assert (loader.epoch, loader.step) == (1, 0)
    second = labels(loader)
    assert second != expected
    assert [b[1].tolist() for b in loader] == second


def test_stopped_loop_resumes_where_it_stopped(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(10, shuffle=True, seed=3)
    expected = labels(loader)
    got = []
    for batch in loader:
        got.append(batch[1].tolist())
        if len(got) == 4:
            break
    assert (loader.epoch, loader.step) == (0, 4)
    got += [b[1].tolist() for b in loader]
    assert got == expected


def test_batch_reads_any_epoch_without_moving(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(40, shuffle=True, seed=5)
    assert loader.batch(1, 3)[1].tolist() == loader.indices(1, epoch=3).tolist()
    assert (loader.epoch, loader.step) == (0, 0)


def test_setting_epoch_restarts_it(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(10)
    next(iter(loader))
    loader.epoch = 4
    assert (loader.epoch, loader.step) == (4, 0)


def test_seed_none_picks_and_exposes_a_seed(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(10, shuffle=True)
    assert isinstance(loader.seed, int)
    again = chute.from_arrays(*xy).loader(10, shuffle=True, seed=loader.seed)
    assert labels(again) == labels(loader)
    assert loader.options.seed == loader.seed


def test_unshuffled_batches_are_zero_copy_views(xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = xy
    batch = chute.from_arrays(x, y).loader(16)[1]
    assert np.shares_memory(batch[0], x)
    np.testing.assert_array_equal(batch[0], x[16:32])


def test_batches_are_structured_like_samples(xy: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = xy
    loader = chute.from_arrays({"features": x, "label": y}).loader(8, shuffle=True, seed=0)
    batch = loader[0]
    assert set(batch) == {"features", "label"}
    np.testing.assert_array_equal(batch["features"], x[batch["label"]])
    assert batch["features"].shape == (8, 3) and batch["features"].dtype == np.float32


def test_indices_match_the_batch(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(12, shuffle=True, seed=2)
    for i in range(len(loader)):
        assert loader.indices(i).tolist() == loader[i][1].tolist()


def test_repr_names_the_position(xy: tuple[np.ndarray, np.ndarray]) -> None:
    loader = chute.from_arrays(*xy).loader(10, shuffle=True, seed=4)
    assert repr(loader) == (
        "Loader(batches=10, batch_size=10, shuffle=True, seed=4, drop_remainder=False, workers=0, "
        "worker_type='thread', prefetch=2, epoch=0, step=0)"
    )


@pytest.mark.parametrize("drop, expected", [(False, 4), (True, 3)])
def test_len_with_remainder(drop: bool, expected: int) -> None:
    assert len(chute.from_arrays(np.zeros(10)).loader(3, drop_remainder=drop)) == expected


@given(
    n=st.integers(1, 3000),
    block_size=st.integers(1, 300),
    window=st.integers(1, 8),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 100),
)
def test_block_shuffle_visits_every_sample_once(
    n: int, block_size: int, window: int, seed: int, epoch: int
) -> None:
    shuffle = chute.BlockShuffle(block_size=block_size, window=window)
    loader = chute.from_arrays(np.arange(n)).loader(16, shuffle=shuffle, seed=seed)
    loader.epoch = epoch
    seen = np.concatenate([loader[i][0] for i in range(len(loader))])
    assert sorted(seen.tolist()) == list(range(n))
    again = chute.from_arrays(np.arange(n)).loader(16, shuffle=shuffle, seed=seed)
    again.epoch = epoch
    assert [again[i][0].tolist() for i in range(len(again))] == [
        loader[i][0].tolist() for i in range(len(loader))
    ]


def test_block_shuffle_keeps_windows_of_blocks_together() -> None:
    shuffle = chute.BlockShuffle(block_size=100, window=2)
    loader = chute.from_arrays(np.arange(10_000)).loader(50, shuffle=shuffle, seed=0)
    for i in range(len(loader)):
        assert len(np.unique(loader[i][0] // 100)) <= 2  # a batch draws from the 2 blocks of its window
    assert chute.from_arrays(np.arange(10)).loader(2, shuffle="block").options.shuffle == chute.BlockShuffle()


def test_shuffle_quality_figures() -> None:
    data = chute.from_arrays(np.arange(50_000))
    exact = data.loader(256, shuffle=True, seed=0).shuffle_quality()
    assert abs(exact["batch_spread"] - 1) < 0.02 and abs(exact["displacement"] - 1) < 0.02
    ordered = data.loader(256).shuffle_quality()
    assert ordered["batch_spread"] < 0.02 and ordered["displacement"] == 0
    narrow = data.loader(256, shuffle=chute.BlockShuffle(block_size=1000, window=1), seed=0).shuffle_quality()
    # Blocks travel far; a batch stays within one block (or straddles two, where 1000 % 256 != 0).
    assert narrow["batch_spread"] < 0.2 and narrow["displacement"] > 0.5


def test_the_option_records_are_taken_whole_or_field_by_field() -> None:
    ds = chute.from_arrays(np.arange(50))
    by_keyword = ds.loader(8, shuffle=True, seed=3, drop_remainder=True, prefetch=4, rank=1, world_size=2)
    by_record = ds.loader(
        options=chute.BatchOptions(8, shuffle=True, seed=3, drop_remainder=True),
        pipeline=chute.PipelineOptions(prefetch=4),
        world=chute.World(rank=1, size=2),
    )
    mixed = ds.loader(8, shuffle=True, seed=3, options=None, world=chute.World(1, 2), drop_remainder=True)
    expected = [b[0].tolist() for b in by_keyword]
    assert expected and [b[0].tolist() for b in by_record] == expected == [b[0].tolist() for b in mixed]
    assert by_record.options == by_keyword.options and by_record.pipeline.prefetch == 4
    assert (by_record.world.rank, by_record.world.size) == (1, 2)
    # a keyword overrides the record's field; workers= overrides the pipeline record's
    loader = ds.loader(options=chute.BatchOptions(8), drop_remainder=True, pipeline=chute.PipelineOptions(2))
    assert loader.options.drop_remainder and loader.pipeline.workers == 2
    assert ds.loader(8, workers=3, pipeline=chute.PipelineOptions(prefetch=5)).pipeline.workers == 3


def test_loader_settings_that_do_not_fit_say_which_do() -> None:
    ds = chute.from_arrays(np.arange(50))
    with pytest.raises(chute.OptionError, match="prefetch") as raised:
        ds.loader(8, prefech=4)
    assert "prefech" in str(raised.value)
    with pytest.raises(chute.OptionError, match="not both"):
        ds.loader(8, options=chute.BatchOptions(8))
    with pytest.raises(chute.OptionError, match="not both"):  # seed 0 is a seed, not "none given"
        ds.loader(options=chute.BatchOptions(8), seed=0)
    with pytest.raises(chute.OptionError, match="a batch_size"):
        ds.loader()
