"""ds.map and ds.map_batch: seeded per-sample randomness, the same whatever the workers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import chute


def noisy(sample: tuple[np.ndarray, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y = sample
    return x + rng.normal(size=x.shape).astype(np.float32), y


def data(n: int = 60) -> chute.Dataset:
    return chute.from_arrays(np.zeros((n, 3), np.float32), np.arange(n))


def by_label(loader: chute.Loader) -> dict[int, list[float]]:
    return {int(label): x.tolist() for batch in loader for x, label in zip(*batch, strict=True)}


@given(workers=st.integers(0, 3), batch_size=st.integers(1, 17), seed=st.integers(0, 2**32))
def test_randomness_is_per_sample_not_per_worker_or_batch(workers: int, batch_size: int, seed: int) -> None:
    reference = by_label(data().map(noisy).loader(8, shuffle=True, seed=seed))
    got = by_label(data().map(noisy).loader(batch_size, shuffle=True, seed=seed, workers=workers))
    assert got == reference


def test_epochs_and_seeds_change_the_randomness() -> None:
    loader = data().map(noisy).loader(10, shuffle=True, seed=1)
    first = by_label(loader)  # epoch 0, then the loop moves to epoch 1
    second = by_label(loader)
    assert first.keys() == second.keys() and first[5] != second[5]
    loader.epoch = 0
    assert by_label(loader) == first
    assert by_label(data().map(noisy).loader(10, shuffle=True, seed=2)) != first


def test_map_without_rng_and_composition() -> None:
    ds = data(10).map(lambda s: {"x": s[0] + 1, "label": s[1] * 2}).map(lambda s: (s["x"].sum(), s["label"]))
    assert ds.spec.names == ("0", "1")
    total, label = ds[[3, 4]]
    assert total.tolist() == [3.0, 3.0] and label.tolist() == [6, 8]
    assert ds[4][1] == 8


def test_map_batch_gets_the_whole_batch() -> None:
    def scale(
        batch: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        x, y = batch
        return x + rng.integers(1, 5), y

    loader = data(20).map_batch(scale).loader(5, shuffle=True, seed=0, workers=2)
    batches = [b for b in loader]
    for x, _ in batches:
        assert len(set(x[:, 0].tolist())) == 1  # one draw per batch
    again = [b for b in data(20).map_batch(scale).loader(5, shuffle=True, seed=0)]
    assert [b[0].tolist() for b in batches] == [b[0].tolist() for b in again]


@pytest.mark.frameworks
def test_mapped_loader_trains_a_keras_model() -> None:
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)

    def jitter(
        sample: tuple[np.ndarray, np.ndarray], g: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        return sample[0] + 0.01 * g.normal(size=2).astype(np.float32), sample[1]

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy")
    loader = chute.from_arrays(x, y).map(jitter).loader(32, shuffle=True, seed=0, workers=2)
    history = model.fit(loader.keras(), epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.7 * history.history["loss"][0]


def test_a_map_that_changes_shape_is_an_error() -> None:
    ds = data(10).map(lambda s: (np.zeros(int(s[1]) % 3 + 1), s[1]))
    with pytest.raises(
        chute.SpecError, match=r"field '0' of shape \(1,\) from the map .*shape \(2,\) for sample 1"
    ):
        ds[[0, 1]]


def test_map_needs_a_callable() -> None:
    with pytest.raises(chute.SpecError, match="a function to map"):
        data().map(3)  # type: ignore[arg-type]


def test_sample_streams_equal_fresh_generators_in_any_order():
    from chute.rng import SampleStreams, sample_rng

    streams = SampleStreams((7, 3))
    for index in (5, 0, 2**40, 5):
        rng = streams(index)
        rng.random()  # leaves a buffered half-word behind; the next reset must clear it
        expected = sample_rng((7, 3), index)
        expected.random()
        assert rng.integers(0, 2**32, 4).tolist() == expected.integers(0, 2**32, 4).tolist()
        assert streams(index).normal(size=3).tolist() == sample_rng((7, 3), index).normal(size=3).tolist()
