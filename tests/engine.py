"""The engine's promises, checked on any dataset and loader settings: the same batches with 0, 1 or
N thread workers and with process workers, and a resume at every step giving the rest exactly."""

from __future__ import annotations

from typing import Any

import numpy as np

import chute


def as_lists(batch: Any) -> Any:
    """A batch as plain lists (for equality across runs), whatever its structure."""
    if isinstance(batch, dict):
        return {k: as_lists(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return [as_lists(v) for v in batch]
    array = np.asarray(batch)
    if array.dtype == object:
        return [np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for v in array]
    return array.tolist()


def epochs(loader: chute.Loader, count: int) -> list[Any]:
    out = []
    for _ in range(count):
        out.extend(as_lists(batch) for batch in loader)
    return out


def check_engine(ds: chute.Dataset, batch_size: int, resume: bool = True, **options: Any) -> list[Any]:
    """Two epochs of ``ds`` read inline, which every other worker setting and every resume must
    match; returns them."""
    make = lambda **more: ds.loader(batch_size, seed=5, **options, **more)  # noqa: E731
    expected = epochs(make(), 2)
    for workers, kind in ((1, "thread"), (3, "thread"), (2, "process")):
        with make(workers=workers, worker_type=kind, prefetch=3) as loader:
            assert epochs(loader, 2) == expected, (workers, kind)
    if resume:
        per_epoch = len(make())
        for stop in range(per_epoch + 1):
            with make(workers=2, prefetch=3) as loader:
                head = [as_lists(b) for _, b in zip(range(stop), loader, strict=False)]
                state = loader.state_dict()
            fresh = make()
            fresh.load_state_dict(state)
            tail = [as_lists(b) for b in fresh] if stop < per_epoch else []
            assert head + tail == expected[:per_epoch], stop
    return expected
