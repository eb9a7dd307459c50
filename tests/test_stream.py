"""chute.from_generator: generators as epoch-aware loaders, each sample exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import chute


def numbered(n: int = 100) -> Iterator[tuple[np.ndarray, np.int64]]:
    for i in range(n):
        yield np.float32([i, -i]), np.int64(i)


def jitter(sample: tuple[np.ndarray, np.int64], rng: np.random.Generator) -> tuple[np.ndarray, np.int64]:
    time.sleep(float(rng.random()) / 2000)  # workers finish out of order
    return sample[0] + rng.random(2).astype(np.float32), sample[1]


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_each_sample_exactly_once_per_epoch_whatever_the_workers(workers: int) -> None:
    stream = chute.from_generator(numbered, length=100).map(jitter)
    reference = [[b[0].tolist() for b in stream.loader(16, seed=5)] for _ in range(1)]
    loader = stream.loader(16, seed=5, workers=workers, prefetch=3)
    for epoch in range(3):
        batches = list(loader)
        ids = np.concatenate([b[1] for b in batches]).tolist()
        assert ids == list(range(100)) and len(loader) == 7 and loader.epoch == epoch + 1
        if epoch == 0:
            assert [b[0].tolist() for b in batches] == reference[0]  # same augmentation inline
    loader.close()


def test_an_infinite_generator_is_cut_into_epochs_of_steps() -> None:
    def forever() -> Iterator[tuple[np.int64]]:
        i = 0
        while True:
            yield (np.int64(i),)
            i += 1

    loader = chute.from_generator(forever, steps=3).loader(4, workers=2)
    epochs = [[b[0].tolist() for b in loader] for _ in range(2)]
    assert epochs == [
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]],
        [[12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22, 23]],
    ]
    loader.close()


def test_without_a_length_an_epoch_is_one_call() -> None:
    loader = chute.from_generator(lambda: numbered(70)).loader(30)
    assert [len(b[1]) for b in loader] == [30, 30, 10] and loader.epoch == 1
    assert [len(b[1]) for b in loader] == [30, 30, 10] and loader.epoch == 2
    with pytest.raises(TypeError, match="pass length="):
        len(loader)


def test_a_one_shot_iterator_loses_nothing() -> None:
    once = iter([(np.int64(k),) for k in range(5)])
    assert [b[0].tolist() for b in chute.from_generator(once).loader(2)] == [[0, 1], [2, 3], [4]]


def test_a_short_generator_and_a_shuffle_are_refused_clearly() -> None:
    with pytest.raises(chute.EmptyDatasetError, match="ran out after 1 batches"):
        list(chute.from_generator(iter([(np.int64(k),) for k in range(5)]), steps=3).loader(4))
    with pytest.raises(chute.OptionError, match="convert it once"):
        chute.from_generator(numbered).loader(4, shuffle=True)


def test_a_generator_converts_to_the_format(tmp_path: Path) -> None:
    stream = chute.from_generator(numbered, length=50)
    ds = chute.convert(stream, tmp_path / "gen.chute", progress=False)
    assert len(ds) == 50 and ds[7][1] == 7 and ds[7][0].tolist() == [7.0, -7.0]
