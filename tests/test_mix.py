"""chute.mix: exact per-epoch proportions, an even interleave, fresh samples each epoch, resumable."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute
from engine import check_engine


def source(n: int, offset: int) -> chute.Dataset:
    return chute.from_arrays(np.arange(offset, offset + n, dtype=np.int64))


def epoch_samples(loader: chute.Loader) -> list[int]:
    return [int(i) for batch in loader for i in batch[0]]


def test_mix_gives_exact_proportions_and_never_repeats_within_an_epoch() -> None:
    mixed = chute.mix([source(1000, 0), source(100, 10_000)], weights=[0.7, 0.3], seed=0)
    assert len(mixed) == 333 and mixed.counts == [233, 100]  # the small dataset runs out first
    loader = mixed.loader(50, shuffle=True, seed=3)
    epochs = [epoch_samples(loader) for _ in range(5)]
    for samples in epochs:
        assert len(samples) == len(set(samples)) == 333
        assert sum(s >= 10_000 for s in samples) == 100
    big = [set(s for s in samples if s < 10_000) for samples in epochs]
    assert big[0] != big[1] and len(set().union(*big)) > 700  # each epoch draws other samples


def test_an_unshuffled_mix_interleaves_evenly() -> None:
    mixed = chute.mix([source(10, 0), source(10, 100), source(10, 200)], weights=[2, 1, 1], length=8)
    which = [int(s) // 100 for s in mixed[:][0]]
    assert mixed.counts == [4, 2, 2] and which == [0, 1, 2, 0, 0, 1, 2, 0]


def test_a_share_larger_than_its_dataset_cycles_through_whole_permutations() -> None:
    mixed = chute.mix([source(50, 0), source(7, 100)], weights=[0.5, 0.5], length=100)
    samples = epoch_samples(mixed.loader(10))
    counts = Counter(s for s in samples if s >= 100)
    assert sorted(counts.values()) == [7, 7, 7, 7, 7, 7, 8]


def test_mix_is_fixed_by_its_seed_and_checks_its_arguments() -> None:
    parts = [source(30, 0), source(30, 100)]
    a = chute.mix(parts, [0.5, 0.5], seed=1)
    assert a[:][0].tolist() == chute.mix(parts, [0.5, 0.5], seed=1)[:][0].tolist()
    assert a[:][0].tolist() != chute.mix(parts, [0.5, 0.5], seed=2)[:][0].tolist()
    assert a[:6][0].tolist() == [16, 105, 9, 103, 17, 112]  # the same on every machine
    with pytest.raises(chute.OptionError, match="weights"):
        chute.mix(parts, [1.0])
    with pytest.raises(chute.OptionError, match="weights"):
        chute.mix(parts, [0.0, 0.0])
    with pytest.raises(chute.SpecError, match="dataset 1"):
        chute.mix([parts[0], chute.from_arrays(np.zeros(3))], [0.5, 0.5])


@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    weights=st.lists(st.integers(0, 5), min_size=4, max_size=4),
    length=st.one_of(st.none(), st.integers(1, 200)),
    epoch=st.integers(0, 3),
)
def test_every_epoch_has_the_apportioned_counts(
    sizes: list[int], weights: list[int], length: int | None, epoch: int
) -> None:
    weights = weights[: len(sizes)]
    if not sum(weights):
        return
    parts = [source(n, 1000 * i) for i, n in enumerate(sizes)]
    mixed = chute.mix(parts, weights, seed=4, length=length)
    which, local = mixed.origin(np.arange(len(mixed)), epoch)
    assert np.bincount(which, minlength=len(sizes)).tolist() == mixed.counts
    assert sum(mixed.counts) == len(mixed)
    for part, count in enumerate(mixed.counts):
        picked = local[which == part]
        assert np.all((picked >= 0) & (picked < sizes[part]))
        if count <= sizes[part]:
            assert len(set(picked.tolist())) == count  # no sample twice within an epoch


def noisy(sample: tuple[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return sample[0], np.float64(rng.random())


def test_a_mix_keeps_the_engine_promises() -> None:
    mixed = chute.mix([source(40, 0).map(noisy), source(15, 100).map(noisy)], [0.6, 0.4], seed=9)
    check_engine(mixed, 6, shuffle=True)


def test_a_mix_of_sequences_can_be_bucketed_by_length() -> None:
    def text(sample: tuple[np.ndarray]) -> dict[str, np.ndarray]:
        return {"tokens": np.zeros(int(sample[0]) % 37 + 1, np.int32)}

    short = source(100, 0).map(text, ragged=["tokens"])
    long = source(100, 500).map(text, ragged=["tokens"])
    mixed = chute.mix([short, long], [0.5, 0.5], seed=0)
    pad = chute.Pad(lengths=True)
    bucketed = check_engine(mixed, 8, shuffle=True, bucket=True, pad=pad, resume=False)
    plain = [b for b in mixed.loader(8, shuffle=True, seed=5, pad=pad)]

    def padding(batches: list) -> float:  # type: ignore[type-arg]
        cells = sum(len(b["tokens"]) * len(b["tokens"][0]) for b in batches)
        return 1 - sum(sum(b["tokens_length"]) for b in batches) / cells

    assert padding(bucketed[: len(plain)]) < padding(plain) / 3
