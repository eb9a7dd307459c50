"""Optional imports: a missing package becomes a MissingDependencyError that says what to install."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

from chute.errors import MissingDependencyError, explain

__all__ = ["framework", "missing", "require"]

# adapter module -> (top-level packages it imports, the chute extra that installs them)
_FRAMEWORKS = {
    "keras": (("keras",), "keras"),
    "torch": (("torch",), "torch"),
    "tf": (("tensorflow",), "tf"),
    "jax": (("jax", "jaxlib"), "jax"),
}


def missing(what: str, error: ImportError, install: str) -> MissingDependencyError:
    """The error for a failed optional import: what was needed, the import error, what to install."""
    return MissingDependencyError(explain(what, f"ImportError: {error}", f"Install it with: {install}"))


def require(module: str, purpose: str, install: str) -> ModuleType:
    """``import module``, or MissingDependencyError saying it is needed for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing(f"{module.split('.')[0]} {purpose}", error, install) from error


@contextlib.contextmanager
def framework(name: str) -> Iterator[None]:
    """Around the import of a framework's adapter: a missing framework becomes a
    MissingDependencyError naming the ``pip install 'chute[...]'`` extra (``name``: keras, torch,
    tf or jax); any other import error passes through."""
    packages, extra = _FRAMEWORKS[name]
    try:
        yield
    except ImportError as error:
        package = (error.name or "").split(".")[0]
        if package not in packages:
            raise
        raise missing(
            f"the {package!r} package for this call", error, f"pip install 'chute[{extra}]'"
        ) from error
