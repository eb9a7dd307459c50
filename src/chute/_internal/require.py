"""Optional imports: a missing package becomes a MissingDependencyError that says what to install."""

from __future__ import annotations

import contextlib
import importlib
import os
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


# Keras 3 backends: the package Keras imports for each, and the chute extra that installs it.
_BACKENDS = {"tensorflow": "tf", "jax": "jax", "torch": "torch"}


def missing_backend(package: str, error: ImportError) -> MissingDependencyError:
    """Keras is installed but the backend it was told to use (``KERAS_BACKEND``) is not."""
    backend = os.environ.get("KERAS_BACKEND") or "tensorflow (Keras's default)"
    others = ", ".join(f"KERAS_BACKEND={b}" for b in ("torch", "jax", "tensorflow") if b != package)
    return MissingDependencyError(
        explain(
            f"the {package!r} package, the Keras backend in use (KERAS_BACKEND={backend})",
            f"ImportError: {error}",
            f"Install it with: pip install 'chute[keras-{_BACKENDS[package]}]'; or choose a "
            f"backend that is installed ({others}) before Keras is imported.",
        )
    )


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
        if name == "keras" and package in _BACKENDS:  # keras is there, its backend is not
            raise missing_backend(package, error) from error
        if package not in packages:
            raise
        raise missing(
            f"the {package!r} package for this call", error, f"pip install 'chute[{extra}]'"
        ) from error
