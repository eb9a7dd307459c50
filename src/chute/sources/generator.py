"""Generators and other one-way iterables as a source: ``chute.from_generator``.

A generator is read in order: the loader draws each batch's samples where it plans the batch (the
thread asking for batches, ahead by the prefetch depth) and hands them to its workers as the rows
to read, so maps, padding and collate run on worker threads or processes like any dataset's,
and every sample is produced exactly once whatever the workers.
Epochs: with ``length`` (samples) or ``steps`` (batches) the stream is cut into epochs of that
size, calling the generator function again only when it runs out (so an endless ``while True``
generator is simply cut); without either, an epoch is one call of the function, to its end.
Per-sample randomness comes from (seed, epoch, position in the epoch), as for other datasets.

A generator may yield samples, or (``batched=True``) whole batches, as the Keras tutorials'
generators do: any nesting of tuples, lists and dicts of arrays sharing a first dimension.  A
batch's rows are its samples, sliced from the arrays as they come (no loop over samples); the
loader's batch size is the generator's own unless given, so each yield is one batch.

A generator cannot be read at a position, only replayed: a loader restored mid-epoch (or asked
for a batch it has moved past) calls the function again and skips to the position, which gives
the same samples when the function does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import Any, Optional, Union

import numpy as np

from chute.dataset import Dataset
from chute.datasets.base import qualified_name
from chute.errors import EmptyDatasetError, OptionError, SpecError, explain
from chute.options import check_int, check_names
from chute.sources.base import Drawn, Rows
from chute.spec import Spec, flatten, infer_spec, is_sample_leaf, unflatten

__all__ = ["GeneratorSource", "from_generator"]

_RECENT = 8  # draws kept, for a batch asked again (a Keras peek, a re-read after an error)
_RANDOM_ACCESS = (
    "Iterate a loader over it, or convert it once (chute.convert) and open the result for random "
    "access and shuffle=True."
)


class GeneratorSource:
    """Samples of a generator function (called again when it runs out) or an iterable, in order."""

    vectorised = False  # conversion reads it sample by sample

    def __init__(
        self,
        source: Any,
        length: Optional[int] = None,
        steps: Optional[int] = None,
        spec: Optional[Spec] = None,
        keep: Optional[Callable[[Any], Any]] = None,
        ragged: tuple[str, ...] = (),
        batched: bool = False,
    ) -> None:
        if not callable(source) and not isinstance(source, Iterable):
            raise OptionError(
                explain("a generator function or an iterable", type(source).__name__, "Pass fn, not fn().")
            )
        self.length = None if length is None else check_int("length", length, minimum=1)
        self.steps = None if steps is None else check_int("steps", steps, minimum=1)
        if self.length is not None and self.steps is not None:
            raise OptionError(explain("length= or steps=, not both", "both", "Give one of them."))
        if batched and keep is not None:
            raise OptionError(
                explain(
                    "filter on a generator of samples",
                    "a generator of batches (batched=True)",
                    "Filter inside the generator, or after a loader: each batch is yielded whole.",
                )
            )
        self._source, self._spec, self._keep, self._ragged = source, spec, keep, ragged
        self.batched = bool(batched)
        self._yield_size: Optional[int] = None
        self._head: list[Any] = []  # a one-shot iterator's first yield, read to learn the spec
        self._head_pending = False  # ... and not yet drawn
        self._lock = threading.Lock()  # one draw at a time: the generator is read in order
        self._cursor: Optional[tuple[Optional[int], int, _Reader]] = None  # (stream, position, reader)
        self._recent: OrderedDict[tuple[int, int, int], Drawn] = OrderedDict()

    # -- the Source protocol -------------------------------------------------------------------
    @property
    def spec(self) -> Spec:
        if self._spec is None:
            first = self._first()
            self._spec = infer_spec(_first_row(first) if self.batched else first, self._ragged)
        return self._spec

    @property
    def yield_size(self) -> Optional[int]:
        """Samples in the generator's first batch (``batched=True``; the loader's default batch
        size), else None."""
        if not self.batched or not self.spec.fields:
            return None
        if self._yield_size is None:
            self._yield_size = len(_batch_leaves(self.spec, self._first(), 0)[0])
        return self._yield_size

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(
                "chute: this generator's epochs have no known number of samples: pass length= "
                "(samples) or steps= (batches) to chute.from_generator for len(), Keras and tf.data"
            )
        return self.length

    def read_sample(self, index: int) -> list[Any]:
        if index != 0:
            raise OptionError(
                explain("sample 0 of a generator (its first)", f"sample {index}", _RANDOM_ACCESS)
            )
        first = self._first()
        return self.spec.flatten(_first_row(first) if self.batched else first)

    def read_rows(self, rows: Rows) -> list[Any]:
        """The samples drawn for ``rows`` (from :meth:`draw`); or the first sample (rows ``[0]``,
        read to learn a map's output spec)."""
        if isinstance(rows, Drawn):
            return rows.leaves
        if not isinstance(rows, slice) and rows.tolist() == [0]:
            return [
                field.stack([leaf]) for field, leaf in zip(self.spec.fields, self.read_sample(0), strict=True)
            ]
        where = f"{rows.start}..{rows.stop - 1}" if isinstance(rows, slice) else str(rows.tolist())
        raise OptionError(
            explain("samples of a generator in order, from a loader", f"samples {where}", _RANDOM_ACCESS)
        )

    def fingerprint(self) -> str:
        """What identifies the stream: the function's name, and how epochs are cut."""
        what = qualified_name(self._source) if callable(self._source) else type(self._source).__name__
        keep = qualified_name(self._keep) if self._keep is not None else ""
        return f"{what}:{self.length}:{self.steps}:{keep}" + (":batched" if self.batched else "")

    # -- what a stream adds ----------------------------------------------------------------------
    def per_epoch(self, batch_size: int) -> Optional[int]:
        """Samples in an epoch: ``length``, ``steps`` batches' worth, or None (one call, to its end)."""
        if self.length is not None:
            return self.length
        return None if self.steps is None else self.steps * batch_size

    def filtered(self, predicate: Callable[[Any], Any]) -> GeneratorSource:
        """This stream with only the samples for which ``predicate(sample)`` is true (applied as
        samples are drawn; ``length`` and ``steps`` count the samples kept)."""
        if not callable(predicate):
            raise OptionError(
                explain(
                    "a function for filter", repr(predicate), "Pass a function of a sample, giving a bool."
                )
            )
        keep = predicate if self._keep is None else _Both(self._keep, predicate)
        return GeneratorSource(
            self._source, self.length, self.steps, self._spec, keep, self._ragged, self.batched
        )

    def draw(self, epoch: int, start: int, stop: int, per_epoch: Optional[int]) -> Drawn:
        """Positions ``[start, stop)`` of ``epoch``, or fewer where the epoch (or the data) ends.

        With ``per_epoch`` samples an epoch, epochs are consecutive runs of one continuous stream
        (the function called again when it runs out); without, each epoch is one call.
        """
        key = (epoch, start, stop)
        self.spec  # noqa: B018  (learnt before drawing: a one-shot iterator's first yield is kept for it)
        with self._lock:
            drawn = self._recent.get(key)
            if drawn is None:
                if per_epoch is not None:
                    stop = min(stop, per_epoch)
                    count, leaves = self._take(None, epoch * per_epoch + start, max(0, stop - start))
                else:
                    count, leaves = self._take(epoch, start, stop - start)
                drawn = Drawn(np.arange(start, start + count, dtype=np.int64), leaves)
                self._recent[key] = drawn
                while len(self._recent) > _RECENT:
                    self._recent.popitem(last=False)
            return drawn

    # -- reading in order --------------------------------------------------------------------------
    def _take(self, stream: Optional[int], position: int, count: int) -> tuple[int, list[Any]]:
        """``count`` samples from ``position`` of ``stream`` (None: the continuous one; an int: that
        epoch's call), moving on from where the last draw stopped, or replaying to get there: how
        many there were, and their columns."""
        cursor = self._cursor
        if cursor is None or cursor[0] != stream or cursor[1] > position:
            if cursor is not None and self._one_shot():
                raise OptionError(
                    explain(
                        "a generator function (called again for each epoch, or to resume)",
                        "a one-shot iterator, already read",
                        "Pass the function itself: from_generator(fn), not from_generator(fn()).",
                    )
                )
            yields = self._continuous() if stream is None else self._pass()
            reader: _Reader = _Rows(yields, self.spec) if self.batched else _Samples(yields, self.spec)
            cursor = (stream, 0, reader)
        _, at, reader = cursor
        if position > at:
            reader.skip(position - at)
        taken, leaves = reader.take(count)
        self._cursor = (stream, position + taken, reader)
        return taken, leaves

    def _continuous(self) -> Iterator[Any]:
        """The samples of call after call, for as long as calls give any."""
        while True:
            empty = True
            for sample in self._pass():
                empty = False
                yield sample
            if empty or self._one_shot():
                return

    def _pass(self) -> Iterator[Any]:
        if callable(self._source):
            samples: Iterator[Any] = iter(self._source())
        elif not self._one_shot():
            samples = iter(self._source)
        else:
            samples = chain(self._take_head(), self._source)
        return samples if self._keep is None else (s for s in samples if self._keep(s))

    def _one_shot(self) -> bool:
        return not callable(self._source) and iter(self._source) is self._source

    def _take_head(self) -> Iterator[Any]:
        if self._head_pending:
            self._head_pending = False
            yield self._head[0]

    def _first(self) -> Any:
        """The first sample, without losing it from a one-shot iterator."""
        try:
            if not self._one_shot():
                return next(self._pass())
            if not self._head:
                self._head.append(next(self._source))
                self._head_pending = True
            return self._head[0]
        except StopIteration:
            raise EmptyDatasetError(explain("samples from the generator", "none", "Check it.")) from None

    def __getstate__(self) -> dict[str, Any]:  # (worker processes read drawn rows, never the generator)
        state = dict(self.__dict__)
        state.update(_cursor=None, _recent=OrderedDict(), _lock=None)
        if self._one_shot():
            state["_source"] = ()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _Samples:
    """A generator of samples, read in order: ``take`` stacks the next samples into columns."""

    def __init__(self, samples: Iterator[Any], spec: Spec) -> None:
        self._samples, self._spec = samples, spec

    def take(self, count: int) -> tuple[int, list[Any]]:
        flat = [self._spec.flatten(sample) for sample in islice(self._samples, count)]
        return len(flat), [field.stack([s[i] for s in flat]) for i, field in enumerate(self._spec.fields)]

    def skip(self, count: int) -> None:
        next(islice(self._samples, count, count), None)


class _Rows:
    """A generator of batches, read row by row: ``take`` slices the next rows out of the batches
    (one slice per field and batch touched, joined when a draw spans two batches)."""

    def __init__(self, batches: Iterator[Any], spec: Spec) -> None:
        self._batches, self._spec = batches, spec
        self._batch: list[Any] = []  # the current batch's columns
        self._at = 0  # rows of it taken
        self._number = -1  # which yield it was (for errors)

    def take(self, count: int) -> tuple[int, list[Any]]:
        pieces = self._pieces(count)
        taken = sum(len(piece[0]) for piece in pieces) if pieces and pieces[0] else 0
        if len(pieces) == 1:
            return taken, pieces[0]
        fields = self._spec.fields
        if not pieces:
            return 0, [field.stack([]) for field in fields]
        return taken, [np.concatenate([piece[i] for piece in pieces]) for i in range(len(fields))]

    def skip(self, count: int) -> None:
        self._pieces(count, keep=False)

    def _pieces(self, count: int, keep: bool = True) -> list[list[Any]]:
        pieces = []
        while count > 0:
            rows = len(self._batch[0]) if self._batch else 0
            if self._at >= rows:
                batch = next(self._batches, None)
                if batch is None:
                    break
                self._number += 1
                self._batch, self._at = _batch_leaves(self._spec, batch, self._number), 0
                continue
            k = min(count, rows - self._at)
            if keep:
                pieces.append([column[self._at : self._at + k] for column in self._batch])
            self._at += k
            count -= k
        return pieces


_Reader = Union[_Samples, _Rows]


def _first_row(batch: Any) -> Any:
    """Row 0 of a batch (a nesting of arrays with a shared first dimension), to learn the spec."""
    treedef, leaves = flatten(batch, is_leaf=is_sample_leaf)
    try:
        return unflatten(treedef, [leaf[0] for _, leaf in leaves])
    except (TypeError, IndexError):
        raise SpecError(
            explain(
                "batches from a generator with batched=True: arrays with a first (batch) dimension",
                f"{type(batch).__name__} whose leaves are {[type(leaf).__name__ for _, leaf in leaves]}",
                "Yield batches (each leaf an array of rows), or leave out batched=True for samples.",
            )
        ) from None


def _batch_leaves(spec: Spec, batch: Any, number: int) -> list[Any]:
    """A yielded batch as columns of ``spec``'s fields, checked to share one number of rows."""
    try:
        leaves = spec.flatten(batch)
    except (TypeError, ValueError, KeyError) as error:
        raise SpecError(
            explain(
                f"batch {number} of the generator in the structure of its first, {spec.structure}",
                f"{type(batch).__name__} ({error})",
                "Yield the same structure every time.",
            )
        ) from None
    columns = []
    for field, leaf in zip(spec.fields, leaves, strict=True):
        if field.kind == "array":
            column = np.asarray(leaf)
            if column.shape[1:] != field.shape:
                raise SpecError(
                    explain(
                        f"rows of shape {field.shape} for field {field.name!r} in batch {number} "
                        "of the generator",
                        f"an array of shape {column.shape}",
                        "Yield batches whose rows share one shape (pad them, or give the field in ragged=).",
                    )
                )
            columns.append(column)
        else:
            columns.append(field.stack(list(leaf)))
    rows = {len(column) for column in columns}
    if len(rows) > 1:
        raise SpecError(
            explain(
                f"one number of rows in every field of batch {number} of the generator",
                f"{dict(zip(spec.names, (len(c) for c in columns), strict=True))}",
                "Yield arrays that share their first (batch) dimension.",
            )
        )
    return columns


class _Both:
    """Two filters' predicates, one after the other (picklable)."""

    def __init__(self, first: Callable[[Any], Any], second: Callable[[Any], Any]) -> None:
        self.first, self.second = first, second

    def __call__(self, sample: Any) -> bool:
        return bool(self.first(sample)) and bool(self.second(sample))

    def __repr__(self) -> str:  # (how the state's fingerprint names it)
        return f"{qualified_name(self.first)}&{qualified_name(self.second)}"


def from_generator(
    fn: Any,
    length: Optional[int] = None,
    steps: Optional[int] = None,
    spec: Optional[Spec] = None,
    ragged: Sequence[str] = (),
    batched: bool = False,
) -> Dataset:
    """A dataset of the samples a generator function (or any iterable) yields, read in order.

    ``batched=True``: each yield is a whole batch, as the Keras tutorials write generators (any
    nesting of tuples, lists and dicts of arrays sharing their first dimension, endless or not);
    its rows are the samples, and ``loader()`` with no batch size gives the generator's batches
    as they were yielded.  Pass the function and its arguments (``functools.partial(fn, path)``)
    rather than a call, so that each epoch, and a resumed run, can start it again.

    ``length`` (samples) or ``steps`` (batches) make epochs of that size, calling ``fn`` again
    when it runs out; without them an epoch is one call of ``fn``.  ``spec`` saves reading a first
    sample to learn the structure; ``ragged`` names the fields whose first dimension varies from
    sample to sample (for the loader's ``pad=``).  Maps, padding, collate, workers (threads or
    processes), prefetch, ``state_dict`` and every adapter work as for any dataset; ``filter``
    applies to the generator's own samples (before maps); what needs random access
    (``shuffle=True``, ``ds[i]``, ``take``, ``split``, ``cache``, ``mix``) says so, and what to
    use instead.
    """
    names = check_names("ragged", ragged) if ragged else ()
    return Dataset(GeneratorSource(fn, length, steps, spec, ragged=names, batched=batched))
