"""chute's exception hierarchy.

Every error chute raises for bad input derives from :class:`ChuteError`, and also from the
builtin exception a Python caller would expect (``ValueError``, ``IndexError``, ``ImportError``),
so ``except ValueError`` keeps working.  Messages follow one pattern: what was expected, what was
received, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ChuteError",
    "ConversionError",
    "EmptyDatasetError",
    "FormatError",
    "MissingDependencyError",
    "OptionError",
    "OutOfRangeError",
    "ReadError",
    "RemoteError",
    "SpecError",
    "WorkerError",
    "add_note",
    "explain",
]


class ChuteError(Exception):
    """Base class of every error chute raises on purpose."""


class SpecError(ChuteError, ValueError):
    """The data does not have the structure, dtype, shape or length chute needs."""


class OptionError(ChuteError, ValueError):
    """An option (batch size, seed, ...) has a value chute cannot use."""


class EmptyDatasetError(ChuteError, ValueError):
    """A dataset with no samples was used where samples are needed."""


class OutOfRangeError(ChuteError, IndexError):
    """An index or batch number lies outside the dataset or the epoch."""


class FormatError(ChuteError, ValueError):
    """A stored dataset is damaged, incomplete, hostile or of another format version."""


class ConversionError(ChuteError, RuntimeError):
    """A sample could not be converted (unreadable, a failing transform, a spec mismatch)."""


class DatasetExistsError(ChuteError, FileExistsError):
    """A conversion's destination holds a dataset already (``overwrite=True`` replaces it)."""


class ReadError(ChuteError, OSError):
    """A sample's file could not be read or decoded; the message names the file."""


class RemoteError(ChuteError, OSError):
    """Object storage could not be reached or refused a request (named, with the cause)."""


class WorkerError(ChuteError, RuntimeError):
    """A loader's worker process died (killed, crashed, out of memory) or its pool was shut down."""


class StallError(WorkerError, TimeoutError):
    """A batch did not come within the loader's ``timeout``: the report names the worker, the
    batch and samples it holds, and the Python stack it is stuck in."""


class MissingDependencyError(ChuteError, ImportError):
    """An optional framework is needed for this call but is not installed."""


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error``'s traceback (Python 3.11+; on 3.10 nothing happens)."""
    if hasattr(error, "add_note"):
        error.add_note(note)


def explain(expected: str, received: object, fix: str) -> str:
    """Format the three parts every chute message has."""
    return f"Expected {expected}. Received: {received}. {fix}"
