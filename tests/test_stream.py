"""chute.from_generator: generators as a source of the one engine, each sample exactly once."""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import chute
from engine import as_lists, check_engine


def numbered(n: int = 100) -> Iterator[tuple[np.ndarray, np.int64]]:
    for i in range(n):
        yield np.float32([i, -i]), np.int64(i)


def forever() -> Iterator[tuple[np.int64]]:
    i = 0
    while True:
        yield (np.int64(i),)
        i += 1


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


def tokens() -> Iterator[dict[str, np.ndarray]]:
    for i in range(50):
        yield {"tokens": np.arange(i % 7 + 1, dtype=np.int32) + i, "label": np.int64(i)}


def noisy(sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {**sample, "noise": np.float32(rng.random())}


def lengths(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {
        "label": np.array([s["label"] for s in samples]),
        "n": np.array([len(s["tokens"]) for s in samples]),
    }


def doubled(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x": np.float32(sample["label"]) * 2}


def plus_one(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"x": batch["x"] + 1}


def not_thirds(sample: dict[str, np.ndarray]) -> bool:
    return bool(sample["label"] % 3)


GENERATOR = chute.from_generator(tokens, length=50, ragged=["tokens"])


KEPT = [i for i in range(50) if i % 3] * 4  # the filtered stream: call after call of the generator


@pytest.mark.parametrize(
    ("ds", "settings", "labels"),
    [
        (GENERATOR.map(noisy, ragged=["tokens"]), {"pad": True}, list(range(50)) * 2),
        (
            GENERATOR.filter(not_thirds).map(noisy, ragged=["tokens"]),
            {"pad": chute.Pad(mask=True)},
            KEPT[:100],
        ),
        (GENERATOR.map(noisy, ragged=["tokens"]), {"collate": lengths}, list(range(50)) * 2),
        (GENERATOR.map(doubled).map_batch(plus_one), {"drop_remainder": True}, None),
        (GENERATOR.map(noisy, ragged=["tokens"]), {"pad": True, "bucket": chute.Bucket(window=2)}, None),
    ],
    ids=["pad", "filter", "collate", "map_batch", "bucket"],
)
def test_the_engine_promises_hold_over_a_generator(
    ds: chute.Dataset, settings: dict[str, object], labels: list[int] | None
) -> None:
    """The same batches with 0, 1 and 3 threads and 2 processes, and a resume at every step; every
    sample once per epoch, in the generator's order."""
    expected = check_engine(ds, 8, **settings)
    if labels is not None:
        assert functools.reduce(operator.iadd, (b["label"] for b in expected), []) == labels


def test_a_filter_keeps_what_it_should_and_counts_length_after_it() -> None:
    ds = chute.from_generator(tokens, length=20, ragged=["tokens"]).filter(not_thirds)
    labels = [b["label"].tolist() for b in ds.loader(5, pad=True)]
    kept = [i for i in range(31) if i % 3][:20]
    assert functools.reduce(operator.iadd, labels, []) == kept and [len(b) for b in labels] == [5, 5, 5, 5]


def test_an_epoch_of_unknown_length_with_workers_and_a_resume() -> None:
    loader = chute.from_generator(lambda: numbered(70)).loader(30, workers=2, prefetch=3)
    for epoch in range(2):
        assert [b[1].tolist() for b in loader] == [list(range(30)), list(range(30, 60)), list(range(60, 70))]
        assert loader.epoch == epoch + 1
    first = next(iter(loader))
    state = loader.state_dict()
    loader.close()
    resumed = chute.from_generator(lambda: numbered(70)).loader(30)
    resumed.load_state_dict(state)
    assert first[1].tolist() == list(range(30))
    assert [b[1].tolist() for b in resumed] == [list(range(30, 60)), list(range(60, 70))]
    assert resumed.epoch == 3


def test_an_endless_generator_resumes_mid_epoch_by_replaying_to_its_place() -> None:
    loader = chute.from_generator(forever, steps=3).loader(4, workers=2)
    seen = [b[0].tolist() for b in loader]  # epoch 0
    seen += [b[0].tolist() for _, b in zip(range(2), loader, strict=False)]  # epoch 1 up to batch 2
    state = loader.state_dict()
    loader.close()
    resumed = chute.from_generator(forever, steps=3).loader(4)
    resumed.load_state_dict(state)
    rest = [b[0].tolist() for b in resumed]
    assert seen[-1] == [16, 17, 18, 19] and rest == [[20, 21, 22, 23]] and resumed.epoch == 2


def test_what_needs_random_access_says_so_and_what_to_use_instead() -> None:
    ds = chute.from_generator(numbered, length=100)
    for refused in (
        lambda: ds.take(3),
        lambda: ds.split([0.5, 0.5]),
        lambda: ds.cache(),
        lambda: chute.mix([ds, ds], [0.5, 0.5]),
        lambda: chute.concat([ds, ds]),
        lambda: ds[3],
    ):
        with pytest.raises(chute.OptionError, match=r"chute\.convert"):
            refused()
    with pytest.raises(chute.OptionError, match="Filter before mapping"):
        ds.map(jitter).filter(lambda s: True)
    with pytest.raises(chute.OptionError, match="length="):
        chute.from_generator(numbered).loader(4, rank=0, world_size=2)
    assert ds[0][1] == 0  # (the first sample, as a map's spec needs it)


def test_ranks_share_a_generator_equally() -> None:
    ranks = [chute.from_generator(numbered, length=100).loader(8, rank=r, world_size=3) for r in range(3)]
    batches = [[b[1].tolist() for b in loader] for loader in ranks]
    assert [[len(b) for b in rank] for rank in batches] == [[8, 8, 8, 8, 1]] * 3  # fewer than 3 left out
    seen = sorted(i for rank in batches for batch in rank for i in batch)
    assert seen == list(range(99))


def test_a_process_worker_reads_a_generator_it_never_calls() -> None:
    ds = chute.from_generator(numbered, length=64).map(jitter)
    loader = ds.loader(8, seed=1, workers=2, worker_type="process")
    inline = chute.from_generator(numbered, length=64).map(jitter).loader(8, seed=1)
    assert [as_lists(b) for b in loader] == [as_lists(b) for b in inline]
    loader.close()


def test_a_generator_is_bucketed_within_windows_of_its_stream() -> None:
    loader = GENERATOR.loader(8, pad=True, bucket=chute.Bucket(window=3), seed=1)
    batches = [(b["label"].tolist(), b["tokens"].shape[1]) for b in loader]
    labels = [label for batch, _ in batches for label in batch]
    assert sorted(labels) == list(range(50))
    for window in range(3):  # each window of 24 samples is batched within itself
        inside = sorted(i for b, _ in batches[3 * window : 3 * window + 3] for i in b)
        assert inside == list(range(24 * window, min(50, 24 * window + 24)))
    lengths = [i % 7 + 1 for i in range(50)]
    padded = sum(width * len(batch) - sum(lengths[i] for i in batch) for batch, width in batches)
    unbucketed = chute.from_generator(tokens, length=50, ragged=["tokens"]).loader(8, pad=True)
    as_read = sum(b["tokens"].size - sum(lengths[i] for i in b["label"]) for b in unbucketed)
    assert padded < as_read / 2  # similar lengths batched together
    with pytest.raises(chute.OptionError, match="variable-length"):
        chute.from_generator(numbered, length=100).loader(4, bucket=True)
