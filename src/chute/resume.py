"""A loader's position as a small JSON-ready dict, and the checks that make restoring it safe.

The state is where the loader stands in its epoch order: ``(seed, epoch, consumed)``, where
``consumed`` counts the positions of the epoch order all ranks together have been handed (batches
read ahead but not handed over do not count).  Batches are dealt round-robin to ranks (see
:func:`chute.order.epochs.rank_batches`), so after ``k`` rounds exactly the first ``k * world_size *
batch_size`` positions are consumed: a state restores on any number of ranks, which deal the rest
of the epoch among themselves.  A fingerprint of the dataset guards against restoring onto other
data.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from chute.errors import OptionError, explain

if TYPE_CHECKING:
    from chute.datasets.base import Node
    from chute.options import BatchOptions
    from chute.order.world import World

__all__ = ["FORMAT", "check_state", "fingerprint", "guard", "make_state", "sampled_rows"]

FORMAT = "chute.loader.state/1"


def fingerprint(dataset: Node) -> str:
    """16 hex digits that change when the dataset's samples (probably) change: its size and spec,
    its maps' names, and what its source says identifies it (paths, checksums, sampled rows)."""
    digest = hashlib.blake2b(digest_size=8)
    _feed(digest, dataset)
    return digest.hexdigest()


def _feed(digest: Any, dataset: Any) -> None:
    lineage = getattr(dataset, "lineage", None)
    if callable(lineage):  # a dataset made from others (a map, a view, a mix): they, then how
        parents, what = lineage()
        for parent in parents:
            _feed(digest, parent)
        digest.update(what.encode())
        return
    source = dataset.source
    size = len(dataset) if dataset.stream_source() is None else "stream"  # (a stream's may be unknown)
    digest.update(f"{type(source).__name__}:{size}:{dataset.spec!r}".encode())
    own = getattr(source, "fingerprint", None)
    if callable(own):
        digest.update(str(own()).encode())


def guard(dataset: Node, options: BatchOptions, samples: Optional[int]) -> dict[str, Any]:
    """What a state must match to be restored: the data (size, fingerprint) and the batching.

    A loader works it out once (the fingerprint may hash a long file list) and puts it in every
    state it saves and compares it with every state it restores.
    """
    return {
        "samples": samples,
        "fingerprint": fingerprint(dataset),
        "batch_size": options.batch_size,
        "shuffle": _shuffle_name(options.shuffle),
        "drop_remainder": options.drop_remainder,
        **({"bucket": _bucket_name(options.bucket)} if options.bucket is not None else {}),
    }


def _bucket_name(bucket: Any) -> dict[str, Any]:
    bounds = None if bucket.boundaries is None else list(bucket.boundaries)
    return {"by": bucket.by, "boundaries": bounds, "window": bucket.window}


def make_state(guarded: dict[str, Any], seed: int, world: World, epoch: int, consumed: int) -> dict[str, Any]:
    """The state at ``consumed`` positions into ``epoch`` (JSON-serialisable); ``guarded`` from
    :func:`guard`."""
    return {
        "format": FORMAT,
        "seed": seed,
        "epoch": epoch,
        "consumed": consumed,
        **guarded,
        "world_size": world.size,
        "rank": world.rank,
        "remainder": world.remainder,
    }


def _shuffle_name(shuffle: Any) -> Any:
    if isinstance(shuffle, bool):
        return shuffle
    return {"block_size": shuffle.block_size, "window": shuffle.window}


def check_state(state: Any, guarded: dict[str, Any]) -> tuple[int, int, int]:
    """``(seed, epoch, consumed)`` from ``state``, after checking it matches ``guarded`` (this
    loader's :func:`guard`); an OptionError naming the difference otherwise."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise OptionError(
            explain(
                f"a loader state dict (format {FORMAT!r}) from loader.state_dict()",
                repr(got),
                "Pass the dict loader.state_dict() returned (or its JSON, loaded).",
            )
        )
    for key, value in guarded.items():
        if state.get(key) != value:
            what = "dataset" if key in ("samples", "fingerprint") else "batching"
            raise OptionError(
                explain(
                    f"a state saved over the same {what} ({key}={value!r})",
                    f"{key}={state.get(key)!r} in the state",
                    "Restore onto a loader over the same data with the same batch_size, shuffle and "
                    "drop_remainder as the one that saved it.",
                )
            )
    try:
        seed, epoch, consumed = (int(state[k]) for k in ("seed", "epoch", "consumed"))
    except (KeyError, TypeError, ValueError) as error:
        raise OptionError(
            explain("integers seed, epoch and consumed in the state", repr(error), "Pass an unaltered state.")
        ) from None
    samples = guarded["samples"]
    if consumed < 0 or (samples is not None and consumed > samples) or epoch < 0 or seed < 0:
        raise OptionError(
            explain(
                f"0 <= consumed <= {samples} and epoch >= 0",
                f"consumed={consumed}, epoch={epoch}",
                "Pass an unaltered state.",
            )
        )
    return seed, epoch, consumed


def sampled_rows(arrays: list[np.ndarray]) -> str:
    """A digest of some rows of ``arrays`` (first, middle, last) with their shapes and dtypes."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        n = len(array)
        for row in sorted({0, n // 2, n - 1}) if n else ():
            digest.update(np.ascontiguousarray(array[row]).tobytes())
    return digest.hexdigest()
