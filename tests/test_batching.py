"""Variable-length samples: padding, bucketing by length, collate, and loops that repeat epochs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute
from chute.order.epochs import bucket_order
from engine import as_lists, check_engine


def tokens(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = int(sample["n"])
    return {"tokens": np.arange(1, n + 1, dtype=np.int32), "label": np.int64(n % 2)}


def sequences(n: int = 64, longest: int = 30, seed: int = 0) -> chute.Dataset:
    lengths = np.random.default_rng(seed).integers(1, longest + 1, n)
    return chute.from_arrays({"n": lengths}).map(tokens, ragged=["tokens"])


def padding_fraction(batches: list[np.ndarray]) -> float:
    cells = sum(b.size for b in batches)
    return sum(int((b == 0).sum()) for b in batches) / cells


def test_pad_to_the_longest_in_the_batch_with_lengths_and_mask() -> None:
    ds = chute.from_arrays({"n": np.array([3, 1, 4, 2])}).map(tokens, ragged=["tokens"])
    loader = ds.loader(3, pad=chute.Pad(value=-1, lengths=True, mask=True))
    batch = loader[0]
    assert list(batch) == ["tokens", "tokens_length", "tokens_mask", "label"]
    assert batch["tokens_length"].tolist() == [3, 1, 4]
    assert batch["tokens"].tolist() == [[1, 2, 3, -1], [1, -1, -1, -1], [1, 2, 3, 4]]
    assert batch["tokens_mask"].tolist() == [[True] * 3 + [False], [True] + [False] * 3, [True] * 4]
    assert loader[1]["tokens"].tolist() == [[1, 2]]  # each batch to its own longest
    assert loader.spec.field("tokens").shape == (None,) and loader.spec.field("tokens").kind == "array"


def test_pad_to_a_fixed_length_or_a_multiple() -> None:
    ds = chute.from_arrays({"n": np.array([5, 1, 9])}).map(tokens, ragged=["tokens"])
    assert ds.loader(3, pad=chute.Pad(multiple=4))[0]["tokens"].shape == (3, 12)
    fixed = ds.loader(3, pad=chute.Pad(length=6, truncate=True, lengths=True))[0]
    assert fixed["tokens"].shape == (3, 6) and fixed["tokens_length"].tolist() == [5, 1, 6]
    assert fixed["tokens"][2].tolist() == [1, 2, 3, 4, 5, 6]
    assert ds.loader(3, pad=chute.Pad(length=6)).spec.field("tokens").shape == (6,)
    with pytest.raises(chute.SpecError, match="truncate=True"):
        ds.loader(3, pad=chute.Pad(length=6))[0]


def test_padding_refuses_what_it_cannot_do_with_advice() -> None:
    with pytest.raises(chute.OptionError, match="no ragged field"):
        chute.from_arrays(np.zeros((4, 2))).loader(2, pad=True)
    pairs = chute.from_arrays(np.array([2, 3])).map(lambda s: (np.arange(int(s[0])),), ragged=["0"])
    with pytest.raises(chute.OptionError, match="inside a dict"):
        pairs.loader(2, pad=chute.Pad(lengths=True))
    assert pairs.loader(2, pad=True)[0][0].tolist() == [[0, 1, 0], [0, 1, 2]]
    with pytest.raises(chute.OptionError, match="pad= or collate="):
        pairs.loader(2, pad=True, collate=list)
    with pytest.raises(chute.OptionError, match=r"chute\.Pad"):
        pairs.loader(2, pad=3)
    with pytest.raises(chute.SpecError, match="differ only in their first dimension"):
        chute.from_arrays(np.array([2, 3])).map(lambda s: (np.zeros((2, int(s[0]))),), ragged=["0"])[:]


@given(
    lengths=st.lists(st.integers(0, 600), min_size=1, max_size=400),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
    boundaries=st.sampled_from([None, (16, 64, 256), (100,)]),
)
def test_bucket_order_is_a_permutation_of_batches_within_buckets(
    lengths: list[int], batch_size: int, seed: int, epoch: int, shuffle: bool, boundaries: object
) -> None:
    L = np.array(lengths)
    order = bucket_order(
        L, batch_size, seed=seed, epoch=epoch, shuffle=shuffle, boundaries=boundaries, window=3
    )
    assert sorted(order.tolist()) == list(range(len(L)))
    again = bucket_order(
        L, batch_size, seed=seed, epoch=epoch, shuffle=shuffle, boundaries=boundaries, window=3
    )
    assert np.array_equal(order, again)
    if boundaries is not None:  # all but the batches of leftovers hold one bucket each
        buckets = np.searchsorted(boundaries, L[order], side="right")
        full = len(L) // batch_size
        mixed = sum(
            len(set(buckets[i * batch_size : (i + 1) * batch_size].tolist())) > 1 for i in range(full)
        )
        assert mixed <= len(boundaries)


def test_bucketing_cuts_padding_and_keeps_the_engine_promises() -> None:
    ds = sequences(300, longest=200)
    plain = [b["tokens"] for b in ds.loader(16, shuffle=True, seed=1, pad=True)]
    bucketed = [b["tokens"] for b in ds.loader(16, shuffle=True, seed=1, pad=True, bucket=True)]
    assert padding_fraction(bucketed) < padding_fraction(plain) / 4
    tf_style = ds.loader(16, shuffle=True, seed=1, pad=True, bucket=chute.Bucket(boundaries=(50, 100, 150)))
    assert padding_fraction([b["tokens"] for b in tf_style]) < padding_fraction(plain)
    small = sequences(40)
    expected = check_engine(small, 6, shuffle=True, pad=chute.Pad(lengths=True), bucket="tokens")
    seen = sorted(int(n) for batch in expected[:7] for n in batch["tokens_length"])
    assert seen == sorted(small.lengths("tokens").tolist())  # every sample once per epoch


def test_bucketing_splits_between_ranks_with_equal_batch_counts() -> None:
    ds = sequences(101)
    loaders = [ds.loader(8, shuffle=True, seed=3, bucket=True, rank=r, world_size=3) for r in range(3)]
    counts = [len(loader) for loader in loaders]
    samples = [int(i) for loader in loaders for b in range(len(loader)) for i in loader.indices(b)]
    assert len(set(counts)) == 1 and len(set(samples)) == 101


def test_a_state_from_another_bucketing_is_refused() -> None:
    ds = sequences(50)
    state = ds.loader(8, shuffle=True, seed=0, bucket=True).state_dict()
    json.dumps(state)
    with pytest.raises(chute.OptionError, match="bucket"):
        ds.loader(8, shuffle=True, bucket=chute.Bucket(window=2)).load_state_dict(state)


def test_bucket_needs_one_variable_length_field() -> None:
    with pytest.raises(chute.OptionError, match="variable-length"):
        chute.from_arrays(np.zeros((4, 2))).loader(2, bucket=True)
    with pytest.raises(chute.OptionError, match="fixed shape"):
        sequences(10).loader(2, bucket="label")
    with pytest.raises(chute.OptionError, match="ascending"):
        chute.Bucket(boundaries=(5, 5))


def lengths_of(samples: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.array([len(s["tokens"]) for s in samples])


def collate_lengths(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {"lengths": lengths_of(samples), "first": np.array([s["tokens"][0] for s in samples])}


def test_collate_gets_the_samples_of_each_batch() -> None:
    ds = sequences(30)
    loader = ds.loader(8, collate=collate_lengths)
    assert loader.spec.names == ("lengths", "first")
    assert loader[0]["lengths"].tolist() == ds.lengths("tokens")[:8].tolist()
    check_engine(ds, 8, shuffle=True, collate=collate_lengths)


def test_repeat_and_epochs_let_loops_run_across_epochs() -> None:
    ds = chute.from_arrays(np.arange(10))
    loader = ds.loader(4, repeat=True, shuffle=True, seed=0)
    steps = [b[0].tolist() for b in itertools.islice(loader, 7)]
    assert [len(s) for s in steps] == [4, 4, 2, 4, 4, 2, 4] and loader.epoch == 2 and loader.step == 1
    assert sorted(i for step in steps[3:6] for i in step) == list(range(10))
    state = loader.state_dict()
    bounded = ds.loader(4, epochs=3, shuffle=True)
    bounded.load_state_dict(state)
    assert [b[0].tolist() for b in bounded] == [b[0].tolist() for b in itertools.islice(loader, 2)]
    assert bounded.epoch == 3 and list(bounded) == []
    with pytest.raises(chute.OptionError, match="repeat=True"):
        ds.loader(4, repeat=True, epochs=2)


def test_the_chute_format_gives_lengths_from_offsets_and_pads_ragged_fields(tmp_path: Path) -> None:
    ds = sequences(500, longest=80)
    chute.convert(ds, str(tmp_path / "text"))
    stored = chute.open(str(tmp_path / "text"))
    assert stored.spec.field("tokens").kind == "ragged"
    assert np.array_equal(stored.lengths("tokens"), ds.lengths("tokens"))
    assert stored.lengths("tokens") is not stored.lengths("tokens")  # from offsets each time, not scanned
    options = dict(shuffle=True, seed=2, pad=chute.Pad(lengths=True), bucket=True)
    assert [as_lists(b) for b in stored.loader(32, **options)] == [
        as_lists(b) for b in ds.loader(32, **options)
    ]


def test_views_take_their_lengths_from_their_parents(tmp_path: Path) -> None:
    stored = chute.convert(sequences(200), str(tmp_path / "text"))
    everything = stored.lengths("tokens")
    part = stored.split([0.5, 0.5], seed=3)[1]
    assert np.array_equal(part.lengths("tokens"), everything[part.indices])
    both = chute.concat([stored.take(20), part])
    assert np.array_equal(both.lengths("tokens"), np.concatenate([everything[:20], everything[part.indices]]))
    assert not hasattr(part, "_scanned_lengths")  # from the stored offsets, not a scan
