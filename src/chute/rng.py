"""Per-sample and per-batch randomness: pure functions of (seed, epoch, index).

A map function that asks for a generator gets one whose stream depends only on the loader's seed,
the epoch and the sample's index (for batch maps, the batch's first sample index), never on the
worker, its timing or the process: the output is the same with 0, 1 or N workers, and after a
resume.  Philox is counter-based: the key is the seed and the index and epoch sit in the counter's
high words, so streams of different samples never overlap.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_KEY", "ReadKey", "SampleStreams", "batch_rng", "sample_rng"]

ReadKey = tuple[int, int]  # (seed, epoch) of the read; samples add their own index
DEFAULT_KEY: ReadKey = (0, 0)  # reads outside a loader (ds[i], ds[indices])

_SAMPLE, _BATCH = 0, 1  # counter word 1 keeps sample and batch streams apart


def sample_rng(key: ReadKey, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in the epoch and seed of ``key``."""
    seed, epoch = key
    return np.random.Generator(np.random.Philox(key=seed, counter=[0, _SAMPLE, index, epoch]))


class SampleStreams:
    """The generators of many samples of one (seed, epoch), cheaply: one Philox, its counter reset.

    Building a Philox costs ~8 us (it draws OS entropy it then ignores); resetting one's state costs
    ~2 us.  ``streams(index)`` gives exactly the stream of ``sample_rng(key, index)``, but every
    generator it returned before shares the same bit generator: a map uses its ``rng`` during its
    call, as documented, and does not keep it.
    """

    def __init__(self, key: ReadKey) -> None:
        seed, self._epoch = key
        self._bits = np.random.Philox(key=seed)
        self._state = self._bits.state

    def __call__(self, index: int) -> np.random.Generator:
        state = self._state
        state["state"]["counter"] = np.array([0, _SAMPLE, index, self._epoch], dtype=np.uint64)
        state["buffer_pos"], state["has_uint32"], state["uinteger"] = 4, 0, 0
        self._bits.state = state
        return np.random.Generator(self._bits)


def batch_rng(key: ReadKey, first_index: int) -> np.random.Generator:
    """The generator of the batch whose first sample is ``first_index``."""
    seed, epoch = key
    return np.random.Generator(np.random.Philox(key=seed, counter=[0, _BATCH, first_index, epoch]))
