"""Which part of the data this process reads: its rank among ``world_size`` training processes.

Given explicitly (``loader(..., rank=r, world_size=w)``) or found, in this order, from an
initialised ``torch.distributed`` process group, a multi-process JAX run, the ``RANK`` and
``WORLD_SIZE`` variables (torchrun, Accelerate, Lightning) or ``TF_CONFIG``
(``tf.distribute.MultiWorkerMirroredStrategy``).  Nothing is imported to look: a framework is asked
only if the program has already imported it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

from chute.errors import OptionError, explain
from chute.options import check_int

__all__ = ["REMAINDERS", "World", "detect_world"]

REMAINDERS = ("pad", "drop")


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` ranks, how the epoch's tail is split (``remainder``:
    ``"pad"`` repeats a few samples so every rank's last batch is full-sized alike, ``"drop"``
    leaves fewer than ``size`` samples out), and where the figures came from."""

    rank: int = 0
    size: int = 1
    remainder: str = "pad"
    source: str = "single process"

    def __post_init__(self) -> None:
        size = check_int("world_size", self.size, minimum=1)
        rank = check_int("rank", self.rank, minimum=0)
        if rank >= size:
            raise OptionError(
                explain(
                    f"a rank in [0, world_size={size})",
                    f"rank={rank} ({self.source})",
                    "Number ranks 0 .. world_size-1.",
                )
            )
        if self.remainder not in REMAINDERS:
            raise OptionError(explain("remainder='pad' or 'drop'", repr(self.remainder), "Choose one."))
        object.__setattr__(self, "rank", rank)
        object.__setattr__(self, "size", size)


def detect_world(rank: Optional[int], world_size: Optional[int], remainder: str = "pad") -> World:
    """The world given, or found from the running frameworks and the environment."""
    if (rank is None) != (world_size is None):
        raise OptionError(
            explain(
                "rank and world_size together (or neither, to detect them)",
                f"rank={rank!r}, world_size={world_size!r}",
                "Pass both, e.g. loader(..., rank=0, world_size=2).",
            )
        )
    if rank is not None and world_size is not None:
        return World(rank, world_size, remainder, "given")
    for found in (_torch(), _jax(), _environment(), _tf_config()):
        if found is not None:
            return World(found[0], found[1], remainder, found[2])
    return World(0, 1, remainder)


def _torch() -> Optional[tuple[int, int, str]]:
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist.get_rank(), dist.get_world_size(), "torch.distributed"


def _jax() -> Optional[tuple[int, int, str]]:
    jax = sys.modules.get("jax")
    if jax is None or "jax._src.distributed" not in sys.modules:
        return None
    state = sys.modules["jax._src.distributed"].global_state
    if getattr(state, "client", None) is None:  # jax.distributed.initialize() was not called
        return None
    return jax.process_index(), jax.process_count(), "jax.distributed"


def _environment() -> Optional[tuple[int, int, str]]:
    rank, size = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or size is None:
        return None
    try:
        return int(rank), int(size), "RANK/WORLD_SIZE"
    except ValueError:
        raise OptionError(
            explain("integers in RANK and WORLD_SIZE", f"RANK={rank!r}, WORLD_SIZE={size!r}", "Fix them.")
        ) from None


def _tf_config() -> Optional[tuple[int, int, str]]:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        ranked = [kind for kind in ("chief", "worker") if kind in cluster]
        size = sum(len(cluster[kind]) for kind in ranked)
        before = sum(len(cluster[kind]) for kind in ranked[: ranked.index(task["type"])])
        return before + int(task["index"]), size, "TF_CONFIG"
    except (ValueError, KeyError, TypeError) as error:
        raise OptionError(
            explain(
                'TF_CONFIG as JSON {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}',
                f"{text[:200]!r} ({type(error).__name__}: {error})",
                "Fix TF_CONFIG, or pass rank= and world_size= to the loader.",
            )
        ) from None
