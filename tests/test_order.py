"""The epoch order: pinned values, purity and permutation properties."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from chute import epoch_order

seeds = st.integers(0, 2**64 - 1)


def test_pinned_order_for_seed_42() -> None:
    # If this changes, every user's saved run order changes: only ever change it on purpose.
    assert epoch_order(20, seed=42, epoch=0, shuffle=True).tolist() == [
        17,
        13,
        1,
        5,
        2,
        8,
        6,
        0,
        11,
        15,
        10,
        16,
        4,
        12,
        9,
        18,
        19,
        7,
        3,
        14,
    ]
    assert epoch_order(20, seed=42, epoch=1, shuffle=True).tolist() == [
        9,
        4,
        12,
        1,
        11,
        8,
        2,
        17,
        14,
        7,
        16,
        13,
        15,
        10,
        19,
        3,
        5,
        0,
        18,
        6,
    ]
    assert epoch_order(10, seed=2**64 - 1, epoch=7, shuffle=True).tolist() == [9, 5, 6, 7, 2, 8, 0, 4, 1, 3]


def test_unshuffled_order_is_identity() -> None:
    assert epoch_order(5, seed=3, epoch=9, shuffle=False).tolist() == [0, 1, 2, 3, 4]


@given(n=st.integers(0, 3000), seed=seeds, epoch=st.integers(0, 10**6))
def test_order_is_a_permutation_and_pure(n: int, seed: int, epoch: int) -> None:
    order = epoch_order(n, seed=seed, epoch=epoch, shuffle=True)
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, epoch_order(n, seed=seed, epoch=epoch, shuffle=True))


@given(seed=seeds, epoch=st.integers(0, 1000))
def test_epochs_and_seeds_give_different_orders(seed: int, epoch: int) -> None:
    n = 200  # 200! orders: a collision means the key is not used
    base = epoch_order(n, seed=seed, epoch=epoch, shuffle=True)
    assert not np.array_equal(base, epoch_order(n, seed=seed, epoch=epoch + 1, shuffle=True))
    other_seed = (seed + 1) % 2**64
    assert not np.array_equal(base, epoch_order(n, seed=other_seed, epoch=epoch, shuffle=True))


def test_positions_are_uniform() -> None:
    # Over many epochs each sample lands in each position about equally often.
    n, epochs = 8, 4000
    counts = np.zeros((n, n))
    for epoch in range(epochs):
        counts[np.arange(n), epoch_order(n, seed=1, epoch=epoch, shuffle=True)] += 1
    expected = epochs / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 110  # 49 degrees of freedom: p < 1e-6 above ~110
