"""Every user error is a chute exception that says what was expected, what came, and the fix."""

from __future__ import annotations

import re

import numpy as np
import pytest

import chute
from chute.errors import ChuteError


def raises(kind: type[Exception], *fragments: str) -> pytest.RaisesContext:  # type: ignore[type-arg]
    return pytest.raises(kind, match=".*".join(re.escape(f) for f in fragments))


def test_hierarchy_keeps_builtin_bases() -> None:
    assert issubclass(chute.SpecError, (ChuteError, ValueError))
    assert issubclass(chute.OptionError, (ChuteError, ValueError))
    assert issubclass(chute.OutOfRangeError, (ChuteError, IndexError))
    assert issubclass(chute.EmptyDatasetError, (ChuteError, ValueError))
    assert issubclass(chute.MissingDependencyError, (ChuteError, ImportError))


def test_unequal_lengths_name_both() -> None:
    with raises(chute.SpecError, "same number of samples", "10 rows in '0' but 9 rows in '1'", "Trim"):
        chute.from_arrays(np.zeros(10), np.zeros(9))
    with raises(chute.SpecError, "3 rows in 'a' but 4 rows in 'b'"):
        chute.from_arrays({"a": np.zeros(3), "b": np.zeros(4)})


@pytest.mark.parametrize(
    "bad, received",
    [([1.0, 2.0], "float at 0/0"), ("text", "str at 0"), (3, "int at 0"), (None, "NoneType at 0")],
)
def test_non_array_input(bad: object, received: str) -> None:
    with raises(chute.SpecError, "Expected a numpy array", received, "np.asarray"):
        chute.from_arrays(bad)


def test_zero_d_array_and_no_arrays() -> None:
    with raises(chute.SpecError, "first (sample) dimension", "0-d array", "np.full"):
        chute.from_arrays(np.array(3.0))
    with raises(chute.SpecError, "at least one numpy array", "no arrays"):
        chute.from_arrays()


def test_non_string_dict_keys() -> None:
    with raises(chute.SpecError, "string keys", "key 1 of type int"):
        chute.from_arrays({1: np.zeros(3)})


@pytest.mark.parametrize("batch_size", [0, -5])
def test_batch_size_must_be_positive(batch_size: int) -> None:
    with raises(chute.OptionError, "batch_size >= 1", f"Received: {batch_size}", "Choose"):
        chute.from_arrays(np.zeros(4)).loader(batch_size)


@pytest.mark.parametrize("batch_size, received", [(2.5, "2.5 of type float"), (True, "True of type bool")])
def test_batch_size_must_be_an_int(batch_size: object, received: str) -> None:
    with raises(chute.OptionError, "an integer for batch_size", received, "whole number"):
        chute.from_arrays(np.zeros(4)).loader(batch_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed, received", [(1.5, "1.5 of type float"), ("7", "'7' of type str")])
def test_seed_must_be_an_int(seed: object, received: str) -> None:
    with raises(chute.OptionError, "an integer for seed", received):
        chute.from_arrays(np.zeros(4)).loader(2, shuffle=True, seed=seed)  # type: ignore[arg-type]


def test_seed_range_and_numpy_ints() -> None:
    with raises(chute.OptionError, "seed in [0, 18446744073709551616)", "Received: -1"):
        chute.from_arrays(np.zeros(4)).loader(2, shuffle=True, seed=-1)
    assert chute.from_arrays(np.zeros(4)).loader(np.int64(2), seed=np.uint8(3)).seed == 3


def test_shuffle_must_be_a_bool() -> None:
    with raises(chute.OptionError, "shuffle=True, False, 'block' or chute.BlockShuffle", "'yes'"):
        chute.from_arrays(np.zeros(4)).loader(2, shuffle="yes")  # type: ignore[arg-type]


def test_block_shuffle_options_are_checked() -> None:
    with raises(chute.OptionError, "block_size >= 1", "Received: 0"):
        chute.BlockShuffle(block_size=0)
    with raises(chute.OptionError, "an integer for window"):
        chute.BlockShuffle(window=2.5)  # type: ignore[arg-type]


def test_empty_dataset() -> None:
    with raises(chute.EmptyDatasetError, "at least one sample", "0 samples"):
        chute.from_arrays(np.zeros((0, 3))).loader(4)
    with raises(chute.EmptyDatasetError, "at least batch_size=8", "3 samples", "drop_remainder=False"):
        chute.from_arrays(np.zeros(3)).loader(8, drop_remainder=True)


@pytest.mark.parametrize("index", [4, -5, 100])
def test_batch_index_past_the_end(index: int) -> None:
    loader = chute.from_arrays(np.zeros(10)).loader(3)
    with raises(chute.OutOfRangeError, "a batch number in [0, 4)", f"Received: {index}", "len(loader)"):
        loader[index]


def test_batch_index_of_wrong_type() -> None:
    with raises(chute.OutOfRangeError, "a batch number", "Received: '1'"):
        chute.from_arrays(np.zeros(10)).loader(3)["1"]  # type: ignore[index]


def test_sample_index_past_the_end() -> None:
    ds = chute.from_arrays(np.zeros(10))
    with raises(chute.OutOfRangeError, "a sample index in [-10, 10)", "Received: 10"):
        ds[10]
    with raises(chute.OutOfRangeError, "Received: -11"):
        ds[[0, -11]]


def test_bad_gather_indices() -> None:
    ds = chute.from_arrays(np.zeros(10))
    with raises(chute.SpecError, "1-d sequence of ints", "dtype float64"):
        ds[[0.5, 1.0]]
    with raises(chute.SpecError, "boolean mask of shape (10,)", "shape (3,)"):
        ds[np.array([True, False, True])]


def test_epoch_must_be_non_negative_int() -> None:
    loader = chute.from_arrays(np.zeros(10)).loader(3)
    with raises(chute.OptionError, "epoch in [0, 18446744073709551616)", "Received: -1"):
        loader.epoch = -1
    with raises(chute.OptionError, "an integer for epoch"):
        loader.epoch = 1.0  # type: ignore[assignment]


@pytest.mark.frameworks
def test_keras_structure_errors() -> None:
    four = chute.from_arrays(*[np.zeros(4)] * 4).loader(2)
    with raises(chute.SpecError, "(x,), (x, y) or (x, y, sample_weight)", "4 parts", "loader.keras(x="):
        four.keras()
    named = chute.from_arrays({"a": np.zeros(4), "b": np.zeros(4)}).loader(2)
    with raises(chute.SpecError, "one of the field names ['a', 'b']", "'c'"):
        named.keras(x="a", y="c")
    with raises(chute.SpecError, "y together with sample_weight"):
        named.keras(x="a", sample_weight="b")
    with raises(chute.SpecError, "x together with y"):
        named.keras(y="a")
