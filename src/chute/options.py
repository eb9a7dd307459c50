"""Small frozen option records, validated when they are made."""

from __future__ import annotations

import itertools
import numbers
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from chute.errors import OptionError, explain
from chute.order.epochs import SEED_LIMIT
from chute.spec import Field, Spec

__all__ = [
    "BatchOptions",
    "BlockShuffle",
    "Bucket",
    "Pad",
    "PipelineOptions",
    "check_bucket",
    "check_int",
    "check_names",
    "check_pad",
    "check_variable",
    "parse_size",
]

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
AUTO = "auto"
START_METHODS = ("fork", "spawn", "forkserver")


def check_int(name: str, value: object, *, minimum: int, limit: Optional[int] = None) -> int:
    """``value`` as an int in ``[minimum, limit)``, or an OptionError that says how to fix it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptionError(
            explain(
                f"an integer for {name}",
                f"{value!r} of type {type(value).__name__}",
                f"Pass {name} as a whole number, e.g. {name}={max(minimum, 1)}.",
            )
        )
    number = int(value)
    if number < minimum or (limit is not None and number >= limit):
        bound = f"{name} in [{minimum}, {limit})" if limit is not None else f"{name} >= {minimum}"
        raise OptionError(explain(bound, number, f"Choose a value of {name} in that range."))
    return number


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or text such as ``"256MB"``, ``"1.5GB"``, ``"64MiB"``."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(size))
    if not match or match.group(2).upper() not in _UNITS or float(match.group(1)) <= 0:
        raise OptionError(explain("a size such as 256MB, 1GB or 65536", repr(size), "Pass a positive size."))
    return max(1, int(float(match.group(1)) * _UNITS[match.group(2).upper()]))


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        names = [repr(c) for c in choices]
        listed = f"{', '.join(names[:-1])} or {names[-1]}"
        raise OptionError(explain(f"{name}={listed}", repr(value), "Choose one of those."))


@dataclass(frozen=True)
class BlockShuffle:
    """Shuffle for data bigger than RAM on slow storage (``shuffle="block"`` uses the defaults).

    The samples are cut into contiguous blocks of ``block_size``; blocks are permuted and the
    samples of ``window`` consecutive blocks are shuffled together, so reads stay sequential
    within a block.  ``loader.shuffle_quality()`` reports what that trades.
    """

    block_size: int = 1024
    window: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_size", check_int("block_size", self.block_size, minimum=1))
        object.__setattr__(self, "window", check_int("window", self.window, minimum=1))


def _check_shuffle(value: object) -> bool | BlockShuffle:
    if value == "block":
        return BlockShuffle()
    if isinstance(value, (bool, BlockShuffle)):
        return value
    raise OptionError(
        explain(
            "shuffle=True, False, 'block' or chute.BlockShuffle(block_size=..., window=...)",
            repr(value),
            "Pick one of those.",
        )
    )


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise OptionError(
            explain(f"True or False for {name}", repr(value), f"Pass {name}=True or {name}=False.")
        )
    return value


VARIABLE = ("ragged", "bytes", "str")


@dataclass(frozen=True)
class Pad:
    """How ragged fields are padded into arrays (``pad=True`` uses the defaults).

    ``length=None`` pads to the longest sample of each batch, an int to exactly that length
    (longer samples raise a :class:`chute.SpecError` naming them, or are cut with
    ``truncate=True``); the length is then rounded up to a ``multiple`` (fewer distinct shapes,
    fewer recompilations under XLA).  ``value`` fills the padding.  ``lengths=True`` adds a field
    ``<name>_length`` (int64, each sample's length before padding) and ``mask=True`` a field
    ``<name>_mask`` (bool, true over real values) beside each padded field, which must sit in a
    dict.  ``fields`` names the fields to pad (default: every ragged field).
    """

    value: float = 0
    length: Optional[int] = None
    multiple: int = 1
    truncate: bool = False
    lengths: bool = False
    mask: bool = False
    fields: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.length is not None:
            object.__setattr__(self, "length", check_int("length", self.length, minimum=1))
        object.__setattr__(self, "multiple", check_int("multiple", self.multiple, minimum=1))
        if self.fields is not None:
            object.__setattr__(self, "fields", check_names("fields", self.fields))
        if not isinstance(self.value, (int, float, np.number)) or isinstance(self.value, bool):
            raise OptionError(explain("a number for value", repr(self.value), "Pass e.g. Pad(value=0)."))


@dataclass(frozen=True)
class Bucket:
    """Batches of samples of similar length, so padding is small (``bucket=True`` uses the defaults).

    ``by`` names the variable-length field whose lengths count (default: the dataset's only one).
    With ``boundaries`` (ascending lengths), samples fall into buckets ``[0, b0), [b0, b1), ...,
    [bk, inf)`` as in tf.data's ``bucket_by_sequence_length``, and batches are cut within a bucket.
    Without, each run of ``window`` batches' worth of the shuffled epoch is sorted by length and
    cut into batches.  Either way each epoch's batches come in random order, every sample once;
    the few samples left over in each bucket are batched together, nearest lengths first.
    """

    by: Optional[str] = None
    boundaries: Optional[tuple[int, ...]] = None
    window: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", check_int("window", self.window, minimum=1))
        if self.by is not None and not isinstance(self.by, str):
            raise OptionError(explain("a field name for by", repr(self.by), "Pass e.g. Bucket(by='tokens')."))
        if self.boundaries is not None:
            values = tuple(self.boundaries) if isinstance(self.boundaries, (list, tuple)) else ()
            bounds = tuple(check_int("boundaries", b, minimum=0) for b in values)
            if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
                raise OptionError(
                    explain(
                        "strictly ascending lengths for boundaries",
                        repr(self.boundaries),
                        "Pass e.g. Bucket(boundaries=[32, 64, 128, 256]).",
                    )
                )
            object.__setattr__(self, "boundaries", bounds)

    def field(self, spec: Spec) -> str:
        """The field bucketed by: ``by``, or the spec's only variable-length field."""
        if self.by is not None:
            check_variable(spec.field(self.by))
            return self.by
        variable = [f.name for f in spec.fields if f.kind in VARIABLE]
        if len(variable) != 1:
            raise OptionError(
                explain(
                    "one variable-length field to bucket by, or Bucket(by=...)",
                    f"variable-length fields {variable} in {spec!r}",
                    "Name the field: bucket=chute.Bucket(by='tokens').",
                )
            )
        return variable[0]


def check_variable(field: Field) -> None:
    if field.kind not in VARIABLE:
        raise OptionError(
            explain(
                "a variable-length field (ragged, bytes or text) to measure",
                f"field {field.name!r} of fixed shape {field.shape}",
                "Bucket by a ragged field: convert(..., ragged=['tokens']) or ds.map(fn, ragged=[...]).",
            )
        )


def check_names(what: str, value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else None
    if not names or not all(isinstance(n, str) for n in names):
        raise OptionError(explain(f"field names for {what}", repr(value), f"Pass e.g. {what}=['tokens']."))
    return names


def _option(value: object, kind: type[Any], what: str, fix: str, named: str = "") -> Any:
    """``value`` as an option record: None/False (none), True (the defaults), the record itself, or
    (with ``named``) a string given as that field."""
    if value is None or value is False:
        return None
    if value is True:
        return kind()
    if isinstance(value, kind):
        return value
    if named and isinstance(value, str):
        return kind(**{named: value})
    raise OptionError(explain(what, repr(value), fix))


def check_pad(value: object) -> Optional[Pad]:
    return _option(value, Pad, "pad=True or chute.Pad(...)", "Pass e.g. pad=chute.Pad(value=0).")


def check_bucket(value: object) -> Optional[Bucket]:
    what = "bucket=True, a field name or chute.Bucket(...)"
    return _option(value, Bucket, what, "Pass e.g. bucket='tokens'.", named="by")


@dataclass(frozen=True)
class BatchOptions:
    """How a loader cuts an epoch into batches.

    ``pad``, ``bucket`` and ``collate`` say how samples that do not stack make a batch (see
    :mod:`chute.datasets.padding`).  ``repeat=True`` makes a loop over the loader go on epoch after epoch
    (for counting steps, not epochs); ``epochs=N`` makes it go on until the loader reaches epoch N.
    ``seed=None`` is resolved to a fresh random seed by :meth:`resolved`, once, so the loader can
    expose it and a run can be repeated.
    """

    batch_size: int
    shuffle: bool | str | BlockShuffle = False
    seed: Optional[int] = None
    drop_remainder: bool = False
    pad: Any = None  # Optional[chute.Pad] (True: the defaults)
    bucket: Any = None  # Optional[chute.Bucket] (True or a field name: the defaults)
    collate: Optional[Callable[[list[Any]], Any]] = None
    repeat: bool = False
    epochs: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", check_int("batch_size", self.batch_size, minimum=1))
        object.__setattr__(self, "shuffle", _check_shuffle(self.shuffle))
        object.__setattr__(self, "drop_remainder", _check_bool("drop_remainder", self.drop_remainder))
        if self.seed is not None:
            object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0, limit=SEED_LIMIT))
        object.__setattr__(self, "pad", check_pad(self.pad))
        object.__setattr__(self, "bucket", check_bucket(self.bucket))
        object.__setattr__(self, "repeat", _check_bool("repeat", self.repeat))
        if self.epochs is not None:
            object.__setattr__(self, "epochs", check_int("epochs", self.epochs, minimum=0, limit=SEED_LIMIT))
        if self.collate is not None and self.pad is not None:
            raise OptionError(
                explain("pad= or collate=", "both", "Pad inside the collate function, or drop collate=.")
            )
        if self.repeat and self.epochs is not None:
            raise OptionError(
                explain("repeat=True (loop for ever) or epochs=N (loop until epoch N)", "both", "Pass one.")
            )
        if isinstance(self.shuffle, BlockShuffle) and self.bucket is not None:
            raise OptionError(
                explain(
                    "shuffle=True or False with bucket=", "shuffle='block'", "Bucketing orders its own reads."
                )
            )

    @property
    def looping(self) -> bool:
        """Whether a loop over the loader goes on past the end of an epoch."""
        return self.repeat or self.epochs is not None

    def resolved(self) -> BatchOptions:
        """These options with a concrete seed (a fresh random one when none was given)."""
        if self.seed is not None:
            return self
        return replace(self, seed=secrets.randbits(63))


@dataclass(frozen=True)
class PipelineOptions:
    """How batches are produced while the consumer works.

    ``workers=0`` reads each batch in the calling thread when it is asked for.  ``workers=N``
    reads upcoming batches on N workers, keeping up to ``prefetch`` batches in flight; batches read
    ahead are not counted as consumed until they are handed over.  ``worker_type="thread"`` (the
    default) suits numpy and decoders that release the GIL; ``"process"`` suits Python-heavy maps:
    processes started once (with ``start_method``; by default fork, or forkserver once JAX or
    TensorFlow is imported, as those must not be forked), fed indices, returning
    batches through shared memory.  ``workers="auto"`` and ``prefetch="auto"`` are chosen from the
    first batch's measured read time and size within ``ram_budget`` bytes (default: a quarter of
    the available RAM, at most 2 GiB); ``loader.stats()["pipeline"]`` says what was chosen.
    ``on_error="skip"`` leaves out a sample whose read or map fails (its batch comes out one
    sample short), counts and names it in ``loader.stats()`` and warns once; ``"raise"`` stops.
    ``timeout`` (seconds, as the torch DataLoader's) bounds the wait for a batch from the
    workers: past it, a :class:`chute.StallError` reports the worker, the batch and samples it
    holds and the Python stack it is in (a stuck map, or a slow one), and stops process workers
    (the next iteration starts new ones).  None (the default) waits as long as it takes.
    """

    workers: int | str = 0
    prefetch: int | str = 2
    on_error: str = "raise"
    worker_type: str = "thread"
    start_method: Optional[str] = None
    ram_budget: Optional[int | str] = None
    timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.workers != AUTO:
            object.__setattr__(self, "workers", check_int("workers", self.workers, minimum=0))
        if self.prefetch != AUTO:
            object.__setattr__(self, "prefetch", check_int("prefetch", self.prefetch, minimum=1))
        _check_choice("on_error", self.on_error, ("raise", "skip"))
        _check_choice("worker_type", self.worker_type, ("thread", "process"))
        _check_choice("start_method", self.start_method, (None, *START_METHODS))
        if self.ram_budget is not None:
            object.__setattr__(self, "ram_budget", parse_size(self.ram_budget))
        if self.timeout is not None and not (
            isinstance(self.timeout, (int, float)) and not isinstance(self.timeout, bool) and self.timeout > 0
        ):
            raise OptionError(
                explain(
                    "timeout: seconds to wait for a batch (a number > 0), or None",
                    repr(self.timeout),
                    "Pass e.g. timeout=60.",
                )
            )

    @property
    def automatic(self) -> bool:
        return AUTO in (self.workers, self.prefetch)
